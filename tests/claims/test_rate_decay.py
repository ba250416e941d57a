"""rate_decay: verdicts on fixed numbers; tiny runs reproduce and three sabotages flip."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import _claims
from jaxopt_notes.experiments import rate_decay as exp

from tests.claims._contract import run_tiny, verdict_of

NAME = "rate_decay"
CFG = exp.Config(seeds=8)


def metrics(none=0.9, gradual=0.005, inv=0.01, fast=0.95, tail_factor=1.0) -> dict:
    """Errors at t = early are 1 (jittered per seed); final errors are these multiples."""
    rng = np.random.default_rng(0)
    shape = (4, len(CFG.lr_grid), CFG.seeds)
    early = rng.uniform(0.9, 1.1, shape)
    final = early * np.array([none, gradual, inv, fast])[:, None, None]
    tail = np.full(shape, exp.floor(CFG.lr0, CFG) * tail_factor)
    return {
        "early": early,
        "final": final,
        "tail_mean": tail,
        "tuned_lr0": [0.001, 0.03, 1.0, 1.0],
        "powers": list(exp.powers(CFG)),
    }


def verdicts(m) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in exp.claims(m, CFG)}


def test_fixed_numbers_that_must_pass():
    assert set(verdicts(metrics()).values()) == {_claims.REPRODUCED}


def test_fixed_numbers_that_must_fail():
    got = verdicts(metrics(none=0.01, gradual=0.9, inv=0.01, fast=0.01, tail_factor=2.0))
    assert set(got.values()) == {_claims.NOT_REPRODUCED}


def test_tiny_run_reproduces(tmp_path):
    # measured on the tiny config: p = 2 keeps 0.996 [0.996, 0.996] of its error (> 0.5) and
    # ends 30 [30, 31] x above 1/t (> 10); the constant rate keeps 1.3 [0.79, 2.1] (> 0.5) and
    # ends 128 [81, 203] x above lr0/sqrt(t); lr0/sqrt(t) keeps at most 0.098 [0.062, 0.15]
    plain = run_tiny(NAME, tmp_path)
    for cid in ("fast_decay_stalls", "no_decay_floor", "converges_for_wide_range"):
        assert verdict_of(plain, cid) == _claims.REPRODUCED, cid
    assert verdict_of(plain, "constant_rate_floor") == _claims.REPRODUCED


def test_exact_gradients_remove_the_floor(tmp_path):
    # noise 0: the constant rate keeps 1e-12 of its error from t = 100 on
    sabotaged = run_tiny(NAME, tmp_path, noise=0.0)
    assert verdict_of(sabotaged, "no_decay_floor") == _claims.NOT_REPRODUCED
    assert verdict_of(sabotaged, "fast_decay_stalls") == _claims.REPRODUCED  # no noise needed


def test_a_slower_fast_arm_no_longer_stalls(tmp_path):
    # fast_power 1: it keeps 0.15 of its error and ties with 1/t
    sabotaged = run_tiny(NAME, tmp_path, fast_power=1.0)
    assert verdict_of(sabotaged, "fast_decay_stalls") == _claims.NOT_REPRODUCED


def test_a_too_fast_gradual_arm_stops_converging(tmp_path):
    # decay_power 2: it keeps >= 0.99 of its error at every lr0 of the range
    sabotaged = run_tiny(NAME, tmp_path, decay_power=2.0)
    assert verdict_of(sabotaged, "converges_for_wide_range") == _claims.NOT_REPRODUCED
    assert verdict_of(sabotaged, "no_decay_floor") == _claims.NOT_REPRODUCED
