"""Lanczos with full reorthogonalisation, stopping when the wanted Ritz pairs have converged.

After ``j`` steps the Ritz pair ``(theta_i, y_i)`` of the tridiagonal ``T_j`` has residual
``||H y_i - theta_i y_i|| = |beta_j s_{j,i}|`` (``s`` the eigenvectors of ``T_j``), read off ``T``
for free. A pair has converged when that residual is at most ``tol * scale``, ``scale`` the
largest ``|theta|`` so far (the spectrum's scale), which bounds the eigenvalue's error by the
same amount. The loop stops when every wanted pair has converged, the space is exhausted, or
``max_iter`` steps have run; it never stops on a step that broke down (an invariant subspace:
the restart may still find a copy of a repeated eigenvalue).

One step (:func:`step`), one stopping rule (:func:`converged`) and one extraction
(:func:`extract`), each over :func:`ritz_pairs`, and two drivers over them: :func:`run_host`
calls a jitted step from Python and tests convergence on the host, ``T`` solved by NumPy
(XLA:CPU's loop bodies are slow, see ``_core``); :func:`lanczos_extremes` is one traceable
``while_loop`` (accelerators; also usable inside ``jit``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks

WHICH = ("largest", "smallest", "both")


class Tridiagonal(NamedTuple):
    """``m`` Lanczos steps: ``T = tridiag(beta[:-1], alpha, beta[:-1])``, orthonormal ``basis``.

    ``beta[-1]`` is the norm of the last residual. A zero inside ``beta`` marks a restart after
    the Krylov space became invariant (the eigenvalues of T stay exact).
    """

    alpha: jax.Array  # (m,)
    beta: jax.Array  # (m,)
    basis: jax.Array  # (m, n)


class State(NamedTuple):
    q: jax.Array  # (m + 1, n) basis; row j is the vector whose product comes next
    alpha: jax.Array  # (m,)
    beta: jax.Array  # (m,)
    j: jax.Array  # steps taken
    broke: jax.Array  # whether the last step found an invariant subspace
    hq: jax.Array | None = None  # (m, n) the products H q_j, when kept (see `init`)


def init(v0: jax.Array, max_iter: int, products: bool = False) -> State:
    """The state before the first step; ``products=True`` keeps every ``H q_j`` (memory as
    the basis) so a Ritz vector's product ``H y = sum_j s_j H q_j`` costs no new product."""
    q = jnp.zeros((max_iter + 1, v0.shape[0]), v0.dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    zeros = jnp.zeros(max_iter, v0.dtype)
    hq = jnp.zeros((max_iter, v0.shape[0]), v0.dtype) if products else None
    return State(q, zeros, zeros, jnp.zeros([], jnp.int32), jnp.zeros([], bool), hq)


def _orthogonalize(q: jax.Array, w: jax.Array) -> jax.Array:
    for _ in range(2):  # classical Gram-Schmidt twice: "twice is enough" (Kahan, Parlett)
        w = w - q.T @ (q @ w)
    return w


def rows_for(steps_done: int, capacity: int) -> int:
    """A static bound on the basis rows in use after ``steps_done`` steps: the next power of
    two (at least 16) above ``steps_done``, at most ``capacity``; few shapes to compile, and
    one (``capacity``) for a basis of at most 64 rows, where the unused rows cost little."""
    if capacity <= 64:
        return capacity
    return min(capacity, max(16, 1 << steps_done.bit_length()))


def step(
    state: State, w: jax.Array, key: jax.Array, rows: int | None = None
) -> tuple[State, jax.Array]:
    """One step given ``w = H q_j``; returns the new state and the next vector to multiply.

    ``rows`` (static, ``> j``): orthogonalise against only the first ``rows`` basis rows, the
    rest being still zero; the default, all of them, costs ``max_iter / j`` times more.
    """
    q, alpha, beta, j, _, hq = state
    hq = None if hq is None else hq.at[j].set(w)
    a = jnp.vdot(q[j], w)
    used = q if rows is None else q[:rows]
    w = _orthogonalize(used, w)
    b = jnp.linalg.norm(w)
    scale = jnp.maximum(jnp.maximum(jnp.abs(a), b), jnp.max(jnp.abs(alpha)))
    broke = b <= jnp.finfo(w.dtype).eps ** 0.75 * jnp.maximum(scale, jnp.max(beta))

    def restart(_):  # invariant subspace: go on from a random vector orthogonal to the basis
        r = _orthogonalize(used, jax.random.normal(jax.random.fold_in(key, j), w.shape, w.dtype))
        return r / jnp.linalg.norm(r)

    nxt = jax.lax.cond(broke, restart, lambda _: w / jnp.where(broke, 1, b), None)
    q = q.at[j + 1].set(nxt)
    new = State(q, alpha.at[j].set(a), beta.at[j].set(jnp.where(broke, 0, b)), j + 1, broke, hq)
    return new, nxt


step_jit = jax.jit(step, donate_argnums=0, static_argnames="rows")  # basis updated in place
init_jit = jax.jit(
    lambda v0, m, products=False: (init(v0, m, products), v0 / jnp.linalg.norm(v0)),
    static_argnums=(1, 2),
)


def block_step(states: State, ws: jax.Array, keys: jax.Array, rows: int | None = None):
    """:func:`step` over a block of independent runs (SLQ probes)."""
    return jax.vmap(lambda s, w, k: step(s, w, k, rows))(states, ws, keys)


block_step_jit = jax.jit(block_step, static_argnames="rows")


def ritz(tri: Tridiagonal) -> tuple[jax.Array, jax.Array]:
    """Ritz values (ascending) and the eigenvectors ``S`` of T (Ritz vectors: ``S.T @ basis``)."""
    return jnp.linalg.eigh(_matrix(tri.alpha, tri.beta[:-1], jnp))


def num_wanted(k: int, which: str) -> int:
    return 2 * k if which == "both" else k


def _matrix(diag, off, xp):
    return xp.diag(diag) + xp.diag(off, 1) + xp.diag(off, -1)


def _on_host(j) -> bool:
    """A step count the host holds (NumPy solves T) rather than a traced one (jax.numpy)."""
    return isinstance(j, int | np.integer)


def ritz_pairs(alpha, beta, j):
    """Ritz values (ascending), the eigenvectors ``s`` of ``T_j`` and the residual estimates
    ``|beta_j s_{j,i}|``, from the first ``j`` entries of ``alpha`` and ``beta``.

    An int ``j`` (the host driver) solves the ``j x j`` block with NumPy in float64: T is tiny,
    and that beats a device call (XLA:CPU's ``eigh`` of the full ``max_iter``-sized matrix costs
    more than a product on small models). A traced ``j`` solves the full-size matrix with the
    rows past ``j`` decoupled and set above the spectrum, so either way the block's ``j`` pairs
    come first and everything below reads them alike.
    """
    if _on_host(j):
        a, b = np.asarray(alpha, np.float64)[:j], np.asarray(beta, np.float64)[:j]
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):  # callers report the NaN
            return np.full(j, np.nan), np.full((j, j), np.nan), np.full(j, np.nan)
        theta, s = np.linalg.eigh(_matrix(a, b[:-1], np))
        return theta, s, np.abs(b[-1] * s[-1])
    idx = jnp.arange(alpha.shape[0])
    big = 3 * (jnp.max(jnp.abs(alpha)) + jnp.max(jnp.abs(beta))) + 1  # above T_j's Gershgorin discs
    diag = jnp.where(idx < j, alpha, big + idx)
    off = jnp.where(idx[:-1] < j - 1, beta[:-1], 0)
    theta, s = jnp.linalg.eigh(_matrix(diag, off, jnp))
    last = jnp.maximum(j - 1, 0)
    return theta, s, jnp.abs(beta[last] * s[last])


def wanted(j, k: int, which: str):
    """Indices of the wanted pairs among the ``j`` ascending Ritz values of :func:`ritz_pairs`
    (``j`` an int or traced), eigenvalues descending."""
    xp = np if _on_host(j) else jnp
    top, bottom = j - 1 - xp.arange(k), k - 1 - xp.arange(k)
    return {"largest": top, "smallest": bottom, "both": xp.concatenate([top, bottom])}[which]


def _scale(theta, j):
    """The largest ``|Ritz value|`` of ``T_j``: one of the ends, ``theta`` being ascending."""
    xp = np if _on_host(j) else jnp
    return xp.maximum(xp.abs(theta[0]), xp.abs(theta[xp.maximum(j - 1, 0)]))


def converged(ritz_j: tuple, beta, j, *, n: int, k: int, which: str, tol: float):
    """Whether to stop after ``j`` steps, given ``ritz_j = ritz_pairs(alpha, beta, j)``: every
    wanted pair's residual is at most ``tol * scale`` (or a Ritz value is NaN: more steps cannot
    help), at least the wanted number of steps have run and the last one did not break down (a
    zero ``beta``: the restart may still find a copy of a repeated eigenvalue); or the space is
    exhausted. Host (int ``j``, NumPy) and traced alike."""
    theta, _, resid = ritz_j
    xp = np if _on_host(j) else jnp
    idx = wanted(j, min(k, theta.shape[0]), which)
    ok = xp.all(resid[idx] <= tol * _scale(theta, j)) | xp.any(xp.isnan(theta))
    return (j >= n) | ((j >= num_wanted(k, which)) & (beta[xp.maximum(j - 1, 0)] != 0) & ok)


class Extremes(NamedTuple):
    values: jax.Array  # wanted Ritz values, descending
    vectors: jax.Array  # (num values, n) Ritz vectors
    residuals: jax.Array  # ||H y - theta y|| from the kept products, else |beta_j s_{j,i}|
    steps: jax.Array  # Lanczos steps run (= products spent)
    scale: jax.Array  # largest |Ritz value|: what `tol` is relative to
    products: jax.Array | None = None  # H times each vector, from the kept H q_j (or None)


def host_copy(state: State) -> tuple:
    """``(alpha, beta, j, ritz_pairs(alpha, beta, j))`` of ``state``, on the host: one transfer."""
    alpha, beta, j = jax.device_get((state.alpha, state.beta, state.j))
    return alpha, beta, int(j), ritz_pairs(alpha, beta, int(j))


def extract(state: State, *, k: int, which: str, host: tuple | None = None) -> Extremes:
    """The wanted Ritz values (descending), Ritz vectors and residuals: the true
    ``||H y - theta y||`` where the products were kept, else the estimates ``|beta_j s_{j,i}|``.

    ``host`` is :func:`host_copy`'s copy of ``state`` (as :func:`run_host` returns it): ``T`` is
    then solved on the host, and one small device call makes the vectors; ``None`` solves
    everything on the device (traceable: what :func:`lanczos_extremes` does).
    """
    if host is None:
        return _extract_traced(state, k=k, which=which)
    alpha, beta, j, (theta, s, resid) = host
    idx = wanted(j, min(k, j), which)
    coef = np.zeros((len(idx), alpha.shape[0]), alpha.dtype)
    coef[:, :j] = s[:, idx].T  # padded to max_iter rows: one compiled shape per problem
    values = theta[idx].astype(alpha.dtype)
    return _finish(state, coef, values, resid[idx], float(_scale(theta, j)), j)


@jax.jit(static_argnames=("k", "which"))
def _extract_traced(state: State, *, k: int, which: str) -> Extremes:
    theta, s, resid = ritz_pairs(state.alpha, state.beta, state.j)
    idx = wanted(state.j, min(k, theta.shape[0]), which)
    return _finish(state, s[:, idx].T, theta[idx], resid[idx], _scale(theta, state.j), state.j)


def _finish(state: State, coef, values, estimates, scale, steps) -> Extremes:
    values, vectors, products, true = _ritz_vectors(state, coef, values)
    return Extremes(values, vectors, estimates if true is None else true, steps, scale, products)


@jax.jit
def _ritz_vectors(state: State, coef: jax.Array, values: jax.Array):
    """Ritz vectors ``coef @ basis``, their values as device arrays, their products (from the
    kept ``H q_j``) and true residual norms (None without kept products); one call."""
    vectors = coef @ state.q[:-1]
    if state.hq is None:
        return values, vectors, None, None
    products = coef @ state.hq
    return values, vectors, products, jnp.linalg.norm(products - values[:, None] * vectors, axis=1)


def run_host(
    advance: Callable,
    v0: jax.Array,
    key: jax.Array,
    *,
    max_iter: int,
    k: int,
    which: str,
    tol: float | None,
    n: int,
    min_iter: int = 0,
    chunk: int = 1,
    products: bool = False,
    start: tuple[State, jax.Array] | None = None,
) -> tuple[State, tuple | None]:
    """Steps until converged (``tol``; None: always ``max_iter``), at least ``min_iter``, from
    the host; ``advance(state, v, key, steps, rows) -> (state, next v)`` runs ``steps`` steps,
    products included, orthogonalising against the first ``rows`` basis rows (static, see
    :func:`rows_for`), and :func:`converged` is tested on the host after each such call of
    ``chunk`` steps. ``products`` keeps every ``H q_j`` (see :func:`init`); ``start`` is an
    initial ``(state, v)`` made by the caller (else from ``v0``). Returns the state and the
    :func:`host_copy` of the last test when it saw the final state (else None), so
    :func:`extract` solves ``T`` no second time."""
    state, v = init_jit(v0, max_iter, products) if start is None else start
    done, host = 0, None
    while done < max_iter:
        steps = min(chunk, max_iter - done)
        state, v = advance(state, v, key, steps, rows_for(done + steps, max_iter + 1))
        done += steps
        if tol is None or done < min_iter:
            continue
        host = host_copy(state)
        if converged(host[3], host[1], done, n=n, k=k, which=which, tol=tol):
            break
    return state, (host if host is not None and host[2] == done else None)


def lanczos_extremes(
    matvec: Callable[[jax.Array], jax.Array],
    v0: jax.Array,
    key: jax.Array,
    *,
    k: int = 1,
    which: str = "largest",
    max_iter: int = 100,
    tol: float | None = None,
    products: bool = False,
) -> Extremes:
    """Traceable Lanczos in one ``while_loop``, returning the wanted :class:`Extremes`.

    ``matvec(v) -> H v`` on flat vectors; ``tol=None`` runs all ``max_iter`` steps;
    ``products=True`` also returns ``H y`` of each Ritz vector (from the kept ``H q_j``). Usable
    inside ``jit`` (e.g. in an optax update) and on accelerators, where no host round trip is
    wanted. Values descending; ``max_iter`` is capped at ``v0.size``.

    >>> h = jnp.diag(jnp.arange(1.0, 6.0))
    >>> res = lanczos_extremes(lambda v: h @ v, jnp.ones(5), jax.random.key(0), k=1,
    ...                        which="both", max_iter=5, tol=1e-4)
    >>> res.values.round(3).tolist(), int(res.steps)
    ([5.0, 1.0], 5)
    """
    _checks.integer("k", k, low=1)
    _checks.one_of("which", which, WHICH)
    n = v0.shape[0]
    max_iter = min(max_iter, n)
    if max_iter < num_wanted(k, which) and max_iter < n:
        raise ValueError(f"`max_iter` must be >= {num_wanted(k, which)} for k={k}, got {max_iter}")

    def body(carry):
        state, v = carry
        return step(state, matvec(v), key)

    def cond(carry):
        s = carry[0]
        if tol is None:
            return s.j < max_iter
        done = converged(
            ritz_pairs(s.alpha, s.beta, s.j), s.beta, s.j, n=n, k=k, which=which, tol=tol
        )
        return (s.j < max_iter) & ~done

    start = (init(v0, max_iter, products), v0 / jnp.linalg.norm(v0))
    state = jax.lax.while_loop(cond, body, start)[0]
    return extract(state, k=min(k, max_iter), which=which)


def tridiagonal(state: State) -> Tridiagonal:
    return Tridiagonal(state.alpha, state.beta, state.q[:-1])


def lanczos(matvec: Callable, v0: jax.Array, num_iter: int, key: jax.Array) -> Tridiagonal:
    """``num_iter`` Lanczos steps from ``v0``, calling ``matvec`` eagerly (e.g. a ``dataset_hvp``).

    ``num_iter`` must not exceed ``v0.size``. :func:`ritz` turns the result into eigenpairs.
    """
    _checks.integer("num_iter", num_iter, low=1)
    if num_iter > v0.shape[0]:
        raise ValueError(f"`num_iter` must be <= the vector size {v0.shape[0]}, got {num_iter}")

    def advance(state, v, key, steps, rows):
        for _ in range(steps):
            state, v = step_jit(state, matvec(v), key, rows)
        return state, v

    state = run_host(
        advance, v0, key, max_iter=num_iter, k=1, which="largest", tol=None, n=v0.shape[0]
    )[0]
    return tridiagonal(state)
