"""``jaxopt-notes landscape``: the loss landscape of a trained run, or of two runs side by side.

One run (``--run RUN``): the 1-D interpolation init -> final, and 2-D slices along
filter-normalised random directions, the top-2 Hessian eigenvectors, and the PCA directions of
the training path (drawn on the contour). Two runs (``--run A --run B``, the same network): also
the interpolation A -> B and the two random slices side by side with their top eigenvalues
(sharp vs flat minima, e.g. small vs large batch). Writes ``landscape.json``, one ``.npz`` per
grid and contour / surface PNGs into ``--out``.

Fast by default (a 21x21 grid on 250 images: under a minute for a LeNet run on 2 CPU cores);
``--grid 41 --examples 1000`` draws the full picture. Each stage shows a progress bar on
stderr. Everything is checked before anything is written: ``--out`` must lie outside the runs
and be new, empty, or hold landscape outputs only, which ``--overwrite`` replaces.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxopt_notes import hessian, landscape
from jaxopt_notes._extras import require
from jaxopt_notes.cli import _options
from jaxopt_notes.cli._options import Option, add_options
from jaxopt_notes.train import load_run

KINDS = ("random", "eigen", "pca")

OPTIONS = (
    Option(
        "--kinds", "slices of one run, comma-separated: random, eigen, pca", str, ",".join(KINDS)
    ),
    Option("--grid", "points per axis, 2..401 (41: the full picture)", int, 21),
    Option(
        "--span",
        "half-width of the random and eigen slices in units of the (filter-normalised) direction",
        float,
        1.0,
    ),
    Option("--examples", "evaluation images (the first of --split)", int, 250),
    Option("--split", "the split the loss is evaluated on", str, "train", ("train", "val", "test")),
    Option("--hessian-examples", "images for the Hessian eigenvectors and values", int, 250),
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
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the landscape outputs already in --out"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_options(parser, OPTIONS)


def run_cli(args: argparse.Namespace) -> int:
    stages = Stages(enabled=not args.no_progress)
    try:  # every check before any work, and the work before any write
        kinds = _check(args)
        out = _out_dir(args)
        runs, evals, hess = _read_runs(args, stages)
        path = _training_path(runs[0]) if "pca" in kinds else None
        report, lines, grids, pair = _compute(args, kinds, runs, evals, hess, path, stages)
    except (ValueError, TypeError, OSError) as error:
        message = _options.as_flags(str(error), run_dir="--run")
        print(f"jaxopt-notes landscape: error: {message}", file=sys.stderr)
        return 2
    try:
        with stages.waiting(f"figures and grids into {args.out}"):
            _write(out, report, lines, grids, pair)
    except OSError as error:
        print(f"jaxopt-notes landscape: error: `--out` {args.out!r}: {error}", file=sys.stderr)
        return 2
    print(json.dumps({k: v.get("seconds") for k, v in report["slices"].items()}))
    return 0


# the files this command writes; a folder holding only these is one of its outputs
OUTPUTS = re.compile(
    r"landscape\.json|line\.png|pair\.png"
    r"|(random|eigen|pca|random_run[01])(\.npz|_contour\.png|_surface\.png)"
)


# ----- checks: all of them before any work -----


def _check(args: argparse.Namespace) -> list[str]:
    if len(args.run) > 2:
        raise ValueError(f"`--run` may be given once or twice, got {len(args.run)} times")
    kinds = [k for k in args.kinds.split(",") if k]
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds or len(set(kinds)) != len(kinds):
        raise ValueError(
            f"`--kinds` must be a comma-separated subset of {', '.join(KINDS)} (each once), "
            f"got {args.kinds!r}"
        )
    for name, value, low, high in (
        ("grid", args.grid, 2, 401),
        ("examples", args.examples, 1, None),
        ("hessian-examples", args.hessian_examples, 1, None),
        ("block", args.block, 0, 4096),
        ("seed", args.seed, 0, 2**32 - 1),
    ):
        if value < low or (high is not None and value > high):
            rule = f">= {low}" if high is None else f"in {low}..{high}"
            raise ValueError(f"`--{name}` must be an integer {rule}, got {value}")
    if not (np.isfinite(args.span) and 0 < args.span <= 1e6):
        raise ValueError(f"`--span` must be a finite number in (0, 1e6], got {args.span}")
    return kinds


def _out_dir(args: argparse.Namespace) -> Path:
    """``--out`` checked, not yet created: outside every run, a folder (or nothing yet) that
    is empty or holds this command's outputs only, which only ``--overwrite`` replaces."""
    out = Path(args.out)
    where = out.resolve()
    for run in args.run:
        run_dir = Path(run).resolve()
        if where == run_dir or run_dir in where.parents:
            raise ValueError(
                f"`--out` must lie outside the run directory {run!r}, got {args.out!r}"
            )
    if out.exists() and not out.is_dir():
        raise ValueError(f"`--out` must be a directory, got the file {args.out!r}")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    foreign = [e.name for e in entries if not (OUTPUTS.fullmatch(e.name) and e.is_file())]
    if foreign:
        raise ValueError(
            f"`--out` must be new, empty or hold landscape outputs only; {args.out!r} also "
            f"holds {foreign[:3]}"
        )
    if entries and not args.overwrite:
        raise ValueError(
            f"`--out` {args.out!r} already holds landscape outputs ({entries[0].name}, ...): "
            "pass --overwrite to replace them"
        )
    parent = next(p for p in (where, *where.parents) if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"`--out` {args.out!r} cannot be written: {str(parent)!r} is read-only")
    return out


def _read_runs(args: argparse.Namespace, stages: Stages):
    """The runs, their evaluation images and Hessian losses; two runs must be one network."""
    runs = []
    for path in args.run:
        with stages.waiting(f"reading run {path}"), _no_read_only_notice():
            runs.append(load_run(path))
    for run in runs:
        size = len(run.arrays(args.split)[1])
        for name, value in (
            ("examples", args.examples),
            ("hessian-examples", args.hessian_examples),
        ):
            if value > size:
                raise ValueError(
                    f"`--{name}` must be at most the {size} images of split {args.split!r} of "
                    f"{str(run.path)!r}, got {value}"
                )
    if len(runs) == 2:
        _same_network(*runs)
    evals = [run.arrays(args.split, args.examples) for run in runs]
    hess = [run.loss_fn(args.split, args.hessian_examples) for run in runs]
    return runs, evals, hess


class _ReadOnlyNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Given directory is read only")


@contextlib.contextmanager
def _no_read_only_notice():
    """Drops orbax's one absl warning that a checkpoint manager opened read-only is read-only
    (it says so for every run read: ``read_only=True`` is what reading asks for), and nothing
    else, while a run is read."""
    absl, notice = logging.getLogger("absl"), _ReadOnlyNotice()
    absl.addFilter(notice)
    try:
        yield
    finally:
        absl.removeFilter(notice)


def _same_network(a, b) -> None:
    if jax.tree.structure(a.params) != jax.tree.structure(b.params):
        raise ValueError(
            f"`--run` twice needs two runs of the same network; {str(a.path)!r} and "
            f"{str(b.path)!r} have different layers"
        )
    for (where, p), q in zip(
        jax.tree_util.tree_leaves_with_path(a.params), jax.tree.leaves(b.params), strict=True
    ):
        if p.shape != q.shape or p.dtype != q.dtype:
            raise ValueError(
                f"`--run` twice needs two runs of the same network; {str(a.path)!r} and "
                f"{str(b.path)!r} differ at {jax.tree_util.keystr(where)}: "
                f"{p.dtype}{list(p.shape)} vs {q.dtype}{list(q.shape)}"
            )


def _training_path(run) -> list:
    """The run's parameters after each epoch (init first) from its ``trajectory/``, each file
    checked before the PCA uses any: present for every epoch, plain float32 arrays (never
    unpickled) of the run's size, finite, starting at the run's own initialisation and
    passing through its selected parameters."""
    folder = run.path / "trajectory"
    found = {f.name: f for f in folder.glob("epoch_*.npy")} if folder.is_dir() else {}
    names = [f"epoch_{e:04d}.npy" for e in range(run.epoch + 1)]
    missing = [n for n in names if n not in found]
    rule = "`--kinds` pca needs the run's training path"
    if run.epoch < 2:  # init, epoch 1 and the selected parameters: the fewest that span a plane
        raise ValueError(
            f"{rule} over at least 2 epochs, got {run.epoch}; leave pca out of --kinds"
        )
    if missing:
        raise ValueError(
            f"{rule}, but {str(folder)!r} lacks {missing[:3]} ({len(missing)} of its "
            f"{len(names)} files); leave pca out of --kinds"
        )
    start, unravel = ravel_pytree(run.init_params)
    points = []
    for name in names:
        try:
            v = np.load(found[name], allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"{rule}; {str(found[name])!r} cannot be read: {error}") from None
        if v.dtype != np.float32 or v.shape != start.shape or not np.isfinite(v).all():
            raise ValueError(
                f"{rule}; {str(found[name])!r} must hold the run's {start.size} finite float32 "
                f"parameters, got {v.dtype} of shape {v.shape}"
                + ("" if v.shape != start.shape else " with non-finite values")
            )
        points.append(v)
    selected = np.asarray(ravel_pytree(run.params)[0])
    if not np.allclose(points[0], start, rtol=1e-5, atol=1e-6) or not any(
        np.allclose(p, selected, rtol=1e-6, atol=1e-7) for p in points
    ):
        raise ValueError(
            f"{rule}; {str(folder)!r} is not this run's path (it does not start at the run's "
            "initialisation and pass through its selected parameters): a foreign trajectory?"
        )
    return [unravel(jnp.asarray(v)) for v in points]


# ----- the work -----


def _compute(args, kinds, runs, evals, hess, path, stages):
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
    ends = [("init -> final", run.init_params, run.params)]
    if len(runs) == 2:
        ends.append(("run A -> run B", run.params, runs[1].params))
    lines = []
    for label, start, end in ends:
        with stages.points(f"interpolation {label}", 41) as tick:
            alphas, losses = landscape.interpolate(
                run.batch_loss, start, end, x, y, block=args.block or None, progress=tick
            )
        lines.append((alphas, losses, label))
    report["lines"] = {label: {"alphas": a.tolist(), "losses": v.tolist()} for a, v, label in lines}
    coords = np.linspace(-args.span, args.span, args.grid)
    grids = {}
    for kind in kinds:
        grids[kind] = _slice(kind, run, hess[0], x, y, coords, key, args, path, stages)
    pair = None
    if len(runs) == 2:
        pair = []
        for i, (r, (xi, yi)) in enumerate(zip(runs, evals, strict=True)):
            name = f"run {'AB'[i]} ({Path(r.path).name})"
            xi, yi = jnp.asarray(xi), jnp.asarray(yi)
            grid = _slice("random", r, hess[i], xi, yi, coords, key, args, None, stages, name)
            with stages.waiting(f"top Hessian eigenvalue of {name}"):
                top = _top(hess[i], r.params, key)
            grid.info.update(top=top, run=name)
            grids[f"random_run{i}"] = grid
            pair.append(f"{Path(r.path).name}: batch {r.config.batch_size}, top eig {top:.3g}")
    return report, lines, grids, pair


def _top(loss_fn, params, key) -> float:
    eig = hessian.eigenvalues(loss_fn, params, k=1, method="lanczos", key=key)
    return float(eig.values[0])


TITLES = {
    "random": "random slice (filter-normalised, Li et al.)",
    "eigen": "eigen slice: top-2 Hessian eigenvectors",
    "pca": "PCA slice: the training path's top-2 directions",
}


def _slice(kind, run, loss_fn, x, y, coords, key, args, path, stages, name=""):
    t, info, projected = time.perf_counter(), {}, None
    if kind == "eigen":
        lanczos = f"Lanczos on {args.hessian_examples} images"
        with stages.waiting(f"eigen slice: top-2 Hessian eigenvectors ({lanczos})"):
            dirs, values = landscape.eigen_directions(loss_fn, run.params, key)
        info["eigenvalues"] = [float(v) for v in values]
        labels = tuple(f"v{i} (λ={v:.3g})" for i, v in enumerate(values, 1))
    desc = f"{kind} slice {args.grid}x{args.grid}" + (f" of {name}" if name else "")
    with stages.points(desc, args.grid**2) as tick:
        xs = ys = coords
        if kind == "random":
            dirs = landscape.random_directions(run.params, key)
            labels = tuple(f"random direction {i} (filter-normalised)" for i in (1, 2))
        elif kind == "pca":
            dirs, projected, ratio = landscape.pca_directions([*path[:-1], run.params])
            reach = 1.25 * np.abs(projected).max(axis=0) + 1e-6  # the path fits in the grid
            xs, ys = (np.linspace(-r, r, args.grid) for r in reach)
            info["explained_variance"] = [float(v) for v in ratio]
            labels = tuple(
                f"PC{i} ({r:.0%} of the path's variance)" for i, r in enumerate(ratio, 1)
            )
        grid = landscape.surface(
            run.batch_loss,
            run.params,
            dirs,
            x,
            y,
            xs=xs,
            ys=ys,
            kind=kind,
            path=projected,
            block=args.block or None,
            progress=tick,
        )
    info["seconds"] = time.perf_counter() - t
    return landscape.Surface(grid.xs, grid.ys, grid.values, kind, grid.path, info, labels)


# ----- progress -----

_POINTS = "{desc}: {n_fmt}/{total_fmt} points |{bar:20}| {elapsed} elapsed, ~{remaining} left"
_WAIT = "{desc}: {elapsed} elapsed"


class Stages:
    """One progress bar per stage on stderr, named by the stage (and its grid), with the time
    left; a stage with nothing to count (reading a run, Lanczos) shows its clock moving."""

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self.tqdm = require("tqdm.auto", "train").tqdm

    @contextlib.contextmanager
    def points(self, desc: str, total: int):
        bar = self._bar(desc, total, _POINTS)
        with _ticking(bar):
            yield lambda done, _total: bar.update(done - bar.n)

    @contextlib.contextmanager
    def waiting(self, desc: str):
        with _ticking(self._bar(desc, None, _WAIT)):
            yield

    def _bar(self, desc, total, fmt):
        return self.tqdm(
            total=total, desc=desc, bar_format=fmt, disable=not self.enabled, file=sys.stderr
        )


@contextlib.contextmanager
def _ticking(bar):
    """Redraws ``bar`` every second while the body runs (a compile or a Lanczos run has no
    steps to count), then closes it."""
    stop = threading.Event()

    def tick():
        while not stop.wait(1.0):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    if not bar.disable:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        bar.close()


# ----- outputs -----


def _write(out: Path, report, lines, grids, pair) -> None:
    """The outputs, once everything is computed: drawn into a folder beside ``out``, then
    moved in, the old outputs removed only then (a file the new run does not write would be
    mistaken for one of its own; a failed write leaves the old ones whole)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        landscape.plot_line(lines, new / "line.png", title="1-D interpolation (Goodfellow et al.)")
        for name, grid in grids.items():
            report["slices"][name] = _save(grid, new / name)
        if pair is not None:
            landscape.plot_pair(
                [grids["random_run0"], grids["random_run1"]], pair, new / "pair.png"
            )
        (new / "landscape.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        out.mkdir(exist_ok=True)
        for old in out.iterdir():  # _out_dir let through landscape outputs alone
            old.unlink()
        for made in new.iterdir():
            os.replace(made, out / made.name)
    finally:
        shutil.rmtree(new, ignore_errors=True)


def _save(grid: landscape.Surface, prefix: Path) -> dict:
    grid.save(f"{prefix}.npz")
    title = TITLES[grid.kind] + (f", {grid.info['run']}" if "run" in grid.info else "")
    pngs = landscape.plot_surface(grid, prefix, title=title)
    finite = grid.values[np.isfinite(grid.values)]
    return {
        **grid.info,
        "axes": list(grid.labels),
        "npz": f"{prefix.name}.npz",
        "png": [Path(p).name for p in pngs],
        "min": float(np.min(finite)) if finite.size else None,
        "max": float(np.max(finite)) if finite.size else None,
        "center": _finite(grid.values[len(grid.ys) // 2, len(grid.xs) // 2]),
    }


def _finite(value) -> float | None:
    return float(value) if np.isfinite(value) else None
