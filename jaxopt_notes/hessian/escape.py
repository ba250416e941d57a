"""Escape a saddle, with controls: the negative-curvature step against a random direction and a
gradient step of the same length (Li Hongyi's lecture 002: at a saddle, step along an eigenvector
of a negative eigenvalue and the loss falls; the controls say whether *that* direction matters).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._types import PyTree
from jaxopt_notes.hessian import _core as core
from jaxopt_notes.hessian.critical import default_rtol
from jaxopt_notes.hessian.spectrum import eigenvalues


@dataclasses.dataclass(frozen=True)
class EscapeComparison:
    """Loss falls (``loss - loss after``: positive is down) at one length ``length``.

    ``escape_decrease``: along ``+v`` and ``-v`` (``v`` the most negative curvature's unit
    eigenvector, ``eigenvalue`` its eigenvalue); ``random_decrease``: along ``num_random`` random
    unit directions, the better sign of each; ``gradient_decrease``: along ``-g / |g|``.
    ``model_decrease`` is what the quadratic model foretells along ``v``; ``direction`` is
    ``v`` itself (like ``params``) and ``largest_eigenvalue`` the spectrum's other end.
    ``line`` holds the loss along each direction over ``[-2 length, 2 length]`` (for the
    figure); ``halvings`` says how often the model's length was halved before the loss along
    ``v`` fell by the share ``trust`` of the model's fall.
    """

    loss: float
    eigenvalue: float
    length: float
    escape_decrease: tuple[float, float]
    random_decrease: np.ndarray
    gradient_decrease: float
    model_decrease: float
    grad_norm: float
    line: dict
    num_hvps: int
    direction: PyTree = None  # v as a pytree like params (to step or train on from there)
    largest_eigenvalue: float = float("nan")  # the other end of the spectrum: the scale
    halvings: int = 0  # of the model's length, until the loss followed the model (``trust``)

    @property
    def escapes(self) -> bool:
        """Whether the better sign of ``v`` lowers the loss more than every control."""
        best = max(self.escape_decrease)
        return best > 0 and best > self.gradient_decrease and best > self.random_decrease.max()

    def __repr__(self) -> str:
        return (
            f"EscapeComparison(eigenvalue={self.eigenvalue:.3g}, length={self.length:.3g}, "
            f"escape={max(self.escape_decrease):.3g}, random={self.random_decrease.max():.3g}, "
            f"gradient={self.gradient_decrease:.3g}, escapes={self.escapes})"
        )

    def __str__(self) -> str:
        verdict = "lowers the loss more than" if self.escapes else "does not beat"
        return (
            f"a step of {self.length:.3g} along the most negative curvature "
            f"({self.eigenvalue:.3g}) lowers the loss by {max(self.escape_decrease):.3g} "
            f"(model {self.model_decrease:.3g}): it {verdict} the controls (best random "
            f"{self.random_decrease.max():.3g}, gradient {self.gradient_decrease:.3g})"
        )


@jax.jit(static_argnames="spec")
def _losses(params, data, xs, *, spec):
    f = core.value_fn(spec, params, data)
    return jax.lax.map(f, xs)  # one point at a time: memory as one evaluation


def _along(params, data, spec, x, dirs, t) -> np.ndarray:
    """The loss at ``x + t_j d_i``, shape (directions, lengths)."""
    points = x[None, None] + jnp.asarray(t, x.dtype)[None, :, None] * dirs[:, None, :]
    values = _losses(params, data, points.reshape(-1, x.size), spec=spec)
    return np.asarray(values, np.float64).reshape(len(dirs), len(t))


def _directions(v: jax.Array, g: jax.Array, key: jax.Array, num_random: int) -> jax.Array:
    """Rows: ``v``, ``num_random`` random unit vectors, ``-g / |g|``."""
    rand = jax.random.normal(key, (num_random, v.size), v.dtype)
    rand = rand / jnp.linalg.norm(rand, axis=1, keepdims=True)
    down = -g / jnp.maximum(jnp.linalg.norm(g), jnp.finfo(g.dtype).tiny)
    return jnp.concatenate([v[None], rand, down[None]])


def escape_compare(
    loss_fn: core.LossFn,
    params: PyTree,
    *,
    model_drop: float = 0.01,
    num_random: int = 8,
    num_points: int = 21,
    key: jax.Array | None = None,
    eig_rtol: float | None = None,
    max_length: float | None = None,
    trust: float | None = 0.5,
    **options: Any,
) -> EscapeComparison:
    """Steps along the most negative curvature (both signs) and along the controls.

    The length is the quadratic model's: ``r = sqrt(2 model_drop |L| / |lambda_min|)``, where
    the model ``L + r g.v + r^2 lambda_min / 2`` foretells a fall of ``model_drop`` of the loss
    at a critical point, capped at ``max_length`` (at a tiny negative eigenvalue the model's
    length runs far past where a quadratic describes the loss). Then, as a trust region
    does, the length is halved (at most 40 times) until the loss along the better sign of
    ``v`` falls by at least ``trust`` times the model's fall (``None``: the model's length as
    it is; past it, higher-order terms can make the "escape" go uphill). Raises when the smallest
    eigenvalue is not below ``-eig_rtol * max|lambda|`` (no negative curvature: nothing to
    escape). ``options`` go to :func:`~jaxopt_notes.hessian.eigenvalues`.
    """
    _checks.positive("model_drop", model_drop)
    _checks.integer("num_random", num_random, low=1)
    _checks.integer("num_points", num_points, low=3)
    if max_length is not None:
        _checks.positive("max_length", max_length)
    if trust is not None:
        _checks.real("trust", trust, low=0.0, high=1.0, low_open=True, high_open=True)
    key = jax.random.PRNGKey(0) if key is None else key
    spec, data = core.problem(loss_fn, params, options.get("wrt"))
    loss, grad = core.check_finite_loss(spec, params, data, "an escape", with_loss=True)
    eig = eigenvalues(loss_fn, params, k=1, which="both", key=key, check_finite=False, **options)
    lam = np.asarray(eig.values, np.float64)
    tol = (default_rtol(params) if eig_rtol is None else eig_rtol) * np.abs(lam).max()
    if lam[-1] >= -tol:
        raise ValueError(
            f"`params` must have negative curvature to escape, got a smallest eigenvalue "
            f"{lam[-1]:.3g} >= -{tol:.3g}"
        )
    v, g = eig.flat_vectors[-1], grad
    r = float(np.sqrt(2 * model_drop * max(abs(loss), 1e-12) / -lam[-1]))
    r = r if max_length is None else min(r, float(max_length))
    dirs = _directions(v, g, jax.random.fold_in(key, 3), num_random)
    x = core.flat_view(params, spec.mask)[0]
    slope = abs(float(jnp.vdot(g, v)))
    halvings = 0
    while trust is not None and halvings < 40:
        fall = loss - _along(params, data, spec, x, dirs[:1], np.array([r, -r])).min()
        if fall >= trust * (r * slope - 0.5 * r**2 * lam[-1]):
            break
        r, halvings = r / 2, halvings + 1
    t = np.linspace(-2 * r, 2 * r, num_points)
    line = _along(params, data, spec, x, dirs[jnp.array([0, 1, -1])], t)  # v, a random, -g
    falls = loss - _along(params, data, spec, x, dirs, np.array([r, -r])).T  # (2, directions)
    return EscapeComparison(
        loss=loss,
        eigenvalue=float(lam[-1]),
        length=r,
        escape_decrease=(float(falls[0, 0]), float(falls[1, 0])),
        random_decrease=falls[:, 1:-1].max(axis=0),
        gradient_decrease=float(falls[0, -1]),
        model_decrease=float(r * slope - 0.5 * r**2 * lam[-1]),
        grad_norm=float(jnp.linalg.norm(g)),
        line={"t": t, "escape": line[0], "random": line[1], "gradient": line[-1]},
        num_hvps=eig.num_hvps,
        direction=eig.vectors[-1],
        largest_eigenvalue=float(lam[0]),
        halvings=halvings,
    )
