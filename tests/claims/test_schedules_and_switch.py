"""schedules_and_switch: tiny run; no decay / no warm-up / no switch flip; fixed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from jaxopt_notes.experiments import schedules_and_switch as ss

from jaxopt_notes import experiments
from tests.claims._contract import run_tiny, verdict_of

CFG = ss.Config.tiny()
IDS = (
    "step_decay_lowers_loss",
    "step_decay_raises_accuracy",
    "early_decay_hurts",
    "warmup_tames_spike",
    "adam_then_sgd_beats_adam",
    "switch_beats_adam_decay",
)


def _arm(loss, acc, peak=2.5, n=5):
    jitter = np.linspace(0.0, 0.002, n)
    return {
        "train_loss": np.full(n, loss) * (1 + jitter),
        "test_accuracy": np.full(n, acc) + jitter,
        "peak_early_loss": np.full(n, peak) + jitter,
    }


def metrics(effects: bool = True) -> dict:
    e = 1.0 if effects else 0.0
    cold, warm = (ss.warm_name(CFG.large_factor, w) for w in (0.0, CFG.warmup))
    arms = {
        "constant": _arm(0.1, 0.93),
        "step decay": _arm(0.1 - 0.09 * e, 0.93 + 0.01 * e),
        "decay too early": _arm(0.1, 0.93 - 0.01 * e + 0.01 * (1 - e)),
        "Adam": _arm(0.01, 0.93),
        cold: _arm(0.05, 0.90, peak=2.5 + 3.0 * e),
        warm: _arm(0.05, 0.92, peak=2.5),
        "Adam then SGD": _arm(0.01, 0.93 + 0.01 * e),
        "Adam, decayed at the switch": _arm(0.01, 0.93),
    }
    return {"arms": arms}


def by_id(entries):
    return {c["id"]: c["verdict"] for c in entries}


def test_fixed_numbers_that_must_pass():
    assert by_id(ss.claims(metrics(True), CFG)) == dict.fromkeys(IDS, "reproduced")


def test_fixed_numbers_that_must_fail():
    # ties (no effect at all) are not wins
    assert by_id(ss.claims(metrics(False), CFG)) == dict.fromkeys(IDS, "not_reproduced")


def test_a_diverged_run_is_undecided():
    m = metrics(True)
    m["arms"][ss.warm_name(CFG.large_factor, 0.0)]["peak_early_loss"][0] = np.nan
    assert by_id(ss.claims(m, CFG))["warmup_tames_spike"] == "inconclusive"


def test_tiny_run_and_sabotage(tmp_path):
    plain = run_tiny("schedules_and_switch", tmp_path)
    held = ("early_decay_hurts", "warmup_tames_spike", "switch_beats_adam_decay")
    assert [verdict_of(plain, i) for i in held] == ["reproduced"] * 3
    # no decay, no warm-up, never switch: each arm equals its baseline seed for seed
    sabotaged = run_tiny("schedules_and_switch", tmp_path, decay_factor=1, warmup=0, switch_at=1)
    assert [verdict_of(sabotaged, i) for i in IDS] == ["not_reproduced"] * len(IDS)


def test_config_rules():
    with pytest.raises(ValueError, match="warmup"):
        experiments.make_config(ss, "tiny", {"warmup": "0.3"})
    with pytest.raises(ValueError, match="large_factor"):
        experiments.make_config(ss, "tiny", {"large_factor": "7"})
