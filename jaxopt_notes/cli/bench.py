"""``jaxopt-notes bench``: times optimizer steps, the Hessian tools and training (JSON, PNG).

Each benchmark writes one file set, ``KIND.json`` (with the machine and versions) and its
table or figures (``step``: ``step.md``, ``step.png``; ``hessian``: ``hessian.md``), into a
fresh folder, ``runs/bench/KIND-<UTC time>`` unless ``--out`` names one; ``--update`` writes into
``bench_results/KIND/`` instead, the committed results the docs' benchmarks page quotes. The
benchmarks (``benchmarks/``, installed as ``jaxopt_notes.benchmarks``) are called without a
folder, so they write nothing of their own beside it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

from jaxopt_notes.benchmarks import PAIRS, bench_step, machine, markdown_table, plot_rows
from jaxopt_notes.cli._options import did_you_mean, fail

KINDS = ("step", "hessian", "train")
COMMITTED = Path("bench_results")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=KINDS, help=f"which benchmark: one of {', '.join(KINDS)}")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", help="folder for KIND.json and figures (default: a fresh one)")
    where.add_argument(
        "--update", action="store_true", help=f"write into {COMMITTED}/KIND/ (the committed ones)"
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller sizes")
    parser.add_argument(
        "--optimizers",
        default="adam",
        help=f"step only: a comma list of {', '.join(PAIRS)} (default: %(default)s)",
    )


def output_dir(args: argparse.Namespace) -> Path:
    """Where this run writes: ``--out``, ``bench_results/KIND`` with ``--update``, else fresh."""
    if args.update:
        return COMMITTED / args.what
    if args.out:
        return Path(args.out)
    return Path("runs") / "bench" / f"{args.what}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def _step(names: list[str], quick: bool, out: Path) -> dict:
    rows = bench_step(tuple(names), **({"sizes": (1_000_000,), "rounds": 5} if quick else {}))
    (out / "step.md").write_text(markdown_table(rows) + "\n")
    plot_rows(rows, out / "step.png")
    print(markdown_table(rows))
    return {"rows": rows}


def run_cli(args: argparse.Namespace) -> int:
    names = [s.strip() for s in args.optimizers.split(",")]
    unknown = [n for n in names if n not in PAIRS]
    if unknown:
        got = f"{unknown[0]!r}{did_you_mean(unknown[0], PAIRS)}"
        return fail("bench", f"`--optimizers` must name some of {', '.join(PAIRS)}, got {got}")
    out = output_dir(args)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or error
        return fail("bench", f"`--out` {str(out)!r} cannot be made a folder: {reason}")
    if args.what == "step":
        result = _step(names, args.quick, out)
    else:
        module = importlib.import_module(f"jaxopt_notes.benchmarks.{args.what}")
        result = getattr(module, f"bench_{args.what}")(out_dir=None, quick=args.quick)
        print(json.dumps(result, indent=2, default=str))
        if args.what == "hessian":
            (out / "hessian.md").write_text(module.markdown(result) + "\n")
    result = {"benchmark": args.what, "machine": machine(), **result}
    (out / f"{args.what}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {out / (args.what + '.json')}")
    return 0
