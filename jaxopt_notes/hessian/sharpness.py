"""Sharpness, the one tracker, and the figures of the Hessian tools (matplotlib, PNG, no pyplot).

Re-exported by :mod:`jaxopt_notes.hessian`. Sharpness is the top Hessian eigenvalue: on a
quadratic, gradient descent with learning rate ``lr`` diverges once it exceeds ``2 / lr``; on
networks it climbs to about that value and hovers there, the "edge of stability" (Cohen et al.
2021).

:func:`measure` is the engine: one reading of the top eigenvalue (and the bottom one) of an
operator on flat vectors, warm-started from the previous reading, traceable (``jit``, ``vmap``)
so a reading runs inside a training program. Its users: :func:`track_sharpness` (full-batch
gradient descent from the host), ``train --track-curvature`` (``train.curvature``: any
optimizer, with the preconditioned sharpness of Adam) and the edge-of-stability experiment
(every run of every rate in one compiled program).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._extras import require
from jaxopt_notes._types import PyTree
from jaxopt_notes.hessian import _core as core
from jaxopt_notes.hessian import krylov

METHODS = ("lanczos", "subspace")


class Reading(NamedTuple):
    """One reading of :func:`measure`."""

    values: jax.Array  # the top eigenvalue; with which="both" then the bottom one
    residuals: jax.Array  # each value's residual ||H y - theta y|| over the spectrum's scale
    start: jax.Array  # (b, n): the next reading's warm start, the top Ritz vector first


def measure(
    matvec: Callable[[jax.Array], jax.Array],
    start: jax.Array,
    *,
    num_iter: int,
    method: str = "lanczos",
    which: str = "largest",
    key: jax.Array | None = None,
    tol: float | None = None,
) -> Reading:
    """The top eigenvalue of the symmetric ``matvec`` (``v -> H v`` on flat vectors), from the
    warm start ``start``, a ``(b, n)`` block (a reading's ``start`` is the next one's).

    ``method="lanczos"``: Lanczos from ``start[0]`` (:func:`~jaxopt_notes.hessian.lanczos_extremes`,
    ``num_iter`` steps at most, fewer once the residuals are below ``tol`` times the scale);
    ``which="both"`` also gives the bottom eigenvalue. ``method="subspace"``: ``num_iter``
    steps of subspace iteration on the whole block, then Rayleigh-Ritz; a block of several
    vectors rather than one, because at the edge of stability the top eigenvalues crowd together
    and a single power vector lags behind the one momentarily largest (largest only).

    >>> h = jnp.diag(jnp.arange(1.0, 6.0))
    >>> r = measure(lambda v: h @ v, jnp.ones((1, 5)), num_iter=5, which="both")
    >>> r.values.round(4).tolist(), r.start.shape
    ([5.0, 1.0], (1, 5))
    >>> measure(lambda v: h @ v, jnp.ones((2, 5)), num_iter=60, method="subspace").values.round(3)
    Array([5.], dtype=float32)
    """
    _checks.one_of("method", method, METHODS)
    _checks.one_of("which", which, ("largest", "both") if method == "lanczos" else ("largest",))
    _checks.integer("num_iter", num_iter, low=1)
    if jnp.ndim(start) != 2:
        raise ValueError(f"`start` must be a (block, n) array, got shape {jnp.shape(start)}")
    if method == "subspace":
        return _subspace(matvec, start, num_iter)
    key = jax.random.key(0) if key is None else key
    ext = krylov.lanczos_extremes(
        matvec, start[0], key, k=1, which=which, max_iter=num_iter, tol=tol
    )
    residuals = ext.residuals / jnp.maximum(ext.scale, 1e-30)
    return Reading(ext.values, residuals, ext.vectors[:1])


def _subspace(matvec: Callable, basis: jax.Array, num_iter: int) -> Reading:
    products = jax.vmap(matvec)

    def body(b, _):
        q, _ = jnp.linalg.qr(products(b).T)
        return q.T, None

    basis, _ = jax.lax.scan(body, basis, None, length=num_iter)
    hb = products(basis)
    t = basis @ hb.T
    values, vectors = jnp.linalg.eigh((t + t.T) / 2)  # ascending
    top = vectors[:, -1]
    residual = jnp.linalg.norm(top @ hb - values[-1] * (top @ basis))
    scale = jnp.maximum(jnp.max(jnp.abs(values)), 1e-30)
    return Reading(values[-1:], (residual / scale)[None], vectors.T[::-1] @ basis)


class SharpnessHistory(NamedTuple):
    steps: np.ndarray  # the steps at which sharpness was measured
    sharpness: np.ndarray  # top eigenvalue at each of those steps
    loss: np.ndarray  # loss before each step, and after the last (num_steps + 1 values)
    threshold: float  # 2 / learning_rate


@jax.jit(static_argnames="loss_fn")
def _gd_step(params, learning_rate, *, loss_fn):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), loss


@functools.partial(jax.jit, static_argnames=("spec", "num_iter", "tol"))
def _reading(params, data, start, key, *, spec, num_iter, tol) -> Reading:
    matvec = core.matvec_fn(spec, params, data)
    return measure(matvec, start, num_iter=num_iter, key=key, tol=tol)


def track_sharpness(
    loss_fn: core.LossFn,
    params: PyTree,
    *,
    learning_rate: float,
    num_steps: int,
    every: int = 10,
    key: jax.Array | None = None,
    num_iter: int = 100,
    wrt: core.Wrt = None,
) -> tuple[PyTree, SharpnessHistory]:
    """Full-batch gradient descent, recording the top eigenvalue every ``every`` steps.

    Each reading is :func:`measure`'s Lanczos, warm-started from the last reading's top vector
    and compiled once (params are traced): ``num_iter`` steps at most, fewer once the residual
    is below ``sqrt(eps)`` of the spectrum's scale (``eigenvalues``' default). Returns the
    final params and the history.

    >>> _, h = track_sharpness(lambda p: p @ p, jax.numpy.ones(2), learning_rate=0.1,
    ...                        num_steps=2, every=1)
    >>> h.sharpness.tolist(), h.threshold
    ([2.0, 2.0, 2.0], 20.0)
    """
    _checks.function("loss_fn", loss_fn)
    _checks.positive("learning_rate", learning_rate)
    _checks.integer("num_steps", num_steps)
    _checks.integer("every", every, low=1)
    _checks.integer("num_iter", num_iter, low=1)
    spec, data = core.problem(loss_fn, params, wrt)  # bad `wrt` fails before any step
    n = core.num_selected(params, spec.mask)
    key = jax.random.PRNGKey(0) if key is None else key
    dtype = jnp.result_type(*jax.tree.leaves(params))
    start = jax.random.normal(key, (1, n), dtype)
    iters, tol = min(num_iter, n), float(np.sqrt(core.eps(dtype)))  # eigenvalues' default tol
    steps, sharp, losses = [], [], []
    for step in range(num_steps + 1):
        if step % every == 0 or step == num_steps:
            reading = _reading(params, data, start, key, spec=spec, num_iter=iters, tol=tol)
            if not np.all(np.isfinite(reading.values)):  # says why: the loss, else the products
                core.check_finite_loss(spec, params, data, f"the sharpness at step {step}")
                core.check_finite_values(reading.values, f"the sharpness at step {step}")
            steps.append(step)
            sharp.append(float(reading.values[0]))
            start = reading.start
        if step == num_steps:
            losses.append(float(loss_fn(params)))
            break
        params, loss = _gd_step(params, learning_rate, loss_fn=loss_fn)
        losses.append(float(loss))
    arrays = (np.array(steps), np.array(sharp), np.array(losses))
    return params, SharpnessHistory(*arrays, threshold=2 / learning_rate)


def _figure():
    # no pyplot: no global state; PNG goes through Agg
    Figure = require("matplotlib.figure", "experiments").Figure

    fig = Figure(figsize=(6, 4), layout="constrained")
    return fig, fig.add_subplot()


def _log_curve(density: Any) -> tuple[np.ndarray, float | None]:
    """The density for a log axis: zeros (and underflow) left out as gaps rather than drawn at
    a made-up floor, and the axis' bottom 8 decades below the peak."""
    y = np.asarray(density, np.float64)
    y = np.where(y > 0, y, np.nan)
    return y, (float(np.nanmax(y)) * 1e-8 if np.any(y > 0) else None)


def plot_spectral_density(
    density: Any, path: str, *, title: str | None = None, log: bool = True
) -> str:
    """Writes a :class:`~jaxopt_notes.hessian.SpectralDensity` to a PNG (log scale by default,
    as in Ghorbani et al. 2019) and returns the path."""
    fig, ax = _figure()
    y, bottom = _log_curve(density.density) if log else (density.density, None)
    ax.plot(density.grid, y)
    ax.set_yscale("log" if log else "linear")
    if bottom is not None:
        ax.set_ylim(bottom=bottom)
    ax.axvline(0.0, color="gray", lw=0.5)
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density")
    ax.set_title(title or f"Hessian spectral density (n={density.size}, sigma={density.sigma:.2g})")
    fig.savefig(path, dpi=100)
    return path


def plot_sharpness(history: SharpnessHistory, path: str, *, title: str | None = None) -> str:
    """Writes sharpness against the step, with the ``2 / learning_rate`` line, to a PNG."""
    fig, ax = _figure()
    ax.plot(history.steps, history.sharpness, marker="o", label="top eigenvalue")
    ax.axhline(history.threshold, color="red", ls="--", label="2 / learning rate")
    ax.set_xlabel("step")
    ax.set_ylabel("sharpness")
    ax.legend()
    ax.set_title(title or "Sharpness during full-batch gradient descent")
    fig.savefig(path, dpi=100)
    return path
