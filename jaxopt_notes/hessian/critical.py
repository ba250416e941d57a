"""Critical points: classification from the gradient and spectrum, and the way out of saddles."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._types import PyTree
from jaxopt_notes.hessian import _core as core
from jaxopt_notes.hessian.spectrum import eigenvalues, hvp


@dataclasses.dataclass(frozen=True)
class Classification:
    """What kind of point ``params`` is, and the numbers and tolerances that decided it.

    An eigenvalue counts as zero when ``|lambda| <= eig_tol = eig_rtol * scale`` (``scale`` the
    largest ``|lambda|``); the gradient counts as zero when
    ``grad_norm <= grad_tol = grad_rtol * scale * max(1, |params|)``, i.e. when the Newton step
    it implies is tiny next to the params. ``minimum_ratio`` is the fraction of positive
    eigenvalues; it is exact when ``complete`` (all eigenvalues computed), else None.
    """

    kind: str  # "minimum", "maximum", "saddle", "degenerate" or "not_critical"
    eigenvalues: np.ndarray  # descending; all of them when complete, else both ends
    grad_norm: float
    grad_tol: float
    eig_tol: float
    scale: float
    num_positive: int
    num_negative: int
    num_near_zero: int
    minimum_ratio: float | None
    complete: bool
    method: str
    size: int
    info: dict
    converged: bool = True  # every computed eigenvalue converged (dense: always)
    num_hvps: int = 0
    loss: float | None = None
    tridiagonal: Any = None  # the host Lanczos run's T (``Eigenpairs.tridiagonal``), if any

    def explain(self) -> str:
        """The classification in words, with the numbers that decided it."""
        return explain(self)


def _kind(lam: np.ndarray, tol: float, critical: bool) -> str:
    if not critical:
        return "not_critical"
    if lam.min() < -tol and lam.max() > tol:
        return "saddle"  # mixed signs decide, even beside zero eigenvalues
    if lam.min() > tol:
        return "minimum"
    if lam.max() < -tol:
        return "maximum"
    return "degenerate"  # zero eigenvalues: higher-order terms decide, and we do not guess


def default_rtol(params: PyTree) -> float:
    return float(np.sqrt(core.eps(jnp.result_type(*jax.tree.leaves(params)))))


def _gradient_and_ends(loss_fn, params, what: str, k_of, options: dict):
    """The loss and gradient (finite, or a one-sentence error naming ``what``) and both ends
    of the spectrum, ``k_of(n, full)`` at each; ``options`` go to :func:`eigenvalues`."""
    spec, data = core.problem(loss_fn, params, options.get("wrt"))
    n = core.num_selected(params, spec.mask)
    method = options.get("method", "auto")
    full = method == "dense" or (method == "auto" and n <= core.DENSE_MAX)
    loss, grad = core.check_finite_loss(spec, params, data, what, with_loss=True)
    eig = eigenvalues(loss_fn, params, k=k_of(n, full), which="both", check_finite=False, **options)
    return spec, n, full, loss, grad, eig


def classify(
    loss_fn: core.LossFn,
    params: PyTree,
    *,
    k: int = 5,
    grad_rtol: float | None = None,
    eig_rtol: float | None = None,
    **options: Any,
) -> Classification:
    """Minimum / maximum / saddle / degenerate / not_critical, from the gradient and spectrum.

    Dense: every eigenvalue; Lanczos: the ``k`` at each end. Tolerances default to
    ``sqrt(eps)`` of the params' dtype. A non-finite loss, gradient or eigenvalue raises.
    ``options`` go to :func:`~jaxopt_notes.hessian.eigenvalues` (``method``, ``key``, ``tol``,
    ``max_iter``, ``num_iter``, ``wrt``, ``loss_info``, ``loop``; ``min_iter`` and
    ``start="rademacher"`` make the run double as an SLQ probe: the result's ``tridiagonal``).

    >>> classify(lambda p: p[0] ** 2 - p[1] ** 2, jnp.zeros(2)).kind
    'saddle'
    """
    _checks.integer("k", k, low=1)
    grad_rtol = default_rtol(params) if grad_rtol is None else grad_rtol
    eig_rtol = default_rtol(params) if eig_rtol is None else eig_rtol
    _checks.non_negative("grad_rtol", grad_rtol)
    _checks.non_negative("eig_rtol", eig_rtol)
    spec, n, full, loss, grad, eig = _gradient_and_ends(
        loss_fn, params, "a classification", lambda n, full: n if full else min(k, n), options
    )
    grad_norm = float(jnp.linalg.norm(grad))
    lam = np.asarray(eig.values, dtype=np.float64)
    scale = float(np.abs(lam).max())
    eig_tol = eig_rtol * scale
    x = core.flat_view(params, spec.mask)[0]
    grad_tol = grad_rtol * scale * max(1.0, float(jnp.linalg.norm(x)))
    pos, neg = int((lam > eig_tol).sum()), int((lam < -eig_tol).sum())
    return Classification(
        kind=_kind(lam, eig_tol, grad_norm <= grad_tol),
        eigenvalues=lam,
        grad_norm=grad_norm,
        grad_tol=grad_tol,
        eig_tol=eig_tol,
        scale=scale,
        num_positive=pos,
        num_negative=neg,
        num_near_zero=len(lam) - pos - neg,
        minimum_ratio=pos / n if full else None,
        complete=full,
        method=eig.method,
        size=n,
        info=eig.info,
        converged=bool(np.all(eig.converged)),
        num_hvps=eig.num_hvps,
        loss=loss,
        tridiagonal=eig.tridiagonal,
    )


def explain(c: Classification) -> str:
    """Sentences saying what a :class:`Classification`'s numbers mean."""
    lines = []
    if c.grad_norm > c.grad_tol:
        lines.append(
            f"gradient norm {c.grad_norm:.3g} is above the tolerance {c.grad_tol:.3g}: "
            "not a critical point yet, so the curvature describes the slope's bowl, "
            "not a minimum or saddle"
        )
    else:
        lines.append(
            f"gradient norm {c.grad_norm:.3g} is within the tolerance {c.grad_tol:.3g}: "
            f"a critical point, a {c.kind}"
        )
    lam, scope = c.eigenvalues, "of all" if c.complete else "among the computed extremes"
    neg = lam[lam < -c.eig_tol]
    if len(neg):
        size = "small " if abs(neg.min()) < 0.01 * c.scale else ""
        lines.append(
            f"{len(neg)} {size}negative eigenvalue(s) {scope} (most negative "
            f"{neg.min():.3g}, {abs(neg.min()) / c.scale:.2%} of the largest "
            f"{lam.max():.3g}): directions where the loss still bends down"
        )
    else:
        lines.append(f"no eigenvalue below -{c.eig_tol:.3g} {scope}: no descent by curvature")
    lines.append(
        f"{c.num_near_zero} eigenvalue(s) within +-{c.eig_tol:.3g} of zero {scope}: "
        "flat directions (symmetries or unused parameters)"
    )
    if not c.converged:
        lines.append("some Lanczos pairs did not converge: raise max_iter before trusting them")
    return "; ".join(lines)


def downhill(v: jax.Array, g: jax.Array) -> jax.Array:
    """``v`` or ``-v``, whichever has ``v . g <= 0``; at ``v . g == 0`` the largest entry > 0.

    The one sign rule of every escape direction (traceable).
    """
    slope = jnp.vdot(v, g)
    biggest = v[jnp.argmax(jnp.abs(v))]
    return jnp.where((slope > 0) | ((slope == 0) & (biggest < 0)), -v, v)


def escape_direction(
    loss_fn: core.LossFn, params: PyTree, *, eig_rtol: float | None = None, **options: Any
) -> PyTree | None:
    """The unit direction of most negative curvature, signed to go downhill, or None.

    None when the smallest eigenvalue is not below ``-eig_rtol * max|lambda|``; a non-finite
    loss, gradient or eigenvalue raises (never a NaN direction). Signed by :func:`downhill`.
    ``options`` go to :func:`~jaxopt_notes.hessian.eigenvalues` (``method``, ``key``, ``tol``,
    ``max_iter``, ``num_iter``, ``wrt``, ``loop``).

    >>> escape_direction(lambda p: p[0] ** 2 - p[1] ** 2, jnp.zeros(2))
    Array([0., 1.], dtype=float32)
    """
    *_, grad, eig = _gradient_and_ends(
        loss_fn, params, "an escape direction", lambda n, full: 1, options
    )
    lam = np.asarray(eig.values, dtype=np.float64)
    eig_rtol = default_rtol(params) if eig_rtol is None else eig_rtol
    if lam[-1] >= -eig_rtol * np.abs(lam).max():
        return None
    return eig.embed(downhill(eig.flat_vectors[-1], grad))


def _vdot(a: PyTree, b: PyTree) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


class EscapeStep(NamedTuple):
    params: PyTree  # the new params (the old ones when no step was taken)
    step_size: float  # 0.0 when there is no negative curvature or no decrease was found
    loss_before: float
    loss_after: float
    direction: PyTree | None


def escape_step(
    loss_fn: core.LossFn,
    params: PyTree,
    *,
    step_size: float = 1.0,
    max_halvings: int = 30,
    **kwargs,
) -> EscapeStep:
    """A step along :func:`escape_direction`, halved until the loss drops enough.

    Accepts ``a`` once ``L(x + a v) <= L(x) + (a g.v + a^2 lambda_min / 2) / 2`` (half the decrease
    the quadratic model predicts). ``kwargs`` go to :func:`escape_direction`.
    """
    _checks.positive("step_size", step_size)
    _checks.integer("max_halvings", max_halvings)
    before = float(loss_fn(params))
    v = escape_direction(loss_fn, params, **kwargs)
    if v is None:
        return EscapeStep(params, 0.0, before, before, None)
    slope = float(_vdot(jax.grad(loss_fn)(params), v))
    curv = float(_vdot(hvp(loss_fn, params, v), v))
    a = step_size
    for _ in range(max_halvings + 1):
        new = jax.tree.map(lambda p, d: p + a * d, params, v)
        after = float(loss_fn(new))
        if after <= before + 0.5 * (a * slope + 0.5 * a * a * curv):
            return EscapeStep(new, a, before, after, v)
        a /= 2
    return EscapeStep(params, 0.0, before, before, v)
