"""Shampoo with AdaGrad grafting against a NumPy reference written from the papers' algorithm
boxes (Gupta et al. 2018, Algorithm 1; Agarwal et al. 2020, grafting), in float64 over 150
steps, open loop and along its own trajectory; and the optax contract checks it can take."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_notes as jn
from tests import reference as ref
from tests.test_modern import open_loop, rel_err, trajectory

STEPS = 150
TOL = 1e-9
KEYS = ("w1", "b1", "w2", "b2")


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def paper_shampoo(lr, eps=1e-4, graft_eps=1e-7, g0=0.1):
    """Algorithm 1 of Gupta et al. (2018) per matrix, L_0 = R_0 = eps I, W -= lr L^-1/4 G
    R^-1/4; its size grafted from AdaGrad (Agarwal et al. 2020): the step is rescaled per
    parameter to the norm of AdaGrad's, g / sqrt(g0 + sum g^2 + eps_g). Vectors keep the
    gradient's direction. Dicts of NumPy arrays in, out."""
    L, R, A = {}, {}, {}

    def inv_root(m, p):
        w, v = np.linalg.eigh(m)
        return (v * w ** (-1.0 / p)) @ v.T

    def step(params, grads):
        out = {}
        for k, g in grads.items():
            A[k] = A.get(k, np.full_like(g, g0)) + g * g
            adagrad = g / np.sqrt(A[k] + graft_eps)
            d = g
            if g.ndim == 2:
                L[k] = L.get(k, eps * np.eye(g.shape[0])) + g @ g.T
                R[k] = R.get(k, eps * np.eye(g.shape[1])) + g.T @ g
                d = inv_root(L[k], 4) @ g @ inv_root(R[k], 4)
            out[k] = params[k] - lr * d * np.linalg.norm(adagrad) / np.linalg.norm(d)
        return out

    return step


def _flat(p):
    return np.concatenate([np.ravel(p[k]) for k in KEYS])


def test_own_trajectory_equals_the_paper(x64):
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = trajectory(jn.shampoo(0.05), theta0, grad_fn, unravel, STEPS)
    step, params = paper_shampoo(0.05), unravel(theta0)
    for _ in range(STEPS):
        params = step(params, unravel(grad_fn(_flat(params))))
    assert rel_err(mine, _flat(params)) < TOL
    assert rel_err(mine, theta0) > 1e-3


def test_open_loop_equals_the_paper(x64):
    theta0, _, unravel = ref.mlp_problem()
    rng = np.random.default_rng(4)
    grads = [unravel(rng.normal(size=theta0.size)) for _ in range(STEPS)]
    tx = jn.shampoo(0.05, eps=1e-3, graft_eps=1e-6)
    _, p = open_loop(
        tx,
        [jax.tree.map(jnp.asarray, g) for g in grads],
        jax.tree.map(jnp.asarray, unravel(theta0)),
    )
    step, params = paper_shampoo(0.05, eps=1e-3, graft_eps=1e-6), unravel(theta0)
    for g in grads:
        params = step(params, g)
    assert rel_err(_flat(p), _flat(params)) < TOL


def test_grafting_keeps_adagrads_norm_and_shampoos_direction(x64):
    g = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)))
    u, _ = jn.shampoo(1.0).update(g, jn.shampoo(1.0).init(g), g)
    ada, _ = jn.adagrad(1.0).update(g, jn.adagrad(1.0).init(g), g)
    d, _ = jn.shampoo_preconditioner().update(g, jn.shampoo_preconditioner().init(g))
    assert np.isclose(np.linalg.norm(u), np.linalg.norm(ada), rtol=1e-12)
    cos = float(jnp.vdot(u, d) / (jnp.linalg.norm(u) * jnp.linalg.norm(d)))
    assert cos < -1 + 1e-12  # the descent step: -direction


def test_jitted_inject_hyperparams_equals_the_plain_optimizer_and_multisteps_runs(x64):
    params = {"w": jnp.linspace(0.5, 1.5, 6).reshape(2, 3), "b": jnp.ones(3)}
    plain = jn.shampoo(1e-2)
    wrapped = optax.inject_hyperparams(jn.shampoo)(learning_rate=1e-2)
    p_state, w_state = plain.init(params), jax.jit(wrapped.init)(params)
    for k in range(4):
        g = jax.tree.map(lambda p, k=k: jnp.cos(3 * p + k), params)
        pu, p_state = jax.jit(plain.update)(g, p_state, params)
        wu, w_state = jax.jit(wrapped.update)(g, w_state, params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), wu, pu)
    assert float(jn.current_learning_rate(w_state)) == pytest.approx(1e-2)
    multi = optax.MultiSteps(jn.shampoo(1e-2), every_k_schedule=2)
    s = multi.init(params)
    for _ in range(4):
        u, s = jax.jit(multi.update)(jax.tree.map(jnp.ones_like, params), s, params)
    assert int(s.gradient_step) == 2


@pytest.mark.parametrize("make", [jn.shampoo, jn.soap])
def test_complex_matrices_are_refused_with_a_sentence(make):
    g = jnp.ones((2, 3), jnp.complex64)
    tx = make(0.1)
    with pytest.raises(TypeError, match="needs real matrices, got a complex64 leaf"):
        tx.update(g, tx.init(g), g)
