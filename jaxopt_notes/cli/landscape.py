"""``jaxopt-notes landscape``: the loss landscape of a trained run, or of two runs side by side.

One run (``--run RUN``): the 1-D interpolation init -> final, and 2-D slices along
filter-normalised random directions, the top-2 Hessian eigenvectors, and the PCA directions of
the training path (drawn on the contour). Two runs (``--run A --run B``, the same network): also
the interpolation A -> B and the two random slices side by side with their top eigenvalues
(sharp vs flat minima, e.g. small vs large batch). Writes ``landscape.json``, one ``.npz`` per
grid and contour / surface PNGs into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import hessian, landscape
from jaxopt_notes.cli._options import Option, add_options
from jaxopt_notes.train import load_run

KINDS = ("random", "eigen", "pca")


OPTIONS = (
    Option(
        "--kinds", "slices of one run, comma-separated: random, eigen, pca", str, ",".join(KINDS)
    ),
    Option("--grid", "points per axis", int, 41),
    Option(
        "--span",
        "half-width of the random and eigen slices in units of the (filter-normalised) direction",
        float,
        1.0,
    ),
    Option("--examples", "evaluation images (the first of --split)", int, 1000),
    Option("--split", "the split the loss is evaluated on", str, "train", ("train", "val", "test")),
    Option("--hessian-examples", "images for the Hessian eigenvectors and values", int, 500),
    Option(
        "--block", "grid points evaluated together under vmap (0: 1 on CPU, 16 elsewhere)", int, 0
    ),
    Option("--seed", "seed of the random directions", int, 0),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run", action="append", required=True, help="a run directory (give two to compare them)"
    )
    parser.add_argument("--out", required=True, help="directory for the grids and figures")
    add_options(parser, OPTIONS)


def _check(args: argparse.Namespace) -> list[str]:
    if len(args.run) > 2:
        raise ValueError(f"`run` may be given once or twice, got {len(args.run)}")
    kinds = [k for k in args.kinds.split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"`kinds` must be a comma-separated subset of {KINDS}, got {args.kinds!r}")
    if args.grid < 2:
        raise ValueError(f"`grid` must be an integer >= 2, got {args.grid}")
    if not (np.isfinite(args.span) and args.span > 0):
        raise ValueError(f"`span` must be a finite number > 0, got {args.span}")
    if args.block < 0:
        raise ValueError(f"`block` must be an integer >= 0, got {args.block}")
    return kinds


def run_cli(args: argparse.Namespace) -> int:
    try:
        kinds = _check(args)
        runs = [load_run(path) for path in args.run]
        evals = [run.arrays(args.split, args.examples) for run in runs]
        hess = [
            run.loss_fn(args.split, min(args.hessian_examples, len(ev[1])))
            for run, ev in zip(runs, evals, strict=True)
        ]
        if len(runs) == 2 and jax.tree.structure(runs[0].params) != jax.tree.structure(
            runs[1].params
        ):
            raise ValueError("`run` twice needs two runs of the same network, got two networks")
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
    except (ValueError, OSError) as error:
        print(f"jaxopt-notes landscape: error: {error}", file=sys.stderr)
        return 2
    report = {
        "runs": [str(r.path) for r in runs],
        "split": args.split,
        "examples": int(len(evals[0][1])),
        "grid": args.grid,
        "slices": {},
    }
    key = jax.random.key(args.seed)
    run = runs[0]
    x, y = jnp.asarray(evals[0][0]), jnp.asarray(evals[0][1])
    lines = [
        (
            *landscape.interpolate(run.batch_loss, run.init_params, run.params, x, y),
            "init -> final",
        )
    ]
    if len(runs) == 2:
        lines.append(
            (
                *landscape.interpolate(run.batch_loss, run.params, runs[1].params, x, y),
                "run A -> run B",
            )
        )
    landscape.plot_line(lines, out / "line.png", title="1-D interpolation (Goodfellow et al.)")
    report["lines"] = {label: {"alphas": a.tolist(), "losses": v.tolist()} for a, v, label in lines}
    coords = np.linspace(-args.span, args.span, args.grid)
    for kind in kinds:
        grid = _slice(kind, run, hess[0], x, y, coords, key, args)
        report["slices"][kind] = _save(grid, out / kind)
    if len(runs) == 2:
        pair, labels = [], []
        for i, (r, (xi, yi)) in enumerate(zip(runs, evals, strict=True)):
            grid = _slice("random", r, hess[i], jnp.asarray(xi), jnp.asarray(yi), coords, key, args)
            top = _top(hess[i], r.params, key)
            report["slices"][f"random_run{i}"] = {**_save(grid, out / f"random_run{i}"), "top": top}
            pair.append(grid)
            labels.append(f"{Path(r.path).name}: batch {r.config.batch_size}, top eig {top:.3g}")
        landscape.plot_pair(pair, labels, out / "pair.png")
    (out / "landscape.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    print(json.dumps({k: v.get("seconds") for k, v in report["slices"].items()}))
    return 0


def _top(loss_fn, params, key) -> float:
    eig = hessian.eigenvalues(loss_fn, params, k=1, method="lanczos", key=key)
    return float(eig.values[0])


def _slice(kind, run, loss_fn, x, y, coords, key, args) -> landscape.Surface:
    t = time.perf_counter()
    path = None
    if kind == "random":
        dirs = landscape.random_directions(run.params, key)
        xs = ys = coords
    elif kind == "eigen":
        dirs, values = landscape.eigen_directions(loss_fn, run.params, key)
        xs = ys = coords
    else:
        trajectory = run.trajectory()
        dirs, path, ratio = landscape.pca_directions([*trajectory[:-1], run.params])
        reach = 1.25 * np.abs(path).max(axis=0) + 1e-6  # the path fits inside the grid
        xs, ys = (np.linspace(-r, r, args.grid) for r in reach)
    grid = landscape.surface(
        run.batch_loss,
        run.params,
        dirs,
        x,
        y,
        xs=xs,
        ys=ys,
        kind=kind,
        path=path,
        block=args.block or None,
    )
    info = {"seconds": time.perf_counter() - t}
    if kind == "eigen":
        info["eigenvalues"] = [float(v) for v in values]
    if kind == "pca":
        info["explained_variance"] = [float(v) for v in ratio]
    return landscape.Surface(grid.xs, grid.ys, grid.values, kind, path, info)


def _save(grid: landscape.Surface, prefix: Path) -> dict:
    grid.save(f"{prefix}.npz")
    pngs = landscape.plot_surface(grid, prefix, title=f"{grid.kind} slice")
    return {
        **grid.info,
        "npz": f"{prefix.name}.npz",
        "png": [Path(p).name for p in pngs],
        "min": float(np.min(grid.values)),
        "max": float(np.max(grid.values)),
        "center": float(grid.values[len(grid.ys) // 2, len(grid.xs) // 2]),
    }
