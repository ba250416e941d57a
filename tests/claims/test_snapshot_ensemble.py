"""snapshot_ensemble: snapshots of restarts beat the last one; no restarts flips it."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import snapshot_ensemble as exp

from jaxopt_notes import experiments
from tests.claims._contract import run_tiny, verdict_of


def test_tiny_reproduces_and_no_restarts_flips_it(tmp_path):
    plain = run_tiny("snapshot_ensemble", tmp_path)
    assert verdict_of(plain, "snapshots_beat_last_nll") == "reproduced"
    assert verdict_of(plain, "cyclic_restarts") == "reproduced"
    flat = run_tiny("snapshot_ensemble", tmp_path, restarts="false")
    assert verdict_of(flat, "snapshots_beat_last_nll") == "not_reproduced"


def arm(nll_last, nll_all, acc_last, acc_all, seeds=5, m=5) -> dict:
    wiggle = 1 + 0.01 * np.arange(seeds)[:, None]
    nll = np.linspace(nll_last, nll_all, m)[None] * wiggle
    acc = np.linspace(acc_last, acc_all, m)[None] + 0.001 * np.arange(seeds)[:, None]
    return {"nll_by_size": nll.tolist(), "accuracy_by_size": acc.tolist()}


def metrics(snapshot, checkpoints, independent) -> dict:
    lr = {"start": 0.05, "end": 1e-6, "restart": 0.05, "period_steps": 100}
    return {
        "snapshot": snapshot,
        "checkpoints": checkpoints,
        "independent": independent,
        "schedule_check": lr,
    }


def verdicts(m: dict) -> dict:
    return {c["id"]: c["verdict"] for c in exp.claims(m, exp.Config(seeds=5))}


def test_a_diverse_snapshot_ensemble_passes():
    v = verdicts(
        metrics(arm(0.3, 0.2, 0.95, 0.97), arm(0.3, 0.29, 0.95, 0.95), arm(0.3, 0.2, 0.95, 0.97))
    )
    assert set(v.values()) == {"reproduced"}


def test_identical_snapshots_fail():
    same = arm(0.3, 0.3, 0.95, 0.95)
    v = verdicts(metrics(same, same, arm(0.3, 0.2, 0.95, 0.97)))
    assert v["snapshots_beat_last_nll"] == "not_reproduced"
    assert v["snapshots_beat_last_accuracy"] == "not_reproduced"
    assert v["snapshots_match_independent"] == "not_reproduced"
    assert v["snapshots_beat_checkpoints"] == "inconclusive"  # a ratio of exactly 1


def test_scores_average_probabilities_of_the_last_members():
    labels = np.array([0, 1])
    good = np.array([[0.9, 0.1], [0.1, 0.9]])
    bad = np.array([[0.05, 0.95], [0.95, 0.05]])
    probs = np.stack([bad, good])[None]  # one seed, members: bad then good (the last)
    s = exp.scores(probs, labels)
    assert s["accuracy_by_size"][0] == [1.0, 0.0]  # the mix is 0.475 on the true class
    assert np.allclose(s["nll_by_size"][0], [-np.log(0.9), -np.log(0.475)])


def test_configs_validate():
    for c in (exp.Config(), exp.Config.quick(), exp.Config.tiny()):
        experiments._config.validate(c, exp.Config())
