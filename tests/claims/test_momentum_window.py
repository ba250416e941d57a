"""momentum_window: tiny run reproduces beta 0.5's window; momentum off flips it; fixed numbers."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import momentum_window as mw

from tests.claims._contract import run_tiny, verdict_of

CFG = mw.Config.tiny()


def metrics(n_half=3.0, n_99=199.0, gain_error=0.0):
    """Hand-written metrics for the tiny config (sweep betas 0.5, 0.9, 0.99)."""
    rng = np.random.default_rng(0)
    rows = np.array([n_half, 19.0, n_99]) * (1 + 0.01 * rng.standard_normal((CFG.seeds, 3)))
    impulse = {
        str(b): {
            "steady_gain": (1 + gain_error) / (1 - b),
            "ema_mean_age": 1 / (1 - b),
            "e_folding_steps": -1 / np.log(b),
        }
        for b in CFG.betas
    }
    return {
        "impulse": impulse,
        "beta_used": {str(b): b for b in CFG.betas},
        "sweep_betas": list(CFG.sweep_betas),
        "variance_ratio": 1 / rows,
    }


def by_id(entries):
    return {c["id"]: c["verdict"] for c in entries}


def test_fixed_numbers_that_must_pass():
    v = by_id(mw.claims(metrics(n_99=50.0), CFG))
    assert v["window_beta_0.5"] == v["window_beta_0.99"] == "reproduced"
    assert v["steady_gain"] == v["ema_mean_age"] == v["e_folding"] == "reproduced"


def test_fixed_numbers_that_must_fail():
    v = by_id(mw.claims(metrics(n_half=1.0, n_99=199.0, gain_error=0.01), CFG))
    assert v["window_beta_0.5"] == v["window_beta_0.99"] == "not_reproduced"
    assert v["steady_gain"] == "not_reproduced"
    assert v["noise_window_closed_form"] == "not_reproduced"


def test_tiny_run_reproduces_and_momentum_off_flips_it(tmp_path):
    plain = run_tiny("momentum_window", tmp_path)
    assert verdict_of(plain, "window_beta_0.5") == "reproduced"
    assert verdict_of(plain, "steady_gain") == verdict_of(plain, "e_folding") == "reproduced"
    sabotaged = run_tiny("momentum_window", tmp_path, momentum_off=True)
    assert verdict_of(sabotaged, "window_beta_0.5") == "not_reproduced"
