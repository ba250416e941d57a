"""``jaxopt-notes bench``: times optimizer steps, the Hessian tools and training (JSON, PNG)."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

from jaxopt_notes.bench import PAIRS, bench_step, machine, markdown_table, plot_rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", choices=["step", "hessian", "train"], help="which benchmark")
    parser.add_argument("--out", default="bench_results", help="folder for JSON and PNG")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, smaller sizes")
    parser.add_argument("--optimizers", default="adam", help=f"comma list of {sorted(PAIRS)}")


def run_cli(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.what == "step":
        names = [s.strip() for s in args.optimizers.split(",")]
        for name in names:
            if name not in PAIRS:
                raise SystemExit(f"--optimizers: {name!r} is not one of {sorted(PAIRS)}")
        kwargs = {"sizes": (1_000_000,), "rounds": 5} if args.quick else {}
        rows = bench_step(tuple(names), **kwargs)
        result = {"benchmark": "step", "machine": machine(), "rows": rows}
        (out / "step.json").write_text(json.dumps(result, indent=2))
        (out / "step.md").write_text(markdown_table(rows) + "\n")
        plot_rows(rows, out / "step.png")
        print(markdown_table(rows))
    else:
        module = importlib.import_module(f"jaxopt_notes.bench.{args.what}")
        result = getattr(module, f"bench_{args.what}")(out_dir=str(out), quick=args.quick)
        result = {"benchmark": args.what, "machine": machine(), **result}
        (out / f"{args.what}.json").write_text(json.dumps(result, indent=2, default=str))
        print(json.dumps(result, indent=2, default=str))
    print(f"wrote {out}")
    return 0
