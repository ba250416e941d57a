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

from jaxopt_notes.cli import _options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.error = lambda message: sys.exit(_refuse(message))
    parser.add_argument("--run", required=True, help="run directory holding metrics.jsonl")
    parser.add_argument("--out", help="where doctor.json and doctor.png go (default RUN_doctor)")


def _refuse(message: str) -> int:
    """Prints the one error line; the exit status 2."""
    print(f"jaxopt-notes doctor: error: {message}", file=sys.stderr)
    return 2


def _check_out(out: Path, run: Path) -> None:
    """``out`` must be a directory (or not yet exist) outside the run, which belongs to train."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out` must be a directory, got the file {str(out)!r}")
    if out.resolve() == run.resolve() or run.resolve() in out.resolve().parents:
        raise ValueError(
            f"`out` must lie outside the run directory {str(run)!r} (it belongs to train), "
            f"got {str(out)!r}"
        )


def run_cli(args: argparse.Namespace) -> int:
    from jaxopt_notes.tune import diagnose_run, plot_diagnosis

    out = Path(args.out) if args.out else Path(str(Path(args.run)).rstrip("/") + "_doctor")
    try:
        _check_out(out, Path(args.run))
        diagnosis = diagnose_run(args.run)
        out.mkdir(parents=True, exist_ok=True)
    except (ValueError, TypeError) as error:
        return _refuse(_options.as_flags(str(error), run_dir="--run"))
    except OSError as error:
        return _refuse(f"`out` {str(out)!r} cannot be created: {error.strerror}")
    (out / "doctor.json").write_text(json.dumps(diagnosis.to_json(), indent=2) + "\n")
    plot_diagnosis(diagnosis, out / "doctor.png")
    print(diagnosis.report())
    print(f"curves: {out / 'doctor.png'}")
    return 0
