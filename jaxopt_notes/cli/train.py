"""``jaxopt-notes train``: one option per field of ``TrainConfig``, over ``train.train``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from jaxopt_notes import data as data_lib
from jaxopt_notes.train import TrainConfig, check_fit, make_mesh, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``jaxopt-notes train``: one per :class:`TrainConfig` field, plus the run's."""
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
        else:
            kind = type(field.default)
            parser.add_argument(
                flag, type=kind, default=field.default, help=f"default {field.default}"
            )
    parser.add_argument("--out", required=True, help="run directory for summary.json and curves")
    parser.add_argument("--test-data", help="outside test set: .npz with x (uint8 Nx28x28), y")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--devices", type=int, default=1, help="data-parallel devices (0: all)")
    parser.add_argument("--data-dir", help="tfds data directory (default TFDS_DATA_DIR)")
    parser.add_argument("--download", action="store_true", help="let tfds download the data set")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)


def run_cli(args: argparse.Namespace) -> int:
    """Validates everything, trains, prints and saves the summary. Returns the exit status."""
    try:
        cfg = TrainConfig(
            **{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
        )
        test_data = None
        if args.test_data:
            test_data = data_lib.load_outside_test(args.test_data)
        data = data_lib.load(cfg.dataset, data_dir=args.data_dir, download=args.download)
        if test_data is not None and data.image_shape != (28, 28, 1):
            raise ValueError(
                f"`test_data` holds 28x28 digits, so `dataset` must have 28x28x1 images, "
                f"got {cfg.dataset!r} with {data.image_shape}"
            )
        check_fit(cfg, data, make_mesh(args.devices))
    except (ValueError, TypeError, RuntimeError) as error:
        print(f"jaxopt-notes train: error: {error}", file=sys.stderr)
        return 2
    result = train(
        cfg, data, out_dir=args.out, resume=args.resume, devices=args.devices,
        test_data=test_data, progress=args.progress,
    )  # fmt: skip
    summary = result["summary"]
    keys = ("test_accuracy", "outside_test_accuracy", "wall_time_s", "epochs_run")
    print(json.dumps({"dataset": summary["dataset"]["name"], **{k: summary.get(k) for k in keys}}))
    return 0
