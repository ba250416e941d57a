"""``hessian.sharpness``: the one tracker (``measure``) against a dense ``eigh`` of
``jax.hessian``, its GD driver against the numbers of the tracker it replaced, its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_notes import hessian
from jaxopt_notes.hessian import sharpness

A = jnp.asarray(np.random.default_rng(0).standard_normal((6, 6)), jnp.float32)


def loss(p):  # not a quadratic: the Hessian moves with p, and has negative eigenvalues
    return jnp.sum(jnp.tanh(A @ p) ** 2) + 0.1 * p @ p


def dense(p) -> np.ndarray:
    return np.linalg.eigvalsh(np.asarray(jax.hessian(loss)(p), np.float64))


def matvec(p):
    return lambda v: jax.jvp(jax.grad(loss), (p,), (v,))[1]


P = jnp.linspace(-0.4, 0.5, 6)


def test_lanczos_reads_both_ends_and_hands_on_its_top_vector():
    start = jax.random.normal(jax.random.key(1), (1, 6))
    r = sharpness.measure(matvec(P), start, num_iter=6, which="both")
    want = dense(P)
    np.testing.assert_allclose(r.values, [want[-1], want[0]], rtol=1e-4, atol=1e-5)
    assert r.start.shape == (1, 6) and np.all(np.asarray(r.residuals) < 1e-4)
    # the handed-on vector is the top eigenvector: one step from it reads the top already
    again = sharpness.measure(matvec(P), r.start, num_iter=1)
    assert float(again.values[0]) == pytest.approx(want[-1], rel=1e-4)


def test_subspace_iteration_reads_the_top_and_runs_under_vmap():
    points = jnp.stack([P, -0.5 * P])
    starts = jax.random.normal(jax.random.key(2), (2, 3, 6))  # a block of 3 per point

    @jax.jit
    @jax.vmap
    def read(p, s):
        return sharpness.measure(matvec(p), s, num_iter=60, method="subspace")

    r = read(points, starts)
    assert r.start.shape == (2, 3, 6) and r.values.shape == (2, 1)
    for i in range(2):
        top = dense(points[i])[-1]
        assert float(r.values[i, 0]) == pytest.approx(top, rel=1e-4)
        assert float(r.residuals[i, 0]) < 1e-3


def test_track_sharpness_matches_eigh_and_the_numbers_of_the_tracker_it_replaced():
    _, h = hessian.track_sharpness(
        loss, jnp.ones(6) * 0.3, learning_rate=0.05, num_steps=6, every=2
    )
    # the old tracker (hessian.eigenvalues each time: a dense eigh at n = 6), same problem
    old = [15.057613372802734, 16.198429107666016, 16.77446746826172, 20.234159469604492]
    np.testing.assert_allclose(h.sharpness, old, rtol=1e-5)
    p, tops = jnp.ones(6) * 0.3, []
    for step in range(7):
        if step in (0, 2, 4, 6):
            tops.append(dense(p)[-1])
        p = p - 0.05 * jax.grad(loss)(p)
    np.testing.assert_allclose(h.sharpness, tops, rtol=1e-5)
    assert h.steps.tolist() == [0, 2, 4, 6] and len(h.loss) == 7


def test_track_sharpness_on_a_dataset_loss_and_with_wrt():
    x = jnp.asarray(np.random.default_rng(1).standard_normal((12, 3)), jnp.float32)

    def batch_loss(p, xb):
        return jnp.mean((xb @ p["w"] + p["b"]) ** 2)

    params = {"w": jnp.ones(3), "b": jnp.zeros(())}
    data_loss = hessian.over_dataset(batch_loss, x, batch_size=4)
    _, h = hessian.track_sharpness(data_loss, params, learning_rate=0.01, num_steps=1)
    full = jax.hessian(lambda w: batch_loss({"w": w, "b": 0.0}, x))(params["w"])
    _, only_w = hessian.track_sharpness(
        lambda p: batch_loss(p, x), params, learning_rate=0.01, num_steps=1, wrt="w"
    )
    top_w = np.linalg.eigvalsh(np.asarray(full)).max()
    assert h.sharpness[0] > top_w - 1e-4  # the bias adds a direction: no smaller
    assert only_w.sharpness[0] == pytest.approx(top_w, rel=1e-4)


def test_a_diverging_run_is_refused_in_one_sentence():
    with pytest.raises(ValueError, match="must be finite for the sharpness at step 5"):
        hessian.track_sharpness(
            lambda p: jnp.sum(p**4), jnp.ones(2), learning_rate=10.0, num_steps=10, every=5
        )


@pytest.mark.parametrize(
    "kwargs, start, match",
    [
        ({"method": "power"}, (1, 3), "`method` must be one of"),
        ({"method": "subspace", "which": "both"}, (2, 3), "`which` must be one of"),
        ({"num_iter": 0}, (1, 3), "`num_iter`"),
        ({}, (3,), r"`start` must be a \(block, n\) array, got shape \(3,\)"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, start, match):
    with pytest.raises(ValueError, match=match):
        sharpness.measure(lambda v: v, jnp.ones(start), **{"num_iter": 3, **kwargs})
