"""dropout_scaling: verdicts on fixed numbers, sources quoted verbatim, keep_prob 1 flips."""

from __future__ import annotations

import numpy as np
import pytest
from jaxopt_notes.experiments import _claims
from jaxopt_notes.experiments import dropout_scaling as exp

from tests.claims._contract import run_tiny, verdict_of

NAME = "dropout_scaling"


def metrics(unscaled=4.0, rescaled=1.0, loss_ratio=1.6, acc_gap=0.0, seeds=5) -> dict:
    """(2 kinds, seeds, 2 layers) numbers: vanilla first, inverted second."""
    rng = np.random.default_rng(0)

    def noisy(v, shape, scale=0.01):
        return v * np.exp(scale * rng.standard_normal(shape))

    expected = noisy(0.5, (2, seeds, 2))
    return {
        "at_keep_prob": {
            "train_expected_activation": expected,
            # per kind (vanilla, inverted): the first and the last hidden layer's test/expected
            "activation_unscaled": expected * np.array([[[2.0, unscaled]], [[1.0, rescaled]]]),
            "activation_rescaled": expected * np.array([[[1.0, rescaled]], [[0.5, 0.25]]]),
            "loss_unscaled": np.stack([noisy(0.2 * loss_ratio, seeds), noisy(0.15, seeds)]),
            "loss_rescaled": np.stack([noisy(0.2, seeds), noisy(0.6, seeds)]),
            "accuracy_unscaled": np.stack(
                [np.full(seeds, 0.9), 0.95 + acc_gap + 0.001 * rng.standard_normal(seeds)]
            ),
            "accuracy_rescaled": np.stack(
                [0.95 + 0.001 * rng.standard_normal(seeds), np.full(seeds, 0.5)]
            ),
        }
    }


def verdicts(m, seeds=5) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in exp.claims(m, exp.Config(seeds=seeds))}


def test_claims_hold_on_numbers_that_show_the_effects():
    assert set(verdicts(metrics()).values()) == {_claims.REPRODUCED}


@pytest.mark.parametrize(
    ("change", "claim_id"),
    [
        ({"unscaled": 1.02}, "unscaled_test_pass_biased"),
        ({"rescaled": 0.8}, "scaling_restores_expectation"),
        ({"loss_ratio": 0.9}, "unscaled_costs_test_loss"),
        ({"acc_gap": 0.05}, "inverted_equals_rescaled_vanilla"),
    ],
)
def test_each_claim_fails_on_numbers_without_its_effect(change, claim_id):
    assert verdicts(metrics(**change))[claim_id] == _claims.NOT_REPRODUCED


def test_tiny_run_reproduces_and_keep_probability_one_flips(tmp_path):
    plain = run_tiny(NAME, tmp_path)
    assert verdict_of(plain, "unscaled_test_pass_biased") == _claims.REPRODUCED
    sabotaged = run_tiny(NAME, tmp_path, keep_prob=1.0)
    for claim_id in ("unscaled_test_pass_biased", "unscaled_costs_test_loss"):
        assert verdict_of(sabotaged, claim_id) == _claims.NOT_REPRODUCED, claim_id
    at = sabotaged["metrics"]["at_keep_prob"]  # no dropout: all three test passes agree
    assert np.allclose(at["activation_unscaled"], at["activation_rescaled"])
