"""Collects a finished ``jaxopt-notes experiments run --all`` directory into a committed record.

    python scripts/record_experiments.py RUN_DIR bench_results/experiments/quick.json \
        --wall-seconds 812 --note "alone on the machine"

Writes the record (the run's header, the total wall time measured around the command, per
experiment its time, tally and every entry's id, kind, verdict, statement and reason, and the
map's coverage) and copies ``RUN_DIR/REPORT.md`` beside it as ``REPORT_<stem>.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from jaxopt_notes.experiments import _report

from jaxopt_notes import experiments as lab


def collect(run_dir: Path) -> list[dict]:
    """The results of the run, in the suite's order; an experiment missing from it is an error."""
    missing = [n for n in lab.NAMES if not (run_dir / n / "result.json").is_file()]
    if missing:
        raise SystemExit(f"error: {run_dir} has no result for {missing}")
    return [json.loads((run_dir / n / "result.json").read_text()) for n in lab.NAMES]


def record(results: list[dict], wall_seconds: float, note: str) -> dict:
    keep = ("id", "kind", "verdict", "claim", "reason", "settings")
    claims = [c for r in results for c in r["claims"]]
    coverage = _report.coverage(results)
    return {
        "header": results[0]["header"] | {"note": note},
        "command": results[0]["header"]["command"],
        "total_wall_s": wall_seconds,
        "tally": _report.tally_line(claims),
        "coverage": None if coverage is None else _report.coverage_line(coverage["total"]),
        "experiments": [
            {
                "name": r["name"],
                "quick": r["quick"],
                "wall_time_s": round(r["wall_time_s"], 1),
                "tally": r["tally"],
                "claims": [{k: c[k] for k in keep if k in c} for c in r["claims"]],
            }
            for r in results
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("record", type=Path)
    parser.add_argument("--wall-seconds", type=float, required=True)
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    out = record(collect(args.run_dir), args.wall_seconds, args.note)
    args.record.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    shutil.copy(args.run_dir / "REPORT.md", args.record.with_name(f"REPORT_{args.record.stem}.md"))
    print(out["tally"])
    print(out["coverage"])


if __name__ == "__main__":
    main()
