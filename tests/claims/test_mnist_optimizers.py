"""mnist_optimizers: tiny run; momentum 0 removes the Momentum parts; fixed numbers; quotes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from jaxopt_notes.experiments import mnist_optimizers as mo

from jaxopt_notes import experiments
from tests.claims._contract import run_tiny, verdict_of

CFG = mo.Config.tiny()
EXPONENTS = [-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5]


def _seeds(value, n=5):
    return np.full(n, value) + np.linspace(0.0, 0.004, n)


def metrics(momentum_loss=0.1, adam_curve=None):
    wide = [0.80, 0.93, 0.95, 0.95, 0.95, 0.95, 0.94, 0.85]  # ~3 decades within 2 points
    narrow = [0.50, 0.70, 0.85, 0.93, 0.95, 0.90, 0.60, 0.10]  # ~1 decade
    per = {
        "SGD": {"train_loss": _seeds(1.0), "test_accuracy": _seeds(0.85)},
        "Momentum": {"train_loss": _seeds(momentum_loss), "test_accuracy": _seeds(0.95)},
        "AdaGrad": {"train_loss": _seeds(0.1), "test_accuracy": _seeds(0.95)},
        "Adam": {"train_loss": _seeds(0.05), "test_accuracy": _seeds(0.96)},
    }
    if momentum_loss >= 1.0:  # Momentum that is SGD: the same numbers
        per["Momentum"] = per["SGD"]
    adam = narrow if adam_curve == "narrow" else wide
    sweep = {
        "exponents": EXPONENTS,
        "Momentum": {"test_accuracy": np.array([narrow] * 5) + np.linspace(0, 0.004, 5)[:, None]},
        "Adam": {"test_accuracy": np.array([adam] * 5) + np.linspace(0, 0.004, 5)[:, None]},
    }
    return {"default_rate": per, "sweep": sweep}


def by_id(entries):
    return {c["id"]: c["verdict"] for c in entries}


def test_fixed_numbers_that_must_pass():
    v = by_id(mo.claims(metrics(), CFG))
    assert v == dict.fromkeys(
        ("sgd_slowest", "sgd_least_accurate", "adam_less_lr_sensitive"), "reproduced"
    )


def test_fixed_numbers_that_must_fail():
    v = by_id(mo.claims(metrics(momentum_loss=1.0, adam_curve="narrow"), CFG))
    assert v == dict.fromkeys(
        ("sgd_slowest", "sgd_least_accurate", "adam_less_lr_sensitive"), "not_reproduced"
    )


def test_good_window_interpolates_and_reports_cuts():
    w = mo.good_window(np.array([-1.0, 0.0, 1.0]), np.array([0.5, 0.9, 0.88]), 0.02)
    assert w["censored"] and w["left"] == pytest.approx(-0.05) and w["right"] == 1.0
    # a diverged run (NaN) counts as accuracy 0
    w = mo.good_window(np.array([-1.0, 0.0, 1.0]), np.array([0.8, 0.9, np.nan]), 0.05)
    assert not w["censored"] and w["width"] == pytest.approx(0.5 + 0.05 / 0.9)


def test_tiny_run_and_momentum_sabotage(tmp_path):
    plain = run_tiny("mnist_optimizers", tmp_path)
    assert verdict_of(plain, "sgd_least_accurate") == "reproduced"
    # momentum 0: "Momentum" is SGD, seed for seed, so it cannot beat SGD
    sabotaged = run_tiny("mnist_optimizers", tmp_path, momentum=0)
    assert verdict_of(sabotaged, "sgd_least_accurate") == "not_reproduced"
    assert verdict_of(sabotaged, "sgd_slowest") == "not_reproduced"


def test_config_rules():
    with pytest.raises(ValueError, match="sweep"):
        experiments.make_config(mo, "tiny", {"sweep": "-1,1"})
    assert dataclasses.replace(CFG, momentum=0.0).momentum == 0.0
