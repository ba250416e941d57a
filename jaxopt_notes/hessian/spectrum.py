"""Products, the dense Hessian and the extreme eigenpairs (dense ``eigh`` or Lanczos)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._types import PyTree
from jaxopt_notes.hessian import _core as core
from jaxopt_notes.hessian import krylov as lz

METHODS = ("auto", "dense", "lanczos")
STARTS = ("normal", "rademacher")
STEPS_PER_CALL = 1  # host loop: Lanczos steps per jitted call between convergence tests


def hvp(loss_fn: core.LossFn, params: PyTree, v: PyTree) -> PyTree:
    """The Hessian-vector product ``H v`` at ``params``, a pytree like ``params``.

    ``loss_fn`` may also be a :class:`~jaxopt_notes.hessian.DatasetLoss` (the mean loss over a
    data set) or a :class:`~jaxopt_notes.hessian.GaussNewton` (then ``G v``).

    >>> hvp(lambda p: p["x"] ** 2 - p["y"] ** 2, {"x": 0.0, "y": 0.0}, {"x": 1.0, "y": 1.0})
    {'x': Array(2., dtype=float32, ...), 'y': Array(-2., dtype=float32, ...)}
    """
    _checks.function("loss_fn", loss_fn)
    if not hasattr(loss_fn, "_hessian_spec"):
        forward = core.forward_mode(loss_fn, lambda p, u: core.hvp_flat(loss_fn, p, u), params, v)
        return core.hvp_flat(loss_fn, params, v, forward)
    spec, data = core.problem(loss_fn, params, None)
    flat_v = core.flat_view(v, spec.mask)[0]
    return core.embedder(params, spec.mask)(core.Operator(spec, params, data)(flat_v[None])[0])


@jax.jit(static_argnums=(0, 4))
def _batch_hvp(batch_loss_fn, params, v, batch, forward):
    return core.hvp_flat(lambda p: batch_loss_fn(p, batch), params, v, forward)


def dataset_hvp(
    batch_loss_fn: Callable[[PyTree, Any], jax.Array], params: PyTree, v: PyTree, batches: Iterable
) -> PyTree:
    """``H v`` of the mean loss over an iterable of batches, one batch in memory at a time.

    ``batch_loss_fn(params, batch)`` is the *mean* loss over the batch; a batch's weight is its
    example count. For arrays in memory, :func:`~jaxopt_notes.hessian.over_dataset` works with
    every tool.
    """
    total, count = None, 0
    for batch in batches:
        n = int(jax.tree.leaves(batch)[0].shape[0])
        probe = lambda p, u, b: core.hvp_flat(lambda q: batch_loss_fn(q, b), p, u)  # noqa: E731
        forward = core.forward_mode(batch_loss_fn, probe, params, v, batch)
        h = jax.tree.map(lambda a: a * n, _batch_hvp(batch_loss_fn, params, v, batch, forward))
        total = h if total is None else jax.tree.map(jnp.add, total, h)
        count += n
    if count == 0:
        raise ValueError("`batches` must hold at least one example, got none")
    return jax.tree.map(lambda a: a / count, total)


@jax.jit(static_argnames="spec")
def _dense_loss(params, *, spec):
    x, f, _ = core.flat_problem(spec.fn, params, spec.mask)
    return core.hessian_flat(f, x, spec.forward)


def dense_matrix(spec: core.Spec, params: PyTree, data: Any, block: int = 256) -> jax.Array:
    """The (n, n) curvature matrix, symmetrised: a loss by ``jacfwd(grad)``, else by blocks of
    products with unit vectors."""
    if spec.kind == "loss":
        h = _dense_loss(params, spec=spec)
    else:
        op = core.Operator(spec, params, data)
        eye = jnp.eye(op.size, dtype=op.dtype)
        h = jnp.concatenate([op(eye[i : i + block]) for i in range(0, op.size, block)])
    return (h + h.T) / 2


def dense(
    loss_fn: core.LossFn, params: PyTree, *, wrt: core.Wrt = None, max_size: int = 10_000
) -> jax.Array:
    """The (n, n) Hessian over the flattened (selected) params, for small models.

    >>> dense(lambda p: p[0] ** 2 / 20 + p[1] ** 2, jnp.zeros(2))
    Array([[0.1, 0. ],
           [0. , 2. ]], dtype=float32)
    """
    spec, data = core.problem(loss_fn, params, wrt)
    n = core.num_selected(params, spec.mask)
    if n > max_size:
        raise ValueError(f"`params` must have at most `max_size`={max_size} entries, got {n}")
    return dense_matrix(spec, params, data)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Eigenpairs:
    """Eigenvalues (descending), unit eigenvectors as pytrees like params, and their quality."""

    values: jax.Array
    flat_vectors: jax.Array  # (num values, n): the eigenvectors over the selected parameters
    residuals: np.ndarray  # ||H v - lambda v|| per pair (from the products; estimates if not)
    converged: np.ndarray  # residual <= tol * scale
    method: str  # "dense" or "lanczos"
    size: int  # number of parameters the Hessian covers
    num_hvps: int  # Hessian-vector products spent (dense: one per parameter)
    tol: float
    info: dict  # the caller's `loss_info`: loss convention, data size
    embed: Callable[[jax.Array], PyTree] = dataclasses.field(repr=False, compare=False)
    iterations: int = 0  # Lanczos steps run (dense: 0)
    scale: float = 0.0  # largest |Ritz value| seen: what `tol` is relative to
    loop: str = "none"  # "host" or "device" for Lanczos
    tridiagonal: lz.Tridiagonal | None = None  # host Lanczos: T's alpha, beta and basis

    def __repr__(self) -> str:
        vals = np.asarray(self.values, np.float64)
        shown = ", ".join(f"{v:.4g}" for v in (vals if len(vals) <= 4 else vals[[0, 1, -2, -1]]))
        more = "" if len(vals) <= 4 else f" ({len(vals)} in all)"
        return (
            f"Eigenpairs(method={self.method!r}, size={self.size}, values=[{shown}]{more}, "
            f"converged={int(np.sum(self.converged))}/{len(vals)}, num_hvps={self.num_hvps})"
        )

    def __str__(self) -> str:
        vals = np.asarray(self.values, np.float64)
        return (
            f"{len(vals)} eigenvalue(s) of a {self.size}-parameter Hessian by {self.method}, "
            f"from {vals.max():.4g} down to {vals.min():.4g}; "
            f"{int(np.sum(self.converged))} converged; {self.num_hvps} products"
        )

    @property
    def vectors(self) -> list[PyTree]:
        """The eigenvectors as pytrees like params, built on demand (costly for large n)."""
        return [self.embed(v) for v in self.flat_vectors]


def _pick(m: int, k: int, which: str) -> np.ndarray:
    """Lanczos's choice among ``m`` ascending eigenvalues, each index once, descending."""
    return np.unique(lz.wanted(m, k, which))[::-1]


@jax.jit(static_argnames=("spec", "k", "which", "max_iter", "tol", "products"))
def _lanczos_device(params, data, v0, key, *, spec, k, which, max_iter, tol, products):
    mv = core.matvec_fn(spec, params, data)
    return lz.lanczos_extremes(
        mv, v0, key, k=k, which=which, max_iter=max_iter, tol=tol, products=products
    )


def _start_vector(key, size, dtype, start):
    if start == "rademacher":  # what a Hutchinson / SLQ probe draws: the run doubles as one
        return jax.random.rademacher(key, (size,), dtype)
    return jax.random.normal(key, (size,), dtype)


@jax.jit(static_argnames=("size", "dtype", "start", "max_iter", "products"))
def _host_start(key, *, size, dtype, start, max_iter, products):
    """The start vector, the initial state and the restart key in one call."""
    v0 = _start_vector(key, size, dtype, start)
    return lz.init(v0, max_iter, products), v0 / jnp.linalg.norm(v0), jax.random.fold_in(key, 1)


def _lanczos(
    spec, params, data, key, *, k, which, max_iter, tol, loop, min_iter, start, chunk, keep
):
    op = core.Operator(spec, params, data, loop)
    if op.loop == "device":
        v0 = _start_vector(key, op.size, op.dtype, start)
        key = jax.random.fold_in(key, 1)
        res = _lanczos_device(
            params,
            data,
            v0,
            key,
            spec=spec,
            k=k,
            which=which,
            max_iter=max_iter,
            tol=tol,
            products=keep,
        )
        return op, res, None
    chunk = STEPS_PER_CALL if chunk is None else chunk
    state, v, key = _host_start(
        key, size=op.size, dtype=op.dtype, start=start, max_iter=max_iter, products=keep
    )
    state, host = lz.run_host(
        op.lanczos_advance,
        None,
        key,
        max_iter=max_iter,
        k=k,
        which=which,
        tol=tol,
        n=op.size,
        min_iter=min_iter,
        chunk=chunk,
        products=keep,
        start=(state, v),
    )
    host = lz.host_copy(state) if host is None else host
    res = lz.extract(state, k=k, which=which, host=host)
    alpha, beta = host[:2]
    basis = state.q[: res.steps]  # the Krylov space, e.g. for a deflated trace
    return op, res, lz.Tridiagonal(alpha[: res.steps], beta[: res.steps], basis)


def _validate(k, which, method, n):
    _checks.integer("k", k, low=1)
    if k > n:
        raise ValueError(f"`k` must be <= the number of parameters {n}, got {k}")
    _checks.one_of("which", which, lz.WHICH)
    _checks.one_of("method", method, METHODS)


def eigenvalues(
    loss_fn: core.LossFn,
    params: PyTree,
    k: int = 1,
    which: str = "largest",
    method: str = "auto",
    key: jax.Array | None = None,
    *,
    tol: float | None = None,
    max_iter: int | None = None,
    num_iter: int | None = None,
    wrt: core.Wrt = None,
    loss_info: Mapping | None = None,
    loop: str = "auto",
    residuals: bool = True,
    check_finite: bool = True,
    min_iter: int = 0,
    start: str = "normal",
    steps_per_call: int | None = None,
) -> Eigenpairs:
    """The ``k`` largest, ``k`` smallest or both ends of the Hessian spectrum at ``params``.

    ``method="auto"`` takes a dense ``eigh`` up to ``DENSE_MAX`` parameters, else Lanczos with
    full reorthogonalization. Lanczos stops once every wanted pair's residual is at most
    ``tol * scale`` (default ``tol = sqrt(eps)`` of the dtype; ``scale`` the largest ``|Ritz
    value|``), or after ``max_iter`` steps (default ``max(100, 4k)``); ``num_iter`` instead runs
    exactly that many steps. ``residuals=True`` computes the true ``||H v - lambda v||`` from
    the products the run made (``H v = sum_j s_j H q_j``, so the run keeps each ``H q_j``:
    memory as its basis, no extra product) so ``converged`` does not trust the recurrence's
    estimate ``|beta_j s_j|``; ``residuals=False`` keeps that estimate and halves the memory.
    A non-finite loss or gradient raises (Lanczos checks them only when a Ritz value comes out
    non-finite; ``check_finite=False`` skips the check for a caller that has made it);
    non-finite eigenvalues raise either way.

    ``min_iter`` runs at least that many Lanczos steps and ``start="rademacher"`` starts from a
    Rademacher vector: the run then doubles as an SLQ probe and a Hutchinson sample (its
    ``tridiagonal``, see :func:`~jaxopt_notes.hessian.analyse`). On the host loop
    ``steps_per_call`` steps run per jitted call between convergence tests (default 1: the
    run stops at the first step that passes; more saves round trips where a product costs
    little more than one, and may run up to that many - 1 steps more).

    >>> res = eigenvalues(lambda p: p[0] ** 2 - p[1] ** 2, jnp.zeros(2), k=1, which="both")
    >>> res.values, res.method
    (Array([ 2., -2.], dtype=float32), 'dense')
    """
    spec, data = core.problem(loss_fn, params, wrt)
    n = core.num_selected(params, spec.mask)
    _validate(k, which, method, n)
    method = ("dense" if n <= core.DENSE_MAX else "lanczos") if method == "auto" else method
    dtype = jnp.result_type(*jax.tree.leaves(params))
    tol = float(np.sqrt(core.eps(dtype))) if tol is None else tol
    _checks.positive("tol", tol)
    embed = core.embedder(params, spec.mask)
    if method == "dense":
        if check_finite:
            core.check_finite_loss(spec, params, data, "eigenvalues")
        h = dense_matrix(spec, params, data)
        lam, vecs = jnp.linalg.eigh(h)
        idx = _pick(n, k, which)
        vals, vecs = lam[idx], vecs[:, idx].T
        resid = np.asarray(jnp.linalg.norm(vecs @ h - vals[:, None] * vecs, axis=1))
        core.check_finite_values(vals, "the eigenvalues")
        scale = float(jnp.max(jnp.abs(lam)))
        return Eigenpairs(
            values=vals,
            flat_vectors=vecs,
            residuals=resid,
            converged=resid <= tol * max(scale, 1e-300),
            method="dense",
            size=n,
            num_hvps=n,
            tol=tol,
            info=dict(loss_info or {}),
            embed=embed,
            scale=scale,
        )
    if which == "both" and 2 * k >= n:
        k, which = n, "largest"  # both ends overlap: all of them, once each
    if num_iter is not None:
        _checks.integer("num_iter", num_iter, low=1)
        steps, stop = min(num_iter, n), None
    else:
        steps, stop = min(n, max(100, 4 * k) if max_iter is None else max_iter), tol
        _checks.integer("max_iter", steps, low=1)
    if steps < lz.num_wanted(k, which) and steps < n:
        raise ValueError(
            f"`max_iter` must be >= {lz.num_wanted(k, which)} for k={k} at {which!r}, got {steps}"
        )
    _checks.one_of("start", start, STARTS)
    _checks.integer("min_iter", min_iter)
    if steps_per_call is not None:
        _checks.integer("steps_per_call", steps_per_call, low=1)
    key = jax.random.PRNGKey(0) if key is None else key
    op, res, tri = _lanczos(
        spec,
        params,
        data,
        key,
        k=k,
        which=which,
        max_iter=steps,
        tol=stop,
        loop=loop,
        min_iter=min(min_iter, steps),
        start=start,
        chunk=steps_per_call,
        keep=residuals,
    )
    if check_finite and not np.all(np.isfinite(np.asarray(res.values))):
        core.check_finite_loss(spec, params, data, "eigenvalues")  # the loss's sentence first
    core.check_finite_values(res.values, "the Ritz values")
    resid = np.asarray(res.residuals, np.float64)  # true norms where the products were kept
    scale = float(res.scale)
    return Eigenpairs(
        values=res.values,
        flat_vectors=res.vectors,
        residuals=resid,
        converged=resid <= tol * max(scale, 1e-300),
        method="lanczos",
        size=n,
        num_hvps=int(res.steps),
        tol=tol,
        info=dict(loss_info or {}),
        embed=embed,
        iterations=int(res.steps),
        scale=scale,
        loop=op.loop,
        tridiagonal=tri,
    )
