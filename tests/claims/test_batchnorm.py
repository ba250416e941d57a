"""batchnorm: verdicts on fixed numbers, sources quoted verbatim, BN -> identity flips both."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import _claims
from jaxopt_notes.experiments import batchnorm as exp

from tests.claims._contract import run_tiny, verdict_of

NAME = "batchnorm"
CLAIMS = ("bn_learns_faster", "bn_wider_init_range")


def verdicts(t_bn, t_plain, epochs=20) -> dict[str, str]:
    t_bn, t_plain = np.asarray(t_bn), np.asarray(t_plain)
    cfg = exp.Config(seeds=t_bn.shape[1], num_stds=t_bn.shape[0], epochs=epochs)
    m = {"epochs_to_target_bn": t_bn, "epochs_to_target_no_bn": t_plain}
    return {c["id"]: c["verdict"] for c in exp.claims(m, cfg)}


def test_epochs_to_target_counts_the_first_epoch_and_censors_at_epochs_plus_one():
    acc = np.array([[0.1, 0.6, 0.4, 0.7], [0.1, 0.2, 0.3, 0.4]])
    assert exp.epochs_to_target(acc, 0.5).tolist() == [2, 5]


def test_bn_sooner_at_every_std_and_learning_where_the_plain_net_does_not_holds():
    never = 21
    t_bn = np.full((16, 4), 5)
    t_plain = np.full((16, 4), never)
    t_plain[3:6] = 8  # the plain net learns only at three stds, later
    assert set(verdicts(t_bn, t_plain).values()) == {_claims.REPRODUCED}


def test_equal_times_fail_both_claims():
    t = np.random.default_rng(0).integers(2, 22, size=(16, 4))
    assert set(verdicts(t, t.copy()).values()) == {_claims.NOT_REPRODUCED}


def test_bn_slower_at_half_the_stds_fails_faster_only():
    t_bn = np.full((16, 4), 5)
    t_plain = np.full((16, 4), 21)
    t_bn[:8] = 21  # BN never gets there at the large stds, neither does the plain net
    got = verdicts(t_bn, t_plain)
    assert got["bn_learns_faster"] == _claims.NOT_REPRODUCED
    assert got["bn_wider_init_range"] == _claims.REPRODUCED


def test_tiny_run_reproduces_and_bn_replaced_by_identity_flips(tmp_path):
    plain = run_tiny(NAME, tmp_path)
    assert [verdict_of(plain, c) for c in CLAIMS] == [_claims.REPRODUCED] * 2
    sabotaged = run_tiny(NAME, tmp_path, batch_norm=False)
    assert [verdict_of(sabotaged, c) for c in CLAIMS] == [_claims.NOT_REPRODUCED] * 2
    # with BatchNorm off, the "BN" arm is the plain net itself: the same accuracies
    m = sabotaged["metrics"]
    assert np.array_equal(m["train_accuracy_bn"], m["train_accuracy_no_bn"])
