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
and be new, empty, or hold landscape outputs only, which ``--overwrite`` replaces. The work is
:func:`jaxopt_notes.landscape.draw_runs`.
"""

from __future__ import annotations

import argparse
import json

from jaxopt_notes.cli import _options
from jaxopt_notes.cli._options import Option, add_options

OPTIONS = (
    Option(
        "--kinds",
        "slices of one run, comma-separated: random, eigen, pca",
        str,
        "random,eigen,pca",
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

# the library's argument names as this command's options, in its error lines
FLAGS = {
    "runs": "--run",
    "run_dir": "--run",
    "out": "--out",
    "overwrite": "--overwrite",
    "hessian_examples": "--hessian-examples",
    **{name: f"--{name}" for name in ("kinds", "grid", "span", "examples", "block", "seed")},
}


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
    from jaxopt_notes import landscape
    from jaxopt_notes.train import load_run

    try:
        report = landscape.draw_runs(
            args.run,
            args.out,
            load=load_run,
            kinds=args.kinds,
            grid=args.grid,
            span=args.span,
            examples=args.examples,
            split=args.split,
            hessian_examples=args.hessian_examples,
            block=args.block,
            seed=args.seed,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (ValueError, TypeError, OSError) as error:
        return _options.fail("landscape", _options.as_flags(str(error), **FLAGS))
    print(json.dumps({k: v.get("seconds") for k, v in report["slices"].items()}))
    return 0
