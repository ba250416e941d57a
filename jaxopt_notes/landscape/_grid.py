r"""The loss over a grid of points on a plane (or a line) through a network's parameters.

Every grid is one compiled program: each grid point's parameters are ``center + x d1 + y d2``,
and the loss over the whole evaluation set is ``vmap``-ped over a block of points, the host
calling it block after block. ``batch_loss(params, x, y) -> scalar`` is the loss of one
parameter set on a batch (e.g. :meth:`jaxopt_notes.train.Run.batch_loss`). With a
:class:`~jaxopt_notes.landscape.FirstLayerSplit`, the first layer, linear in its parameters, is
computed once per direction instead of once per point.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._types import PyTree
from jaxopt_notes.landscape._split import FirstLayerSplit

BatchLoss = Callable[[PyTree, jax.Array, jax.Array], jax.Array]
Progress = Callable[[int, int], Any]  # progress(points done, points in all), after each block


@dataclasses.dataclass(frozen=True)
class Surface:
    """A 2-D slice: ``values[i, j]`` is the loss at ``center + xs[j] d1 + ys[i] d2``."""

    xs: np.ndarray
    ys: np.ndarray
    values: np.ndarray
    kind: str = "random"
    path: np.ndarray | None = None  # (steps, 2) coordinates of a projected training path
    info: dict = dataclasses.field(default_factory=dict)
    labels: tuple[str, str] = ("direction 1", "direction 2")  # what each axis is, for figures

    def save(self, path) -> None:
        """The grid as ``.npz`` (``xs``, ``ys``, ``values``, ``path`` when there is one)."""
        extra = {} if self.path is None else {"path": self.path}
        np.savez(path, xs=self.xs, ys=self.ys, values=self.values, **extra)


def grid_values(
    batch_loss: BatchLoss,
    center: PyTree,
    directions: Sequence[PyTree],
    coords: jax.Array,
    x: jax.Array,
    y: jax.Array,
    *,
    block: int | None = None,
    split: FirstLayerSplit | None = None,
    progress: Progress | None = None,
) -> jax.Array:
    """The loss at ``center + sum_k coords[i, k] directions[k]`` for every row ``i`` of
    ``coords`` (points x directions), over all of ``x``, ``y``.

    One compiled program evaluates ``block`` points (``vmap``-ped) on the whole evaluation set;
    the host runs it over the blocks. The default ``block`` is 1 on the CPU, where the
    convolution kernels run a ``vmap`` one point after another anyway, and 16 elsewhere.
    ``progress(done, total)`` is called once each block's losses are computed (the host then
    waits for every block instead of queueing them all)."""
    block = (1 if jax.default_backend() == "cpu" else 16) if block is None else block
    _checks.integer("block", block, low=1)
    if progress is not None:
        _checks.function("progress", progress)
    dtype = jnp.result_type(*jax.tree.leaves(center))
    # each direction typed and placed as the centre: a run's parameters carry their mesh in
    # their type, and a direction without it (PCA, Lanczos) would compile the grid again
    directions = [jax.tree.map(_like, v, center) for v in directions]
    coords = np.asarray(coords, dtype).reshape(-1, len(directions))
    feats = () if split is None else _features(split, center, directions, x)
    n = len(coords)
    padded = np.concatenate([coords, np.repeat(coords[-1:], -n % block, axis=0)])
    static = dict(batch_loss=batch_loss, rest=None if split is None else split.rest, block=block)
    out = []
    for i in range(0, n, block):
        out.append(_block_losses(center, directions, feats, padded[i : i + block], x, y, **static))
        if progress is not None:
            out[-1].block_until_ready()
            progress(min(i + block, n), n)
    return jnp.ravel(jnp.stack(out))[:n]


def _like(d, c):
    d = jnp.asarray(d, jnp.result_type(c))
    return jax.device_put(d, c.sharding) if isinstance(c, jax.Array) else d


def _point(center, directions, coord):
    """``center + sum_k coord[k] directions[k]``, leaf by leaf (as a direct loop writes it)."""
    return jax.tree.map(
        lambda c, *ds: functools.reduce(lambda a, k: a + coord[k] * ds[k], range(len(ds)), c),
        center,
        *directions,
    )


@functools.partial(jax.jit, static_argnames=("batch_loss", "rest", "block"))
def _block_losses(center, directions, feats, coords, x, y, *, batch_loss, rest, block):
    """The losses at ``block`` grid points: one compiled program per loss and shapes, reused
    by every block and every later grid of that loss."""

    def one(coord):
        params = _point(center, directions, coord)
        if rest is None:
            return batch_loss(params, x, y)
        h = feats[0]  # elementwise, not a tensordot: XLA fuses it into the next layer
        for k in range(len(feats) - 1):
            h = h + coord[k] * feats[k + 1]
        return rest(params, h, y)

    return one(coords[0])[None] if block == 1 else jax.vmap(one)(coords)


@functools.partial(jax.jit, static_argnums=0)
def _features(split, center, directions, x):
    return jnp.stack([split.first(v, x) for v in (center, *directions)])


def surface(
    batch_loss: BatchLoss,
    center: PyTree,
    directions: Sequence[PyTree],
    x: jax.Array,
    y: jax.Array,
    *,
    xs: Any,
    ys: Any,
    kind: str = "random",
    path: np.ndarray | None = None,
    block: int | None = None,
    split: FirstLayerSplit | None = None,
    progress: Progress | None = None,
) -> Surface:
    """The loss on the grid ``xs`` x ``ys`` of the plane through ``center`` along the two
    ``directions``, over the whole evaluation set ``x``, ``y`` (``progress`` as in
    :func:`grid_values`)."""
    if len(directions) != 2:
        raise ValueError(f"`directions` must be 2 pytrees like `center`, got {len(directions)}")
    xs, ys = np.asarray(xs, np.float32), np.asarray(ys, np.float32)
    gx, gy = np.meshgrid(xs, ys)
    coords = np.stack([gx.ravel(), gy.ravel()], axis=1)
    values = grid_values(
        batch_loss, center, directions, coords, x, y, block=block, split=split, progress=progress
    )
    values = np.asarray(values).reshape(len(ys), len(xs))
    return Surface(xs, ys, values, kind, path)


def interpolate(
    batch_loss: BatchLoss,
    start: PyTree,
    end: PyTree,
    x: jax.Array,
    y: jax.Array,
    *,
    alphas: Any = None,
    block: int | None = None,
    split: FirstLayerSplit | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, losses)`` along ``(1 - alpha) start + alpha end`` (default alpha in
    [-0.5, 1.5], 41 points): the 1-D plot of Goodfellow et al. 2015."""
    alphas = np.linspace(-0.5, 1.5, 41) if alphas is None else np.asarray(alphas, np.float32)
    delta = jax.tree.map(lambda a, b: b - a, start, end)
    # two directions, the second at 0 (adding 0 * delta is exact): the program a 2-D slice
    # compiles then serves the line too, and the line's serves the slices
    coords = np.stack([alphas, np.zeros_like(alphas)], axis=1)
    values = grid_values(
        batch_loss,
        start,
        [delta, delta],
        coords,
        x,
        y,
        block=block,
        split=split,
        progress=progress,
    )
    return alphas, np.asarray(values)
