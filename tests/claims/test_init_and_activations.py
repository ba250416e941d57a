"""init_and_activations: verdicts on fixed numbers, sources quoted verbatim, tiny runs flip."""

from __future__ import annotations

import math

import numpy as np
import pytest
from jaxopt_notes.experiments import _claims
from jaxopt_notes.experiments import init_and_activations as exp

from tests.claims._contract import run_tiny, verdict_of

NAME = "init_and_activations"
SABOTAGED = ("large_std_saturates", "small_std_collapses", "small_std_does_not_learn")


def metrics(
    saturated=0.75,
    central=1.0,
    xavier_std=0.14,
    xavier_sat=0.01,
    ratio=0.05,
    stalled=2.302,
    xavier=0.3,
    he=0.2,
    seeds=5,
):
    rng = np.random.default_rng(0)

    def around(v, shape, noise=0.005):
        return v + noise * rng.standard_normal(shape)

    shape = (seeds, 5)
    hist = {
        "saturated": {
            "std large": around(saturated, shape),
            "std small": np.zeros(shape),
            "Xavier": np.abs(around(xavier_sat, shape, 0.001)),
        },
        "central": {
            "std large": around(0.05, shape),
            "std small": np.clip(around(central, shape, 0.001), 0, 1),
            "Xavier": around(0.5, shape),
        },
        "std": {
            "std large": around(0.44, shape),
            "std small": around(0.015, shape, 0.0001),
            "Xavier": around(xavier_std, shape),
        },
    }
    last = np.exp(around(0.0, seeds, 0.05))
    norms = np.stack([ratio * last * np.exp(around(0.0, seeds, 0.05))] + [last] * 4, axis=1)
    return {
        "histograms": hist,
        "gradients": {"delta_norms": {"std large": norms, "Xavier": norms * 0.1}},
        "training": {
            "final_train_loss": {
                "std small": around(stalled, seeds, 1e-4),
                "Xavier": around(xavier, seeds, 0.01),
                "He": around(he, seeds, 0.01),
            },
            "test_accuracy": {k: around(0.9, seeds) for k in exp.INITS},
        },
        "tanh_prime_4": 1 / math.cosh(4.0) ** 2,
    }


def verdicts(m, **cfg) -> dict[str, str]:
    cfg = exp.Config(seeds=len(m["training"]["final_train_loss"]["He"]), **cfg)
    return {c["id"]: c["verdict"] for c in exp.claims(m, cfg)}


def test_claims_hold_on_numbers_that_show_the_effects():
    assert set(verdicts(metrics()).values()) == {_claims.REPRODUCED}


@pytest.mark.parametrize(
    ("change", "claim_id"),
    [
        ({"saturated": 0.3}, "large_std_saturates"),
        ({"central": 0.5}, "small_std_collapses"),
        ({"xavier_std": 0.02}, "xavier_spreads"),
        ({"xavier_sat": 0.3}, "xavier_spreads"),
        ({"ratio": 0.5}, "large_std_gradients_vanish"),
        ({"stalled": 1.0}, "small_std_does_not_learn"),
        ({"he": 1.5, "xavier": 1.6}, "xavier_and_he_learn"),
        ({"he": 0.4}, "he_beats_xavier"),
    ],
)
def test_each_claim_fails_on_numbers_without_its_effect(change, claim_id):
    got = verdicts(metrics(**change))
    assert got[claim_id] == _claims.NOT_REPRODUCED
    assert all(v == _claims.REPRODUCED for k, v in got.items() if k != claim_id)


def test_a_wrong_derivative_fails_the_tanh_check():
    m = metrics()
    m["tanh_prime_4"] = 0.01
    assert verdicts(m)["tanh_prime_4"] == _claims.NOT_REPRODUCED


def test_tiny_run_reproduces_and_sabotage_flips(tmp_path):
    plain = run_tiny(NAME, tmp_path)
    for claim_id in SABOTAGED:
        assert verdict_of(plain, claim_id) == _claims.REPRODUCED, claim_id
    # weights of Xavier's scale in both the "large" and the "small" arm: no saturation, no
    # collapse, and the "small" ReLU net learns
    sabotaged = run_tiny(NAME, tmp_path, large_std=0.1, small_std=0.1)
    for claim_id in SABOTAGED:
        assert verdict_of(sabotaged, claim_id) == _claims.NOT_REPRODUCED, claim_id
