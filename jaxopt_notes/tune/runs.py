"""The doctor on a run directory: its ``metrics.jsonl`` (a finished run or one still going), its
``config.toml`` (the learning rate of each epoch), its checkpoints (how far each weight matrix
moved), and the figure of the curves with each finding's epochs shaded.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from jaxopt_notes.tune._rules import curves
from jaxopt_notes.tune.doctor import Diagnosis, diagnose


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The epoch records of ``RUN/metrics.jsonl``; a half-written last line (a run still going)
    is left out."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"`run` must be a run directory, got {str(run_dir)!r} (not a directory)")
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise ValueError(f"`run` {str(run_dir)!r} has no metrics.jsonl: not a training run")
    text = path.read_text()
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines = lines[:-1]  # being written right now
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise ValueError(f"`run` {str(path)!r} line {n} is not JSON: {line[:60]!r}") from None
    if not records:
        raise ValueError(f"`run` {str(path)!r} holds no epoch yet")
    return records


def diagnose_run(run_dir: str | Path) -> Diagnosis:
    """:func:`diagnose` on the run directory ``run_dir`` (its ``metrics.jsonl`` and config)."""
    records = read_metrics(run_dir)
    history = [r for r in records if not isinstance(r, dict) or "kind" not in r]  # no curvature
    if not history:
        raise ValueError(f"`run` {str(run_dir)!r} holds no epoch yet")
    classes, lrs, floor = _run_context(Path(run_dir), len(history))
    diagnosis = diagnose(history, num_classes=classes, learning_rates=lrs, floor=floor)
    diagnosis.weights = _weight_motion(Path(run_dir))
    return diagnosis


def _weight_motion(run_dir: Path) -> list[dict[str, Any]] | None:
    """|w_last - w_0| / |w_0| per weight matrix, from the run's last checkpoint (None without)."""
    if not (run_dir / "checkpoints").is_dir():
        return None
    import jax

    from jaxopt_notes.train import load_run

    try:
        run = load_run(run_dir)
    except (ValueError, OSError, KeyError) as error:  # a checkpoint being written, or foreign
        return [{"layer": "unreadable checkpoints", "moved": math.nan, "error": str(error)}]
    pairs = zip(
        jax.tree_util.tree_leaves_with_path(run.init_params),
        jax.tree.leaves(run.last_params),
        strict=True,
    )
    out = []
    for (path, w0), w in pairs:
        if np.ndim(w0) < 2:
            continue
        keys = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
        name = ".".join(k for k in keys if k not in ("", "value"))
        change = float(np.linalg.norm(np.asarray(w) - np.asarray(w0)) / np.linalg.norm(w0))
        out.append({"layer": name, "moved": change})
    return out


def _run_context(run_dir: Path, epochs: int) -> tuple[int, list[float] | None, float]:
    """The number of classes, the rate at each epoch's end and the loss floor (the smoothed
    labels' entropy), from the run's own files (its config through the run's gate, which
    refuses one edited after the run began)."""
    classes, train_size = 10, None
    summary = run_dir / "summary.json"
    if summary.is_file():
        info = json.loads(summary.read_text())
        info = info.get("dataset", {}) if isinstance(info, dict) else {}
        classes, train_size = info.get("num_classes", 10), info.get("train_size")
    config = run_dir / "config.toml"
    if not config.is_file():
        return classes, None, 0.0
    from jaxopt_notes.train import make_schedule, read_toml, runs, with_validation

    cfg = runs.read_config(run_dir) if (run_dir / "run.json").is_file() else read_toml(config)
    if cfg.loss != "cross_entropy":
        raise ValueError(
            f"`run` {str(run_dir)!r} trained with loss = {cfg.loss!r}: the doctor's rules read a "
            "cross-entropy against its chance level ln C, so it reads only cross_entropy runs"
        )
    if train_size is None:
        train_size = len(with_validation(cfg, None).y_train)
    spe = train_size // cfg.batch_size
    schedule = make_schedule(cfg, spe)
    rate = schedule if callable(schedule) else (lambda step: schedule)
    lrs = [float(rate(e * spe - 1)) for e in range(1, epochs + 1)]
    return classes, lrs, _smoothed_entropy(cfg.label_smoothing, classes)


def _smoothed_entropy(eps: float, classes: int) -> float:
    """The entropy of labels smoothed by ``eps`` (1 - eps + eps/C on the class, eps/C on each
    other): the least cross-entropy a model can reach on them."""
    q = [1 - eps + eps / classes] + [eps / classes] * (classes - 1)
    return float(-sum(p * math.log(p) for p in q if p > 0))


def plot_diagnosis(diagnosis: Diagnosis, path: str | Path) -> None:
    """Loss and accuracy curves (train, validation) with each finding's epochs shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = curves(diagnosis.history)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for split, style in (("train", "-o"), ("val", "-s")):
            ax.plot(c["epoch"], c[f"{split}_{metric}"], style, ms=3, label=f"{split} {metric}")
        for k, f in enumerate(diagnosis.findings):
            color = f"C{k + 2}"
            ax.axvspan(f.epochs[0] - 0.5, f.epochs[1] + 0.5, color=color, alpha=0.15, label=f.case)
        ax.set(xlabel="epoch", ylabel=metric)
    chance = diagnosis.chance or math.log(diagnosis.num_classes)
    ax_loss.axhline(chance, color="gray", lw=0.8, ls=":", label=f"chance = {chance:.2f}")
    finite = c["train_loss"][np.isfinite(c["train_loss"])]
    if finite.size and finite.max() > 4 * chance:
        ax_loss.set_yscale("log")
    if diagnosis.learning_rates is not None:
        twin = ax_loss.twinx()
        twin.plot(c["epoch"], diagnosis.learning_rates, color="k", lw=0.8, ls="--")
        twin.set_ylim(0, 1.1 * max(diagnosis.learning_rates))
        twin.set_ylabel("learning rate (dashed)")
    ax_loss.legend(fontsize=7)
    ax_acc.legend(fontsize=7)
    fig.suptitle("doctor: " + ", ".join(diagnosis.cases))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
