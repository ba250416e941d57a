"""regularisation: remedies judged by gap and test accuracy; removing each flips its claims."""

from __future__ import annotations

import numpy as np
import pytest
from jaxopt_notes.experiments import _mnist
from jaxopt_notes.experiments import regularisation as exp

from jaxopt_notes import experiments
from tests.claims._contract import run_tiny, verdict_of

REMEDIES = ("weight_decay", "dropout", "shift_augmentation")


def test_tiny_reproduces_and_removing_the_remedies_flips_them(tmp_path):
    plain = run_tiny("regularisation", tmp_path)
    reproduced = (
        "baseline_overfits",
        "weight_decay_test",
        "shift_augmentation_gap",
        "shift_augmentation_test",
    )
    for claim_id in reproduced:
        assert verdict_of(plain, claim_id) == "reproduced", claim_id
    off = run_tiny("regularisation", tmp_path, weight_decay=0, dropout=0, shift=0, selection="last")
    for remedy in REMEDIES:
        for part in ("gap", "test"):
            assert verdict_of(off, f"{remedy}_{part}") == "not_reproduced", (remedy, part)
    assert verdict_of(off, "early_stopping") == "not_reproduced"


def arm(train, test, norm=10.0, seeds=5, images=1000):
    right = np.zeros((seeds, images), bool)
    for i in range(seeds):  # the first images right, the same ones in every arm (paired)
        right[i, : int(round((test + 0.001 * i) * images))] = True
    return {
        "train_accuracy": [train] * seeds,
        "test_accuracy": [test + 0.001 * i for i in range(seeds)],
        "gap": [train - test - 0.001 * i for i in range(seeds)],
        "weight_norm": [norm] * seeds,
        "test_correct": _mnist.bits(right),
    }


def metrics(remedy, stop_ratio=0.7, seeds=5) -> dict:
    stop = {
        "kept_epoch": [50] * seeds,
        "stop_epoch": [80] * seeds,
        "test_loss_kept": [stop_ratio * (1 + 0.01 * i) for i in range(seeds)],
        "test_loss_last": [1.0] * seeds,
        "test_accuracy_kept": [0.7] * seeds,
        "test_accuracy_last": [0.7] * seeds,
    }
    summary = {"baseline": arm(1.0, 0.70, norm=20.0), "early_stopping": stop}
    for name in exp.ARMS[1:]:
        summary[name] = remedy
    return {"summary": summary}


def cfg():
    return exp.Config(seeds=5)


def test_a_remedy_that_raises_test_accuracy_passes_both_claims():
    out = {"claims": exp.claims(metrics(arm(0.95, 0.78)), cfg())}
    for remedy in REMEDIES:
        assert verdict_of(out, f"{remedy}_gap") == "reproduced"
        assert verdict_of(out, f"{remedy}_test") == "reproduced"
    assert verdict_of(out, "early_stopping") == "reproduced"
    assert verdict_of(out, "weight_decay_shrinks_weights") == "reproduced"


def test_a_remedy_that_only_lowers_training_accuracy_closes_the_gap_but_fails_on_test():
    out = {"claims": exp.claims(metrics(arm(0.80, 0.70)), cfg())}
    for remedy in REMEDIES:
        assert verdict_of(out, f"{remedy}_gap") == "reproduced"
        assert verdict_of(out, f"{remedy}_test") == "not_reproduced"


def test_a_remedy_equal_to_the_baseline_fails_and_so_does_a_flat_test_loss():
    out = {"claims": exp.claims(metrics(arm(1.0, 0.70, norm=20.0), stop_ratio=1.0), cfg())}
    for remedy in REMEDIES:
        assert verdict_of(out, f"{remedy}_gap") == "not_reproduced"
        assert verdict_of(out, f"{remedy}_test") == "not_reproduced"
    assert verdict_of(out, "early_stopping") == "not_reproduced"
    assert verdict_of(out, "weight_decay_shrinks_weights") == "not_reproduced"


def test_early_stopping_keeps_the_lowest_validation_loss_and_stops_after_patience():
    c = exp.Config(patience=10)
    epochs = np.arange(5, 105, 5)
    val = np.concatenate([np.linspace(2, 1, 6), np.linspace(1.1, 2, 14)])
    assert exp.early_stop(val, epochs, c) == (5, 7)
    assert exp.early_stop(val, epochs, exp.Config(selection="last")) == (19, 19)


def test_configs_validate():
    for c in (exp.Config(), exp.Config.quick(), exp.Config.tiny()):
        experiments._config.validate(c, exp.Config())
    with pytest.raises(ValueError, match="eval_epochs"):
        exp.Config(epochs=7, eval_epochs=5).validate()
