"""The machinery under :mod:`jaxopt_notes.hessian`: flattening, Lanczos and jitted kernels.

Every kernel is jitted with ``params`` (and keys) traced and ``loss_fn``, sizes and the ``wrt``
selection static: new params of the same shapes reuse the compiled code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jaxopt_notes import _checks

PyTree = Any
LossFn = Callable[[PyTree], jax.Array]
Wrt = str | Callable[[str, jax.Array], bool] | None
DENSE_MAX = 2048  # method="auto" takes a dense eigh up to this many parameters


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_paths(params: PyTree) -> list[str]:
    """The ``/``-joined path of every leaf, the names ``wrt`` matches against.

    >>> leaf_paths({"dense": {"w": 1.0, "b": 0.0}, "out": [2.0]})
    ['dense/b', 'dense/w', 'out/0']
    """
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return ["/".join(_key_name(k) for k in path) for path, _ in flat]


def selection(params: PyTree, wrt: Wrt) -> tuple[bool, ...]:
    leaves, paths = jax.tree.leaves(params), leaf_paths(params)
    if not leaves:
        raise ValueError("`params` must hold at least one array, got an empty pytree")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"`params` leaves must be float arrays, got dtype {jnp.result_type(leaf)}"
            )
    if wrt is None:
        return (True,) * len(leaves)
    if isinstance(wrt, str):
        mask = tuple(p == wrt or p.startswith(wrt.rstrip("/") + "/") for p in paths)
    elif callable(wrt):
        mask = tuple(bool(wrt(p, leaf)) for p, leaf in zip(paths, leaves, strict=True))
    else:
        raise TypeError(f"`wrt` must be None, a path prefix or a predicate, got {wrt!r}")
    if not any(mask):
        raise ValueError(f"`wrt` must select at least one parameter, got {wrt!r}; paths: {paths}")
    return mask


def flat_problem(loss_fn: LossFn, params: PyTree, mask: tuple[bool, ...]):
    """The selected leaves as one vector ``x``, ``f(x)`` the loss, ``embed`` back to a pytree."""
    leaves, treedef = jax.tree.flatten(params)
    x, unravel = ravel_pytree([leaf for leaf, m in zip(leaves, mask, strict=True) if m])

    def rebuild(vec, fill):
        it = iter(unravel(vec))
        return treedef.unflatten(
            [next(it) if m else fill(v) for v, m in zip(leaves, mask, strict=True)]
        )

    def f(vec):
        return loss_fn(rebuild(vec, lambda leaf: leaf))

    return x, f, lambda vec: rebuild(vec, jnp.zeros_like)


def _uses_custom_vjp(f: Callable, x: PyTree) -> bool:
    """Whether ``f`` contains a ``custom_vjp`` op, which JAX cannot differentiate forward."""

    def walk(jaxpr) -> bool:
        for eqn in jaxpr.eqns:
            if "custom_vjp" in eqn.primitive.name:
                return True
            for value in eqn.params.values():
                for sub in value if isinstance(value, tuple | list) else (value,):
                    inner = getattr(sub, "jaxpr", sub)
                    if hasattr(inner, "eqns") and walk(inner):
                        return True
        return False

    return walk(jax.make_jaxpr(f)(x).jaxpr)


def hvp_flat(f: Callable, x: PyTree, v: PyTree) -> PyTree:
    """``H v`` by forward-over-reverse; by reverse-over-reverse where JAX cannot go forward
    (a ``custom_vjp`` op in the loss, such as ``conv.conv_nhwc`` in LeNet)."""
    if not _uses_custom_vjp(f, x):
        return jax.jvp(jax.grad(f), (x,), (v,))[1]

    def grad_dot_v(y):
        pairs = zip(jax.tree.leaves(jax.grad(f)(y)), jax.tree.leaves(v), strict=True)
        return sum(jnp.vdot(a, b) for a, b in pairs)

    return jax.grad(grad_dot_v)(x)


def eps(dtype: Any) -> float:
    return float(jnp.finfo(dtype).eps)


@jax.jit(static_argnames=("loss_fn", "mask"))
def dense_hessian(params, *, loss_fn, mask):
    x, f, _ = flat_problem(loss_fn, params, mask)
    jacobian = jax.jacrev if _uses_custom_vjp(f, x) else jax.jacfwd  # see `hvp_flat`
    h = jacobian(jax.grad(f))(x)
    return (h + h.T) / 2


# ------------------------------------------------------------------- Lanczos, fully reorthogonal
class Tridiagonal(NamedTuple):
    """``m`` Lanczos steps: ``T = tridiag(beta[:-1], alpha, beta[:-1])``, orthonormal ``basis``.

    ``beta[-1]`` is the norm of the last residual. A zero inside ``beta`` marks a restart after
    the Krylov space became invariant (the eigenvalues of T stay exact).
    """

    alpha: jax.Array  # (m,)
    beta: jax.Array  # (m,)
    basis: jax.Array  # (m, n)


def _orthogonalize(q: jax.Array, w: jax.Array) -> jax.Array:
    for _ in range(2):  # classical Gram-Schmidt twice: "twice is enough" (Kahan, Parlett)
        w = w - q.T @ (q @ w)
    return w


def _lanczos_step(j, state, w, key):
    """One step given ``w = H q_j``; full reorthogonalization keeps "ghost" eigenvalues away."""
    q, alpha, beta = state
    a = jnp.vdot(q[j], w)
    w = _orthogonalize(q, w)
    b = jnp.linalg.norm(w)
    scale = jnp.maximum(jnp.maximum(jnp.abs(a), b), jnp.max(jnp.abs(alpha)))
    broke = b <= eps(w.dtype) ** 0.75 * jnp.maximum(scale, jnp.max(beta))

    def restart(_):  # invariant subspace: go on from a random vector orthogonal to the basis
        r = _orthogonalize(q, jax.random.normal(jax.random.fold_in(key, j), w.shape, w.dtype))
        return r / jnp.linalg.norm(r)

    nxt = jax.lax.cond(broke, restart, lambda _: w / jnp.where(broke, 1, b), None)
    q = q.at[j + 1].set(nxt, mode="drop")
    return q, alpha.at[j].set(a), beta.at[j].set(jnp.where(broke, 0, b))


def _init(v0: jax.Array, num_iter: int):
    q = jnp.zeros((num_iter, v0.shape[0]), v0.dtype).at[0].set(v0 / jnp.linalg.norm(v0))
    return q, jnp.zeros(num_iter, v0.dtype), jnp.zeros(num_iter, v0.dtype)


def lanczos_traced(matvec: Callable, v0: jax.Array, num_iter: int, key: jax.Array) -> Tridiagonal:
    body = lambda j, s: _lanczos_step(j, s, matvec(s[0][j]), key)  # noqa: E731
    q, alpha, beta = jax.lax.fori_loop(0, num_iter, body, _init(v0, num_iter))
    return Tridiagonal(alpha, beta, q)


_lanczos_step_jit = jax.jit(_lanczos_step)


def lanczos(matvec: Callable, v0: jax.Array, num_iter: int, key: jax.Array) -> Tridiagonal:
    """``num_iter`` Lanczos steps from ``v0``, calling ``matvec`` eagerly (e.g. a ``dataset_hvp``).

    ``num_iter`` must not exceed ``v0.size``. :func:`ritz` turns the result into eigenpairs.
    """
    _checks.integer("num_iter", num_iter, low=1)
    if num_iter > v0.shape[0]:
        raise ValueError(f"`num_iter` must be <= the vector size {v0.shape[0]}, got {num_iter}")
    state = _init(v0, num_iter)
    for j in range(num_iter):
        state = _lanczos_step_jit(j, state, matvec(state[0][j]), key)
    q, alpha, beta = state
    return Tridiagonal(alpha, beta, q)


def ritz(tri: Tridiagonal) -> tuple[jax.Array, jax.Array]:
    """Ritz values (ascending) and the eigenvectors ``S`` of T (Ritz vectors: ``S.T @ basis``)."""
    off = tri.beta[:-1]
    t = jnp.diag(tri.alpha) + jnp.diag(off, 1) + jnp.diag(off, -1)
    return jnp.linalg.eigh(t)


def pick(m: int, k: int, which: str) -> list[int]:
    top, bottom = list(range(m - 1, m - 1 - k, -1)), list(range(k))
    chosen = {"largest": top, "smallest": bottom, "both": top + bottom}[which]
    return sorted(set(chosen), reverse=True)  # descending eigenvalues


@jax.jit(static_argnames=("loss_fn", "k", "which", "num_iter", "mask"))
def lanczos_eigs(params, key, *, loss_fn, k, which, num_iter, mask):
    x, f, _ = flat_problem(loss_fn, params, mask)
    key_start, key_restart = jax.random.split(key)
    v0 = jax.random.normal(key_start, x.shape, x.dtype)
    tri = lanczos_traced(lambda v: hvp_flat(f, x, v), v0, num_iter, key_restart)
    theta, s = ritz(tri)
    idx = jnp.array(pick(num_iter, k, which))
    vecs = s[:, idx].T @ tri.basis
    resid = jax.vmap(lambda y, lam: jnp.linalg.norm(hvp_flat(f, x, y) - lam * y))(vecs, theta[idx])
    return theta[idx], vecs, resid


@jax.jit(static_argnames=("loss_fn", "k", "which", "mask"))
def dense_eigs(params, *, loss_fn, k, which, mask):
    h = dense_hessian(params, loss_fn=loss_fn, mask=mask)
    lam, vecs = jnp.linalg.eigh(h)
    idx = jnp.array(pick(lam.shape[0], k, which))
    resid = jnp.linalg.norm(vecs[:, idx].T @ h - lam[idx, None] * vecs[:, idx].T, axis=1)
    return lam[idx], vecs[:, idx].T, resid


def num_selected(params: PyTree, mask: tuple[bool, ...]) -> int:
    return int(
        sum(jnp.size(leaf) for leaf, m in zip(jax.tree.leaves(params), mask, strict=True) if m)
    )


@jax.jit(static_argnames=("loss_fn", "num_samples", "mask"))
def hutchinson(params, key, *, loss_fn, num_samples, mask):
    x, f, _ = flat_problem(loss_fn, params, mask)

    def sample(k):
        z = jax.random.rademacher(k, x.shape, x.dtype)
        return jnp.vdot(z, hvp_flat(f, x, z))

    return jax.lax.map(sample, jax.random.split(key, num_samples))


@jax.jit(static_argnames=("loss_fn", "num_probes", "num_iter", "mask"))
def slq(params, key, *, loss_fn, num_probes, num_iter, mask):
    x, f, _ = flat_problem(loss_fn, params, mask)

    def probe(k):
        k1, k2 = jax.random.split(k)
        v0 = jax.random.rademacher(k1, x.shape, x.dtype)
        theta, s = ritz(lanczos_traced(lambda v: hvp_flat(f, x, v), v0, num_iter, k2))
        return theta, s[0] ** 2

    return jax.lax.map(probe, jax.random.split(key, num_probes))


# -------------------------------------------------------------------------------- Flax NNX
def check_eval_mode(module: Any) -> None:
    """Raises if dropout is active or BatchNorm normalizes with batch statistics.

    The Hessian of a stochastic or batch-coupled loss is not the Hessian of the model: call
    ``module.eval()`` first (or build the loss with ``deterministic=True``).
    """
    from flax import nnx

    for path, sub in nnx.iter_modules(module):
        where = "/".join(map(str, path)) or "the module"
        if isinstance(sub, nnx.Dropout) and sub.rate > 0 and not sub.deterministic:
            raise ValueError(f"`module` must be in eval mode, got active Dropout at {where}")
        if isinstance(sub, nnx.BatchNorm) and not sub.use_running_average:
            raise ValueError(
                f"`module` must be in eval mode, got BatchNorm using batch statistics at {where}"
            )


def from_nnx(module: Any, loss: Callable[[Any], jax.Array]) -> tuple[LossFn, Any]:
    """``(loss_fn, params)`` for an NNX module: params its ``nnx.Param`` state, the rest fixed.

    ``loss(module) -> scalar`` evaluates the (eval-mode) module on fixed data. Keep the returned
    ``loss_fn`` and pass new params to it: a new ``loss_fn`` means a new compilation.
    """
    from flax import nnx

    check_eval_mode(module)
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def loss_fn(p):
        return loss(nnx.merge(graphdef, p, rest))

    return loss_fn, params
