"""The search's acceptance measurement: wall time of a coarse+fine search against one trial.

``python -m jaxopt_notes.tune.acceptance --out bench_results/tune`` trains the default config
once (``jaxopt_notes.train.train``, compile included, the way a user runs one trial), then runs
the coarse+fine search in the same process, then trains the chosen and the default config with
``train`` for a few seeds and compares their validation accuracy. Everything lands in
``OUT/acceptance.json`` beside the search's own files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np

from jaxopt_notes.train import TrainConfig, train, with_validation
from jaxopt_notes.tune.search import search
from jaxopt_notes.tune.space import parse_range

SPACE = ("learning_rate=1e-4:1e-1", "b1=0.5:0.99:log1m", "weight_decay=1e-5:1e-1")

# runs on the 8x8 digits built to show each of the doctor's cases, and two healthy ones
# no augmentation or label smoothing: the setting the doctor's cases were measured in
DOCTOR_BASE = dict(model="mlp", dataset="digits", width=64, depth=1, shift=0, epochs=8)
DOCTOR_BASE |= dict(rotate=0.0, scale=0.0, elastic=0.0, label_smoothing=0.0, tta_shift=0)
DOCTOR_CASES = {
    "healthy": {},
    "healthy_sgd": dict(optimizer="sgd", momentum=0.9, learning_rate=0.05),
    # four ReLU layers from N(0, 0.01): the signal dies on the way in and out
    "bad_init": dict(
        depth=4,
        init="normal",
        init_std=0.01,
        optimizer="sgd",
        momentum=0.9,
        learning_rate=0.05,
        schedule="constant",
    ),
    "lr_too_high": dict(optimizer="sgd", learning_rate=20.0, schedule="constant"),
    # cut 20x after every epoch, from the first on
    "decayed_too_early": dict(
        optimizer="sgd",
        momentum=0.9,
        learning_rate=0.05,
        schedule="step",
        lr_every=1,
        lr_gamma=0.05,
    ),
    # 72 training examples (95% held out), 256 units, 30 epochs
    "overfitting": dict(val_fraction=0.95, width=256, epochs=30, schedule="constant"),
    "underfitting": dict(width=3, activation="tanh", epochs=6),
}


def doctor_cases(out: str | Path, names: list[str] | None = None) -> dict[str, list[str]]:
    """Trains each case of :data:`DOCTOR_CASES` into ``out/NAME`` and diagnoses it (figures in
    ``out/NAME_doctor``); returns the cases named for each run."""
    from jaxopt_notes.tune.runs import diagnose_run, plot_diagnosis

    named = {}
    for name in names or list(DOCTOR_CASES):
        cfg = TrainConfig(**{**DOCTOR_BASE, **DOCTOR_CASES[name]})
        run = Path(out) / name
        train(cfg, out_dir=run, overwrite=True, progress=False)
        diagnosis = diagnose_run(run)
        figures = Path(out) / f"{name}_doctor"
        figures.mkdir(parents=True, exist_ok=True)
        (figures / "doctor.json").write_text(json.dumps(diagnosis.to_json(), indent=2) + "\n")
        plot_diagnosis(diagnosis, figures / "doctor.png")
        named[name] = diagnosis.cases
    return named


def _val_accuracy(cfg: TrainConfig, data) -> tuple[float, float]:
    t = time.perf_counter()
    result = train(cfg, data, progress=False)
    return result["history"][-1]["val_accuracy"], time.perf_counter() - t


def measure(cfg: TrainConfig, *, trials: int, fine_trials: int, halving: bool, seeds: int) -> dict:
    data = with_validation(cfg, None)
    default_acc, single_s = _val_accuracy(cfg, data)
    t = time.perf_counter()
    result = search(
        cfg,
        [parse_range(s) for s in SPACE],
        trials=trials,
        fine_trials=fine_trials,
        halving=halving,
        data=data,
    )
    search_s = time.perf_counter() - t
    chosen, default = [], []
    for seed in range(seeds):
        chosen.append(_val_accuracy(dataclasses.replace(result.config, seed=seed), data)[0])
        default.append(_val_accuracy(dataclasses.replace(cfg, seed=seed), data)[0])
    return {
        "config": dataclasses.asdict(cfg),
        "space": list(SPACE),
        "halving": halving,
        "trials": [trials, fine_trials],
        "single_trial_wall_s": single_s,
        "single_trial_val_accuracy": default_acc,
        "search_wall_s": search_s,
        "stage_times_s": result.stage_times_s,
        "ratio": search_s / single_s,
        "chosen": result.best,
        "chosen_val_accuracy_by_seed": chosen,
        "default_val_accuracy_by_seed": default,
        "chosen_beats_default": bool(np.mean(chosen) > np.mean(default)),
        "search_result": result,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_results/tune")
    parser.add_argument("--model", default="mlp", choices=("mlp", "lenet"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--doctor", action="store_true", help="only the doctor's built runs")
    parser.add_argument("--ensembles", action="store_true", help="only the ensembles")
    args = parser.parse_args(argv)
    if args.ensembles:
        from jaxopt_notes.tune.ensemble import compare

        cfg = TrainConfig(model=args.model, dataset="mnist5k", epochs=8, cycle_epochs=2)
        report = compare(cfg, seeds=list(range(args.seeds)), k=4)
        report["command"] = f"python -m jaxopt_notes.tune.acceptance --ensembles --out {args.out}"
        (Path(args.out) / "ensembles.json").write_text(json.dumps(report, indent=2) + "\n")
        print(
            json.dumps(
                {
                    k: v["mean_gain"]
                    for k, v in report.items()
                    if isinstance(v, dict) and "mean_gain" in v
                }
            )
        )
        return 0
    if args.doctor:
        named = doctor_cases(Path(args.out) / "doctor_runs")
        text = json.dumps(
            {
                "command": f"python -m jaxopt_notes.tune.acceptance --doctor --out {args.out}",
                "cases": named,
            },
            indent=2,
        )
        (Path(args.out) / "doctor_cases.json").write_text(text + "\n")
        print(text)
        return 0
    # the search's trials score plain images: the default run is scored the same way
    cfg = TrainConfig(model=args.model, dataset="mnist5k", epochs=3, tta_shift=0)
    out = Path(args.out)
    report = {
        "backend": jax.default_backend(),
        "machine": platform.processor() or platform.machine(),
        "command": "python -m jaxopt_notes.tune.acceptance --out " + str(out),
        "runs": [],
    }
    for halving in (False, True):
        run = measure(cfg, trials=16, fine_trials=16, halving=halving, seeds=args.seeds)
        run.pop("search_result").save(out / ("search_halving" if halving else "search"))
        report["runs"].append(run)
        print(
            json.dumps(
                {
                    k: run[k]
                    for k in (
                        "halving",
                        "single_trial_wall_s",
                        "search_wall_s",
                        "ratio",
                        "chosen_beats_default",
                    )
                }
            )
        )
    (out / "acceptance.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
