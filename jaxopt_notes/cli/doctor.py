"""``jaxopt-notes doctor --run RUN``: name what a run's curves show, with the numbers.

Reads ``RUN/metrics.jsonl`` (a finished run or one still going) and ``RUN/config.toml`` (for the
learning rate of each epoch), prints the findings (or "healthy") and writes ``doctor.json`` and
``doctor.png`` (the curves, each finding's epochs shaded) into ``--out`` (default ``RUN_doctor``,
beside the run: the run directory itself belongs to ``train``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.error = lambda message: sys.exit(_refuse(message))
    parser.add_argument("--run", required=True, help="run directory holding metrics.jsonl")
    parser.add_argument("--out", help="where doctor.json and doctor.png go (default RUN_doctor)")


def _refuse(message: str) -> int:
    """Prints the one error line; the exit status 2."""
    print(f"jaxopt-notes doctor: error: {message}", file=sys.stderr)
    return 2


def run_cli(args: argparse.Namespace) -> int:
    from jaxopt_notes.tune import diagnose_run, plot_diagnosis

    try:
        diagnosis = diagnose_run(args.run)
    except (ValueError, TypeError) as error:
        return _refuse(str(error))
    out = Path(args.out) if args.out else Path(str(Path(args.run)).rstrip("/") + "_doctor")
    out.mkdir(parents=True, exist_ok=True)
    (out / "doctor.json").write_text(json.dumps(diagnosis.to_json(), indent=2) + "\n")
    plot_diagnosis(diagnosis, out / "doctor.png")
    print(diagnosis.report())
    print(f"curves: {out / 'doctor.png'}")
    return 0
