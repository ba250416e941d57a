"""lenet_vs_mlp: tiny run; shuffled pixels remove LeNet's edge; fixed numbers; quotes."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import lenet_vs_mlp as lm

from tests.claims._contract import run_tiny, verdict_of

CFG = lm.Config.tiny()
LRS = [1e-3, 1e-2, 1e-1, 1.0]


def metrics(lenet_acc=0.97, best_ratio=1e-3, n=4):
    jitter = np.linspace(0.0, 0.004, n)
    mlp_acc = np.array([[0.80, 0.90, 0.95, 0.10]] * n) + jitter[:, None]
    loss = np.array([[1.0, 0.3, 0.05, np.nan]] * n)  # the rate 0.1 trains best; 1.0 diverged
    ratios = np.array([[best_ratio / 100, best_ratio / 10, best_ratio, np.nan]] * n)
    return {
        "data": "fixed numbers",
        "lenet": {
            "params": 61706,
            "test_accuracy": lenet_acc + jitter,
            "median_ratio": np.full(n, 1e-3),
        },
        "mlp": {
            "params": 62020,
            "lrs": LRS,
            "test_accuracy": mlp_acc,
            "train_loss": loss * (1 + jitter[:, None]),
            "median_ratio": ratios * (1 + jitter[:, None]),
        },
    }


def by_id(entries):
    return {c["id"]: c["verdict"] for c in entries}


def test_fixed_numbers_that_must_pass():
    v = by_id(lm.claims(metrics(), CFG))
    assert v == {
        "lenet_beats_mlp": "reproduced",
        "healthy_update_ratio": "reproduced",
        "sizes_matched": "reproduced",
    }


def test_fixed_numbers_that_must_fail():
    # LeNet only ties the MLP's best rate; the best rate's ratio is 0.1, far above 1e-3
    v = by_id(lm.claims(metrics(lenet_acc=0.951, best_ratio=0.1), CFG))
    assert v["lenet_beats_mlp"] == v["healthy_update_ratio"] == "not_reproduced"


def test_shuffled_pixels_are_a_permutation():
    arrays = lm.load(CFG)[0]
    moved = lm.shuffled(arrays)
    a, b = np.asarray(arrays.x_train[0]).ravel(), np.asarray(moved.x_train[0]).ravel()
    assert np.allclose(np.sort(a), np.sort(b)) and not np.allclose(a, b)


def test_tiny_run_and_pixel_shuffle_sabotage(tmp_path):
    plain = run_tiny("lenet_vs_mlp", tmp_path)
    assert verdict_of(plain, "lenet_beats_mlp") == "reproduced"
    assert verdict_of(plain, "sizes_matched") == "reproduced"
    # one fixed permutation of the pixels: the MLP cannot tell, LeNet loses its locality
    sabotaged = run_tiny("lenet_vs_mlp", tmp_path, shuffle_pixels=True)
    assert verdict_of(sabotaged, "lenet_beats_mlp") == "not_reproduced"
