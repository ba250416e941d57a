"""SOAP against a NumPy reference written from the paper's algorithm box (Vyas et al. 2024,
Algorithm 3, with exact eigenvectors every f steps and Adam's bias corrections), in float64
over 150 steps, open loop and along its own trajectory.

The matrices are square: then L and R have full rank from the first step and distinct
eigenvalues, so their eigenvectors are unique up to sign, to which SOAP is blind. (With a
rank-deficient L the eigenbasis of its null space is arbitrary and two eigensolvers may pick
different ones; SOAP's diagonal second moment is not invariant to that choice.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_notes as jn
from tests.test_modern import open_loop, tree_rel_err

STEPS = 150
TOL = 1e-9
SHAPES = {"w": (6, 6), "v": (4, 4), "b": (5,)}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def paper_soap(lr, b1=0.95, b2=0.95, beta_s=0.95, eps=1e-8, wd=0.01, f=10):
    """Vyas et al. (2024), Algorithm 3 per matrix; vectors take AdamW steps. Q_L = Q_R = I
    until the first refresh, which comes after step 1's L, R update (then every f steps)."""
    st: dict = {}

    def step(params, grads):
        out = {}
        for k, g in grads.items():
            s = st.setdefault(k, {"t": 0, "m": np.zeros_like(g), "v": np.zeros_like(g)})
            s["t"] += 1
            t = s["t"]
            s["m"] = b1 * s["m"] + (1 - b1) * g
            if g.ndim != 2:
                s["v"] = b2 * s["v"] + (1 - b2) * g * g
                d = (s["m"] / (1 - b1**t)) / (np.sqrt(s["v"] / (1 - b2**t)) + eps)
            else:
                n_l, n_r = g.shape
                ql, qr = s.setdefault("ql", np.eye(n_l)), s.setdefault("qr", np.eye(n_r))
                rot = ql.T @ g @ qr
                s["v"] = b2 * s["v"] + (1 - b2) * rot * rot
                m_rot = ql.T @ s["m"] @ qr
                d = ql @ ((m_rot / (1 - b1**t)) / (np.sqrt(s["v"] / (1 - b2**t)) + eps)) @ qr.T
                s["L"] = beta_s * s.get("L", np.zeros((n_l, n_l))) + (1 - beta_s) * g @ g.T
                s["R"] = beta_s * s.get("R", np.zeros((n_r, n_r))) + (1 - beta_s) * g.T @ g
                if (t - 1) % f == 0:
                    s["ql"], s["qr"] = np.linalg.eigh(s["L"])[1], np.linalg.eigh(s["R"])[1]
            out[k] = params[k] - lr * (d + wd * params[k])
        return out

    return step


def _start():
    rng = np.random.default_rng(0)
    return {k: rng.normal(size=s) * 0.5 for k, s in SHAPES.items()}


def test_open_loop_equals_the_paper(x64):
    rng = np.random.default_rng(1)
    grads = [{k: rng.normal(size=s) for k, s in SHAPES.items()} for _ in range(STEPS)]
    p0 = _start()
    _, p = open_loop(
        jn.soap(1e-2, precondition_frequency=5),
        [jax.tree.map(jnp.asarray, g) for g in grads],
        jax.tree.map(jnp.asarray, p0),
    )
    step, q = paper_soap(1e-2, f=5), p0
    for g in grads:
        q = step(q, g)
    assert tree_rel_err(p, q) < TOL
    assert tree_rel_err(p, p0) > 1e-3


def least_squares():
    """Least squares with square weights: loss = |X w v - Y|^2 / 2n + |b - 1|^2 / 2, the
    unused columns of w under a small ridge (so L and R have full rank); ``p -> grads``."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 4))

    def grads_of(p):
        r = (x @ p["w"][:, :4] @ p["v"] - y) / len(x)
        gw = np.zeros((6, 6))
        gw[:, :4] = x.T @ r @ p["v"].T
        gw[:, 4:] = 0.01 * p["w"][:, 4:]
        return {"w": gw, "v": (x @ p["w"][:, :4]).T @ r, "b": p["b"] - 1.0}

    return grads_of


def trajectories(steps=STEPS) -> tuple:
    """(ours, the paper's) final params along each one's own path on :func:`least_squares`."""
    grads_of = least_squares()
    tx = jn.soap(3e-2, weight_decay=1e-3, precondition_frequency=3, shampoo_beta=0.9)
    params = jax.tree.map(jnp.asarray, _start())
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(steps):
        g = jax.tree.map(jnp.asarray, grads_of(jax.tree.map(np.asarray, params)))
        u, state = update(g, state, params)
        params = optax.apply_updates(params, u)
    paper, q = paper_soap(3e-2, wd=1e-3, f=3, beta_s=0.9), _start()
    for _ in range(steps):
        q = paper(q, grads_of(q))
    return params, q


def test_own_trajectory_equals_the_paper(x64):
    ours, paper = trajectories()
    assert tree_rel_err(ours, paper) < TOL
    assert tree_rel_err(ours, _start()) > 1e-3


def test_the_first_step_is_adams(x64):
    g = {k: jnp.asarray(np.random.default_rng(3).normal(size=s)) for k, s in SHAPES.items()}
    p = jax.tree.map(jnp.zeros_like, g)
    u_soap, _ = jn.soap(0.1, weight_decay=0.0).update(g, jn.soap(0.1).init(p), p)
    adam = jn.adam(0.1, b1=0.95, b2=0.95)
    u_adam, _ = adam.update(g, adam.init(p), p)
    assert tree_rel_err(u_soap, u_adam) < 1e-12


def test_jitted_inject_hyperparams_equals_the_plain_optimizer_and_multisteps_runs(x64):
    params = {"w": jnp.linspace(0.5, 1.5, 9).reshape(3, 3), "b": jnp.ones(3)}
    plain = jn.soap(1e-2, precondition_frequency=2)
    wrapped = optax.inject_hyperparams(jn.soap)(learning_rate=1e-2, precondition_frequency=2)
    p_state, w_state = plain.init(params), jax.jit(wrapped.init)(params)
    for k in range(5):
        g = jax.tree.map(lambda p, k=k: jnp.cos(3 * p + k), params)
        pu, p_state = jax.jit(plain.update)(g, p_state, params)
        wu, w_state = jax.jit(wrapped.update)(g, w_state, params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10), wu, pu)
    assert float(jn.current_learning_rate(w_state)) == pytest.approx(1e-2)
    multi = optax.MultiSteps(jn.soap(1e-2), every_k_schedule=2)
    s = multi.init(params)
    for _ in range(4):
        _, s = jax.jit(multi.update)(jax.tree.map(jnp.ones_like, params), s, params)
    assert int(s.gradient_step) == 2
