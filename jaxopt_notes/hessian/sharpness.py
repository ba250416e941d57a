"""Sharpness along training, and the figures of the Hessian tools (matplotlib, PNG, no pyplot).

Re-exported by :mod:`jaxopt_notes.hessian`; kept apart to keep that module one screenful of
concepts. Sharpness is the top Hessian eigenvalue: on a quadratic, gradient descent with
learning rate ``lr`` diverges once it exceeds ``2 / lr``; on networks it climbs to about that
value and hovers there, the "edge of stability" (Cohen et al. 2021).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._extras import require
from jaxopt_notes._types import PyTree
from jaxopt_notes.hessian import _core as core


class SharpnessHistory(NamedTuple):
    steps: np.ndarray  # the steps at which sharpness was measured
    sharpness: np.ndarray  # top eigenvalue at each of those steps
    loss: np.ndarray  # loss before each step, and after the last (num_steps + 1 values)
    threshold: float  # 2 / learning_rate


@jax.jit(static_argnames="loss_fn")
def _gd_step(params, learning_rate, *, loss_fn):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    return jax.tree.map(lambda p, g: p - learning_rate * g, params, grads), loss


def _top_eigenvalue(loss_fn, params, wrt, key, num_iter) -> float:
    from jaxopt_notes.hessian.spectrum import eigenvalues  # the package imports this module

    return float(
        eigenvalues(
            loss_fn, params, k=1, key=key, max_iter=num_iter, wrt=wrt, residuals=False
        ).values[0]
    )


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

    Dense ``eigh`` up to ``DENSE_MAX`` parameters, else Lanczos to its default ``tol`` with at
    most ``num_iter`` steps (compiled once: params are traced). Returns the final params and
    the history.

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
    core.selection(params, wrt)  # bad `wrt` fails before any step
    key = jax.random.PRNGKey(0) if key is None else key
    steps, sharp, losses = [], [], []
    for step in range(num_steps + 1):
        if step % every == 0 or step == num_steps:
            steps.append(step)
            sharp.append(_top_eigenvalue(loss_fn, params, wrt, key, num_iter))
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


def plot_spectral_density(
    density: Any, path: str, *, title: str | None = None, log: bool = True
) -> str:
    """Writes a :class:`~jaxopt_notes.hessian.SpectralDensity` to a PNG (log scale by default,
    as in Ghorbani et al. 2019) and returns the path."""
    fig, ax = _figure()
    y = np.maximum(density.density, 1e-12) if log else density.density
    ax.plot(density.grid, y)
    ax.set_yscale("log" if log else "linear")
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
