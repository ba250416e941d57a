"""critical_points: both positive controls pass on the tiny run; softmax regression in place of
the networks (one convex loss per data size: its minimum is its one critical point) makes
"minima are rare" fail; claims on fixed numbers count distinct points, per loss function."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import critical_points as cp

from tests.claims._contract import run_tiny, verdict_of


def test_tiny_controls_pass_and_a_convex_model_flips_minima_rare(tmp_path):
    plain = run_tiny("critical_points", tmp_path)
    assert verdict_of(plain, "control_finds_both") == "reproduced"
    assert verdict_of(plain, "convex_control") == "reproduced"
    cfg = cp.Config.tiny()
    searches = len(cfg.widths) * len(cfg.sizes) * cfg.seeds * 3  # early, trained and tied
    assert len(plain["metrics"]["points"]) == searches
    tied = [p for p in plain["metrics"]["points"] if p["start"] == "tied"]
    assert len(tied) == searches // 3
    sabotaged = run_tiny("critical_points", tmp_path, widths=0, sizes="100,200")
    # two data sizes: two convex losses, two distinct minima, no saddle (Wilson 2/2: [0.34, 1])
    assert verdict_of(sabotaged, "minima_rare") == "not_reproduced"
    assert verdict_of(sabotaged, "saddles_common") != "reproduced"


def control(passed: bool) -> dict:
    return {"minima_found": 5 if passed else 0, "saddles_found": 11, "passed": passed}


def fixed_metrics(minima: int, saddles: int, not_critical: int, passed: bool = True) -> dict:
    c = {"minimum": minima, "saddle": saddles, "not_critical": not_critical}
    negative = {"minimum": 0, "saddle": 3, "not_critical": 0}
    points = [
        {"kind": k, "loss": 0.1 * (i + 1), "num_negative": negative[k], "problem": "a"}
        for k, n in c.items()
        for i in range(n)
    ]
    convex = {"passed": True, "minima_found": 2}
    return {"control": control(passed), "convex": convex, "points": points, "escapes": []}


def verdicts(m: dict) -> dict:
    return {c["id"]: c["verdict"] for c in cp.claims(m, cp.Config())}


def test_claims_on_fixed_numbers():
    assert verdicts(fixed_metrics(0, 40, 60)) == {
        "control_finds_both": "reproduced",
        "convex_control": "reproduced",
        "minima_rare": "reproduced",
        "saddles_common": "reproduced",
    }
    found = verdicts(fixed_metrics(30, 10, 60))
    assert found["minima_rare"] == found["saddles_common"] == "not_reproduced"
    found = verdicts(fixed_metrics(0, 3, 97))  # three critical points decide nothing
    assert found["minima_rare"] == "inconclusive"
    found = verdicts(fixed_metrics(0, 0, 100))  # no critical point at all
    assert found["minima_rare"] == found["saddles_common"] == "inconclusive"


def test_searches_that_reach_one_point_count_once():
    m = fixed_metrics(0, 40, 60)
    # the 40 saddles are 2 points, each reached by 20 searches (mirror images share the loss)
    m["points"] = [p | {"loss": 0.1 + 0.2 * (i % 2) * (p["kind"] == "saddle")}
                   for i, p in enumerate(m["points"])]  # fmt: skip
    found = {c["id"]: c for c in cp.claims(m, cp.Config())}
    assert found["saddles_common"]["evidence"]["distinct critical points where training stops"] == 2
    assert found["saddles_common"]["verdict"] == "inconclusive"  # two points decide nothing
    unique = cp.distinct(m["points"], 1e-6)
    assert sorted(g["searches"] for g in unique) == [20, 20]


def test_points_of_two_loss_functions_never_merge():
    a = {"kind": "saddle", "loss": 1.0, "num_negative": 1, "problem": "width 4, 100 digits"}
    assert len(cp.distinct([a, a | {"problem": "width 8, 100 digits"}], 1e-6)) == 2
    assert len(cp.distinct([a, a | {"num_negative": 2}, a | {"kind": "minimum"}], 1e-6)) == 3
    assert len(cp.distinct([a, a | {"loss": 1.0 + 1e-9}], 1e-6)) == 1
    assert cp.distinct([a | {"kind": "not_critical"}], 1e-6) == []


def test_failed_controls_make_claims_inconclusive():
    for broken in ("control", "convex"):
        m = fixed_metrics(0, 40, 60)
        m[broken] = m[broken] | {"passed": False}
        found = {c["id"]: c for c in cp.claims(m, cp.Config())}
        for name in ("minima_rare", "saddles_common"):
            assert found[name]["verdict"] == "inconclusive"
            assert "positive control(s)" in found[name]["reason"]


def escapes(margins, falls=None) -> list[dict]:
    falls = [abs(x) + 0.001 for x in margins] if falls is None else falls
    rows = zip(margins, falls, strict=True)
    return [{"margin": x, "escape": f, "steps_escape": 10, "steps_random": 50} for x, f in rows]


def test_escape_claim_from_margins_over_saddles():
    m = fixed_metrics(0, 40, 60)
    m["escapes"] = escapes((0.01, 0.02, 0.015, 0.03, 0.012))
    assert verdicts(m)["escape_beats_controls"] == "reproduced"
    m["escapes"] = escapes((-0.01, -0.02, -0.015, -0.03, -0.012))
    assert verdicts(m)["escape_beats_controls"] == "not_reproduced"
    # beating the controls is not enough: the escape step must lower the loss itself
    m["escapes"] = escapes((0.01, 0.02, 0.015, 0.03, 0.012), falls=(-0.001,) * 5)
    assert verdicts(m)["escape_beats_controls"] == "not_reproduced"
    m["escapes"] = escapes((0.01, 0.02))  # fewer saddles than the pre-stated 5
    found = {c["id"]: c for c in cp.claims(m, cp.Config())}["escape_beats_controls"]
    assert found["verdict"] == "inconclusive" and "too few to tell" in found["reason"]
    assert "escape_beats_controls" not in verdicts(fixed_metrics(0, 40, 60))  # no saddle


def test_control_results_catch_a_misclassification():
    good = {"kind": "minimum", "true_kind": "minimum", "distance_to_lattice": 1e-12}
    saddle = {"kind": "saddle", "true_kind": "saddle", "distance_to_lattice": 1e-12}
    assert cp.control_result([good, saddle])["passed"]
    wrong = saddle | {"kind": "degenerate"}
    assert not cp.control_result([good, saddle, wrong])["passed"]
    missed = good | {"kind": "not_critical"}
    assert not cp.control_result([good, saddle, missed])["passed"]
    assert not cp.control_result([saddle, saddle])["passed"]  # no minimum found
    assert cp.convex_result([good, good])["passed"]
    assert not cp.convex_result([good, saddle])["passed"]
    assert not cp.convex_result([good | {"kind": "not_critical"}])["passed"]  # none reached


def test_true_kind_of_the_lattice():
    assert cp.true_kind(np.array([1.0, -1.0, 1.0])) == "minimum"
    assert cp.true_kind(np.array([0.0, 0.0, 0.0])) == "maximum"
    assert cp.true_kind(np.array([0.0, 1.0, -1.0])) == "saddle"


def test_escapes_and_training_on_at_the_zero_network_saddle():
    """The all-zero-weights tanh MLP is a critical point (a saddle) once its output bias is
    fitted: escapes() steps along its negative curvature, beats the controls and trains on."""
    import functools

    import jax
    import jax.numpy as jnp

    from jaxopt_notes import hessian

    cfg = cp.Config.tiny()
    with jax.enable_x64(True):
        batch = cp.digits(100)
        fn = functools.partial(cp.batch_loss, weight_decay=cfg.weight_decay)
        loss = hessian.over_dataset(fn, batch, batch_size=100)
        zeros = jax.tree.map(jnp.zeros_like, cp.init_params(jax.random.key(0), 4))
        found = hessian.find_critical(loss, zeros, rtol=1e-10)
        assert found.status == "critical"
        (row,) = cp.escapes([(loss, found.params, functools.partial(fn, batch=batch))], cfg)
    assert row["eigenvalue"] < 0 and row["escape"] > 0 and row["margin"] > 0
    assert 0 <= row["steps_escape"] <= cfg.train_on_steps + 1
    assert 0 <= row["steps_random"] <= cfg.train_on_steps + 1
    assert row["curves"]["escape"][0] < row["loss"]  # the first point is the escape step's


def test_a_tied_network_has_a_tied_gradient_and_symmetrise_restores_the_tie():
    """The swap symmetry the tied starts rest on: at a network whose first and last hidden
    units are equal, the gradient is equal (to rounding) on the two units too, so training keeps
    the tie;
    an untied network's gradient is not, and symmetrise() puts one back on the subspace."""
    import functools

    import jax

    with jax.enable_x64(True):
        fn = functools.partial(cp.batch_loss, batch=cp.digits(60), weight_decay=1e-3)
        free = cp.init_params(jax.random.key(3), 5)
        for params, tied in ((cp.tie(free), True), (free, False)):
            g = jax.grad(fn)(params)
            pairs = [(g["w1"][:, 0], g["w1"][:, -1]), (g["b1"][0], g["b1"][-1])]
            pairs.append((g["w2"][0], g["w2"][-1]))
            gap = max(float(np.abs(a - b).max() / np.abs(a).max()) for a, b in pairs)
            # equal up to float64 rounding when tied; apart by far more than that when not
            assert (gap < 1e-12) if tied else (gap > 1e-3), gap
        back = cp.symmetrise(free)
        assert np.array_equal(back["w1"][:, 0], back["w1"][:, -1])
        assert np.allclose(back["w2"][0], (free["w2"][0] + free["w2"][-1]) / 2)
        assert np.array_equal(back["w1"][:, 1:-1], free["w1"][:, 1:-1])  # the others untouched
