"""Second-order steps as optax gradient transformations, for small problems.

Damped Newton and saddle-free Newton form the dense Hessian (n x n, ``hessian.dense``), so
they suit models of at most a few thousand parameters; the saddle-escape step finds its direction
by Lanczos (``hessian.lanczos_extremes``, Hessian-vector products only), so it runs on a LeNet;
L-BFGS keeps only ``memory_size`` pairs of vectors. Each needs the loss, which it takes as an
extra argument of ``update`` (an ``optax.GradientTransformationExtraArgs``)::

    opt = saddle_free_newton(learning_rate=1.0, damping=1e-3)
    updates, state = opt.update(grads, state, params, loss_fn=loss_fn)

``loss_fn(params) -> scalar`` is the same function the gradients came from; ``optax.chain``
passes ``loss_fn`` on to the links that accept it. Inside ``jit`` pass a Python function (not an
array) and keep it the same object, or each call compiles anew.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from jaxopt_notes import _checks, hessian
from jaxopt_notes._types import PyTree


class CountState(NamedTuple):
    count: jax.Array


def _flat_hessian(loss_fn: Callable | None, params: PyTree, name: str):
    """``(x, g, H, unravel)`` at ``params``: flat params, gradient and dense Hessian."""
    if loss_fn is None or params is None:
        raise ValueError(
            f"`{name}` needs `params` and `loss_fn`: call update(g, s, params, loss_fn=f)"
        )
    x, unravel = ravel_pytree(params)
    f = lambda v: loss_fn(unravel(v))  # noqa: E731
    return x, jax.grad(f)(x), hessian.dense(f, x), unravel


def _dense_step(
    name: str, learning_rate: float, direction: Callable
) -> optax.GradientTransformationExtraArgs:
    """A transform that moves by ``-learning_rate * direction(H, g)``."""

    def init_fn(params):
        del params
        return CountState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, *, loss_fn=None, **extra_args):
        del updates, extra_args  # the exact gradient is recomputed beside the Hessian
        _, g, h, unravel = _flat_hessian(loss_fn, params, name)
        step = -learning_rate * direction(h, g)  # `hessian.dense` is symmetrised
        return unravel(step.astype(g.dtype)), CountState(count=state.count + 1)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def newton(
    learning_rate: float = 1.0, *, damping: float = 0.0
) -> optax.GradientTransformationExtraArgs:
    """Damped Newton: ``-learning_rate * (H + damping I)^{-1} g``.

    Newton's step goes to the critical point of the local quadratic model, whatever its kind:
    at a saddle's neighbourhood it jumps *onto* the saddle (Dauphin et al. 2014). ``damping``
    (Levenberg) shortens the step along small eigenvalues; it does not fix negative ones.
    """
    _checks.positive("learning_rate", learning_rate)
    _checks.non_negative("damping", damping)
    return _dense_step(
        "newton", learning_rate, lambda h, g: jnp.linalg.solve(h + damping * jnp.eye(len(g)), g)
    )


def saddle_free_newton(
    learning_rate: float = 1.0, *, damping: float = 1e-4
) -> optax.GradientTransformationExtraArgs:
    """Saddle-free Newton (Dauphin et al. 2014): ``-learning_rate * (|H| + damping I)^{-1} g``.

    ``|H| = V |Lambda| V^T`` flips negative curvature: along an eigenvector with a negative
    eigenvalue the step goes downhill, away from the saddle, instead of onto it.
    """
    _checks.positive("learning_rate", learning_rate)
    _checks.non_negative("damping", damping)

    def direction(h, g):
        lam, v = jnp.linalg.eigh(h)
        return v @ ((v.T @ g) / (jnp.abs(lam) + damping))

    return _dense_step("saddle_free_newton", learning_rate, direction)


class EscapeSaddlesState(NamedTuple):
    count: jax.Array
    escapes: jax.Array  # how many steps were replaced by an escape step


def escape_saddles(
    step_size: float = 0.1,
    *,
    grad_tol: float = 1e-6,
    eig_tol: float = 1e-6,
    max_iter: int = 100,
    tol: float | None = None,
    seed: int = 0,
) -> optax.GradientTransformationExtraArgs:
    """Where descent stalls at a saddle, a step along the most negative curvature instead.

    Put it last in a chain: when ``|grad| <= grad_tol`` and the smallest Hessian eigenvalue is
    ``< -eig_tol``, the incoming updates are replaced by ``step_size * v`` (``v`` the unit
    eigenvector, signed by ``hessian.downhill``: ``v . grad <= 0``); otherwise they pass
    unchanged. The eigenpair comes from Lanczos (at most ``max_iter`` Hessian-vector products,
    stopping at ``tol``, default ``sqrt(eps)``), run only where the gradient has stalled.
    """
    _checks.positive("step_size", step_size)
    _checks.non_negative("grad_tol", grad_tol)
    _checks.non_negative("eig_tol", eig_tol)
    _checks.integer("max_iter", max_iter, low=1)
    if tol is not None:
        _checks.positive("tol", tol)

    def init_fn(params):
        del params
        return EscapeSaddlesState(jnp.zeros([], jnp.int32), jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, *, loss_fn=None, **extra_args):
        del extra_args
        if loss_fn is None or params is None:
            raise ValueError(
                "`escape_saddles` needs `params` and `loss_fn`: call "
                "update(g, s, params, loss_fn=f)"
            )
        x, unravel = ravel_pytree(params)
        f = lambda v: loss_fn(unravel(v))  # noqa: E731
        g = jax.grad(f)(x)
        flat_updates = ravel_pytree(updates)[0]

        def escape(_):
            key = jax.random.fold_in(jax.random.PRNGKey(seed), state.count)
            hv = lambda v: jax.jvp(jax.grad(f), (x,), (v,))[1]  # noqa: E731
            low = hessian.lanczos_extremes(
                hv,
                jax.random.normal(key, x.shape, x.dtype),
                key,
                k=1,
                which="smallest",
                max_iter=max_iter,
                tol=tol or float(jnp.finfo(x.dtype).eps) ** 0.5,
            )
            v = hessian.downhill(low.vectors[0], g)
            go = low.values[0] < -eig_tol
            return jnp.where(go, step_size * v, flat_updates).astype(g.dtype), go

        stalled = jnp.linalg.norm(g) <= grad_tol
        new, went = jax.lax.cond(
            stalled, escape, lambda _: (flat_updates.astype(g.dtype), jnp.array(False)), None
        )
        new_state = EscapeSaddlesState(state.count + 1, state.escapes + went.astype(jnp.int32))
        return unravel(new), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ------------------------------------------------------------------------------------ L-BFGS
class LbfgsState(NamedTuple):
    count: jax.Array
    s: jax.Array  # (memory_size, n) parameter differences, newest first
    y: jax.Array  # (memory_size, n) gradient differences, newest first
    rho: jax.Array  # (memory_size,) 1 / (y . s); 0 marks an empty slot
    prev_params: jax.Array  # (n,) flat params of the last update
    prev_grads: jax.Array  # (n,)
    step_size: jax.Array  # the step length the line search took last time


def _two_loop(g: jax.Array, s: jax.Array, y: jax.Array, rho: jax.Array) -> jax.Array:
    """``H_k g`` by Nocedal's two-loop recursion, ``H_0 = gamma I`` from the newest pair."""

    def backward(q, pair):
        s_i, y_i, rho_i = pair
        a = rho_i * jnp.vdot(s_i, q)
        return q - a * y_i, a

    q, alphas = jax.lax.scan(backward, g, (s, y, rho))
    yy = jnp.vdot(y[0], y[0])
    gamma = jnp.where(rho[0] > 0, jnp.vdot(s[0], y[0]) / jnp.where(yy > 0, yy, 1), 1)

    def forward(r, pair):
        s_i, y_i, rho_i, a = pair
        return r + s_i * (a - rho_i * jnp.vdot(y_i, r)), None

    r, _ = jax.lax.scan(forward, gamma * q, (s, y, rho, alphas), reverse=True)
    return r


def _wolfe_search(f, x, d, slope, alpha0, c1, c2, max_steps):
    """A step length meeting the weak Wolfe conditions, by bisection (Lewis & Overton 2013).

    Armijo, ``f(x + a d) <= f(x) + c1 a g.d``, bounds it above; the curvature condition,
    ``g(x + a d).d >= c2 g.d``, bounds it below and keeps ``y.s > 0`` for the next pair.
    """
    f0 = f(x)
    value_and_slope = lambda a: jax.jvp(f, (x + a * d,), (d,))  # noqa: E731

    def body(carry):
        lo, hi, a, i, _ = carry
        value, new_slope = value_and_slope(a)
        armijo = value <= f0 + c1 * a * slope
        curvature = new_slope >= c2 * slope
        lo, hi = jnp.where(armijo, a, lo), jnp.where(armijo, hi, a)
        nxt = jnp.where(jnp.isinf(hi), 2 * lo, (lo + hi) / 2)
        done = armijo & curvature
        return lo, hi, jnp.where(done, a, nxt), i + 1, done

    zero, inf = jnp.zeros_like(alpha0), jnp.full_like(alpha0, jnp.inf)
    carry = (zero, inf, alpha0, 0, jnp.array(False))
    lo, _, a, _, done = jax.lax.while_loop(lambda c: ~c[4] & (c[3] < max_steps), body, carry)
    return jnp.where(done, a, jnp.where(lo > 0, lo, a))  # else the last Armijo step, if any


def _remember(state: LbfgsState, x: jax.Array, g: jax.Array):
    """Adds the newest (s, y) pair when it has positive curvature ``y . s > 0``."""
    s, y = x - state.prev_params, g - state.prev_grads
    sy = jnp.vdot(s, y)
    keep = (state.count > 0) & (
        sy > jnp.finfo(g.dtype).eps * jnp.linalg.norm(s) * jnp.linalg.norm(y)
    )

    def push(hist, new):
        return jnp.where(keep, jnp.roll(hist, 1, axis=0).at[0].set(new), hist)

    rho = jnp.where(sy > 0, 1 / jnp.where(sy > 0, sy, 1), 0).astype(g.dtype)
    return push(state.s, s), push(state.y, y), push(state.rho, rho)


def lbfgs(
    learning_rate: float = 1.0,
    *,
    memory_size: int = 10,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_linesearch_steps: int = 30,
) -> optax.GradientTransformationExtraArgs:
    """L-BFGS (Nocedal 1980; Liu & Nocedal 1989) with a weak Wolfe line search.

    The direction is ``d = -H_k g`` from the last ``memory_size`` pairs
    ``(s, y) = (x_{k+1} - x_k, g_{k+1} - g_k)`` (pairs with ``y . s <= 0`` are skipped). With
    ``update(..., loss_fn=f)`` the step length starts at ``learning_rate`` and is bisected or
    doubled until ``f(x + a d) <= f(x) + c1 a g.d`` and ``g(x + a d).d >= c2 g.d`` (at most
    ``max_linesearch_steps`` tries); without ``loss_fn`` it is ``learning_rate``.
    ``params`` are required: the pairs come from successive params.
    """
    _checks.positive("learning_rate", learning_rate)
    _checks.integer("memory_size", memory_size, low=1)
    _checks.real("c1", c1, low=0.0, high=1.0, low_open=True, high_open=True)
    _checks.real("c2", c2, low=c1, high=1.0, low_open=True, high_open=True)
    _checks.integer("max_linesearch_steps", max_linesearch_steps, low=1)

    def init_fn(params):
        x = ravel_pytree(params)[0]
        hist = jnp.zeros((memory_size, x.shape[0]), x.dtype)
        zero = jnp.zeros([], x.dtype)
        return LbfgsState(
            jnp.zeros([], jnp.int32),
            hist,
            hist,
            jnp.zeros(memory_size, x.dtype),
            jnp.zeros_like(x),
            jnp.zeros_like(x),
            zero,
        )

    def update_fn(updates, state, params=None, *, loss_fn=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("`lbfgs` needs `params`: call update(grads, state, params)")
        x, unravel = ravel_pytree(params)
        g = ravel_pytree(updates)[0]
        s, y, rho = _remember(state, x, g)
        d = -_two_loop(g, s, y, rho)
        slope = jnp.vdot(g, d)
        d, slope = jnp.where(slope < 0, d, -g), jnp.where(slope < 0, slope, -jnp.vdot(g, g))
        alpha = jnp.asarray(learning_rate, g.dtype)
        if loss_fn is not None:
            f = lambda v: loss_fn(unravel(v))  # noqa: E731
            alpha = _wolfe_search(f, x, d, slope, alpha, c1, c2, max_linesearch_steps)
        new_state = LbfgsState(state.count + 1, s, y, rho, x, g, alpha)
        return unravel(alpha * d), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
