"""dropout_effects: verdicts on fixed numbers; a tiny run; the sabotage ``dropout=0``.

A tiny verdict is asserted only where its 95% interval clears the threshold by more than 25%
of the threshold (of the distance to 0 for a threshold of 0), so float rounding on another
machine (AVX2 against AVX-512) cannot move it. Measured on tiny (4 seeds, 20 epochs, rates
0.1/0.2/0.4; plain chose 0.1, dropout 0.2):

* sparsity gain 0.31 [0.26, 0.35] > 0.05; ablation, dropout - 0.8 x plain, -0.0084
  [-0.010, -0.0068] < 0 (reproduced);
* weight-scaled / 50-mask NLL 0.60 [0.52, 0.69] outside [0.9, 1.1] (not reproduced);
* at the common rate (0.1): epochs ratio 2.2 [1.9, 2.7] > 1.25 and Jacobian ratio 0.52
  [0.50, 0.54] < 0.8 (reproduced).

Not asserted on tiny: the epochs and Jacobian ratios at the chosen rates (1.7 [1.5, 1.9] and
0.69 [0.64, 0.75], within 25% of their thresholds; on quick, whose grid is wider, dropout
chose a 4x larger rate and both came out not reproduced) and the correlation ratio (1.05
[0.98, 1.12] against 0.9, 9% clear). Their verdict logic is asserted on fixed numbers.

The sabotage makes the dropout arm the plain net: every ratio is exactly 1 and the sparsity
gain exactly 0, so the reproduced claims flip; the correlation and ensemble claims, not
reproduced on the plain run, stay so (the fixed numbers show they flip when the numbers do).
"""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import _claims
from jaxopt_notes.experiments import dropout_effects as exp

from tests.claims._contract import run_tiny, verdict_of

NAME = "dropout_effects"
CFG = exp.Config.tiny()
R, N = _claims.REPRODUCED, _claims.NOT_REPRODUCED
IDS = (
    "dropout_trains_longer",
    "dropout_smoother_map",
    "dropout_fewer_links",
    "dropout_units_independent",
    "dropout_sparser",
    "dropout_is_an_ensemble",
)


def _arm(epochs, jac, corr, abl, zeros, rng):
    def noisy(v):
        return v * (1 + rng.uniform(0, 0.02, 5))

    return {
        "epochs_to_target": noisy(epochs),
        "reached": np.ones(5, bool),
        "jacobian": noisy(jac),
        "corr": noisy(corr),
        "ablation_nll": noisy(abl),
        "ablation_acc": noisy(0.001),
        "zeros": noisy(zeros),
    }


def metrics(holds: bool) -> dict:
    rng = np.random.default_rng(0)
    f = 1.0 if holds else 0.0  # holds: every effect as the notes say; else none at all
    plain = _arm(10.0, 30.0, 0.2, 0.02, 0.3, rng)
    drop = _arm(
        10 * (1 + f),
        30 * (1 - 0.5 * f),
        0.2 * (1 - 0.5 * f),
        0.02 * (1 - 0.9 * f),
        0.3 + 0.3 * f,
        rng,
    )
    ens = 0.2 * (1 + rng.uniform(0, 0.02, (5, 3)))
    mc = {
        "scaled": ens[:, -1] * (1.0 if holds else 0.5),
        "ensemble": ens,
        "single": ens[:, -1] * (2.0 if holds else 1.0),
        "acc_scaled": np.full(5, 0.95),
        "acc_ensemble": np.full(5, 0.95),
        "acc_single": np.full(5, 0.9),
    }
    setting = {"plain": plain, "dropout": drop, "mc": mc}
    chosen = {"index": 1, "rate": 0.1, "edge": False}
    return {
        "chosen": {"plain": chosen, "dropout": chosen},
        "common_rate": 0.1,
        "tuned": setting,
        "common": setting,
    }


def verdicts(m):
    return {c["id"]: c["verdict"] for c in exp.claims(m, CFG)}


def test_fixed_numbers_that_must_pass():
    assert verdicts(metrics(True)) == dict.fromkeys(IDS, R)


def test_fixed_numbers_that_must_fail():
    assert verdicts(metrics(False)) == dict.fromkeys(IDS, N)


def test_ablation_of_one_unit_by_hand():
    # one input, two hidden layers of two units, identity-like weights: removing layer 2's
    # first unit removes the only path to the true class's logit
    eye = np.eye(2)
    params = [(np.array([[1.0, 1.0]]), np.zeros(2)), (eye, np.zeros(2)), (eye * 5, np.zeros(2))]
    x, y = np.array([[1.0]]), np.array([0])
    rise, fall = exp.ablation_rise(params, x, y)
    base = exp._nll_np(np.array([[5.0, 5.0]]), y)  # log 2
    without = exp._nll_np(np.array([[0.0, 5.0]]), y)
    # four removals: each layer's unit 0 gives `without`, unit 1 gives the opposite tie-break
    expected = (2 * without + 2 * exp._nll_np(np.array([[5.0, 0.0]]), y)) / 4 - base
    assert np.isclose(rise, expected)
    assert np.isclose(fall, 0.5)  # accuracy 1 (argmax of a tie: class 0) falls to 0 for half


def test_jacobian_matches_finite_differences():
    rng = np.random.default_rng(1)
    params = [
        (rng.standard_normal((4, 5)), rng.standard_normal(5)),
        (rng.standard_normal((5, 5)), rng.standard_normal(5)),
        (rng.standard_normal((5, 3)), rng.standard_normal(3)),
    ]
    x = rng.standard_normal((1, 4))

    def logits(v):
        (w1, b1), (w2, b2), (w3, b3) = params
        return np.maximum(np.maximum(v @ w1 + b1, 0) @ w2 + b2, 0) @ w3 + b3

    fd = np.stack([(logits(x + 1e-6 * e) - logits(x - 1e-6 * e))[0] / 2e-6 for e in np.eye(4)])
    assert np.isclose(exp.jacobian_norm(params, x), np.linalg.norm(fd), rtol=1e-5)


def test_tiny_run_and_sabotage(tmp_path):
    plain = run_tiny(NAME, tmp_path)
    for cid in ("dropout_sparser", "dropout_units_independent"):
        assert verdict_of(plain, cid) == R, cid
    assert verdict_of(plain, "dropout_is_an_ensemble") == N
    common = "at one common rate (the plain arm's)"
    for cid in ("dropout_trains_longer", "dropout_smoother_map"):
        (c,) = [c for c in plain["claims"] if c["id"] == cid]
        assert c["settings"] == {common: R}, cid
    sabotaged = run_tiny(NAME, tmp_path, dropout=0)
    for cid in IDS:
        assert verdict_of(sabotaged, cid) == N, cid
    for c in sabotaged["claims"]:
        if c["id"] in ("dropout_trains_longer", "dropout_smoother_map", "dropout_fewer_links"):
            m = c["measured"][0]
            assert m["value"] == m["ci_low"] == m["ci_high"] == 1.0, c["id"]
        if c["id"] == "dropout_sparser":
            assert c["measured"][0]["value"] == 0.0
