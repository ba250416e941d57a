"""Figures of a slice (contour, 3-D surface), of two slices side by side, and of 1-D lines;
matplotlib with the Agg backend, imported on the first figure."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxopt_notes.landscape._grid import Surface


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
