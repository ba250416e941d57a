"""The landscape of a trained run, or of two runs side by side: what ``jaxopt-notes
landscape`` computes and writes (:func:`draw_runs`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes.landscape import _outputs, _runs
from jaxopt_notes.landscape._directions import (
    LANCZOS_STEPS,
    eigen_directions,
    pca_directions,
    random_directions,
    unplaced,
)
from jaxopt_notes.landscape._grid import Surface, interpolate, surface
from jaxopt_notes.landscape._progress import Stages

KINDS = ("random", "eigen", "pca")


def draw_runs(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    load: Callable[[str | Path], Any],
    kinds: str | Sequence[str] = KINDS,
    grid: int = 21,
    span: float = 1.0,
    examples: int = 250,
    split: str = "train",
    hessian_examples: int = 250,
    block: int = 0,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Draws the landscape of one run, or of two runs of one network, into ``out``; returns
    the report written as ``out/landscape.json``. ``runs``: run directories, each read by
    ``load`` (:func:`jaxopt_notes.train.load_run`, which builds on this package).

    One run: the 1-D interpolation init -> final and the 2-D slices ``kinds`` (``random``:
    filter-normalised random directions, ``eigen``: the top-2 Hessian eigenvectors on
    ``hessian_examples`` images, ``pca``: the training path's principal directions, the path
    drawn on the contour), each a ``grid`` x ``grid`` slice over the first ``examples`` images
    of ``split``, the random and eigen slices ``span`` direction lengths on each side. Two
    runs: also the interpolation A -> B and both random slices side by side with their top
    Hessian eigenvalues. ``block``: grid points per compiled call (0: 1 on the CPU, 16
    elsewhere); ``seed``: of the random directions and the Lanczos starts; ``progress``: one
    bar per stage on stderr.

    Every check comes before any work and the work before any write: ``out`` must lie outside
    the runs and be new, empty or hold landscape outputs only, which ``overwrite`` replaces.
    """
    kinds = _check(runs, kinds, grid, span, examples, hessian_examples, block, seed)
    out = _outputs.check_out(out, runs, overwrite)
    stages = Stages(enabled=progress)
    counts = {"examples": examples, "hessian_examples": hessian_examples}
    loaded = _runs.read_runs(runs, load, split, counts, stages)
    path = _runs.training_path(loaded[0]) if "pca" in kinds else None
    setting = dict(grid=grid, span=span, block=block or None, hessian_examples=hessian_examples)
    report, lines, grids, pair = _compute(
        loaded, kinds, split, examples, jax.random.key(seed), path, stages, setting
    )
    try:
        with stages.waiting(f"figures and grids into {out}"):
            _outputs.write(out, report, lines, grids, pair)
    except OSError as error:
        raise ValueError(f"`out` {str(out)!r}: {error}") from None
    return report


def _check(runs, kinds, grid, span, examples, hessian_examples, block, seed) -> list[str]:
    if isinstance(runs, str | Path) or not 1 <= len(runs) <= 2:
        got = repr(runs) if isinstance(runs, str | Path) else f"{len(runs)}"
        raise ValueError(f"`runs` must hold one or two run directories, got {got}")
    names = [k for k in kinds.split(",") if k] if isinstance(kinds, str) else list(kinds)
    if not names or len(set(names)) != len(names) or any(k not in KINDS for k in names):
        raise ValueError(
            f"`kinds` must be a comma-separated subset of {', '.join(KINDS)} (each once), "
            f"got {kinds!r}"
        )
    for name, value, low, high in (
        ("grid", grid, 2, 401),
        ("examples", examples, 1, None),
        ("hessian_examples", hessian_examples, 1, None),
        ("block", block, 0, 4096),
        ("seed", seed, 0, 2**32 - 1),
    ):
        if value < low or (high is not None and value > high):
            rule = f">= {low}" if high is None else f"in {low}..{high}"
            raise ValueError(f"`{name}` must be an integer {rule}, got {value}")
    if not (np.isfinite(span) and 0 < span <= 1e6):
        raise ValueError(f"`span` must be a finite number in (0, 1e6], got {span}")
    return names


def _compute(runs, kinds, split, examples, key, path, stages, setting):
    evals = [tuple(jnp.asarray(a) for a in r.arrays(split, examples)) for r in runs]
    hess = [r.loss_fn(split, setting["hessian_examples"]) for r in runs]
    report = {
        "runs": [str(r.path) for r in runs],
        "split": split,
        "examples": int(len(evals[0][1])),
        "grid": setting["grid"],
        "slices": {},
    }
    run, (x, y) = runs[0], evals[0]
    ends = [("init -> final", run.init_params, run.params)]
    if len(runs) == 2:
        ends.append(("run A -> run B", run.params, runs[1].params))
    lines = []
    for label, start, end in ends:
        with stages.points(f"interpolation {label}", 41) as tick:
            alphas, losses = interpolate(
                run.batch_loss, start, end, x, y, block=setting["block"], progress=tick
            )
        lines.append((alphas, losses, label))
    report["lines"] = {label: {"alphas": a.tolist(), "losses": v.tolist()} for a, v, label in lines}
    grids = {}
    for kind in kinds:
        grids[kind] = _slice(kind, run, hess[0], x, y, key, path, stages, setting)
    pair = None
    if len(runs) == 2:
        pair = []
        for i, (r, (xi, yi)) in enumerate(zip(runs, evals, strict=True)):
            name = f"run {'AB'[i]} ({Path(r.path).name})"
            grid = _slice("random", r, hess[i], xi, yi, key, None, stages, setting, name)
            with stages.waiting(f"top Hessian eigenvalue of {name}"):
                top = _top(hess[i], r.params, key)
            grid.info.update(top=top, run=name)
            grids[f"random_run{i}"] = grid
            pair.append(f"{Path(r.path).name}: batch {r.config.batch_size}, top eig {top:.3g}")
    return report, lines, grids, pair


def _top(loss_fn, params, key) -> float:
    from jaxopt_notes import hessian

    steps = LANCZOS_STEPS  # one compiled Lanczos chunk, as for the eigen slice
    eig = hessian.eigenvalues(
        loss_fn, unplaced(params), k=1, method="lanczos", key=key, max_iter=steps
    )
    return float(eig.values[0])


def _slice(kind, run, loss_fn, x, y, key, path, stages, setting, name=""):
    t, info, projected = time.perf_counter(), {}, None
    n, span = setting["grid"], setting["span"]
    if kind == "eigen":
        lanczos = f"Lanczos on {setting['hessian_examples']} images"
        with stages.waiting(f"eigen slice: top-2 Hessian eigenvectors ({lanczos})"):
            dirs, values = eigen_directions(loss_fn, run.params, key)
        info["eigenvalues"] = [float(v) for v in values]
        labels = tuple(f"v{i} (λ={v:.3g})" for i, v in enumerate(values, 1))
    desc = f"{kind} slice {n}x{n}" + (f" of {name}" if name else "")
    with stages.points(desc, n**2) as tick:
        xs = ys = np.linspace(-span, span, n)
        if kind == "random":
            dirs = random_directions(run.params, key)
            labels = tuple(f"random direction {i} (filter-normalised)" for i in (1, 2))
        elif kind == "pca":
            dirs, projected, ratio = pca_directions([*path[:-1], run.params])
            reach = 1.25 * np.abs(projected).max(axis=0) + 1e-6  # the path fits in the grid
            xs, ys = (np.linspace(-r, r, n) for r in reach)
            info["explained_variance"] = [float(v) for v in ratio]
            labels = tuple(
                f"PC{i} ({r:.0%} of the path's variance)" for i, r in enumerate(ratio, 1)
            )
        grid = surface(
            run.batch_loss,
            run.params,
            dirs,
            x,
            y,
            xs=xs,
            ys=ys,
            kind=kind,
            path=projected,
            block=setting["block"],
            progress=tick,
        )
    info["seconds"] = time.perf_counter() - t
    return Surface(grid.xs, grid.ys, grid.values, kind, grid.path, info, labels)
