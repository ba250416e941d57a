"""saddle_escape: tiny reproduces the stall, Hessian and noise claims; noise 0, momentum 0 and a
start far from the saddle's stable line flip theirs; verdicts on fixed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from jaxopt_notes.experiments import saddle_escape as se

from jaxopt_notes import experiments
from tests.claims._contract import run_tiny, verdict_of


def parts_of(result: dict, claim_id: str) -> list[str]:
    return next(c["parts"] for c in result["claims"] if c["id"] == claim_id)


def test_tiny_reproduces_and_sabotage_flips(tmp_path):
    plain = run_tiny("saddle_escape", tmp_path)
    for name in ("classify_saddles", "runner_matches_library", "gd_stalls", "hessian_escape"):
        assert verdict_of(plain, name) == "reproduced", name
    assert verdict_of(plain, "noise_escape") == "reproduced"
    assert parts_of(plain, "momentum_escape")[0] == "reproduced"  # faster than GD at its lr
    # noise 0, momentum 0 and a start far from the stable line, each removing one effect
    sabotaged = run_tiny(
        "saddle_escape", tmp_path, noise_std=0.0, momentum=0.0, start_log10_y="-2,-1.5"
    )
    assert verdict_of(sabotaged, "noise_escape") == "not_reproduced"  # the noisy arm is GD
    assert parts_of(sabotaged, "momentum_escape")[0] == "not_reproduced"
    assert verdict_of(sabotaged, "momentum_escape") != "reproduced"
    assert verdict_of(sabotaged, "gd_stalls") == "not_reproduced"


def fixed_metrics(n: int, gd: float, noise: float, mom: float, matched: float, stall: float):
    rng = np.random.default_rng(0)

    def around(v):
        return np.maximum(1, np.round(v * (1 + 0.05 * rng.standard_normal(n)))).astype(int)

    return {
        "gd": around(gd),
        "noise": around(noise),
        "momentum": around(mom),
        "gd_matched": around(matched),
        "stalled_gd": around(stall),
        "stalled_control": np.zeros(n, int),
        "one_step": {
            "loss_there": np.zeros(n),
            "after_hessian_step": np.full(n, -0.23),
            "after_gradient_step": np.zeros(n) + 0.01 * rng.random(n),
        },
        "classify_origin": {"kind": "saddle", "eigenvalues": [2.0, -2.0]},
        "linear_net": {
            "kind": "saddle",
            "num_negative": 2,
            "loss_before": 3.0,
            "loss_after_escape_step": 2.0,
        },
        "runner_vs_library": {"gd": 0.0, "momentum": 0.0},
    }


def test_claims_on_fixed_numbers():
    cfg = se.Config()
    good = {c["id"]: c["verdict"] for c in se.claims(fixed_metrics(10, 180, 70, 60, 80, 90), cfg)}
    assert good == {
        "classify_saddles": "reproduced",
        "runner_matches_library": "reproduced",
        "gd_stalls": "reproduced",
        "hessian_escape": "reproduced",
        "noise_escape": "reproduced",
        "momentum_escape": "reproduced",
    }
    bad = {c["id"]: c["verdict"] for c in se.claims(fixed_metrics(10, 100, 95, 98, 30, 10), cfg)}
    assert bad["gd_stalls"] == bad["noise_escape"] == bad["momentum_escape"] == "not_reproduced"
    m = fixed_metrics(10, 180, 70, 60, 50, 90)
    m["classify_origin"] = {"kind": "minimum", "eigenvalues": [2.0, 2.0]}
    m["one_step"]["after_hessian_step"] = np.full(10, 0.5)  # the step went uphill
    found = {c["id"]: c["verdict"] for c in se.claims(m, cfg)}
    assert found["classify_saddles"] == found["hessian_escape"] == "not_reproduced"


def test_config_refuses_a_start_on_the_far_side():
    with pytest.raises(ValueError, match="start_log10_y"):
        experiments.make_config(se, True, {"start_log10_y": "-3,-5"})
