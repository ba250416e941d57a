"""conv_arithmetic: tiny run; pool size 1 removes the pooling claim; fixed numbers; quotes."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxopt_notes.experiments import conv_arithmetic as ca

from tests.claims._contract import run_tiny, verdict_of

CFG = ca.Config.tiny()


def metrics(pooled=0.45, n=5):
    jitter = np.linspace(0.0, 0.01, n)
    return {
        "sensitivity": {
            "feature_map": 0.6 + jitter,
            "pooled": pooled + jitter,
            "subsampled": 0.6 + jitter,
        },
        "weight_sharing": {
            "conv_6x5x5_on_32x32x3": {"kernel": 450, "bias": 6, "total": 456},
            "dense_3072_to_100": {"kernel": 307_200, "bias": 100, "total": 307_300},
        },
        "receptive_field": {"one 3x3": [3, 3], "two 3x3": [5, 5], "one 5x5": [5, 5]},
        "stacked_params": {"two 3x3": 288, "one 5x5": 400},
        "stacked_formula": {"two 3x3": 288, "one 5x5": 400},
        "pointwise": {"max_abs_diff": 0.0, "max_abs_output": 3.0},
        "output_sizes": [{"flax": 3, "formula": 3, "integer": True}],
        "equivariance": {"max_abs_diff": 0.0, "max_abs_output": 2.0},
    }


def by_id(entries):
    return {c["id"]: c["verdict"] for c in entries}


def test_fixed_numbers_that_must_pass():
    v = by_id(ca.claims(metrics(), CFG))
    assert set(v.values()) == {"reproduced"} and len(v) == 6


def test_fixed_numbers_that_must_fail():
    m = metrics(pooled=0.55)  # 8% less change: below the stated 20%
    m["output_sizes"] = [{"flax": 4, "formula": 3, "integer": True}]
    v = by_id(ca.claims(m, CFG))
    assert v["pooling_lowers_position_sensitivity"] == "not_reproduced"
    assert v["output_sizes"] == "not_reproduced"


def test_shift_moves_pixels_right():
    x = jnp.arange(4.0).reshape(1, 1, 4, 1)
    assert np.asarray(ca.shift_right(x, 1)).ravel().tolist() == [0.0, 0.0, 1.0, 2.0]


def test_tiny_run_and_no_pooling_sabotage(tmp_path):
    plain = run_tiny("conv_arithmetic", tmp_path)
    assert verdict_of(plain, "pooling_lowers_position_sensitivity") == "reproduced"
    assert all(c["verdict"] == "reproduced" for c in plain["claims"] if c["kind"] == "check")
    sabotaged = run_tiny("conv_arithmetic", tmp_path, pool=1)  # 1x1 pooling is no pooling
    assert verdict_of(sabotaged, "pooling_lowers_position_sensitivity") == "not_reproduced"
