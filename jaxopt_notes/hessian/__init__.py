"""The Hessian of a loss: products, spectra, critical points, saddle escape, trace and density.

``loss_fn(params) -> scalar`` closes over its data; ``params`` is any pytree of float arrays (a
Flax NNX ``nnx.State`` too; see :func:`from_nnx`). Every product is forward-over-reverse
(``jvp`` of ``grad``): one HVP costs about two gradients and never forms the matrix.

Solvers take ``params`` as a traced argument and ``loss_fn`` as a static one: calling them again
with new params of the same shapes reuses the compiled code. Build ``loss_fn`` once (not a fresh
lambda per call), or every call compiles anew.

The spectrum depends on the loss convention (mean or sum over examples, 0.5*MSE or MSE): pass
``loss_info={"reduction": "mean", "num_examples": n}`` and it is recorded on the result.
``wrt`` restricts every tool to some parameters: a path prefix such as ``"layers/0"`` or a
predicate ``(path, leaf) -> bool`` (paths as :func:`leaf_paths` prints them); the others are held
fixed, and returned vectors are zero there. Sharpness tracking and the plot helpers live in
:mod:`jaxopt_notes.hessian.sharpness` and are re-exported here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxopt_notes import _checks
from jaxopt_notes.hessian import _core as core
from jaxopt_notes.hessian._core import (
    LossFn,
    PyTree,
    Tridiagonal,
    Wrt,
    check_eval_mode,
    from_nnx,
    lanczos,
    leaf_paths,
    ritz,
)  # fmt: skip
from jaxopt_notes.hessian.sharpness import (
    SharpnessHistory,
    plot_sharpness,
    plot_spectral_density,
    track_sharpness,
)

# fmt: off
__all__ = [
    "hvp", "dataset_hvp", "dense", "eigenvalues", "classify", "escape_direction", "escape_step",
    "trace", "spectral_density", "check_eval_mode", "from_nnx", "leaf_paths", "lanczos", "ritz",
    "track_sharpness", "plot_spectral_density", "plot_sharpness", "DENSE_MAX",
    "Tridiagonal", "Eigenpairs", "Classification", "EscapeStep", "TraceEstimate", "SpectralDensity",
    "SharpnessHistory",
]
# fmt: on
DENSE_MAX = core.DENSE_MAX  # method="auto" uses a dense eigh up to this many parameters
_WHICH = ("largest", "smallest", "both")
_METHODS = ("auto", "dense", "lanczos")


# ----------------------------------------------------------------------------- products
def hvp(loss_fn: LossFn, params: PyTree, v: PyTree) -> PyTree:
    """The Hessian-vector product ``H v`` at ``params``, a pytree like ``params``.

    >>> hvp(lambda p: p["x"] ** 2 - p["y"] ** 2, {"x": 0.0, "y": 0.0}, {"x": 1.0, "y": 1.0})
    {'x': Array(2., dtype=float32, ...), 'y': Array(-2., dtype=float32, ...)}
    """
    _checks.function("loss_fn", loss_fn)
    return core.hvp_flat(loss_fn, params, v)


@jax.jit(static_argnums=0)
def _batch_hvp(batch_loss_fn, params, v, batch):
    return hvp(lambda p: batch_loss_fn(p, batch), params, v)


def dataset_hvp(
    batch_loss_fn: Callable[[PyTree, Any], jax.Array], params: PyTree, v: PyTree, batches: Iterable
) -> PyTree:
    """``H v`` of the mean loss over a whole dataset, one batch in memory at a time.

    ``batch_loss_fn(params, batch)`` is the *mean* loss over the batch; a batch's weight is its
    example count (the leading size of its first array), so unequal batches average correctly.
    """
    total, count = None, 0
    for batch in batches:
        n = int(jax.tree.leaves(batch)[0].shape[0])
        h = jax.tree.map(lambda a: a * n, _batch_hvp(batch_loss_fn, params, v, batch))
        total = h if total is None else jax.tree.map(jnp.add, total, h)
        count += n
    if count == 0:
        raise ValueError("`batches` must hold at least one example, got none")
    return jax.tree.map(lambda a: a / count, total)


def dense(loss_fn: LossFn, params: PyTree, *, wrt: Wrt = None, max_size: int = 10_000) -> jax.Array:
    """The (n, n) Hessian over the flattened (selected) params, for small models.

    >>> dense(lambda p: p[0] ** 2 / 20 + p[1] ** 2, jnp.zeros(2))
    Array([[0.1, 0. ],
           [0. , 2. ]], dtype=float32)
    """
    _checks.function("loss_fn", loss_fn)
    mask = core.selection(params, wrt)
    n = core.num_selected(params, mask)
    if n > max_size:
        raise ValueError(f"`params` must have at most `max_size`={max_size} entries, got {n}")
    return core.dense_hessian(params, loss_fn=loss_fn, mask=mask)


# ------------------------------------------------------------------------------ eigenvalues
@dataclasses.dataclass(frozen=True)
class Eigenpairs:
    """Eigenvalues (descending), unit eigenvectors as pytrees like params, and their quality."""

    values: jax.Array
    flat_vectors: jax.Array  # (num values, n): the eigenvectors over the selected parameters
    residuals: np.ndarray  # ||H v - lambda v|| per pair
    converged: np.ndarray  # residual <= tol * max |values|
    method: str  # "dense" or "lanczos"
    size: int  # number of parameters the Hessian covers
    num_hvps: int  # Hessian-vector products spent (dense: one per parameter)
    tol: float
    info: dict  # the caller's `loss_info`: loss convention, data size
    embed: Callable[[jax.Array], PyTree] = dataclasses.field(repr=False, compare=False)

    @property
    def vectors(self) -> list[PyTree]:
        """The eigenvectors as pytrees like params, built on demand (costly for large n)."""
        return [self.embed(v) for v in self.flat_vectors]


def eigenvalues(
    loss_fn: LossFn,
    params: PyTree,
    k: int = 1,
    which: str = "largest",
    method: str = "auto",
    key: jax.Array | None = None,
    *,
    num_iter: int | None = None,
    tol: float | None = None,
    wrt: Wrt = None,
    loss_info: Mapping | None = None,
) -> Eigenpairs:
    """The ``k`` largest, ``k`` smallest or both ends of the Hessian spectrum at ``params``.

    ``method="auto"`` takes a dense ``eigh`` up to ``DENSE_MAX`` parameters, else Lanczos with
    full reorthogonalization over ``num_iter`` steps (default ``min(n, max(100, 4k))``).

    >>> res = eigenvalues(lambda p: p[0] ** 2 - p[1] ** 2, jnp.zeros(2), k=1, which="both")
    >>> res.values, res.method
    (Array([ 2., -2.], dtype=float32), 'dense')
    """
    _checks.function("loss_fn", loss_fn)
    mask = core.selection(params, wrt)
    n = core.num_selected(params, mask)
    _checks.integer("k", k, low=1)
    if k > n:
        raise ValueError(f"`k` must be <= the number of parameters {n}, got {k}")
    if which not in _WHICH:
        raise ValueError(f"`which` must be one of {_WHICH}, got {which!r}")
    if method not in _METHODS:
        raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}")
    method = ("dense" if n <= DENSE_MAX else "lanczos") if method == "auto" else method
    dtype = jnp.result_type(*jax.tree.leaves(params))
    tol = float(np.sqrt(core.eps(dtype))) if tol is None else tol
    _checks.positive("tol", tol)
    if method == "dense":
        vals, vecs, resid = core.dense_eigs(params, loss_fn=loss_fn, k=k, which=which, mask=mask)
        hvps = n
    else:
        num_iter = min(n, max(100, 4 * k)) if num_iter is None else num_iter
        _checks.integer("num_iter", num_iter, low=k)
        num_iter = min(num_iter, n)
        key = jax.random.PRNGKey(0) if key is None else key
        vals, vecs, resid = core.lanczos_eigs(
            params, key, loss_fn=loss_fn, k=k, which=which, num_iter=num_iter, mask=mask
        )
        hvps = num_iter + vals.shape[0]
    embed = core.flat_problem(loss_fn, params, mask)[2]
    resid = np.asarray(resid)
    scale = float(jnp.max(jnp.abs(vals)))
    return Eigenpairs(
        values=vals,
        flat_vectors=vecs,
        residuals=resid,
        converged=resid <= tol * max(scale, np.finfo(np.float64).tiny),
        method=method,
        size=n,
        num_hvps=int(hvps),
        tol=tol,
        info=dict(loss_info or {}),
        embed=embed,
    )


# --------------------------------------------------------------------------- critical points
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


def _default_rtol(params: PyTree) -> float:
    return float(np.sqrt(core.eps(jnp.result_type(*jax.tree.leaves(params)))))


def classify(
    loss_fn: LossFn,
    params: PyTree,
    *,
    k: int = 5,
    method: str = "auto",
    grad_rtol: float | None = None,
    eig_rtol: float | None = None,
    key: jax.Array | None = None,
    num_iter: int | None = None,
    wrt: Wrt = None,
    loss_info: Mapping | None = None,
) -> Classification:
    """Minimum / maximum / saddle / degenerate / not_critical, from the gradient and spectrum.

    Dense: every eigenvalue; Lanczos: the ``k`` at each end. Tolerances default to
    ``sqrt(eps)`` of the params' dtype.

    >>> classify(lambda p: p[0] ** 2 - p[1] ** 2, jnp.zeros(2)).kind
    'saddle'
    """
    mask = core.selection(params, wrt)
    n = core.num_selected(params, mask)
    full = method == "dense" or (method == "auto" and n <= DENSE_MAX)
    eig = eigenvalues(loss_fn, params, k=n if full else min(k, n), which="both", method=method,
                      key=key, num_iter=num_iter, wrt=wrt, loss_info=loss_info)  # fmt: skip
    grad_rtol = _default_rtol(params) if grad_rtol is None else grad_rtol
    eig_rtol = _default_rtol(params) if eig_rtol is None else eig_rtol
    _checks.non_negative("grad_rtol", grad_rtol)
    _checks.non_negative("eig_rtol", eig_rtol)
    x, f, _ = core.flat_problem(loss_fn, params, mask)
    grad_norm = float(jnp.linalg.norm(jax.grad(f)(x)))
    lam = np.asarray(eig.values, dtype=np.float64)
    scale = float(np.abs(lam).max())
    eig_tol = eig_rtol * scale
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
    )


def _vdot(a: PyTree, b: PyTree) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def escape_direction(
    loss_fn: LossFn,
    params: PyTree,
    *,
    method: str = "auto",
    eig_rtol: float | None = None,
    key: jax.Array | None = None,
    num_iter: int | None = None,
    wrt: Wrt = None,
) -> PyTree | None:
    """The unit direction of most negative curvature, signed to go downhill, or None.

    None when the smallest eigenvalue is not below ``-eig_rtol * max|lambda|``. The sign makes
    the directional derivative <= 0; at an exact critical point the largest entry is positive.

    >>> escape_direction(lambda p: p[0] ** 2 - p[1] ** 2, jnp.zeros(2))
    Array([0., 1.], dtype=float32)
    """
    eig = eigenvalues(loss_fn, params, k=1, which="both", method=method, key=key,
                      num_iter=num_iter, wrt=wrt)  # fmt: skip
    lam = np.asarray(eig.values, dtype=np.float64)
    eig_rtol = _default_rtol(params) if eig_rtol is None else eig_rtol
    if lam[-1] >= -eig_rtol * np.abs(lam).max():
        return None
    v = eig.vectors[-1]
    slope = float(_vdot(jax.grad(loss_fn)(params), v))
    flat = ravel_pytree(v)[0]
    biggest = float(flat[jnp.argmax(jnp.abs(flat))])
    flip = slope > 0 or (slope == 0 and biggest < 0)
    return jax.tree.map(lambda a: -a, v) if flip else v


class EscapeStep(NamedTuple):
    params: PyTree  # the new params (the old ones when no step was taken)
    step_size: float  # 0.0 when there is no negative curvature or no decrease was found
    loss_before: float
    loss_after: float
    direction: PyTree | None


def escape_step(
    loss_fn: LossFn, params: PyTree, *, step_size: float = 1.0, max_halvings: int = 30, **kwargs
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


# ------------------------------------------------------------------------ trace and density
class TraceEstimate(NamedTuple):
    """Hutchinson's ``E[z^T H z] = tr H``; ``estimate +- 2 std_error`` holds ~95% (CLT)."""

    estimate: float
    std_error: float  # sample standard deviation / sqrt(num_samples)
    num_samples: int
    samples: np.ndarray


def trace(
    loss_fn: LossFn, params: PyTree, num_samples: int, key: jax.Array, *, wrt: Wrt = None
) -> TraceEstimate:
    """The Hessian trace by Hutchinson's estimator with Rademacher probes (one HVP each).

    >>> est = trace(lambda p: jnp.sum(p**2), jnp.zeros(3), 4, jax.random.PRNGKey(0))
    >>> est.estimate, est.std_error
    (6.0, 0.0)
    """
    _checks.function("loss_fn", loss_fn)
    _checks.integer("num_samples", num_samples, low=2)
    mask = core.selection(params, wrt)
    s = np.asarray(
        core.hutchinson(params, key, loss_fn=loss_fn, num_samples=num_samples, mask=mask)
    )
    s64 = s.astype(np.float64)
    return TraceEstimate(
        float(s64.mean()), float(s64.std(ddof=1) / np.sqrt(num_samples)), num_samples, s
    )


@dataclasses.dataclass(frozen=True)
class SpectralDensity:
    """A smoothed eigenvalue density (integrating to 1; times ``size`` counts eigenvalues)."""

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray  # (num_probes, num_iter) Ritz values, the quadrature nodes
    weights: np.ndarray  # (num_probes, num_iter), each row sums to 1
    sigma: float  # standard deviation of the Gaussian broadening
    size: int
    info: dict

    def fraction_positive(self, tol: float = 0.0) -> float:
        """The estimated fraction of eigenvalues above ``tol`` (the "minimum ratio")."""
        return float(np.mean(np.sum(self.weights * (self.nodes > tol), axis=1)))


def spectral_density(
    loss_fn: LossFn,
    params: PyTree,
    key: jax.Array,
    *,
    num_probes: int = 4,
    num_iter: int = 64,
    sigma: float | None = None,
    num_points: int = 512,
    wrt: Wrt = None,
    loss_info: Mapping | None = None,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Ubaru et al. 2017; PyHessian) with Gaussian broadening.

    Each probe's Lanczos run gives nodes (Ritz values) and weights (squared first components of
    T's eigenvectors); the density averages Gaussians of std ``sigma`` (default: 1% of the
    spread of the nodes) at the nodes over probes.
    """
    _checks.function("loss_fn", loss_fn)
    _checks.integer("num_probes", num_probes, low=1)
    _checks.integer("num_iter", num_iter, low=1)
    _checks.integer("num_points", num_points, low=2)
    mask = core.selection(params, wrt)
    n = core.num_selected(params, mask)
    nodes, weights = core.slq(params, key, loss_fn=loss_fn, num_probes=num_probes,
                          num_iter=min(num_iter, n), mask=mask)  # fmt: skip
    nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
    spread = nodes.max() - nodes.min()
    sigma = float(0.01 * spread or 0.01 * abs(nodes).max() or 1e-3) if sigma is None else sigma
    _checks.positive("sigma", sigma)
    grid = np.linspace(nodes.min() - 5 * sigma, nodes.max() + 5 * sigma, num_points)
    z = (grid[None, None, :] - nodes[..., None]) / sigma
    gauss = np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))
    density = np.mean(np.sum(weights[..., None] * gauss, axis=1), axis=0)
    return SpectralDensity(grid, density, nodes, weights, sigma, n, dict(loss_info or {}))
