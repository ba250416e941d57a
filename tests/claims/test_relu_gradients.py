"""relu_gradients: verdicts on fixed numbers; tiny runs reproduce and both sabotages flip."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import _claims
from jaxopt_notes.experiments import relu_gradients as exp

from tests.claims._contract import run_tiny, verdict_of

NAME = "relu_gradients"
CFG = exp.Config(seeds=6)


def metrics(sigmoid=1e-5, relu=1.0, xavier=0.05, he=1.0, excess=0.0) -> dict:
    """Per arm, (seeds, depth) arrays whose first-to-last ratios are the given numbers."""
    rng = np.random.default_rng(0)
    d, n = CFG.depth, CFG.seeds

    def layers(ratio):  # geometric from 1 to ratio, jittered per seed
        base = np.geomspace(1.0, ratio, d) if ratio != 1.0 else np.ones(d)
        return base * rng.uniform(0.95, 1.05, (n, 1))

    grads = dict(zip(exp.arms(CFG), (sigmoid, relu, 1.0, relu, 1.0), strict=True))
    stds = dict(zip(exp.arms(CFG), (0.6, he, xavier, he, 0.5), strict=True))
    return {
        "arms": {
            k: {
                "grad_norm": layers(grads[k])[:, ::-1],  # layer 1's gradient is the small one
                "act_std": layers(stds[k]),
                "quarter_slope_excess": np.full((n, d - 1), excess),
            }
            for k in exp.arms(CFG)
        }
    }


def verdicts(m) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in exp.claims(m, CFG)}


def test_fixed_numbers_that_must_pass():
    assert set(verdicts(metrics()).values()) == {_claims.REPRODUCED}


def test_fixed_numbers_that_must_fail():
    got = verdicts(metrics(sigmoid=0.5, relu=1e-4, xavier=0.9, he=5.0, excess=0.01))
    assert set(got.values()) == {_claims.NOT_REPRODUCED}


def test_tiny_run_reproduces(tmp_path):
    # measured on the tiny config (12 seeds): sigmoid 4.5e-6 [4.0e-6, 5.2e-6] against 0.1;
    # ReLU + He 0.79 [0.62, 1.00] inside [0.3, 3]; Xavier 0.039 [0.030, 0.051] against 0.2;
    # He 0.89 [0.68, 1.15] inside [0.5, 2]
    plain = run_tiny(NAME, tmp_path)
    for cid in ("relu_relieves_vanishing", "he_factor_two_keeps_spread", "sigmoid_backprop_bound"):
        assert verdict_of(plain, cid) == _claims.REPRODUCED, cid


def test_sigmoid_in_the_relu_arm_flips_the_gradient_claim(tmp_path):
    # sigmoid + He measured 4.9e-5 [4.3e-5, 5.5e-5]: far below the band [0.3, 3]
    sabotaged = run_tiny(NAME, tmp_path, gradient_activation="sigmoid")
    assert verdict_of(sabotaged, "relu_relieves_vanishing") == _claims.NOT_REPRODUCED


def test_tanh_in_place_of_relu_flips_the_factor_two_claim(tmp_path):
    # tanh zeroes nothing: Xavier's ratio measured 0.355 [0.345, 0.366], above 0.2
    sabotaged = run_tiny(NAME, tmp_path, init_activation="tanh")
    assert verdict_of(sabotaged, "he_factor_two_keeps_spread") == _claims.NOT_REPRODUCED
