"""Hutchinson's trace and stochastic Lanczos quadrature, with blocks of probes at once.

Probes go through the curvature operator as a block (``vmap`` over probes): on a conv net one
batched product costs less per probe than single ones. Each block is one jitted call driven
from the host, so no product sits in a loop body (slow on XLA:CPU; see ``_core``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._types import PyTree
from jaxopt_notes.hessian import _core as core
from jaxopt_notes.hessian import krylov as lz


class TraceEstimate(NamedTuple):
    """Hutchinson's ``E[z^T H z] = tr H``; ``estimate +- 2 std_error`` holds ~95% (CLT).

    With deflation, ``estimate = exact_part + mean(samples)``: the trace on a Krylov space,
    exact, plus the probes' estimate of the rest. HVPs spent: ``num_samples + deflated``.
    """

    estimate: float
    std_error: float  # sample standard deviation / sqrt(num_samples)
    num_samples: int  # probes used (one HVP each)
    samples: np.ndarray
    converged: bool = True  # with `rtol`: whether std_error <= rtol * |estimate| was reached
    deflated: int = 0  # Lanczos steps whose Krylov space was taken exactly (one HVP each)
    exact_part: float = 0.0  # the trace of H on that space (the sum of T's diagonal)


def trace(
    loss_fn: core.LossFn,
    params: PyTree,
    num_samples: int,
    key: jax.Array,
    *,
    wrt: core.Wrt = None,
    block_size: int = 10,
    rtol: float | None = None,
    loop: str = "auto",
    check_finite: bool = True,
    prior: Sequence[float] = (),
    deflate: int | lz.Tridiagonal = 0,
) -> TraceEstimate:
    """The trace by Hutchinson's estimator with Rademacher probes (one HVP each).

    Probes run ``block_size`` at a time. With ``rtol`` it stops after the first block at which
    ``std_error <= rtol * |estimate|`` (``num_samples`` is then the cap); else it uses all.
    ``prior`` are samples ``z^T H z`` already drawn with independent probes (e.g. ``n alpha_0``
    of a Lanczos run started from a Rademacher ``z``): they count among the ``num_samples``.

    ``deflate=m`` first runs ``m`` Lanczos steps from an independent start and takes the trace
    on their Krylov space ``Q`` exactly (``tr Q^T H Q``, the sum of T's diagonal); the probes,
    projected off ``Q``, estimate only the rest, ``tr (I - QQ^T) H (I - QQ^T)``. The extreme
    eigenvalues, which a Krylov space finds first, carry most of ``||H||_F^2`` and so most of
    the probes' variance: a few such steps can spare many probes (the idea of Hutch++, Meyer
    et al. 2021, with a Krylov space as in Chen & Hallman 2023). Still unbiased. ``deflate`` may
    also be the :class:`~jaxopt_notes.hessian.Tridiagonal` of an earlier run at this point
    (``Eigenpairs.tridiagonal``, with its basis): its space then costs no product, and its
    start must be independent of ``key``.

    >>> est = trace(lambda p: jnp.sum(p**2), jnp.zeros(3), 4, jax.random.PRNGKey(0))
    >>> est.estimate, est.std_error
    (6.0, 0.0)
    >>> a = jnp.diag(jnp.array([50.0, -20.0, 0.0, 0.0, 0.0, 0.0]))  # rank 2: 3 steps span it
    >>> est = trace(lambda p: 0.5 * p @ a @ p, jnp.zeros(6), 4, jax.random.PRNGKey(0), deflate=3)
    >>> round(est.estimate, 3), round(est.std_error, 3), est.num_samples + est.deflated
    (30.0, 0.0, 7)
    """
    _checks.integer("num_samples", num_samples, low=2)
    _checks.integer("block_size", block_size, low=1)
    if not isinstance(deflate, lz.Tridiagonal):
        _checks.integer("deflate", deflate)
    elif deflate.basis is None:
        raise ValueError("`deflate` must be a step count or a Tridiagonal with its basis, got none")
    if rtol is not None:
        _checks.positive("rtol", rtol)
    if (isinstance(deflate, lz.Tridiagonal) or deflate) and len(prior):
        what = "a Krylov basis" if isinstance(deflate, lz.Tridiagonal) else deflate
        raise ValueError(
            f"`prior` must be empty with `deflate`={what}: its samples z^T H z are of the "
            "whole H, not of the part off the Krylov space"
        )
    spec, data = core.problem(loss_fn, params, wrt)
    if check_finite:  # False: the caller has checked the loss and gradient
        core.check_finite_loss(spec, params, data, "a trace")
    op = core.Operator(spec, params, data, loop)
    samples = [float(v) for v in prior]
    if len(samples) >= num_samples:
        raise ValueError(f"`prior` must hold fewer than `num_samples`={num_samples} samples")
    if not isinstance(deflate, lz.Tridiagonal):
        deflate = _krylov_space(op, min(deflate, op.size), jax.random.fold_in(key, 1))
    basis = None if deflate is None else deflate.basis
    exact = 0.0 if deflate is None else float(np.sum(np.asarray(deflate.alpha, np.float64)))
    core.check_finite_values([exact], "the trace on the Krylov space")
    keys = jax.random.split(key, num_samples - len(samples))
    for start in range(0, len(keys), block_size):
        z = jax.vmap(lambda k: jax.random.rademacher(k, (op.size,), op.dtype))(
            keys[start : start + block_size]
        )
        if basis is not None:
            z = z - (z @ basis.T) @ basis
        samples.extend(np.asarray(jnp.sum(z * op(z), axis=1)))
        done = _std_error(samples) <= rtol * abs(exact + np.mean(samples)) if rtol else False
        if len(samples) >= 2 and done:
            break
    s = np.asarray(samples)
    core.check_finite_values(s, "the trace's probe values z^T H z")
    estimate = exact + float(s.astype(np.float64).mean())
    converged = rtol is None or _std_error(s) <= rtol * abs(estimate)
    m = 0 if basis is None else basis.shape[0]
    return TraceEstimate(estimate, _std_error(s), len(s), s, converged, m, exact)


def _krylov_space(op: core.Operator, steps: int, key: jax.Array) -> lz.Tridiagonal | None:
    """``steps`` Lanczos steps from a random start, with their orthonormal basis (None: 0)."""
    if steps == 0:
        return None
    v0 = jax.random.normal(key, (op.size,), op.dtype)
    state = lz.run_host(
        op.lanczos_advance, v0, key, max_iter=steps, k=1, which="largest", tol=None, n=op.size
    )[0]
    return lz.tridiagonal(state)


def _std_error(samples) -> float:
    s = np.asarray(samples, np.float64)
    return float(s.std(ddof=1) / np.sqrt(len(s))) if len(s) > 1 else float("inf")


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
    num_hvps: int = 0

    def fraction_positive(self, tol: float = 0.0) -> float:
        """The estimated fraction of eigenvalues above ``tol`` (the "minimum ratio")."""
        return float(np.mean(np.sum(self.weights * (self.nodes > tol), axis=1)))


@jax.jit(static_argnames=("spec", "num_iter"))
def _slq_device(params, data, v0, keys, *, spec, num_iter):
    mv = jax.vmap(core.matvec_fn(spec, params, data))

    def body(_, carry):
        states, vs = carry
        return lz.block_step(states, mv(vs), keys)

    states = jax.vmap(lambda v: lz.init(v, num_iter))(v0)
    vs = v0 / jnp.linalg.norm(v0, axis=1, keepdims=True)
    return jax.lax.fori_loop(0, num_iter, body, (states, vs))[0]


def slq_nodes(
    spec: core.Spec,
    params: PyTree,
    data: Any,
    key: jax.Array,
    *,
    num_probes: int,
    num_iter: int,
    loop: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Ritz values and squared first components of ``num_probes`` Lanczos runs, as one block."""
    op = core.Operator(spec, params, data, loop)
    k1, k2 = jax.random.split(key)
    v0 = jax.vmap(lambda k: jax.random.rademacher(k, (op.size,), op.dtype))(
        jax.random.split(k1, num_probes)
    )
    keys = jax.random.split(k2, num_probes)
    if op.loop == "device":
        states = _slq_device(params, data, v0, keys, spec=spec, num_iter=num_iter)
    else:
        states = jax.vmap(lambda v: lz.init(v, num_iter))(v0)
        vs = v0 / jnp.linalg.norm(v0, axis=1, keepdims=True)
        for i in range(num_iter):
            states, vs = lz.block_step_jit(states, op(vs), keys, lz.rows_for(i + 1, num_iter + 1))
    theta, s = jax.vmap(lambda a, b: lz.ritz(lz.Tridiagonal(a, b, None)))(states.alpha, states.beta)
    return np.asarray(theta, np.float64), np.asarray(s[:, 0, :] ** 2, np.float64)


def spectral_density(
    loss_fn: core.LossFn,
    params: PyTree,
    key: jax.Array,
    *,
    num_probes: int = 4,
    num_iter: int = 64,
    sigma: float | None = None,
    num_points: int = 512,
    wrt: core.Wrt = None,
    loss_info: Mapping | None = None,
    loop: str = "auto",
    check_finite: bool = True,
) -> SpectralDensity:
    """Stochastic Lanczos quadrature (Ubaru et al. 2017; PyHessian) with Gaussian broadening.

    Each probe's Lanczos run gives nodes (Ritz values) and weights (squared first components of
    T's eigenvectors); the density averages Gaussians of std ``sigma`` (default: 1% of the
    spread of the nodes) at the nodes over probes. All probes run as one block.
    """
    _checks.integer("num_probes", num_probes, low=1)
    _checks.integer("num_iter", num_iter, low=1)
    _checks.integer("num_points", num_points, low=2)
    spec, data = core.problem(loss_fn, params, wrt)
    if check_finite:  # False: the caller has checked the loss and gradient
        core.check_finite_loss(spec, params, data, "a spectral density")
    n = core.num_selected(params, spec.mask)
    num_iter = min(num_iter, n)
    nodes, weights = slq_nodes(
        spec, params, data, key, num_probes=num_probes, num_iter=num_iter, loop=loop
    )
    return from_nodes(
        nodes,
        weights,
        n,
        sigma=sigma,
        num_points=num_points,
        info=loss_info,
        num_hvps=num_probes * num_iter,
    )


def tridiagonal_nodes(tri: lz.Tridiagonal, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """One SLQ probe of ``steps`` steps from a longer Lanczos run: the Ritz values of ``T``'s
    leading block and its eigenvectors' squared first components (the run must have started
    from the probe, e.g. a Rademacher vector: the leading block is that probe's own ``T``)."""
    theta, s, _ = lz.ritz_pairs(tri.alpha, tri.beta, int(steps))
    return theta[None], s[:1] ** 2


def from_nodes(
    nodes: np.ndarray,
    weights: np.ndarray,
    size: int,
    *,
    sigma: float | None = None,
    num_points: int = 512,
    info: Mapping | None = None,
    num_hvps: int = 0,
) -> SpectralDensity:
    """The smoothed density of SLQ ``nodes`` and ``weights``, each ``(num_probes, steps)``."""
    core.check_finite_values(nodes, "the spectral density's Ritz values")
    spread = nodes.max() - nodes.min()
    sigma = float(0.01 * spread or 0.01 * abs(nodes).max() or 1e-3) if sigma is None else sigma
    _checks.positive("sigma", sigma)
    grid = np.linspace(nodes.min() - 5 * sigma, nodes.max() + 5 * sigma, num_points)
    z = (grid[None, None, :] - nodes[..., None]) / sigma
    gauss = np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))
    density = np.mean(np.sum(weights[..., None] * gauss, axis=1), axis=0)
    return SpectralDensity(grid, density, nodes, weights, sigma, size, dict(info or {}), num_hvps)
