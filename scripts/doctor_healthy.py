"""The doctor on healthy runs: how often it names a case where there is none.

Trains each run of :data:`RUNS` (every model ``train`` offers: LeNet classic and modern, MLPs
with ReLU and tanh; several seeds and epoch counts, each at a setting that trains well, and one
under-trained run as a control), diagnoses it with ``jaxopt_notes.tune.diagnose_run`` and
writes ``bench_results/doctor/healthy.json``: per run its settings, what the doctor said and
whether that is a confident wrong diagnosis (on a healthy run any case named; the right answers
are "healthy" and, for runs too short to judge, "not enough epochs to tell"). The doctor's
inputs (the curves) are kept, so tests re-read them as recorded cases.

    python scripts/doctor_healthy.py                       # all runs, a few minutes on 2 cores
    python scripts/doctor_healthy.py --runs-dir /tmp/runs  # keep the run directories
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

from jaxopt_notes.train import TrainConfig, train
from jaxopt_notes.tune import diagnose_run

DIGITS = dict(dataset="digits", shift=0, rotate=0.0, scale=0.0, elastic=0.0, tta_shift=0)
CLASSIC = dict(model="lenet", variant="classic")
# name -> (settings over train's defaults: Adam 3e-3, cosine, augmentation, label smoothing 0.1;
# what the doctor should say)
HEALTHY = ("healthy", "not_enough_epochs")  # under 4 epochs: "not enough epochs to tell"
RUNS = {
    # the README's run: the sigmoid LeNet's early plateau (validation accuracy 0.10 -> 0.41)
    "lenet_classic_e2_s0": (dict(CLASSIC, epochs=2, seed=0), HEALTHY),
    # the sigmoid LeNet at 1e-2: two epochs at chance (a moving loss), then 91% and 96%
    "lenet_classic_lr1e-2_e10_s0": (dict(CLASSIC, learning_rate=1e-2, epochs=10), HEALTHY),
    "lenet_classic_lr1e-2_e15_s1": (
        dict(CLASSIC, learning_rate=1e-2, epochs=15, seed=1),
        HEALTHY,
    ),
    "lenet_modern_e3_s0": (dict(model="lenet", epochs=3, seed=0), HEALTHY),
    "lenet_modern_e5_s2": (dict(model="lenet", epochs=5, seed=2), HEALTHY),
    "lenet_modern_e8_s1": (dict(model="lenet", epochs=8, seed=1), HEALTHY),
    "mlp_e4_s1": (dict(model="mlp", epochs=4, seed=1), HEALTHY),
    "mlp_e8_s0": (dict(model="mlp", epochs=8, seed=0), HEALTHY),
    "mlp_tanh_e6_s2": (dict(model="mlp", activation="tanh", epochs=6, seed=2), HEALTHY),
    "mlp_digits_e6_s1": (dict(model="mlp", epochs=6, seed=1, **DIGITS), HEALTHY),
    "mlp_digits_e12_s0": (dict(model="mlp", epochs=12, seed=0, **DIGITS), HEALTHY),
    "mlp_digits_sgd_e10_s2": (
        dict(model="mlp", optimizer="sgd", momentum=0.9, learning_rate=0.05, epochs=10, seed=2)
        | DIGITS,
        HEALTHY,
    ),
    # not healthy: the sigmoid LeNet stopped at 6 epochs of the default rate, 75% validation
    # accuracy; its cosine rate is 0 at the end, so it has stopped fitting: underfitting
    "lenet_classic_e6_s1_undertrained": (dict(CLASSIC, epochs=6, seed=1), ("underfitting",)),
}


def measure(name: str, runs_dir: Path) -> dict:
    settings, right = RUNS[name]
    cfg = TrainConfig(**settings)
    out = runs_dir / name
    t = time.perf_counter()
    train(cfg, out_dir=out, overwrite=True, progress=False)
    seconds = time.perf_counter() - t
    diagnosis = diagnose_run(out)
    said = diagnosis.to_json()
    return {
        "settings": settings,
        "seconds": round(seconds, 1),
        "final_val_accuracy": diagnosis.history[-1]["val_accuracy"],
        "expected": list(right),
        "cases": diagnosis.cases,
        "wrong": [c for c in diagnosis.cases if c not in right],
        "report": said["report"],
        "inputs": diagnosis.inputs(),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_results/doctor/healthy.json")
    parser.add_argument("--runs-dir", help="where the runs go (default: a temporary folder)")
    parser.add_argument("--only", nargs="*", help="names of RUNS to train (default: all)")
    args = parser.parse_args(argv)
    names = args.only or list(RUNS)
    with tempfile.TemporaryDirectory() as scratch:
        runs_dir = Path(args.runs_dir or scratch)
        results = {name: measure(name, runs_dir) for name in names}
    healthy = [name for name in results if RUNS[name][1] == HEALTHY]
    wrong = sorted(name for name in healthy if results[name]["wrong"])
    record = {
        "what": "the doctor on train runs; on a healthy one, any case named is a confident "
        "wrong diagnosis (the right answers: healthy, or not enough epochs to tell)",
        "healthy_runs": len(healthy),
        "confident_wrong": len(wrong),
        "misdiagnosis_rate": len(wrong) / len(healthy) if healthy else None,
        "wrong_runs": wrong,
        "other_runs_as_expected": {
            name: not results[name]["wrong"] for name in results if name not in healthy
        },
        "said": {name: r["cases"] for name, r in results.items()},
        "machine": platform.machine(),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    keys = ("healthy_runs", "confident_wrong", "other_runs_as_expected", "said")
    print(json.dumps({k: record[k] for k in keys}, indent=1))
    return record


if __name__ == "__main__":
    main()
