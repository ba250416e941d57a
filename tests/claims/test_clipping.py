"""clipping: stabilising and turning are reproduced on tiny; thresholds of 1e9 flip both."""

from __future__ import annotations

import numpy as np
import pytest
from jaxopt_notes.experiments import clipping as exp

from tests.claims._contract import run_tiny, verdict_of

CLAIMS = ("clipping_stabilises", "value_clipping_turns")


def test_tiny_reproduces_and_thresholds_that_never_clip_flip_it(tmp_path):
    plain = run_tiny("clipping", tmp_path)
    for claim_id in (*CLAIMS, "global_norm_keeps_direction"):
        assert verdict_of(plain, claim_id) == "reproduced", claim_id
    sabotaged = run_tiny("clipping", tmp_path, max_norm=1e9, max_delta=1e9)
    for claim_id in CLAIMS:
        assert verdict_of(sabotaged, claim_id) == "not_reproduced", claim_id


def metrics(plain_div=20, clipped_div=0, cosine=0.9, starts=48) -> dict:
    """Hand-written metrics in the shape ``measure`` returns (tiny: 2 rates)."""

    def div(n):
        row = np.zeros(starts, bool)
        row[:n] = True
        return np.stack([np.zeros(starts, bool), row])

    return {
        "lr_grid": (1e-3, 3e-3),
        "diverged": {
            "SGD": div(plain_div),
            "SGD + clip by global norm": div(clipped_div),
            "SGD + clip by value": div(clipped_div),
        },
        "final_loss": {name: np.full(starts, 1e-3) for name in exp.ARMS},
        "value_cosine": cosine + 0.01 * np.sin(np.arange(starts)),
        "norm_cosine_worst": 1.0,
    }


def verdicts(m: dict) -> dict:
    return {c["id"]: c["verdict"] for c in exp.claims(m, exp.Config.tiny())}


def test_claims_pass_on_an_explosion_that_clipping_stops():
    out = verdicts(metrics())
    assert out["clipping_stabilises"] == out["value_clipping_turns"] == "reproduced"


@pytest.mark.parametrize(
    ("change", "claim_id", "verdict"),
    [
        ({"plain_div": 2}, "clipping_stabilises", "not_reproduced"),  # no explosion: no test
        ({"clipped_div": 20}, "clipping_stabilises", "not_reproduced"),  # clipping did not help
        ({"clipped_div": 3}, "clipping_stabilises", "inconclusive"),  # 6% of 48: CI over 10%
        ({"cosine": 0.999}, "value_clipping_turns", "not_reproduced"),
    ],
)
def test_claims_fail_when_the_effect_is_missing(change, claim_id, verdict):
    assert verdicts(metrics(**change))[claim_id] == verdict
