"""``jaxopt-notes bench``: times optimizer steps, the Hessian tools and training (JSON, PNG).

Each benchmark writes one file set, ``KIND.json`` (with the machine and versions) and its
table or figures (``step``: ``step.md``, ``step.png``; ``hessian``: ``hessian.md``), into a
fresh folder, ``runs/bench/KIND-<UTC time>`` unless ``--out`` names one; ``--update`` writes into
``bench_results/KIND/`` instead, the committed results the docs' benchmarks page quotes. The
command picks the folder, calls ``benchmarks.run`` (``benchmarks/``, installed as
``jaxopt_notes.benchmarks``), which measures and writes the file set, and prints the result.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from jaxopt_notes import benchmarks
from jaxopt_notes.cli._options import fail

COMMITTED = Path("bench_results")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=benchmarks.KINDS, help="which benchmark")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="folder for KIND.json and figures (default: a fresh one)")
    where.add_argument(
        "--update", action="store_true", help=f"write into {COMMITTED}/KIND/ (the committed ones)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller sizes")
    parser.add_argument(
        "--optimizers",
        default="adam",
        help=f"step only: a comma list of {', '.join(benchmarks.PAIRS)} (default: %(default)s)",
    )


def output_dir(args: argparse.Namespace) -> Path:
    """Where this run writes: ``--out``, ``bench_results/KIND`` with ``--update``, else fresh."""
    if args.update:
        return COMMITTED / args.what
    if args.out:
        return Path(args.out)
    return Path("runs") / "bench" / f"{args.what}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def run_cli(args: argparse.Namespace) -> int:
    """Runs the benchmark into :func:`output_dir`; bad input is one error line, exit status 2."""
    out = output_dir(args)
    names = [s.strip() for s in args.optimizers.split(",")]
    try:
        result = benchmarks.run(args.what, out, quick=args.quick, optimizers=names)
    except ValueError as error:
        return fail("bench", str(error))
    if args.what == "step":
        print(benchmarks.markdown_table(result["rows"]))
    else:
        print(json.dumps(result, indent=2, default=str))
    print(f"wrote {out / (args.what + '.json')}")
    return 0
