"""autoregressive: tiny run; horizons=1 (no feedback) removes the degradation; fixed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from jaxopt_notes.experiments import autoregressive as ar

from jaxopt_notes import experiments
from tests.claims._contract import run_tiny, verdict_of

CFG = ar.Config.tiny()


def metrics(one_step=0.048, growth=(1.2, 2.0, 4.0), n=5):
    jitter = 1 + np.linspace(0.0, 0.02, n)
    cols = [one_step]
    for g in growth:
        cols.append(cols[-1] * g)
    mse = np.array([cols] * n) * jitter[:, None]
    return {"mse": mse, "mse_vs_clean_sine": mse - 0.04}


def by_id(entries):
    return {c["id"]: c["verdict"] for c in entries}


def test_fixed_numbers_that_must_pass():
    assert by_id(ar.claims(metrics(), CFG)) == {
        "one_step_good": "reproduced",
        "k_step_degrades": "reproduced",
    }


def test_fixed_numbers_that_must_fail():
    v = by_id(ar.claims(metrics(one_step=0.08, growth=(1.0, 0.9, 1.1)), CFG))
    assert v == {"one_step_good": "not_reproduced", "k_step_degrades": "not_reproduced"}


def test_no_noise_leaves_the_one_step_claim_without_a_scale():
    cfg = experiments.make_config(ar, "tiny", {"noise_std": "0"})
    assert by_id(ar.claims(metrics(), cfg))["one_step_good"] == "inconclusive"


def test_tiny_run_and_no_feedback_sabotage(tmp_path):
    plain = run_tiny("autoregressive", tmp_path)
    assert verdict_of(plain, "k_step_degrades") == "reproduced"
    # only 1-step predictions: no output is fed back, so nothing compounds
    sabotaged = run_tiny("autoregressive", tmp_path, horizons=1)
    assert verdict_of(sabotaged, "k_step_degrades") == "not_reproduced"


def test_config_rules():
    with pytest.raises(ValueError, match="horizons"):
        experiments.make_config(ar, "tiny", {"horizons": "4,16"})
