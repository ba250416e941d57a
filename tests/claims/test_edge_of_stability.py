"""edge_of_stability: tiny reaches the edge from below; a linear model (depth 0) flips the claims;
a start above 2/lr is not a test; verdicts on fixed numbers."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from jaxopt_notes.experiments import edge_of_stability as eos

from jaxopt_notes import experiments
from tests.claims._contract import run_tiny, verdict_of


def test_tiny_reproduces_and_a_linear_model_flips(tmp_path):
    plain = run_tiny("edge_of_stability", tmp_path)
    assert verdict_of(plain, "sharpness_matches_lanczos") == "reproduced"
    assert verdict_of(plain, "edge_lr_0.15") == "reproduced"
    assert verdict_of(plain, "loss_nonmonotone") == "reproduced"
    linear = run_tiny("edge_of_stability", tmp_path, depth=0)  # constant Hessian: no sharpening
    assert verdict_of(linear, "edge_lr_0.15") == "not_reproduced"
    assert verdict_of(linear, "loss_nonmonotone") == "not_reproduced"


def test_the_sharpness_reading_is_the_top_eigenvalue_of_the_dense_hessian():
    cfg = dataclasses.replace(eos.Config.tiny(), seeds=1, num_examples=30, width=4, depth=1)
    loss, inits = eos.make_problem(cfg)
    params = jax.tree.map(lambda a: a[0], inits)
    flat, unravel = ravel_pytree(params)
    want = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda f: loss(unravel(f)))(flat)))[-1]
    basis = jax.random.normal(jax.random.key(0), (cfg.subspace_dim, flat.size))
    top, basis = jax.jit(lambda b: eos.top_eigenvalue(loss, params, b, 100))(basis)
    assert basis.shape == (cfg.subspace_dim, flat.size)
    assert float(top) == pytest.approx(float(want), rel=1e-4)
    # warm-started from its own basis, a few steps keep it there (what train() relies on)
    again, _ = eos.top_eigenvalue(loss, params, basis, 2)
    assert float(again) == pytest.approx(float(want), rel=1e-4)


def summary(start: float, in_band: float, rises: float, n: int = 3) -> dict:
    return {
        "two_over_lr": 20.0,
        "initial_over_threshold": [start] * n,
        "max_over_threshold": [1.1] * n,
        "second_half_median_over_threshold": [1.0] * n,
        "second_half_share_in_band": [in_band - 0.01 * i for i in range(n)],
        "loss_rises_share_second_half": [rises + 0.01 * i for i in range(n)],
        "loss_at_half": [0.2] * n,
        "loss_final": [0.15 + 0.01 * i for i in range(n)],
        "diverged": [False] * n,
    }


def verdicts(start: float, in_band: float, rises: float) -> dict:
    cfg = eos.Config.tiny()
    m = {
        "per_learning_rate": {"0.15": summary(start, in_band, rises)},
        "sharpness_vs_lanczos": [0.001],
    }
    return {c["id"]: c for c in eos.claims(m, cfg)}


def test_claims_on_fixed_numbers():
    good = verdicts(0.6, 1.0, 0.3)
    assert good["edge_lr_0.15"]["verdict"] == good["loss_nonmonotone"]["verdict"] == "reproduced"
    bad = verdicts(0.6, 0.1, 0.0)
    assert bad["edge_lr_0.15"]["verdict"] == bad["loss_nonmonotone"]["verdict"] == "not_reproduced"


def test_a_start_above_the_edge_is_not_a_test():
    above = verdicts(0.95, 1.0, 0.3)["edge_lr_0.15"]  # hovers, but started at the edge
    assert above["verdict"] == "inconclusive"
    assert above["reason"].startswith("not tested")


def test_config_refuses_a_start_threshold_inside_the_band():
    with pytest.raises(ValueError, match="start_below"):
        experiments.make_config(eos, "tiny", {"start_below": "0.9"})
