r"""Loss landscapes: 1-D interpolations and 2-D slices of a network's loss around its parameters.

- :func:`interpolate`: the loss along :math:`(1-\alpha)\,\theta_a + \alpha\,\theta_b`
  (Goodfellow, Vinyals & Saxe 2015), e.g. init -> final, or run A -> run B.
- :func:`surface`: the loss on the plane :math:`\theta + x\,d_1 + y\,d_2` over a grid, with
  directions from :func:`random_directions` (filter-normalised, Li et al. 2018),
  :func:`eigen_directions` (the top-2 Hessian eigenvectors) or :func:`pca_directions` (the
  principal directions of the training path, whose projection :func:`surface` can carry).

Every grid is one compiled program: the parameters are flattened, each grid point's vector is
``center + x d1 + y d2``, and the loss over the whole evaluation set is ``vmap``-ped over a block
of points, the host calling it block after block. ``batch_loss(params, x, y) -> scalar`` is the
loss of one parameter set on a batch (e.g. :meth:`jaxopt_notes.train.Run.batch_loss`). With a
:class:`FirstLayerSplit` (:func:`first_layer_split`), the first layer, linear in its parameters, is
computed once per direction instead of once per point.

>>> import jax.numpy as jnp
>>> loss = lambda p, x, y: jnp.mean((x @ p["w"] - y) ** 2)
>>> x, y = jnp.eye(2), jnp.zeros(2)
>>> dirs = ({"w": jnp.array([1.0, 0])}, {"w": jnp.array([0, 1.0])})
>>> grid = surface(loss, {"w": jnp.zeros(2)}, dirs, x, y, xs=[0.0, 1.0], ys=[0.0, 2.0])
>>> grid.values.tolist()  # rows are y, columns x: (x^2 + y^2) / 2
[[0.0, 0.5], [2.0, 2.5]]
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.flatten_util import ravel_pytree

from jaxopt_notes import _checks, models
from jaxopt_notes._types import PyTree

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


def _flat(tree: PyTree) -> jax.Array:
    return ravel_pytree(tree)[0]


@dataclasses.dataclass(frozen=True)
class FirstLayerSplit:
    """A loss cut after the network's first layer, which is linear in the parameters:
    ``batch_loss(p, x, y) == rest(p, first(p, x), y)`` with ``first(p, x)`` linear in ``p``
    (a convolution or dense layer with its bias, on a fixed ``x``).

    The grid then computes ``first`` three times (at the centre and the two directions) and
    each point's features as ``h0 + a h1 + b h2``: the same values up to float rounding, without
    the first layer's cost per point. :func:`first_layer_split` builds one for an ``nnx`` model.
    """

    first: Callable[[PyTree, jax.Array], jax.Array]
    rest: Callable[[PyTree, jax.Array, jax.Array], jax.Array]


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


def first_layer_split(
    model: nnx.Module,
    layer: str,
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    prepare: Callable[[jax.Array], jax.Array] = lambda x: x,
) -> FirstLayerSplit:
    """The :class:`FirstLayerSplit` of ``loss(model(prepare(x)), y)`` after ``model.<layer>``,
    over the ``nnx.Param`` state of ``model`` (its other state, e.g. BatchNorm averages, as it
    is now).

    ``model.__call__`` must apply ``model.<layer>`` to its input first (LeNet's ``conv1``); the
    rest runs ``model`` with that layer replaced by the identity on the features.

    >>> from flax import nnx
    >>> from jaxopt_notes import models
    >>> net = models.LeNet(in_shape=(8, 8, 1), rngs=nnx.Rngs(0))
    >>> ce = lambda logits, y: -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])
    >>> split = first_layer_split(net, "conv1", ce)
    >>> params = nnx.state(net, nnx.Param)
    >>> x, y = jnp.ones((3, 8, 8, 1)), jnp.array([0, 1, 2])
    >>> bool(jnp.allclose(split.rest(params, split.first(params, x), y), ce(net(x), y)))
    True
    """
    pure = models.split(model)
    if not isinstance(getattr(model, layer, None), nnx.Module):
        raise ValueError(f"`layer` must name a sub-module of `model`, got {layer!r}")

    def first(params, x):
        return getattr(pure.merge(params), layer)(prepare(x))

    def rest(params, h, y):
        net = pure.merge(params)
        setattr(net, layer, _Identity())
        return loss(net(h), y)

    return FirstLayerSplit(first, rest)


class _Identity(nnx.Module):
    def __call__(self, h: jax.Array) -> jax.Array:
        return h


# ----- directions -----


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
    """The top ``num`` Hessian eigenvectors at ``params`` (Lanczos, ``hessian.eigenvalues``),
    each scaled to the norm of ``params``' weights, and their eigenvalues.

    The scale makes a unit step comparable with a filter-normalised random direction, whose
    norm is that of the weights (biases excluded)."""
    from jaxopt_notes import hessian

    eig = hessian.eigenvalues(loss_fn, params, k=num, which="largest", method="lanczos", key=key)
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


# ----- figures -----


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shown(values: np.ndarray) -> tuple[np.ma.MaskedArray, str]:
    """The loss as drawn and its label: log10 where every finite value is positive (a loss
    such as cross-entropy), else the loss itself; never a floor (a clipped value would draw
    a plateau that is not there). Non-finite values (a diverged point) are left blank."""
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    if finite.any() and (values[finite] > 0).all():
        return np.ma.masked_invalid(np.log10(np.where(finite, values, np.nan))), "log10 loss"
    return np.ma.masked_invalid(values), "loss"


def _few_ticks(ax, *axes: str, n: int = 5) -> None:
    """At most ``n`` ticks on each named axis: the default locator's labels collide once the
    figure is small or an axis is long (3-D, colour bars)."""
    from matplotlib.ticker import MaxNLocator

    for name in axes:
        getattr(ax, f"{name}axis").set_major_locator(MaxNLocator(n))


def plot_surface(grid: Surface, out_prefix, *, title: str = "") -> list[str]:
    """``<prefix>_contour.png`` (with the path, when the grid has one) and
    ``<prefix>_surface.png`` (3-D), axes named by ``grid.labels``; returns the file names."""
    plt = _pyplot()
    values, zlabel = _shown(grid.values)
    gx, gy = np.meshgrid(grid.xs, grid.ys)
    title = title or f"{grid.kind} slice"
    names = [f"{out_prefix}_contour.png", f"{out_prefix}_surface.png"]
    fig, ax = plt.subplots(figsize=(5.2, 4.6), layout="constrained")
    cs = ax.contour(gx, gy, values, levels=20, cmap="viridis")
    bar = fig.colorbar(cs, ax=ax, label=zlabel)
    _few_ticks(bar.ax, "y", n=6)
    if grid.path is not None:
        ax.plot(grid.path[:, 0], grid.path[:, 1], "r.-", label="training path (per epoch)")
        ax.legend(fontsize=7)
    ax.plot([0], [0], "k*", markersize=10)
    ax.set(xlabel=grid.labels[0], ylabel=grid.labels[1], title=title)
    _few_ticks(ax, "x", "y")
    fig.savefig(names[0], dpi=100)
    plt.close(fig)
    fig = plt.figure(figsize=(5.6, 5.0))
    ax3 = fig.add_subplot(projection="3d")
    ax3.plot_surface(gx, gy, values, cmap="viridis", linewidth=0)
    ax3.set_title(title)
    ax3.set_box_aspect(None, zoom=0.82)  # room for the axis labels inside the figure
    for axis, label in zip("xyz", (*grid.labels, zlabel), strict=True):
        wrapped = label.replace(" (", "\n(", 1)  # a long label on two short lines
        getattr(ax3, f"set_{axis}label")(wrapped, fontsize=8, labelpad=4)
    ax3.tick_params(labelsize=7, pad=1)
    _few_ticks(ax3, "x", "y", "z", n=4)
    fig.subplots_adjust(left=0.0, right=0.94, bottom=0.02, top=0.95)
    fig.savefig(names[1], dpi=100)
    plt.close(fig)
    return names


def plot_pair(grids: Sequence[Surface], labels: Sequence[str], path) -> None:
    """Contours of two slices side by side on one colour scale (sharp vs flat minima)."""
    plt = _pyplot()
    shown = [_shown(g.values) for g in grids]
    zlabel = "log10 loss" if all(label == "log10 loss" for _, label in shown) else "loss"
    logs = [
        v if label == zlabel else np.ma.masked_invalid(g.values)
        for (v, label), g in zip(shown, grids, strict=True)
    ]
    levels = np.linspace(min(v.min() for v in logs), max(v.max() for v in logs), 21)
    # constrained layout keeps each panel's y label clear of its neighbour and the colour bar
    fig, axes = plt.subplots(
        1, len(grids), figsize=(5 * len(grids), 4.4), squeeze=False, layout="constrained"
    )
    for ax, grid, value, label in zip(axes[0], grids, logs, labels, strict=True):
        gx, gy = np.meshgrid(grid.xs, grid.ys)
        cs = ax.contourf(gx, gy, value, levels=levels, cmap="viridis")
        ax.plot([0], [0], "w*", markersize=10)
        ax.set(xlabel=grid.labels[0], ylabel=grid.labels[1], title=label)
        _few_ticks(ax, "x", "y")
    bar = fig.colorbar(cs, ax=axes[0].tolist(), label=zlabel, format="%.2f")
    _few_ticks(bar.ax, "y", n=6)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_line(lines: Sequence[tuple[np.ndarray, np.ndarray, str]], path, *, title: str) -> None:
    """1-D interpolation curves: ``(alphas, losses, label)`` each; a log scale where every
    loss is positive."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.8), layout="constrained")
    positive = True
    for alphas, losses, label in lines:
        losses = np.asarray(losses, np.float64)
        ok = np.isfinite(losses)
        positive = positive and bool((losses[ok] > 0).all())
        ax.plot(alphas, np.where(ok, losses, np.nan), label=label)
    ax.set(xlabel="alpha (0: start, 1: end)", ylabel="loss", title=title)
    ax.set_yscale("log" if positive else "linear")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    plt.close(fig)
