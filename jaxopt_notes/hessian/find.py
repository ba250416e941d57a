"""Critical points of a loss: Newton-MR on the gradient, matrix-free, to saddles as to minima.

A critical point has ``grad L = 0`` whatever the signs of the Hessian. Gradient descent is drawn
to minima and pushed off saddles, so it cannot find saddles; Newton-MR (Roosta, Liu, Xu and
Mahoney 2022; on networks, Frye et al. 2019) instead drives ``||g||^2`` down. Each step solves
``H p = -g`` in the least-squares sense by MINRES (one Hessian-vector product an iteration; ``H``
may be indefinite and singular) and a backtracking line search takes the step once ``||g||^2``
has fallen enough. MINRES' residual ``r`` is orthogonal to ``H`` times its Krylov space, so
``<H p, g> = -(||g||^2 - ||r||^2) <= 0``: the step never points uphill in ``||g||^2``, and knowing
how far down it points costs no product.

Where ``g`` lies in the near-null space of ``H`` (a *gradient-flat* region, Frye et al.), no
``H p`` can cancel it: the residual stays near ``||g||`` and the search stalls. The result says
which of these happened, with the numbers. Asked to (``flat_descents``), it walks out instead:
``g`` is then nearly a null vector of ``H``, so ``L`` along ``-g`` is close to a straight line
downhill, and a line search on ``L`` (growing the step while the loss falls) crosses the flat
stretch in a few gradients; Newton-MR resumes where the loss turns up again. Such a walk goes
downhill, so it ends nearer minima than the point it started from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._types import PyTree
from jaxopt_notes.hessian import _core as core

STATUSES = ("critical", "gradient_flat", "stalled", "budget")
ARMIJO = 1e-4  # the share of the predicted fall of ||g||^2 a step must achieve
STALL_WINDOW = 50  # MINRES stops when its residual fell < 0.1% over this many iterations
NULL_RTOL = 1.5e-8  # singular values of T below this share of the largest count as zero
MU_FLOOR = 1e-10  # the first nonzero damping, relative to ||H||^2


@dataclasses.dataclass(frozen=True)
class CriticalPoint:
    """What :func:`find_critical` reached, and how honestly it can say so.

    ``status``: ``"critical"`` (``grad_norm <= tol = rtol * grad_norm_start``, or ``atol`` when
    that is larger), ``"gradient_flat"`` (the search stalled with most of ``g`` in the Hessian's
    near-null space: ``residual_ratio = ||H p + g|| / ||g|| >= flat_ratio``), ``"stalled"`` (no
    step lowered ``||g||`` although ``H`` could explain ``g``: usually the dtype's precision
    floor) or ``"budget"`` (``max_iter`` steps or ``max_hvps`` products spent).
    ``grad_curvature = ||H g|| / (||g|| * hessian_scale)`` is Frye et al.'s flatness measure
    at the last point (small: ``g`` is nearly a null vector of ``H``).
    """

    status: str
    params: PyTree
    loss: float
    grad_norm: float
    grad_norm_start: float
    rtol: float
    tol: float
    grad_norm_history: np.ndarray  # |g| at the start and after every accepted step
    loss_history: np.ndarray
    iterations: int
    num_hvps: int
    num_grads: int
    residual_ratio: float  # last MINRES ||H p + g|| / ||g||
    grad_curvature: float
    hessian_scale: float  # largest |Ritz value| MINRES met: an estimate of ||H||
    seconds: float
    method: str = "newton-mr"
    flat_descents: int = 0  # line searches on L taken to leave gradient-flat regions

    @property
    def reached(self) -> bool:
        """Whether the gradient norm is within the tolerance."""
        return self.status == "critical"

    def __repr__(self) -> str:
        return (
            f"CriticalPoint(status={self.status!r}, grad_norm={self.grad_norm:.3g}, "
            f"tol={self.tol:.3g}, loss={self.loss:.6g}, iterations={self.iterations}, "
            f"num_hvps={self.num_hvps})"
        )

    def __str__(self) -> str:
        what = {
            "critical": "reached a critical point",
            "gradient_flat": "stalled in a gradient-flat region (g nearly in H's null space)",
            "stalled": "stalled: no step lowered |g| (the precision floor?)",
            "budget": "ran out of budget",
        }[self.status]
        return (
            f"{what}: |g| {self.grad_norm:.3g} against tol {self.tol:.3g} "
            f"(rtol {self.rtol:.3g} x |g| {self.grad_norm_start:.3g} at the start), loss "
            f"{self.loss:.6g}, after {self.iterations} Newton-MR steps, {self.num_hvps} HVPs, "
            f"{self.seconds:.1f} s"
            + (f", {self.flat_descents} flat descents" if self.flat_descents else "")
        )


class _Krylov(NamedTuple):
    """The Lanczos run from ``g``: ``H Q^T = Q_+^T T`` with ``T`` the (k+1, k) tridiagonal."""

    basis: np.ndarray  # (k, n) orthonormal rows, the first -g / ||g||
    t: np.ndarray  # (k + 1, k)
    g_norm: float
    residual: float  # ||H p + g|| of the undamped step, H's near-null space (NULL_RTOL) cut off
    hg_norm: float  # ||H g|| / ||g||, from the first step
    scale: float  # largest |Ritz value|: an estimate of ||H||


def _lanczos(matvec: Callable, g: np.ndarray, rtol: float, max_iter: int) -> _Krylov:
    """Lanczos from ``-g`` (full reorthogonalisation, float64 on the host), run until MINRES'
    residual on ``H p = -g`` over the space is at most ``rtol ||g||``, or it stalls.

    The residual is tracked as MINRES does (Paige and Saunders): Givens rotations keep the
    QR factorisation of ``T``, and the last rotation's sine shrinks the residual norm.
    """
    g_norm = float(np.linalg.norm(g))
    basis = np.empty((max_iter + 1, g.size))  # filled row by row: no copy per step
    basis[0] = -g / g_norm
    alphas, betas = [], []
    c1, s1, c2, resid, beta = 1.0, 0.0, 1.0, g_norm, 0.0  # c1, s1: last rotation; c2: one before
    history = [resid]
    for k in range(1, max_iter + 1):
        q = basis[:k]
        w = matvec(q[-1]) - (beta * q[-2] if k > 1 else 0.0)
        alpha = float(q[-1] @ w)
        w -= alpha * q[-1]
        w -= q.T @ (q @ w)  # reorthogonalise: MINRES' residual needs an orthonormal basis
        beta_prev, beta = beta, float(np.linalg.norm(w))
        alphas.append(alpha)
        betas.append(beta)
        # T's new column (beta_prev, alpha, beta) through the two earlier rotations
        dbar = c2 * beta_prev
        gbar = c1 * alpha - s1 * dbar
        gamma = float(np.hypot(gbar, beta))
        c, s = (gbar / gamma, beta / gamma) if gamma > 0 else (1.0, 0.0)
        c1, s1, c2, resid = c, s, c1, resid * abs(s)
        history.append(resid)
        invariant = beta <= 1e-13 * max(np.abs(alphas).max(), max(betas))
        stalled = k > STALL_WINDOW and resid > 0.999 * history[-STALL_WINDOW - 1]
        if resid <= rtol * g_norm or invariant or stalled:  # stalled: the rest is in H's
            break  # near-null space, and more steps only grow the step along it
        basis[k] = w / beta
    t = np.zeros((len(alphas) + 1, len(alphas)))
    idx = np.arange(len(alphas))
    t[idx, idx], t[idx + 1, idx] = alphas, betas
    t[idx[:-1], idx[1:]] = betas[:-1]
    ritz = np.linalg.eigvalsh(t[:-1]) if len(alphas) else np.zeros(1)
    hg = float(np.hypot(alphas[0], betas[0]))
    kr = _Krylov(basis[: len(alphas)], t, g_norm, resid, hg, float(np.abs(ritz).max()))
    return kr._replace(residual=_damped_step(kr, 0.0)[1])  # with H's near-null space cut off


def _damped_step(kr: _Krylov, mu: float) -> tuple[np.ndarray, float]:
    """``argmin ||H p + g||^2 + mu ||p||^2`` over the Krylov space (Levenberg-Marquardt on
    the gradient; ``mu = 0`` is MINRES' step) and the model's ``||H p + g||``. The SVD of the
    small ``T`` gives every ``mu`` without another product."""
    u, sig, vt = np.linalg.svd(kr.t, full_matrices=False)
    rhs = kr.g_norm * u[0]  # U^T (||g|| e_1)
    keep = sig > NULL_RTOL * sig.max() if mu == 0 else sig > 0  # mu = 0: min-norm, null cut
    y = vt.T @ np.where(keep, sig * rhs / np.where(keep, sig**2 + mu, 1.0), 0.0)
    model = kr.t @ y
    model[0] -= kr.g_norm
    return y[: len(kr.basis)] @ kr.basis, float(np.linalg.norm(model))


PATIENCE = 5  # steps over which |g| must fall by 1% before a flat search is called stalled


def _validate(rtol, atol, max_iter, max_hvps, inner_max_iter, inner_rtol, flat_ratio, backtracks):
    _checks.real("rtol", rtol, low=0.0, high=1.0, low_open=True, high_open=True)
    _checks.non_negative("atol", atol)
    _checks.integer("max_iter", max_iter, low=1)
    _checks.integer("max_hvps", max_hvps, low=1)
    _checks.integer("inner_max_iter", inner_max_iter, low=1)
    if inner_rtol is not None:
        _checks.real("inner_rtol", inner_rtol, low=0.0, high=1.0, low_open=True, high_open=True)
    _checks.real("flat_ratio", flat_ratio, low=0.0, high=1.0, low_open=True)
    _checks.integer("max_backtracks", backtracks)


MAX_DOUBLINGS = 60  # a line search grows its step at most 2^60-fold


def _flat_descent(evaluate: Callable, x: np.ndarray, loss: float, g: np.ndarray, scale: float):
    """The lowest point of ``L`` found along ``-g``: from the gradient step ``|g| / scale``
    (1 when ``scale`` is 0) halved until the loss falls, then doubled while it still falls.
    Returns ``(x, loss, g, gradients spent)``, the point ``None`` when no step lowers the loss."""
    d = -g / np.linalg.norm(g)
    t = float(np.linalg.norm(g)) / scale if scale > 0 else 1.0
    best, spent = None, 0
    for _ in range(2 * MAX_DOUBLINGS):
        new_loss, new_g = evaluate(x + t * d)
        spent += 1
        lower = np.isfinite(new_loss) and new_loss < (loss if best is None else best[1])
        if lower:
            best, t = (x + t * d, new_loss, new_g), 2 * t
        elif best is None:
            t /= 2  # too far: the loss turned up (or overflowed) before this length
        else:
            break
    return (*best, spent) if best is not None else (None, None, None, spent)


def _damped_search(evaluate: Callable, x: np.ndarray, kr: _Krylov, mu: float, tries: int):
    """Levenberg-Marquardt on ``g``: the step of damping ``mu`` is taken once ``||g||^2`` fell
    by ``ARMIJO`` of what the linear model ``g + H p`` predicts; else ``mu`` grows (from
    ``MU_FLOOR * scale^2``, by 2, 4, 8, ...: Nielsen's rule, which does not oscillate), up to
    ``tries`` more times. Returns the new point, its loss and gradient, the gradients spent and
    the next ``mu`` (lowered by how well the model foretold the fall: back to 0, MINRES' own
    step, near a regular critical point); the point is ``None`` when every damping failed."""
    floor, grow = MU_FLOOR * kr.scale**2, 2.0
    for trial in range(1, tries + 2):
        step, model = _damped_step(kr, mu)
        loss, g = evaluate(x + step)
        predicted, fall = kr.g_norm**2 - model**2, kr.g_norm**2 - float(g @ g)
        if np.isfinite(loss) and np.all(np.isfinite(g)) and fall >= ARMIJO * predicted > 0:
            mu *= max(1 / 3, 1 - (2 * fall / predicted - 1) ** 3)
            return x + step, loss, g, trial, (0.0 if mu < floor else mu)
        mu, grow = max(mu * grow, floor), 2 * grow
    return None, None, None, tries + 1, mu


def _problem(loss_fn, params, wrt):
    """``evaluate(x) -> (loss, g)``, ``matvec_at(x) -> (v -> H v)`` over the flat selected
    params in float64, the start ``x`` and ``at(x) -> params``."""
    spec, data = core.problem(loss_fn, params, wrt)
    if spec.kind == "ggn":
        raise TypeError(
            "`loss_fn` must be a loss or a data set's mean loss, got a GaussNewton: its matrix "
            "is positive semi-definite, so a Newton step on it never finds a saddle"
        )
    x0, rebuild = core.flat_view(params, spec.mask)
    dtype = x0.dtype
    core.check_finite_loss(spec, params, data, "a critical-point search")

    def at(x):
        return rebuild(jnp.asarray(x, dtype))

    def evaluate(x):
        loss, g, _ = core.value_and_grad_jit(at(x), data, spec=spec)
        return float(loss), np.asarray(g, np.float64)

    def matvec_at(x):
        op = core.Operator(spec, at(x), data)  # linearised once at x, shared by every product
        return lambda v: np.asarray(op(jnp.asarray(v, dtype)[None])[0], np.float64)

    return evaluate, matvec_at, np.asarray(x0, np.float64), at


def find_critical(
    loss_fn: core.LossFn,
    params: PyTree,
    *,
    rtol: float | None = None,
    atol: float = 0.0,
    max_iter: int = 100,
    max_hvps: int = 20_000,
    inner_max_iter: int = 200,
    inner_rtol: float | None = None,
    flat_ratio: float = 0.5,
    max_backtracks: int = 30,
    flat_descents: int = 0,
    wrt: core.Wrt = None,
    callback: Callable[[int, float], Any] | None = None,
) -> CriticalPoint:
    """Drives ``||grad L||`` to zero from ``params`` by Newton-MR; finds saddles as minima.

    Stops with ``status="critical"`` once ``||g|| <= tol = max(rtol * ||g_0||, atol)``
    (``g_0`` the gradient at ``params``; ``rtol`` defaults to ``sqrt(eps)`` of the params'
    dtype: 1.5e-8 in float64, 3.5e-4 in float32, so pass float64 params for a tight point).
    Each step runs MINRES on ``H p = -g`` for up to ``inner_max_iter`` products, to a relative
    residual ``inner_rtol`` (default ``min(0.5, sqrt(||g|| / ||g_0||))``: loose far away,
    tight near the end), then halves the step up to ``max_backtracks`` times until ``||g||^2``
    falls. It gives up as ``"gradient_flat"`` when no step helps, or ``|g|`` fell by under 1%
    in 5 steps, while MINRES left at least ``flat_ratio`` of ``||g||`` unexplained; as
    ``"stalled"`` when no step helps otherwise; as ``"budget"`` after ``max_iter`` steps or
    ``max_hvps`` products. ``callback(step, grad_norm)`` is called after every step.
    ``flat_descents > 0``: where it would give up as gradient-flat, it instead takes a line
    search on ``L`` along ``-g`` (module docstring), at most that many times in all; the result's
    ``flat_descents`` says how many it took (a point reached so is biased towards minima).

    ``loss_fn`` may be a plain loss or an :func:`~jaxopt_notes.hessian.over_dataset` loss;
    ``wrt`` holds the other parameters fixed.

    On networks, expect the near-flat directions to decide the cost: after training the
    gradient lies mostly along eigenvalues near zero, which MINRES resolves slowly, so a
    search from a trained point may end ``"budget"`` or ``"gradient_flat"`` (Frye et al. found
    the same); from beside a non-degenerate critical point it converges in a few steps
    (``bench_results/saddles/find_critical.json``).

    From beside the saddle of ``x^2 - y^2 + y^4`` it goes to the saddle, not to a minimum:

    >>> import jax.numpy as jnp
    >>> found = find_critical(lambda p: p[0] ** 2 - p[1] ** 2 + p[1] ** 4, jnp.array([0.3, 0.2]))
    >>> found.status, bool(jnp.abs(found.params).max() < 1e-6)
    ('critical', True)
    """
    core.selection(params, wrt)  # float leaves, a valid `wrt`: before any default from them
    eps = float(np.sqrt(core.eps(jnp.result_type(*jax.tree.leaves(params)))))
    rtol = eps if rtol is None else rtol
    limits = (max_iter, max_hvps, inner_max_iter, inner_rtol, flat_ratio, max_backtracks)
    _validate(rtol, atol, *limits)
    _checks.integer("flat_descents", flat_descents)
    if callback is not None:
        _checks.function("callback", callback)
    start = time.perf_counter()
    with _one_blas_thread():
        return _search(
            loss_fn,
            params,
            wrt,
            tols=(rtol, atol),
            limits=limits,
            walks=flat_descents,
            callback=callback,
            start=start,
        )


def _one_blas_thread():
    """BLAS on one thread for the host's Krylov vectors: their products are small (k x n
    matrix-vector) and OpenBLAS' threads cost more than they give. On 2 shared cores an
    11,260-parameter search ran 20.8 s with them, 6.6 s without (bench_results/saddles/).
    threadpoolctl comes with scikit-learn; without it nothing changes."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _search(loss_fn, params, wrt, *, tols, limits, walks, callback, start) -> CriticalPoint:
    rtol, atol = tols
    max_iter, max_hvps, inner_max_iter, inner_rtol, flat_ratio, max_backtracks = limits
    evaluate, matvec_at, x, at = _problem(loss_fn, params, wrt)
    loss, g = evaluate(x)
    norms, losses = [float(np.linalg.norm(g))], [loss]
    tol = max(rtol * norms[0], atol)
    status, hvps, grads, kr, ratio, mu = "budget", 0, 1, None, 0.0, 0.0
    walked, since = 0, 0  # walks taken; where the stall window starts (after the last walk)
    for step in range(max_iter + 1):
        if norms[-1] <= tol:
            status = "critical"
            break
        if step == max_iter or hvps >= max_hvps:
            break
        eta = min(0.5, np.sqrt(norms[-1] / norms[0])) if inner_rtol is None else inner_rtol
        kr = _lanczos(matvec_at(x), g, eta, min(inner_max_iter, max_hvps - hvps))
        hvps, ratio = hvps + len(kr.basis), kr.residual / norms[-1]
        new, new_loss, new_g, tries, mu = _damped_search(evaluate, x, kr, mu, max_backtracks)
        grads += tries
        flat = len(norms) - since > PATIENCE and norms[-1] > 0.99 * norms[-1 - PATIENCE]
        if (new is None or flat) and ratio >= flat_ratio:
            if walked == walks:
                status = "gradient_flat"
                break
            new, new_loss, new_g, spent = _flat_descent(evaluate, x, loss, g, kr.scale)
            grads, walked, mu, since = grads + spent, walked + 1, 0.0, len(norms)
        if new is None:
            status = "gradient_flat" if ratio >= flat_ratio else "stalled"
            break
        x, loss, g = new, new_loss, new_g
        norms.append(float(np.linalg.norm(g)))
        losses.append(loss)
        if callback is not None:
            callback(step + 1, norms[-1])
    scale = kr.scale if kr is not None else 0.0
    return CriticalPoint(
        status=status,
        params=at(x),
        loss=loss,
        grad_norm=norms[-1],
        grad_norm_start=norms[0],
        rtol=float(rtol),
        tol=float(tol),
        grad_norm_history=np.asarray(norms),
        loss_history=np.asarray(losses),
        iterations=len(norms) - 1,
        num_hvps=hvps,
        num_grads=grads,
        residual_ratio=float(ratio),
        grad_curvature=float(kr.hg_norm / scale) if scale > 0 else 0.0,
        hessian_scale=float(scale),
        seconds=time.perf_counter() - start,
        flat_descents=walked,
    )
