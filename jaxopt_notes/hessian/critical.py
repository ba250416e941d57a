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
from jaxopt_notes.hessian.density import spectral_density
from jaxopt_notes.hessian.spectrum import eigenvalues, hvp


@dataclasses.dataclass(frozen=True)
class Classification:
    """What kind of point ``params`` is, and the numbers and tolerances that decided it.

    An eigenvalue counts as zero when ``|lambda| <= eig_tol = eig_rtol * scale`` (``scale`` the
    largest ``|lambda|``). The gradient counts as zero when ``grad_norm <= grad_tol``, by the rule
    ``grad_rule`` states: ``grad_rtol * grad_scale`` when a gradient scale was given (e.g. the
    gradient norm where a search started: scale-aware, what a network needs), else
    ``grad_rtol * scale * max(1, |params|)`` (the Newton step it implies is tiny next to the
    params; lax on networks, where ``scale * |params|`` is large).

    ``minimum_ratio`` is the fraction of positive eigenvalues: exact when ``complete`` (all
    eigenvalues computed), else from stochastic Lanczos quadrature with
    ``minimum_ratio_error`` its bound (``minimum_ratio_source`` says which), or None.
    ``most_negative`` holds the negative eigenvalues found, most negative first (at most ``k``).
    ``better_step`` says which of the gradient step and the step along the most negative
    curvature lowers the local quadratic model more, both of length ``model_radius`` (the
    Cauchy step's length); ``gradient_decrease`` and ``curvature_decrease`` are those falls.
    Arrays stay attributes; ``repr`` and ``str`` show a few numbers.
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
    grad_rule: str = ""
    most_negative: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    minimum_ratio_error: float | None = None  # 0.0 when exact
    minimum_ratio_source: str = ""
    model_radius: float = 0.0
    gradient_decrease: float = 0.0
    curvature_decrease: float = 0.0
    better_step: str = "none"  # "gradient", "negative_curvature" or "none"
    num_extra_hvps: int = 0  # the density's and the quadratic model's products

    def __repr__(self) -> str:
        ratio = "None" if self.minimum_ratio is None else f"{self.minimum_ratio:.3g}"
        low = f"{self.most_negative[0]:.3g}" if len(self.most_negative) else "None"
        return (
            f"Classification(kind={self.kind!r}, grad_norm={self.grad_norm:.3g}, "
            f"grad_tol={self.grad_tol:.3g}, size={self.size}, num_negative={self.num_negative}, "
            f"most_negative={low}, minimum_ratio={ratio}, better_step={self.better_step!r})"
        )

    def __str__(self) -> str:
        a = "an" if self.kind[0] in "aeiou" else "a"
        what = "not a critical point" if self.kind == "not_critical" else f"{a} {self.kind}"
        scope = "" if self.complete else " computed"
        ratio = "" if self.minimum_ratio is None else f", minimum ratio {self.minimum_ratio:.3f}"
        if self.minimum_ratio_error:
            ratio += f" +- {self.minimum_ratio_error:.2g}"
        low = f" (most negative {self.most_negative[0]:.3g})" if len(self.most_negative) else ""
        return (
            f"{what}: |g| {self.grad_norm:.3g} against tol {self.grad_tol:.3g}; "
            f"{self.num_negative} of {len(self.eigenvalues)}{scope} eigenvalues negative{low}"
            f"{ratio}; {_STEP_WORDS[self.better_step]}"
        )

    def explain(self) -> str:
        """The classification in words, with the numbers that decided it."""
        return explain(self)


_STEP_WORDS = {
    "gradient": "the gradient step lowers the quadratic model most",
    "negative_curvature": "the negative-curvature step lowers the quadratic model most",
    "none": "no step lowers the quadratic model",
}


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
    return spec, data, n, full, loss, grad, eig


def classify(
    loss_fn: core.LossFn,
    params: PyTree,
    *,
    k: int = 5,
    grad_rtol: float | None = None,
    eig_rtol: float | None = None,
    grad_scale: float | None = None,
    density_probes: int = 4,
    density_iter: int = 32,
    **options: Any,
) -> Classification:
    """Minimum / maximum / saddle / degenerate / not_critical, from the gradient and spectrum.

    Dense: every eigenvalue; Lanczos: the ``k`` at each end, and the minimum ratio from
    ``density_probes`` SLQ probes of ``density_iter`` steps (0: not estimated). Tolerances
    default to ``sqrt(eps)`` of the params' dtype; pass ``grad_scale`` (the gradient norm at the
    start of a search, as :func:`~jaxopt_notes.hessian.find_critical` reports it) for a
    gradient tolerance relative to it: ``grad_tol = grad_rtol * grad_scale``. Without it the
    old rule ``grad_rtol * lambda_max * max(1, |params|)`` applies (see :class:`Classification`).
    A non-critical point is still described: the most negative eigenvalues, the minimum ratio
    and which step lowers the local quadratic model more (one more product). A non-finite
    loss, gradient or eigenvalue raises. ``options`` go to
    :func:`~jaxopt_notes.hessian.eigenvalues` (``method``, ``key``, ``tol``, ``max_iter``,
    ``num_iter``, ``wrt``, ``loss_info``, ``loop``; ``min_iter`` and ``start="rademacher"``
    make the run double as an SLQ probe: the result's ``tridiagonal``).

    >>> classify(lambda p: p[0] ** 2 - p[1] ** 2, jnp.zeros(2)).kind
    'saddle'
    """
    _checks.integer("k", k, low=1)
    grad_rtol = default_rtol(params) if grad_rtol is None else grad_rtol
    eig_rtol = default_rtol(params) if eig_rtol is None else eig_rtol
    _checks.non_negative("grad_rtol", grad_rtol)
    _checks.non_negative("eig_rtol", eig_rtol)
    if grad_scale is not None:
        _checks.positive("grad_scale", grad_scale)
    _checks.integer("density_probes", density_probes)
    _checks.integer("density_iter", density_iter, low=1)
    spec, data, n, full, loss, grad, eig = _gradient_and_ends(
        loss_fn, params, "a classification", lambda n, full: n if full else min(k, n), options
    )
    grad_norm = float(jnp.linalg.norm(grad))
    lam = np.asarray(eig.values, dtype=np.float64)
    scale = float(np.abs(lam).max())
    eig_tol = eig_rtol * scale
    if grad_scale is None:
        x = core.flat_view(params, spec.mask)[0]
        grad_tol = grad_rtol * scale * max(1.0, float(jnp.linalg.norm(x)))
        rule = "grad_rtol x lambda_max x max(1, |params|) (no grad_scale given)"
    else:
        grad_tol, rule = grad_rtol * grad_scale, "grad_rtol x grad_scale"
    pos, neg = int((lam > eig_tol).sum()), int((lam < -eig_tol).sum())
    ratio = _minimum_ratio(
        loss_fn, params, pos / n if full else None, eig_tol, density_probes, density_iter, options
    )
    model = _model_steps(spec, data, params, grad, eig, eig_tol, options.get("loop", "auto"))
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
        minimum_ratio=ratio["value"],
        complete=full,
        method=eig.method,
        size=n,
        info=eig.info,
        converged=bool(np.all(eig.converged)),
        num_hvps=eig.num_hvps,
        loss=loss,
        tridiagonal=eig.tridiagonal,
        grad_rule=rule,
        most_negative=np.sort(lam[lam < -eig_tol])[:k],
        minimum_ratio_error=ratio["error"],
        minimum_ratio_source=ratio["source"],
        num_extra_hvps=ratio["hvps"] + 1,
        **model,
    )


def _minimum_ratio(loss_fn, params, exact, tol, probes, steps, options) -> dict:
    """The share of eigenvalues above ``tol``: ``exact`` when given, else from SLQ with its
    error: each probe's Gauss quadrature brackets the probe's distribution function at ``tol``
    within the weight of the nodes beside it (Chebyshev-Markov-Stieltjes), plus two standard
    errors over the probes."""
    if exact is not None:
        return {"value": exact, "error": 0.0, "source": "all eigenvalues (dense)", "hvps": 0}
    if probes == 0:
        return {"value": None, "error": None, "source": "not estimated", "hvps": 0}
    key = jax.random.fold_in(options.get("key", jax.random.PRNGKey(0)), 7)
    dens = spectral_density(
        loss_fn,
        params,
        key,
        num_probes=probes,
        num_iter=steps,
        wrt=options.get("wrt"),
        check_finite=False,
    )
    above = np.sum(dens.weights * (dens.nodes > tol), axis=1)
    beside = [_bracket(nodes, w, tol) for nodes, w in zip(dens.nodes, dens.weights, strict=True)]
    spread = 2 * np.std(above, ddof=1) / np.sqrt(probes) if probes > 1 else 0.0
    source = (
        f"stochastic Lanczos quadrature, {probes} probe(s) x {dens.nodes.shape[1]} steps; "
        "error: quadrature bracket + 2 standard errors over probes"
    )
    return {
        "value": float(np.mean(above)),
        "error": float(np.mean(beside) + spread),
        "source": source,
        "hvps": dens.num_hvps,
    }


def _bracket(nodes: np.ndarray, weights: np.ndarray, tol: float) -> float:
    below, above = weights[nodes <= tol], weights[nodes > tol]
    last = below[np.argmax(nodes[nodes <= tol])] if len(below) else 0.0
    first = above[np.argmin(nodes[nodes > tol])] if len(above) else 0.0
    return float(max(last, first))


def _model_steps(spec, data, params, grad, eig, eig_tol, loop) -> dict:
    """How far ``m(p) = g.p + p.H.p / 2`` falls along ``-g`` and along the most negative
    eigenvector (signed downhill), both of length ``r``: the Cauchy step's ``|g|^3 / g.H.g``
    where the gradient curves up, else ``|g| / |lambda_min|``; 1 at a zero gradient."""
    g = jnp.asarray(grad)
    g_norm = float(jnp.linalg.norm(g))
    ghg = float(jnp.vdot(g, core.Operator(spec, params, data, loop)(g[None])[0]))
    lam_min = float(eig.values[-1])
    slope = abs(float(jnp.vdot(g, eig.flat_vectors[-1])))  # signed downhill: -|g.v|
    r = g_norm**3 / ghg if ghg > 0 else (g_norm / -lam_min if lam_min < 0 else 0.0)
    r = r if r > 0 else 1.0
    grad_fall = r * g_norm - 0.5 * r**2 * ghg / g_norm**2 if g_norm > 0 else 0.0
    curv_fall = r * slope - 0.5 * r**2 * lam_min
    if lam_min < -eig_tol and curv_fall > grad_fall:
        better = "negative_curvature"
    else:
        better = "gradient" if grad_fall > 0 else "none"
    return {
        "model_radius": r,
        "gradient_decrease": grad_fall,
        "curvature_decrease": curv_fall,
        "better_step": better,
    }


def explain(c: Classification) -> str:
    """Sentences saying what a :class:`Classification`'s numbers mean."""
    lines = []
    rule = f" ({c.grad_rule})" if c.grad_rule else ""
    if c.grad_norm > c.grad_tol:
        lines.append(
            f"gradient norm {c.grad_norm:.3g} is above the tolerance {c.grad_tol:.3g}{rule}: "
            "not a critical point yet, so the curvature describes the slope's bowl, "
            "not a minimum or saddle"
        )
    else:
        lines.append(
            f"gradient norm {c.grad_norm:.3g} is within the tolerance {c.grad_tol:.3g}{rule}: "
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
