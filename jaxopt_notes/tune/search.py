"""Coarse-to-fine random search, each stage one compiled program over all its trials.

A stage samples its trials at random on each range's scale, trains them side by side for
``cfg.epochs`` epochs from the same initial weights on the same batches, and scores them on the
validation split. Successive halving (optional) keeps the better half after every epoch but the
last, so hopeless trials stop early. The fine stage samples again inside the box spanned by the
coarse stage's best quarter. The winner is written as a run config for
``jaxopt-notes train --config``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxopt_notes import data as data_lib
from jaxopt_notes._extras import require
from jaxopt_notes.train import TrainConfig, make_optimizer, to_toml, with_validation
from jaxopt_notes.tune import _trials
from jaxopt_notes.tune.space import Range, check_space, sample


@dataclasses.dataclass
class SearchResult:
    """Every trial of every stage, the chosen values and the time each stage took."""

    base: TrainConfig
    space: list[Range]
    trials: list[dict[str, Any]]  # {"stage", "values", "val_accuracy", "val_loss", "epochs"}
    best: dict[str, float]
    stage_times_s: list[float]
    fine_space: list[Range]

    @property
    def config(self) -> TrainConfig:
        """The base config with the chosen values: the run the search recommends."""
        return dataclasses.replace(self.base, **self.best)

    def table(self, top: int = 10) -> str:
        """The best ``top`` trials as a Markdown table, best first."""
        names = [r.name for r in self.space]
        rows = sorted(self.trials, key=_rank)[:top]
        head = ["stage", *names, "epochs", "val acc", "val loss"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in rows:
            cells = [t["stage"], *(f"{t['values'][n]:.3g}" for n in names), str(t["epochs"])]
            cells += [f"{t['val_accuracy']:.4f}", f"{t['val_loss']:.4f}"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "base": dataclasses.asdict(self.base),
            "space": [dataclasses.asdict(r) for r in self.space],
            "fine_space": [dataclasses.asdict(r) for r in self.fine_space],
            "best": self.best,
            "stage_times_s": self.stage_times_s,
            "trials": self.trials,
        }

    def save(self, out: str | Path) -> Path:
        """Writes ``search.json``, ``table.md``, ``config.toml`` and ``search.png`` into ``out``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "search.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        (out / "table.md").write_text(self.table() + "\n")
        (out / "config.toml").write_text(to_toml(self.config.resolved()))
        plot_search(self, out / "search.png")
        return out


def _rank(trial: dict[str, Any]) -> tuple:
    """Best first: trials that ran every epoch, then higher accuracy, then lower loss."""
    acc, loss = trial["val_accuracy"], trial["val_loss"]
    finite = math.isfinite(acc) and math.isfinite(loss)
    return (-trial["epochs"], -(acc if finite else -1.0), loss if finite else math.inf)


def run_stage(
    program: _trials.Program,
    cfg: TrainConfig,
    data: data_lib.Dataset,
    values: dict[str, np.ndarray],
    *,
    halving: bool = False,
) -> list[dict[str, Any]]:
    """Trains the trials ``values`` (one array per hyperparameter) for ``cfg.epochs`` epochs."""
    hypers = _trials.stack(values)
    n = len(next(iter(values.values())))
    params = _trials.initial_params(cfg, data, [cfg.seed])
    states = program.init(_trials.broadcast(jax.tree.map(lambda a: a[0], params), n), hypers)
    x, y = jax.device_put((data.x_train, data.y_train))
    k_data = jax.random.split(jax.random.key(cfg.seed))[1]
    active, epochs = np.ones(n, bool), np.zeros(n, int)
    for epoch in range(cfg.epochs):
        key = jax.random.fold_in(k_data, epoch)
        states, _ = program.epoch(states, hypers, active, x, y, key)
        epochs += active
        scores = jax.device_get(program.evaluate(states, data.x_val, data.y_val))
        if halving and epoch < cfg.epochs - 1:
            active = _keep_better_half(active, scores)
    return [
        {
            "values": {k: float(v[i]) for k, v in values.items()},
            "val_accuracy": float(scores["accuracy"][i]) if epochs[i] == cfg.epochs else math.nan,
            "val_loss": float(scores["loss"][i]) if epochs[i] == cfg.epochs else math.nan,
            "last_val_accuracy": float(scores["accuracy"][i]),
            "epochs": int(epochs[i]),
        }
        for i in range(n)
    ]


def _keep_better_half(active: np.ndarray, scores: dict[str, np.ndarray]) -> np.ndarray:
    acc = np.where(np.isfinite(scores["accuracy"]) & active, scores["accuracy"], -np.inf)
    keep = np.argsort(-acc, kind="stable")[: max(1, math.ceil(active.sum() / 2))]
    out = np.zeros_like(active)
    out[keep] = True
    return out & active


def check_ends(space: list[Range], cfg: TrainConfig) -> None:
    """Refuses a range that reaches a value a run refuses, before any trial runs: both ends are
    built as the run's config and optimizer (the fields' valid values are intervals, so the
    ends decide; a b1 range to 1.5 once chose 1.137 and wrote a config ``train`` refused)."""
    for r in space:
        for end in (r.low, r.high):
            try:
                make_optimizer(dataclasses.replace(cfg, **{r.name: end}), 1)
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"the range of {r.name!r} reaches {end:g}, a value a run refuses: {error}"
                ) from None


def search(
    cfg: TrainConfig,
    space: list[Range],
    *,
    trials: int = 16,
    fine_trials: int = 16,
    halving: bool = False,
    seed: int = 0,
    data: data_lib.Dataset | None = None,
    chunk: int | None = None,
    top_fraction: float = 0.25,
) -> SearchResult:
    """Coarse then fine random search over ``space`` around the run config ``cfg``.

    ``chunk`` trials run side by side (``vmap``); ``None`` picks all of them on an accelerator
    and one at a time on the CPU (where a wide batched matmul is no faster than a loop).
    ``fine_trials=0`` skips the fine stage.
    """
    check_space(space, _trials.searchable(cfg), _trials.fixed(cfg))
    check_ends(space, cfg)
    if trials < 1 or fine_trials < 0:
        raise ValueError(
            f"`trials` must be >= 1 and `fine_trials` >= 0, got {trials} and {fine_trials}"
        )
    data = with_validation(cfg, data)
    names = tuple(r.name for r in space)
    if chunk is None:
        chunk = None if jax.default_backend() != "cpu" else 1
    program = _trials.build(cfg, data, names, chunk=chunk)
    times, results = [], []
    stages = [("coarse", space, trials), ("fine", None, fine_trials)]
    fine_space: list[Range] = []
    for stage, ranges, n in stages:
        if n == 0:
            continue
        if ranges is None:
            fine_space = ranges = _narrow(space, results, top_fraction)
        t = time.perf_counter()
        out = run_stage(
            program, cfg, data, sample(ranges, n, seed=seed + len(times)), halving=halving
        )
        times.append(time.perf_counter() - t)
        results += [{"stage": stage, **r} for r in out]
    best = min(results, key=_rank)["values"]
    return SearchResult(cfg, list(space), results, best, times, fine_space)


def _narrow(space: list[Range], results: list[dict], top_fraction: float) -> list[Range]:
    ranked = sorted(results, key=_rank)
    top = ranked[: max(2, math.ceil(top_fraction * len(ranked)))]
    return [r.narrowed(np.array([t["values"][r.name] for t in top])) for r in space]


def plot_search(result: SearchResult, path: str | Path) -> None:
    """Validation accuracy against each hyperparameter (log axes where sampled so)."""
    matplotlib = require("matplotlib", "experiments")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(result.space)
    fig, axes = plt.subplots(1, k, figsize=(4.2 * k, 3.6), squeeze=False, sharey=True)
    for ax, r in zip(axes[0], result.space, strict=True):
        for stage, color in (("coarse", "tab:blue"), ("fine", "tab:orange")):
            pts = [t for t in result.trials if t["stage"] == stage]
            xs = [t["values"][r.name] for t in pts]
            ys = [t["last_val_accuracy"] for t in pts]
            full = [t["epochs"] == result.base.epochs for t in pts]
            ax.scatter(np.array(xs)[full], np.array(ys)[full], c=color, s=22, label=stage)
            cut = ~np.array(full, bool)
            if cut.any():
                ax.scatter(
                    np.array(xs)[cut],
                    np.array(ys)[cut],
                    facecolors="none",
                    edgecolors=color,
                    s=22,
                    label=f"{stage}, stopped early",
                )
        ax.axvline(result.best[r.name], color="k", lw=0.8, ls="--", label="chosen")
        if r.scale == "log":
            ax.set_xscale("log")
        elif r.scale == "log1m":
            ax.set_xscale("function", functions=(_log1m, _from_log1m))
            ax.set_xlim(r.low, r.high)
            ticks = [v for v in (0.5, 0.9, 0.99, 0.999) if r.low <= v <= r.high]
            ax.set_xticks(ticks or [r.low, r.high])
        ax.set(xlabel=r.name, title=f"{r.name} ({r.scale})")
    axes[0][0].set_ylabel("validation accuracy")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"coarse-to-fine search: {result.base.model} on {result.base.dataset}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _log1m(v: np.ndarray) -> np.ndarray:
    return -np.log10(np.clip(1 - np.asarray(v, float), 1e-12, None))


def _from_log1m(u: np.ndarray) -> np.ndarray:
    return 1 - 10.0 ** -np.asarray(u, float)
