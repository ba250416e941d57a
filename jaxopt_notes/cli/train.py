"""``jaxopt-notes train``: one option per field of ``TrainConfig``, over ``train.train``.

Where a knob's value comes from, lowest first: the defaults, ``--config FILE`` (or, with
``--resume``, the run's own ``config.toml``), then the options given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from jaxopt_notes import data as data_lib
from jaxopt_notes.train import (
    TrainConfig,
    clean_json,
    from_dict,
    join_processes,
    read_toml,
    train,
    with_validation,
)

GROUPS = {
    "model": "model",
    "dataset": "data",
    "optimizer": "optimizer",
    "schedule": "schedule",
    "epochs": "loop",
}


def _default_words(field: dataclasses.Field) -> str:
    if field.default is None:
        return "default: the optimizer's own for its --convention"
    if isinstance(field.default, bool):
        return f"default: {'on' if field.default else 'off'}"
    return f"default: {field.default}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxopt-notes train``: one per :class:`TrainConfig` field, plus the run's."""
    run = parser.add_argument_group("the run")
    run.add_argument(
        "--config",
        help="a run config (TOML), e.g. RUN/config.toml; options "
        "given beside it override its values",
    )
    run.add_argument("--out", required=True, help="the run directory (must be new or empty)")
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its newest intact checkpoint, with its "
        "config; only --epochs may change (raised)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="clear the run files in --out first (refused if other files are there)",
    )
    run.add_argument("--test-data", help="outside test set: .npz with x (uint8 Nx28x28), y")
    run.add_argument(
        "--devices", type=int, default=1, help="data-parallel devices (0: all); default: 1"
    )
    run.add_argument(
        "--coordinator",
        help="HOST:PORT of process 0, for multi-process "
        "data-parallel training (jax.distributed); default: one process",
    )
    run.add_argument("--num-processes", type=int, default=1, help="processes; default: 1")
    run.add_argument("--process-id", type=int, default=0, help="this process; default: 0")
    run.add_argument("--data-dir", help="tfds data directory (default: TFDS_DATA_DIR)")
    run.add_argument("--download", action="store_true", help="let tfds download the data set")
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a progress bar; default: on",
    )
    group = None
    for field in dataclasses.fields(TrainConfig):
        if field.name in GROUPS:
            group = parser.add_argument_group(GROUPS[field.name])
        flag = "--" + field.name.replace("_", "-")
        choices = field.metadata.get("choices")
        # choices are checked by TrainConfig (one error line), listed here in words
        listed = f"; one of: {', '.join(choices)}" if choices else ""
        help_text = f"{field.metadata['help']}{listed}; {_default_words(field)}"
        kind = type(field.default) if field.default is not None else float
        if isinstance(field.default, bool) or field.name == "nesterov":
            group.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
            continue
        group.add_argument(
            flag, type=kind, default=argparse.SUPPRESS, metavar=field.name.upper(), help=help_text
        )


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults < --config (or the resumed run's config.toml) < the options given."""
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(TrainConfig)
        if hasattr(args, f.name)
    }
    source = args.config
    if source is None and args.resume and (Path(args.out) / "config.toml").is_file():
        source = Path(args.out) / "config.toml"
    base = dataclasses.asdict(read_toml(source)) if source else {}
    return from_dict({**base, **given}, source="the command line")


def run_cli(args: argparse.Namespace) -> int:
    """Joins the processes, reads the data, trains (``train`` checks the config and ``--out``
    before it writes), prints the summary line. Returns the exit status."""
    try:
        join_processes(args.coordinator, args.num_processes, args.process_id)
        cfg = resolve_config(args)
        test_data = None
        if args.test_data:
            test_data = data_lib.load_outside_test(args.test_data)
        split = with_validation(cfg, None, data_dir=args.data_dir, download=args.download)
        result = train(
            cfg,
            split,
            out_dir=args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            devices=args.devices,
            test_data=test_data,
            progress=args.progress,
        )
    except (ValueError, TypeError, RuntimeError, OSError) as error:
        print(f"jaxopt-notes train: error: {error}", file=sys.stderr)
        return 2
    summary = result["summary"]
    keys = ("val_accuracy", "test_accuracy", "outside_test_accuracy", "wall_time_s", "epochs_run")
    line = {"dataset": summary["dataset"]["name"], **{k: summary.get(k) for k in keys}}
    print(json.dumps(clean_json(line)))
    return 0
