"""late_burst: the burst is measured against a control stream; no rare stretch, no burst."""

from __future__ import annotations

import numpy as np
import pytest
from jaxopt_notes.experiments import late_burst as exp

from tests.claims._contract import run_tiny, verdict_of


def test_tiny_runs_and_without_a_rare_stretch_there_is_no_burst(tmp_path):
    plain = run_tiny("late_burst", tmp_path)
    # the burst is ~2.8x its control on these settings, near the pre-stated 3x: its verdict is
    # the run's to give; what must hold is that the remedies are judged against it
    assert verdict_of(plain, "adam_bursts_late") in ("reproduced", "inconclusive")
    assert verdict_of(plain, "decay_keeps_it_small") == "reproduced"
    assert verdict_of(plain, "warmup_keeps_it_small") == "not_reproduced"
    sabotaged = run_tiny("late_burst", tmp_path, quiet_scale=1.0)
    assert verdict_of(sabotaged, "adam_bursts_late") == "not_reproduced"
    burst = [c for c in sabotaged["claims"] if c["id"] == "adam_bursts_late"][0]
    assert burst["measured"][0]["value"] == pytest.approx(1.0)  # the stream is its own control
    # with no burst there is nothing to remedy: the cosine schedule's small rate alone (which
    # shrinks every late step, burst or not) no longer passes for a remedy
    assert verdict_of(sabotaged, "decay_keeps_it_small") != "reproduced"


def metrics(burst=5.0, cosine=0.02, warmup=0.9) -> dict:
    """Hand-written metrics in the shape ``measure`` returns (3 seeds)."""
    usual = np.array([0.004, 0.005, 0.006])
    jitter = np.array([1.0, 1.05, 0.95])

    def arm(peak):
        return {
            "peak_step": peak,
            "peak_error": peak,
            "control_step": usual,
            "control_error": usual,
        }

    const = usual * burst * jitter
    return {
        "usual_step": usual,
        "claim": {
            "constant lr": arm(const),
            "cosine decay": arm(const * cosine * jitter),
            "warm-up, then constant": arm(const * warmup * jitter),
        },
    }


def verdicts(m: dict) -> dict:
    return {c["id"]: c["verdict"] for c in exp.claims(m, exp.Config.tiny())}


def test_claims_on_a_clear_burst_that_the_decay_removes_and_warm_up_does_not():
    out = verdicts(metrics())
    assert out["adam_bursts_late"] == "reproduced"
    assert out["decay_keeps_it_small"] == "reproduced"
    assert out["warmup_keeps_it_small"] == "not_reproduced"


def test_claims_fail_on_no_burst_and_on_remedies_that_do_not_act():
    out = verdicts(metrics(burst=1.2, cosine=0.9, warmup=0.05))
    assert out["adam_bursts_late"] == "not_reproduced"
    assert out["decay_keeps_it_small"] == "not_reproduced"
    assert out["warmup_keeps_it_small"] == "reproduced"


def test_a_remedy_without_a_burst_is_not_a_remedy():
    # no burst at all (0.8x its control): a schedule that shrinks the step 50x still fails
    out = verdicts(metrics(burst=0.8, cosine=0.02, warmup=0.02))
    assert out["decay_keeps_it_small"] == out["warmup_keeps_it_small"] == "not_reproduced"
