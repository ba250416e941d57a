"""Directions for a slice: filter-normalised random ones (Li et al. 2018), the top Hessian
eigenvectors, and the principal directions of a training path."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxopt_notes import _checks
from jaxopt_notes._types import PyTree

# a basis of at most 64 rows is one compiled Lanczos chunk; a larger one (the default 100
# steps) orthogonalises against 16, then 32, then 64 rows, and compiles the chunk for each
LANCZOS_STEPS = 63


def _flat(tree: PyTree) -> jax.Array:
    return ravel_pytree(tree)[0]


def unplaced(tree: PyTree) -> PyTree:
    """``tree`` on the default device without its placement (a run's mesh): Lanczos starts
    from a state with none, and its chunk program, given parameters on a mesh, returns the
    state on it, so the second call would compile the chunk again for the new placement."""
    return jax.device_put(jax.tree.map(np.asarray, tree))


def filter_normalize(direction: PyTree, params: PyTree, *, biases: str = "zero") -> PyTree:
    """Scales each filter of ``direction`` to the norm of the same filter of ``params``.

    A filter is one output unit's weights: for a kernel (conv HWIO, dense in x out) the slice
    along its last axis. Biases and BatchNorm parameters (1-D leaves) are set to zero, as Li et
    al. 2018 do (``biases="zero"``), or kept as they are (``"keep"``).

    >>> d = filter_normalize({"k": jnp.ones((2, 2)), "b": jnp.ones(2)},
    ...                      {"k": jnp.array([[3.0, 0.0], [4.0, 1.0]]), "b": jnp.ones(2)})
    >>> d["k"].tolist(), d["b"].tolist()  # column norms 5 and 1
    ([[3.535533905029297, 0.7071067690849304], [3.535533905029297, 0.7071067690849304]], [0.0, 0.0])
    """
    _checks.one_of("biases", biases, ("zero", "keep"))

    def one(d, p):
        if p.ndim <= 1:
            return jnp.zeros_like(d) if biases == "zero" else d
        axes = tuple(range(p.ndim - 1))
        dn = jnp.sqrt(jnp.sum(d**2, axis=axes, keepdims=True))
        pn = jnp.sqrt(jnp.sum(p**2, axis=axes, keepdims=True))
        return d * pn / (dn + 1e-10)

    return jax.tree.map(one, direction, params)


def random_directions(
    params: PyTree, key: jax.Array, *, num: int = 2, biases: str = "zero"
) -> list[PyTree]:
    """``num`` Gaussian directions like ``params``, each filter-normalised to ``params``."""
    _checks.integer("num", num, low=1)
    _checks.one_of("biases", biases, ("zero", "keep"))
    return _random_directions(params, key, num=num, biases=biases)


@functools.partial(jax.jit, static_argnames=("num", "biases"))
def _random_directions(params, key, *, num, biases):
    # one compiled program: op by op, the draws and the per-leaf norms compiled one at a time
    flat, unravel = ravel_pytree(params)
    out = []
    for k in jax.random.split(key, num):
        d = unravel(jax.random.normal(k, flat.shape, flat.dtype))
        out.append(filter_normalize(d, params, biases=biases))
    return out


def eigen_directions(
    loss_fn: Callable[[PyTree], jax.Array], params: PyTree, key: jax.Array, *, num: int = 2
) -> tuple[list[PyTree], np.ndarray]:
    """The top ``num`` Hessian eigenvectors at ``params`` (Lanczos, ``hessian.eigenvalues``,
    at most :data:`LANCZOS_STEPS` steps), each scaled to the norm of ``params``' weights, and
    their eigenvalues.

    The scale makes a unit step comparable with a filter-normalised random direction, whose
    norm is that of the weights (biases excluded)."""
    from jaxopt_notes import hessian

    steps = max(LANCZOS_STEPS, 4 * num)
    eig = hessian.eigenvalues(
        loss_fn, unplaced(params), k=num, which="largest", method="lanczos", key=key, max_iter=steps
    )
    weights = jax.tree.map(lambda p: p if p.ndim > 1 else jnp.zeros_like(p), params)
    scale = jnp.linalg.norm(_flat(weights))
    vectors = [
        jax.tree.map(lambda v: v * scale / jnp.linalg.norm(_flat(vec)), vec)
        for vec in eig.vectors[:num]
    ]
    return vectors, np.asarray(eig.values[:num])


def pca_directions(path: Sequence[PyTree], *, num: int = 2):
    """The principal directions of a training path around its last point (Li et al. 2018,
    sec. 7): ``(directions, coordinates (steps, num), explained variance ratios)``.

    The directions are orthonormal; ``coordinates`` place each point of ``path`` on them, so
    the path can be drawn on the slice centred at ``path[-1]``."""
    if len(path) < num + 1:
        raise ValueError(f"`path` must hold at least {num + 1} points, got {len(path)}")
    flats = np.stack([np.asarray(_flat(p), np.float64) for p in path])
    unravel = ravel_pytree(path[-1])[1]
    m = flats - flats[-1]
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    dirs = vt[:num]
    coords = m @ dirs.T
    ratio = (s[:num] ** 2) / max(float(np.sum(s**2)), 1e-300)
    directions = [unravel(jnp.asarray(v, jnp.float32)) for v in dirs]
    return directions, coords.astype(np.float32), ratio
