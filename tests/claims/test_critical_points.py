"""critical_points: the positive control passes and tiny reproduces "minima rare, saddles common";
width 0 (a straight line, a convex loss) flips both; a failed control makes them inconclusive."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import critical_points as cp

from tests.claims._contract import run_tiny, verdict_of


def test_tiny_reproduces_and_a_straight_line_flips(tmp_path):
    plain = run_tiny("critical_points", tmp_path)
    assert verdict_of(plain, "control_finds_both") == "reproduced"
    # counted as distinct points, the tiny survey's 96 searches reach 4 saddles and no minimum:
    # the right direction, too few points to decide (Wilson interval [0.44, 1] for saddles)
    assert verdict_of(plain, "minima_rare") != "not_reproduced"
    assert verdict_of(plain, "saddles_common") != "not_reproduced"
    sabotaged = run_tiny("critical_points", tmp_path, width=0, width_map=0)  # no map: faster
    # a convex line has one critical point, its minimum: every search reaches it, so the one
    # distinct point is a minimum (share 1, Wilson [0.21, 1] above 0.2) and no saddle is found;
    # one point cannot show that saddles are rare (Wilson [0, 0.79] straddles 0.5)
    assert verdict_of(sabotaged, "minima_rare") == "not_reproduced"
    assert verdict_of(sabotaged, "saddles_common") != "reproduced"


def control(passed: bool) -> dict:
    return {
        "starts": 16,
        "critical": 16,
        "minima_found": 5 if passed else 0,
        "saddles_found": 11,
        "maxima_found": 0,
        "misclassified": 0,
        "at_a_known_point_but_not_critical": 0,
        "passed": passed,
    }


def fixed_metrics(minima: int, saddles: int, not_critical: int, passed: bool = True) -> dict:
    c = {
        "minimum": minima,
        "saddle": saddles,
        "degenerate": 0,
        "maximum": 0,
        "not_critical": not_critical,
    }
    negative = {"minimum": 0, "saddle": 3, "degenerate": 0, "maximum": 25, "not_critical": 0}
    points = [
        {"kind": k, "loss": 0.1 * (i + 1), "num_negative": negative[k]}
        for k, n in c.items()
        for i in range(n)
    ]
    return {"control": control(passed), "counts": c, "points": points}


def verdicts(m: dict) -> dict:
    return {c["id"]: c["verdict"] for c in cp.claims(m, cp.Config())}


def test_claims_on_fixed_numbers():
    assert verdicts(fixed_metrics(0, 40, 60)) == {
        "control_finds_both": "reproduced",
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
    assert found["saddles_common"]["evidence"]["distinct critical points"] == 2
    assert found["saddles_common"]["verdict"] == "inconclusive"  # two points decide nothing
    unique = cp.distinct(m["points"], 1e-6)
    assert sorted(g["searches"] for g in unique) == [20, 20]


def test_distinct_keeps_kinds_and_index_apart():
    a = {"kind": "saddle", "loss": 1.0, "num_negative": 1}
    assert len(cp.distinct([a, a | {"num_negative": 2}, a | {"kind": "minimum"}], 1e-6)) == 3
    assert len(cp.distinct([a, a | {"loss": 1.0 + 1e-9}], 1e-6)) == 1
    assert cp.distinct([a | {"kind": "not_critical"}], 1e-6) == []


def test_failed_control_makes_claims_inconclusive():
    m = fixed_metrics(0, 40, 60, passed=False)
    found = {c["id"]: c for c in cp.claims(m, cp.Config())}
    assert found["control_finds_both"]["verdict"] == "not_reproduced"
    for name in ("minima_rare", "saddles_common"):
        assert found[name]["verdict"] == "inconclusive"
        assert "positive control failed" in found[name]["reason"]


def test_control_result_catches_a_misclassification():
    good = {"kind": "minimum", "true_kind": "minimum", "distance_to_lattice": 1e-12}
    saddle = {"kind": "saddle", "true_kind": "saddle", "distance_to_lattice": 1e-12}
    assert cp.control_result([good, saddle])["passed"]
    wrong = saddle | {"kind": "degenerate"}
    assert not cp.control_result([good, saddle, wrong])["passed"]
    missed = good | {"kind": "not_critical"}
    assert not cp.control_result([good, saddle, missed])["passed"]
    assert not cp.control_result([saddle, saddle])["passed"]  # no minimum found


def test_true_kind_of_the_lattice():
    assert cp.true_kind(np.array([1.0, -1.0, 1.0])) == "minimum"
    assert cp.true_kind(np.array([0.0, 0.0, 0.0])) == "maximum"
    assert cp.true_kind(np.array([0.0, 1.0, -1.0])) == "saddle"
