"""``jaxopt-notes tune``: sanity checks, a learning-rate range test, or a coarse-to-fine search.

    jaxopt-notes tune sanity --set model='"mlp"' --out runs/tune
    jaxopt-notes tune range-test --config base.toml --out runs/tune
    jaxopt-notes tune search --config base.toml --search learning_rate=1e-4:1e-1 \\
        --search b1=0.5:0.99:log1m --trials 16 --fine-trials 16 --out runs/tune

The base run config is ``--config FILE`` (a run's ``config.toml``) or the defaults, changed by
``--set NAME=VALUE`` (TOML values). The search writes ``OUT/config.toml``, which
``jaxopt-notes train --config OUT/config.toml`` takes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from jaxopt_notes.cli import _options

ACTIONS = ("sanity", "range-test", "search")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # argparse's own complaints too: one error line, exit 2
    parser.error = lambda message: sys.exit(_refuse(message))
    parser.add_argument("action", choices=ACTIONS, help="what to run: " + ", ".join(ACTIONS))
    parser.add_argument("--config", help="base run config (TOML); default: the defaults")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change one field of the base config (a TOML value)",
    )
    parser.add_argument(
        "--search",
        action="append",
        default=[],
        metavar="NAME=LOW:HIGH[:SCALE]",
        help="a range to search; scale log (default), linear or log1m",
    )
    parser.add_argument("--trials", type=int, default=16, help="coarse trials (default 16)")
    parser.add_argument("--fine-trials", type=int, default=16, help="fine trials (default 16)")
    parser.add_argument("--halving", action="store_true", help="successive halving per epoch")
    parser.add_argument(
        "--chunk",
        type=int,
        help="trials side by side (default: all on an accelerator, 1 on the CPU)",
    )
    parser.add_argument(
        "--seed", type=_options.seed, default=0, help="seed of the sampling (default 0)"
    )
    parser.add_argument("--min-lr", type=float, default=1e-6, help="range test (default 1e-6)")
    parser.add_argument("--max-lr", type=float, default=10.0, help="range test (default 10)")
    parser.add_argument("--steps", type=int, default=200, help="range test steps (default 200)")
    parser.add_argument("--subset", type=int, default=32, help="sanity: examples to overfit")
    parser.add_argument("--out", default="runs/tune", help="output directory (default runs/tune)")


def _refuse(message: str) -> int:
    """Prints the one error line; the exit status 2."""
    print(f"jaxopt-notes tune: error: {message}", file=sys.stderr)
    return 2


def base_config(path: str | None, sets: list[str]):
    """The base run config: ``path`` (or the defaults) with each ``NAME=VALUE`` of ``sets``."""
    from jaxopt_notes.train import TrainConfig, from_dict, read_toml

    table: dict[str, Any] = dataclasses.asdict(read_toml(path) if path else TrainConfig())
    for item in sets:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"`set` must be NAME=VALUE, got {item!r}")
        try:
            table[name.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            table[name.strip()] = value  # a bare word: a string
    return from_dict({k: v for k, v in table.items() if v is not None}, source="--set")


def run_cli(args: argparse.Namespace) -> int:
    from jaxopt_notes import tune
    from jaxopt_notes.tune.range_test import plot_range_test, range_test
    from jaxopt_notes.tune.sanity import sanity_checks

    try:
        cfg = base_config(args.config, args.set)
        space = [tune.parse_range(s) for s in args.search]
        if args.action == "search":
            tune.check_space(space, tune.searchable(cfg), tune.fixed(cfg))
        out = Path(args.out)
        if args.action == "search":
            result = tune.search(
                cfg,
                space,
                trials=args.trials,
                fine_trials=args.fine_trials,
                halving=args.halving,
                seed=args.seed,
                chunk=args.chunk,
            )
        elif args.action == "range-test":
            result = range_test(cfg, min_lr=args.min_lr, max_lr=args.max_lr, steps=args.steps)
        else:
            result = sanity_checks(cfg, subset=args.subset)
    except (ValueError, TypeError, RuntimeError) as error:
        return _refuse(str(error))
    out.mkdir(parents=True, exist_ok=True)
    if args.action == "search":
        result.save(out)
        print(result.table())
        print(f"chosen: {json.dumps(result.best)}; stage times {result.stage_times_s} s")
        print(f"repeat it: jaxopt-notes train --config {out / 'config.toml'} --out RUN")
    elif args.action == "range-test":
        (out / "range_test.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        plot_range_test(result, out / "range_test.png")
        print(result.report())
    else:
        (out / "sanity.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        print(result.report())
    return 0
