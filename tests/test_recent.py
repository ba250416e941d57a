"""ADOPT, AdEMAMix, Adan and Rprop against optax (and Rprop against torch.optim.Rprop), in
float64 over 300 steps, open loop and along each one's own trajectory (tests/test_modern.py's
harness)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_notes as jn
from tests import reference as ref
from tests.test_modern import (
    PARAMS0,
    STEPS,
    TOL,
    assert_open_loop_equal,
    assert_own_trajectory_equal,
    open_loop,
    random_grads,
    rel_err,
    run_torch,
    trajectory,
    tree_rel_err,
)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _warm(t):
    return jnp.minimum(1.0, t / 50.0)


CASES = {
    "adopt": lambda: (jn.adopt(1e-2), optax.contrib.adopt(1e-2)),
    "adopt_nesterov_noclip": lambda: (
        jn.adopt(1e-2, nesterov=True, use_clipping=False),
        optax.contrib.adopt(1e-2, nesterov=True, use_clipping=False),
    ),
    "ademamix": lambda: (jn.ademamix(1e-2), optax.contrib.ademamix(1e-2)),
    "ademamix_scheduled": lambda: (
        jn.ademamix(
            1e-2, b3=lambda t: 0.999 * _warm(t), alpha=lambda t: 5 * _warm(t), weight_decay=0.1
        ),
        optax.contrib.ademamix(
            1e-2, b3=lambda t: 0.999 * _warm(t), alpha=lambda t: 5 * _warm(t), weight_decay=0.1
        ),
    ),
    "adan": lambda: (jn.adan(1e-2), optax.adan(1e-2)),
    "adan_decay": lambda: (jn.adan(1e-2, weight_decay=0.1), optax.adan(1e-2, weight_decay=0.1)),
    "rprop": lambda: (jn.rprop(1e-2), optax.rprop(1e-2)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_open_loop_equals_optax(name, x64):
    assert_open_loop_equal(*CASES[name]())


@pytest.mark.parametrize("name", sorted(CASES))
def test_own_trajectory_equals_optax(name, x64):
    mine, theta0 = assert_own_trajectory_equal(*CASES[name]())
    assert rel_err(mine, theta0) > 1e-3


# ------------------------------------------------------------------------ Rprop and torch
@pytest.mark.parametrize("lr", [1e-2, 1e-7])  # 1e-7: below min_step_size, clipped at once
def test_rprop_pytorch_convention_equals_torch_optim(lr, x64):
    torch = pytest.importorskip("torch", reason="torch is an optional extra")
    make = lambda p: torch.optim.Rprop(p, lr=lr)  # noqa: E731
    ours = jn.rprop(lr, convention="pytorch")
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = trajectory(ours, theta0, grad_fn, unravel)
    assert rel_err(mine, run_torch(torch, make, theta0, grad_fn)) < TOL
    grads = np.random.default_rng(1).normal(size=(STEPS, theta0.size))
    _, p = open_loop(ours, [jnp.asarray(g) for g in grads], jnp.asarray(theta0))
    assert rel_err(p, run_torch(torch, make, theta0, grads)) < TOL


def test_optaxs_rprop_is_a_step_late_as_the_docstring_says(x64):
    grads = [jnp.asarray([1.0, -2.0]) for _ in range(4)]
    u_optax, _ = open_loop(jn.rprop(0.1), grads, jnp.zeros(2))
    u_torch, _ = open_loop(jn.rprop(0.1, convention="pytorch"), grads, jnp.zeros(2))
    np.testing.assert_allclose(u_optax[0], [0.0, 0.0])
    for a, b in zip(u_optax[1:], u_torch[:-1], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


# ------------------------------------------------------------------------ the links alone
def test_adopt_normalises_by_the_previous_second_moment_only():
    tx = jn.adopt_scale(b2=0.5, eps=1e-12, use_clipping=False)
    s = tx.init(jnp.zeros(1))
    _, s = tx.update(jnp.array([2.0]), s)  # v_1 = 4
    u, s = tx.update(jnp.array([10.0]), s)  # 10 / sqrt(4), the 10 not in its own denominator
    assert float(u[0]) == pytest.approx(5.0)
    assert float(s.nu[0]) == pytest.approx(0.5 * 4 + 0.5 * 100)


def test_ademamix_without_its_slow_momentum_is_adam(x64):
    grads = [{"w": g["w"]} for g in random_grads(steps=30)]
    params = {"w": jnp.asarray(PARAMS0["w"])}
    _, a = open_loop(jn.ademamix(1e-2, alpha=0.0), grads, params)
    _, b = open_loop(jn.adam(1e-2), grads, params)
    assert tree_rel_err(a, b) < 1e-12


def test_bad_hyperparameters_are_refused_with_a_sentence():
    with pytest.raises(ValueError, match=r"^`b3` must be in \[0, 1\), got 1.0$"):
        jn.adan(0.1, b3=1.0)
    with pytest.raises(ValueError, match=r"^`eta_minus` must be in \(0, 1\], got 1.5$"):
        jn.rprop(0.1, eta_minus=1.5)
    with pytest.raises(ValueError, match=r"^`alpha` must be >= 0, got -1.0$"):
        jn.ademamix(0.1, alpha=-1.0)
    with pytest.raises(ValueError, match=r"^`eps` must be >= 0, got -1.0$"):
        jn.adopt(0.1, eps=-1.0)
    with pytest.raises(ValueError, match="`slow_momentum` needs a first moment"):
        tx = jn.slow_momentum()
        tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


def test_options_past_eps_are_keyword_only():
    """optax's positional order up to eps; eps_root, mu_dtype, weight_decay, mask by name."""
    assert jn.hyperparams(jn.ademamix(0.1, 0.8, 0.9, 0.99, 2.0, 1e-6))["alpha"] == 2.0
    for factory in (jn.ademamix, jn.adan):
        with pytest.raises(TypeError, match="positional"):
            factory(0.1, 0.9, 0.99, 0.999, 5.0, 1e-8, 0.0)
