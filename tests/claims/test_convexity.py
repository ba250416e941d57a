"""convexity: tiny reproduces the MLP claims, depth 0 (softmax regression) flips the non-convexity
claim; the convexity checks and the verdicts on fixed numbers."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import convexity

from tests.claims._contract import run_tiny, verdict_of


def test_tiny_reproduces_and_depth_zero_flips(tmp_path):
    plain = run_tiny("convexity", tmp_path)
    for name in ("linear_convex", "softmax_convex", "mlp_not_convex", "convex_near_minimum"):
        assert verdict_of(plain, name) == "reproduced", name
    sabotaged = run_tiny("convexity", tmp_path, depth=0)
    assert verdict_of(sabotaged, "mlp_not_convex") == "not_reproduced"
    assert verdict_of(sabotaged, "convex_near_minimum") != "reproduced"


def fixed_metrics(negatives: list[int], mass_init: list[float], mass_trained: list[float]):
    convex = {"num_negative": [0, 0], "num_exact_zero": [10, 10], "min_eig_over_max": [0.0, 0.0]}
    softmax = convex | {"num_exact_zero": [17, 17]}
    n = len(negatives)
    return {
        "linear regression": convex,
        "softmax regression": softmax,
        "MLP": {
            "num_negative": negatives,
            "min_eig_over_max": [-0.1] * n,
            "negative_mass": mass_init,
            "size": [118] * n,
        },
        "MLP trained": {"num_negative": [1] * n, "negative_mass": mass_trained},
        "MLP training loss": {"init": [2.3] * n, "trained": [0.5] * n},
        "predicted_zeros": {"rank": 16, "linear regression": 10, "softmax regression": 17},
    }


def test_claims_on_fixed_numbers():
    cfg = convexity.Config()
    good = fixed_metrics([40] * 10, [0.5] * 10, list(np.linspace(0.01, 0.02, 10)))
    found = {c["id"]: c["verdict"] for c in convexity.claims(good, cfg)}
    assert set(found.values()) == {"reproduced"}
    bad = fixed_metrics([0] * 9 + [3], [0.5] * 10, list(np.linspace(0.45, 0.55, 10)))
    found = {c["id"]: c["verdict"] for c in convexity.claims(bad, cfg)}
    assert found["mlp_not_convex"] == found["convex_near_minimum"] == "not_reproduced"
    bad["linear regression"]["num_negative"] = [0, 1]  # a negative eigenvalue: not convex
    bad["softmax regression"]["num_exact_zero"] = [17, 16]  # a zero fewer than predicted
    found = {c["id"]: c["verdict"] for c in convexity.claims(bad, cfg)}
    assert found["linear_convex"] == found["softmax_convex"] == "not_reproduced"


def test_predicted_zeros_of_a_constant_pixel():
    x = np.random.default_rng(0).random((50, 4))
    x[:, 2] = 0.0  # a pixel that never varies: one more direction with no curvature
    zeros = convexity.predicted_zeros(x)
    assert zeros["rank"] == 4 and zeros["linear regression"] == 10
    assert zeros["softmax regression"] == 5 + 9
