"""The experiments: each turns claims of the notes into measured, plotted verdicts.

An experiment is a module here with ``SUMMARY`` (one line), ``DATA`` (which data it uses),
a frozen ``Config`` dataclass (defaults: the notes' settings; ``quick()``: minutes for all
experiments together; ``tiny()``: seconds, for the smoke tests), and
``main(cfg, out_dir) -> {"metrics", "claims", "figures"}``. This module finds them, runs them,
writes ``result.json`` beside their figures and, for ``--all``, ``REPORT.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from pathlib import Path

from tqdm import tqdm

from experiments import _common

NAMES = [
    "optimizer_paths",
    "learning_rate_range",
    "momentum_window",
    "momentum_flat_region",
    "adaptive_rates",
    "late_burst",
    "clipping",
    "newton",
    "basins",
    "mnist_optimizers",
    "schedules_and_switch",
    "init_and_activations",
    "batchnorm",
    "regularisation",
    "batch_size",
    "lenet_vs_mlp",
    "saddle_escape",
    "critical_points",
    "convexity",
    "edge_of_stability",
    "conv_arithmetic",
    "autoregressive",
]


def load(name: str):
    if name not in NAMES:
        raise ValueError(f"`name` must be one of the experiments {NAMES}, got {name!r}")
    return importlib.import_module(f"experiments.{name}")


def make_config(module, quick: bool | str, overrides: dict[str, str] | None = None):
    """``quick`` is False (the notes' settings), True (quick) or "tiny" (smoke tests)."""
    cfg = (
        module.Config.tiny()
        if quick == "tiny"
        else module.Config.quick()
        if quick
        else module.Config()
    )
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    changes = {}
    for key, text in (overrides or {}).items():
        if key not in fields:
            raise ValueError(f"`--set {key}=...`: {key!r} is not a field of {sorted(fields)}")
        default = getattr(cfg, key)
        changes[key] = type(default)(text) if not isinstance(default, bool) else text == "true"
    return dataclasses.replace(cfg, **changes)


def run(name: str, out: str | Path, quick: bool | str = False, overrides=None) -> dict:
    """Runs one experiment; writes ``out/name/result.json`` and its figures; returns the result."""
    module = load(name)
    cfg = make_config(module, quick, overrides)
    out_dir = Path(out) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    with _common.Timer() as timer:
        found = module.main(cfg, out_dir)
    result = {
        "name": name,
        "summary": module.SUMMARY,
        "data": module.DATA,
        "quick": quick,
        "config": dataclasses.asdict(cfg),
        "metrics": found["metrics"],
        "claims": found["claims"],
        "figures": found["figures"],
        "wall_time_s": timer.seconds,
    }
    _common.write_result(out_dir, result)
    return result


def run_all(out: str | Path, quick: bool = False) -> list[dict]:
    results = []
    for name in tqdm(NAMES, desc="experiments", unit="exp"):
        results.append(run(name, out, quick))
    _common.write_report(Path(out), results)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="name every experiment")
    run_parser = sub.add_parser("run", help="run one experiment, or all with --all")
    run_parser.add_argument("name", nargs="?", help=f"one of {NAMES}")
    run_parser.add_argument("--all", action="store_true", help="run every experiment + REPORT.md")
    run_parser.add_argument("--quick", action="store_true", help="small settings (minutes)")
    run_parser.add_argument("--out", default="runs", help="output folder (default: runs)")
    run_parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                            help="override a Config field")  # fmt: skip


def run_cli(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in NAMES:
            print(f"{name:24s} {load(name).SUMMARY}")
        return 0
    if args.all == bool(args.name):
        print("experiments run: give one NAME or --all, not both or neither", file=sys.stderr)
        return 2
    if args.all:
        results = run_all(args.out, args.quick)
        print(f"wrote {Path(args.out) / 'REPORT.md'}")
    else:
        overrides = dict(item.split("=", 1) for item in args.set)
        results = [run(args.name, args.out, args.quick, overrides)]
    for r in results:
        for c in r["claims"]:
            print(f"[{c['verdict']:>14s}] {r['name']}: {c['claim']}")
    return 0
