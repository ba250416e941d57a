"""``jaxopt-notes saddles --run RUN --out DIR``: the critical point nearest a run, what it is,
and the way out if it is a saddle.

From the run's parameters ``hessian.find_critical`` (Newton-MR, float64) drives the gradient of
the run's mean training loss to zero; ``hessian.classify`` says what the point is, with its
tolerance relative to the gradient norm at the start; at a saddle the negative-curvature step is
compared with a random direction and a gradient step of the same length. Writes
``saddles.json`` and ``search.png``, ``spectrum.png`` and ``escape.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys

from jaxopt_notes.cli import _options
from jaxopt_notes.cli._options import Option, add_options

OPTIONS = (
    Option(
        "--split", "the examples whose mean loss is used", str, "train", ("train", "val", "test")
    ),
    Option("--num-examples", "the first N examples of the split (0: all)", int, 0),
    Option(
        "--rtol",
        "|g| tolerance relative to |g| at the start (0: sqrt(eps) of the dtype)",
        float,
        0.0,
    ),
    Option("--max-iter", "Newton-MR steps at most", int, 50),
    Option("--max-hvps", "Hessian-vector products at most in the search", int, 5000),
    Option("--k", "eigenvalues at each end when the Hessian is too big for eigh", int, 5),
    Option(
        "--lanczos-steps", "Lanczos steps at most for the spectrum's ends (big models)", int, 60
    ),
    Option("--seed", "seed of the Lanczos start and the random controls", _options.seed, 0),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.error = lambda message: sys.exit(_refuse(message))
    parser.add_argument("--run", required=True, help="a run directory written by `train --out`")
    parser.add_argument("--out", required=True, help="directory for saddles.json and the figures")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    parser.add_argument(
        "--float32", action="store_true", help="search in float32 (default: float64)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_options(parser, OPTIONS)


def _refuse(message: str) -> int:
    """Prints the one error line; the exit status 2."""
    print(f"jaxopt-notes saddles: error: {message}", file=sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> None:
    for name in ("max_iter", "max_hvps", "k", "lanczos_steps"):
        if getattr(args, name) < 1:
            raise ValueError(
                f"`--{name.replace('_', '-')}` must be >= 1, got {getattr(args, name)}"
            )
    if args.num_examples < 0:
        raise ValueError(f"`--num-examples` must be >= 0, got {args.num_examples}")
    if not 0 <= args.rtol < 1:
        raise ValueError(f"`--rtol` must be in [0, 1), got {args.rtol}")


def run_cli(args: argparse.Namespace) -> int:
    from jaxopt_notes import hessian
    from jaxopt_notes.train import load_run

    try:
        _check(args)
        result = hessian.saddles_run(
            load_run(args.run),
            args.out,
            split=args.split,
            num_examples=args.num_examples or None,
            float64=not args.float32,
            rtol=args.rtol or None,
            max_iter=args.max_iter,
            max_hvps=args.max_hvps,
            k=args.k,
            lanczos_steps=args.lanczos_steps,
            seed=args.seed,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    except (ValueError, TypeError, OSError) as error:
        return _refuse(_options.as_flags(str(error), run_dir="--run"))
    print(result["summary"])
    print(f"wrote {args.out}/saddles.json and {', '.join(result['figures'])}")
    return 0
