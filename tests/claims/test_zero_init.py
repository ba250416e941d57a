"""zero_init: verdicts on fixed numbers, and a perturbation flips."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import _claims
from jaxopt_notes.experiments import zero_init as exp

from tests.claims._contract import run_tiny, verdict_of

NAME = "zero_init"
GRADS = {"hidden kernels": 0.0, "output kernel": 0.0, "output bias": 0.05}


def metrics(spread=1e-7, constant_acc=0.4, random_acc=0.97, grads=GRADS, seeds=5) -> dict:
    rng = np.random.default_rng(0)
    cfg = exp.Config(seeds=seeds)
    arms = exp.arms(cfg)
    return {
        "unit_spread": {k: np.full(seeds, spread if k == "constant" else 1.3) for k in arms},
        "test_accuracy": {
            "constant": constant_acc + 0.01 * rng.standard_normal(seeds),
            "random": random_acc + 0.01 * rng.standard_normal(seeds),
            "random, 1 unit per layer": np.full(seeds, 0.2),
        },
        "relu_zero_gradients": grads,
    }


def verdicts(m, seeds=5) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in exp.claims(m, exp.Config(seeds=seeds))}


def test_claims_hold_on_numbers_that_show_the_effects():
    assert set(verdicts(metrics()).values()) == {_claims.REPRODUCED}


def test_units_that_drifted_apart_fail_the_symmetry_claim():
    got = verdicts(metrics(spread=0.05))
    assert got["constant_init_units_stay_identical"] == _claims.NOT_REPRODUCED
    assert got["random_init_beats_constant"] == _claims.REPRODUCED


def test_a_small_accuracy_gap_fails_the_accuracy_claim():
    got = verdicts(metrics(constant_acc=0.93))
    assert got["random_init_beats_constant"] == _claims.NOT_REPRODUCED


def test_a_hidden_gradient_at_zero_init_fails_the_relu_check():
    got = verdicts(metrics(grads=GRADS | {"hidden kernels": 1e-3}))
    assert got["relu_zero_init_no_gradient"] == _claims.NOT_REPRODUCED


def test_tiny_run_reproduces_and_a_perturbed_init_flips(tmp_path):
    plain = run_tiny(NAME, tmp_path)
    assert verdict_of(plain, "constant_init_units_stay_identical") == _claims.REPRODUCED
    assert verdict_of(plain, "relu_zero_init_no_gradient") == _claims.REPRODUCED
    sabotaged = run_tiny(NAME, tmp_path, perturbation=1e-3)
    assert verdict_of(sabotaged, "constant_init_units_stay_identical") == _claims.NOT_REPRODUCED
