"""Sophia against optax.contrib.sophia (the same Hutchinson probes), in float64 over 200 steps
on the MLP loss, and its curvature estimator against the project's Hessian diagonal."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax import contrib

import jaxopt_notes as jn
from jaxopt_notes import hessian
from tests.test_modern import rel_err, tree_rel_err

STEPS = 200
TOL = 1e-9


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _problem():
    """A small tanh regression as a JAX loss (Sophia needs the loss, not only gradients)."""
    rng = np.random.default_rng(0)
    x, w = jnp.asarray(rng.normal(size=(32, 4))), jnp.asarray(rng.normal(size=(4, 1)))
    y = jnp.sin(x @ w)

    def loss_fn(p):
        return 0.5 * jnp.mean((jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] - y) ** 2)

    params = {
        "w1": jnp.asarray(rng.normal(size=(4, 8)) * 0.5),
        "b1": jnp.zeros(8),
        "w2": jnp.asarray(rng.normal(size=(8, 1)) * 0.5),
    }
    return loss_fn, params


def _run(tx, loss_fn, params, name, fixed=None):
    @jax.jit
    def step(params, state, g):
        u, state = tx.update(g, state, params, **{name: loss_fn})
        return optax.apply_updates(params, u), state, u

    state, history = tx.init(params), []
    for k in range(STEPS):
        g = jax.grad(loss_fn)(params) if fixed is None else fixed[k]
        params, state, u = step(params, state, g)
        history.append(u)
    return params, history


CASES = {
    "defaults": {},
    "every_step": {"update_interval": 1, "clip_threshold": 2.0, "gamma": 0.05},
    "decayed": {"update_interval": 3, "weight_decay": 1e-2, "b1": 0.9, "clip_threshold": 0.5},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_own_trajectory_and_open_loop_equal_optax(name, x64):
    loss_fn, params = _problem()
    kw = CASES[name]
    ours, theirs = jn.sophia(1e-2, **kw), contrib.sophia(1e-2, **kw)
    p1, _ = _run(ours, loss_fn, params, "loss_fn")
    p2, _ = _run(theirs, loss_fn, params, "obj_fn")
    assert tree_rel_err(p1, p2) < TOL
    assert tree_rel_err(p1, params) > 1e-3
    rng = np.random.default_rng(1)
    fixed = [
        jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params) for _ in range(STEPS)
    ]
    _, u1 = _run(ours, loss_fn, params, "loss_fn", fixed)
    _, u2 = _run(theirs, loss_fn, params, "obj_fn", fixed)
    assert max(tree_rel_err(a, b) for a, b in zip(u1, u2, strict=True)) < TOL


def test_the_probe_averages_to_the_projects_hessian_diagonal(x64):
    """Many probes of hutchinson_diagonal average to hessian.diagonal's exact diagonal."""
    loss_fn, params = _problem()
    tx = jn.hutchinson_diagonal(seed=3)
    state, total, n = tx.init(params), None, 2000

    @jax.jit
    def probe(state):
        return tx.update(params, state, params, loss_fn=loss_fn)

    for _ in range(n):
        d, state = probe(state)
        total = d if total is None else jax.tree.map(jnp.add, total, d)
    mean = jax.tree.map(lambda x: x / n, total)
    exact = hessian.diagonal(loss_fn, params).diagonal
    flat = lambda t: np.concatenate([np.ravel(t[k]) for k in sorted(t)])  # noqa: E731
    assert rel_err(flat(mean), flat(exact)) < 0.15  # Monte Carlo: ~1/sqrt(n) of the off-diagonal


def test_sophia_says_it_needs_the_loss():
    tx, p = jn.sophia(0.1), jnp.ones(2)
    with pytest.raises(ValueError, match="`hutchinson_diagonal` needs `params` and `loss_fn`"):
        tx.update(p, tx.init(p), p)


def test_options_past_weight_decay_are_keyword_only():
    assert jn.hyperparams(jn.sophia(0.1, 0.9, 0.95, 1e-6, 0.0))["weight_decay"] == 0.0
    with pytest.raises(TypeError, match="positional"):
        jn.sophia(0.1, 0.9, 0.95, 1e-6, 0.0, None)
