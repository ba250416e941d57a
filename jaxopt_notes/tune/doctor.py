"""Reading a run's curves the way the notes do, and naming what they show.

The notes' cases (cs231n's slides on choosing hyperparameters, Saito 6.5), each a rule over the
per-epoch curves of ``metrics.jsonl`` (``train_loss``, ``val_loss``, ``train_accuracy``,
``val_accuracy``; ``learning_rate`` where recorded, else recomputed from ``config.toml``):

- ``lr_too_high``: the loss explodes (a non-finite value, or above ``1.5 ln C``) or bounces
  around the chance level ``ln C`` for the whole run (a plateau from the start);
- ``bad_init``: a long flat start, the loss stuck near ``ln C`` for two epochs or more, that
  later falls (or sits still there for the whole run): the signal cannot get through the initial
  weights;
- ``decayed_too_early``: the rate dropped (3x or more in one epoch) while the loss was still
  falling fast, and the loss stalled after it;
- ``overfitting``: the train/validation accuracy gap is large and growing while the training
  accuracy climbs;
- ``underfitting``: the training loss still high (above ``0.25 ln C``) with no large gap, or both
  curves together and still rising at the end: a bigger model or a longer run (named only when
  no other case explains the run).

A run with none of these is ``healthy``. Every finding carries the numbers that decided it.

>>> history = [{"epoch": e, "train_loss": 2.3 / e, "val_loss": 2.3 / e,
...             "train_accuracy": 1 - .5 / e, "val_accuracy": 1 - .5 / e - .01}
...            for e in range(1, 9)]
>>> diagnose(history).cases  # still rising at the end: train longer
['underfitting']
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

CASES = ("lr_too_high", "bad_init", "decayed_too_early", "overfitting", "underfitting")
# the rules' thresholds; named so the explanations can cite them
RULES = {
    "explode_factor": 1.5,  # a loss above 1.5 ln C is worse than guessing: diverging
    "flat_band": 0.05,  # within 5% of ln C counts as "at the chance level"
    "flat_epochs": 2,  # a flat start this long is a long flat start
    "quiet": 0.002,  # a flat loss varying by under 0.2% between epochs is sitting still
    "decay_factor": 3.0,  # a rate cut at least 3x between two epochs is a decay step
    "fast_fall": 0.05,  # falling 5%/epoch or more before the cut is still falling fast
    "stall_fraction": 0.25,  # after the cut, less than 1/4 of that speed is a stall
    "gap": 0.08,  # a train - validation accuracy gap of 8 points is large
    "gap_growth": 0.04,  # it grew by 4 points or more from its smallest
    "small_gap": 0.05,  # within 5 points the curves rise together
    "high_loss": 0.25,  # a final training loss above 0.25 ln C is far from fitting
    "rising": 0.01,  # both accuracies gaining 1 point/epoch or more at the end
}


@dataclasses.dataclass
class Finding:
    """One case the curves show: the epochs it covers, the deciding numbers, what to try."""

    case: str
    epochs: tuple[int, int]
    evidence: dict[str, float]
    explanation: str
    advice: str


@dataclasses.dataclass
class Diagnosis:
    history: list[dict[str, Any]]
    findings: list[Finding]
    num_classes: int
    learning_rates: list[float] | None = None
    # per weight matrix, from the checkpoints: how far the run moved it from its init
    weights: list[dict[str, Any]] | None = None

    @property
    def cases(self) -> list[str]:
        return [f.case for f in self.findings] or ["healthy"]

    @property
    def healthy(self) -> bool:
        return not self.findings

    def report(self) -> str:
        """The findings as text, one paragraph each (or why the run looks healthy)."""
        text = self._findings_text()
        if self.weights:
            moved = ", ".join(f"{w['layer']} {w['moved']:.3g}" for w in self.weights)
            text += f"\nweights moved from their init (|w - w0| / |w0|): {moved}"
        return text

    def _findings_text(self) -> str:
        if self.healthy:
            last = self.history[-1]
            return (
                f"healthy: after {last['epoch']} epochs train loss {last['train_loss']:.3f}, "
                f"validation accuracy {last['val_accuracy']:.4f}, train/validation gap "
                f"{last['train_accuracy'] - last['val_accuracy']:+.3f}; none of the notes' "
                f"cases ({', '.join(CASES)}) applies"
            )
        return "\n".join(
            f"{f.case} (epochs {f.epochs[0]}-{f.epochs[1]}): {f.explanation} Try: {f.advice}"
            for f in self.findings
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "findings": [dataclasses.asdict(f) for f in self.findings],
            "num_classes": self.num_classes,
            "rules": RULES,
            "weights": self.weights,
            "report": self.report(),
        }


def diagnose(
    history: list[dict[str, Any]],
    *,
    num_classes: int = 10,
    learning_rates: list[float] | None = None,
) -> Diagnosis:
    """Names the notes' cases in per-epoch ``history`` records (see the module docstring).

    ``learning_rates`` (one per epoch, the rate at its end) enables ``decayed_too_early``; by
    default it is read from the records' ``learning_rate`` when they have one.
    """
    if not history:
        raise ValueError("`history` must hold at least one epoch, got none")
    c = _curves(history)
    if learning_rates is None and all("learning_rate" in r for r in history):
        learning_rates = [float(r["learning_rate"]) for r in history]
    chance = math.log(num_classes)
    exploded = _lr_too_high(c, chance)
    findings = [exploded] if exploded else []
    if not exploded:
        rules = (_bad_init(c, chance), _decayed_too_early(c, learning_rates, chance))
        findings += [f for f in rules if f]
        over = _overfitting(c)
        # underfitting is what is left when nothing above explains a high loss
        under = None if findings or over else _underfitting(c, chance)
        findings += [f for f in (over, under) if f]
    return Diagnosis(history, findings, num_classes, learning_rates)


def _curves(history: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    keys = ("epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy")
    for i, record in enumerate(history):
        missing = [k for k in keys if k not in record]
        if missing:
            raise ValueError(f"epoch record {i + 1} must have {list(keys)}, it lacks {missing}")
    return {k: np.array([float(r[k]) for r in history]) for k in keys}


def _lr_too_high(c: dict, chance: float) -> Finding | None:
    loss, epoch = c["train_loss"], c["epoch"].astype(int)
    bad = ~np.isfinite(loss) | (loss > RULES["explode_factor"] * chance)
    if bad.any():
        first = int(np.argmax(bad))
        value = float(loss[first])
        return Finding(
            "lr_too_high",
            (int(epoch[first]), int(epoch[-1])),
            {"epoch": int(epoch[first]), "train_loss": value, "ln_C": chance},
            f"the training loss reached {value:.4g} in epoch {epoch[first]}, above "
            f"{RULES['explode_factor']} x ln C = {RULES['explode_factor'] * chance:.3f} "
            "(worse than guessing): the steps overshoot and the loss explodes.",
            "a learning rate 3-10x lower (a range test finds the edge), or gradient clipping.",
        )
    if (loss >= (1 - RULES["flat_band"]) * chance).all() and len(loss) >= 2 and not _quiet(loss):
        return Finding(
            "lr_too_high",
            (int(epoch[0]), int(epoch[-1])),
            {"min_train_loss": float(loss.min()), "ln_C": chance},
            f"the training loss never fell below {loss.min():.3f}, within "
            f"{RULES['flat_band']:.0%} of ln C = {chance:.3f}, in {len(loss)} epochs: a "
            "plateau at the chance level from the start, where too large a step keeps "
            "bouncing (or has killed the units).",
            "a learning rate 3-10x lower; if a lower rate does not help, check the init and "
            "the labels.",
        )
    return None


def _quiet(loss: np.ndarray) -> bool:
    """Whether a flat loss sits still (uniform outputs: no signal) rather than bouncing."""
    return bool(np.std(loss) <= RULES["quiet"] * np.mean(loss))


def _bad_init(c: dict, chance: float) -> Finding | None:
    loss, epoch = c["train_loss"], c["epoch"].astype(int)
    flat = np.abs(loss - chance) <= RULES["flat_band"] * chance
    run = int(np.argmin(flat)) if not flat.all() else len(flat)
    if run == len(loss) and run >= RULES["flat_epochs"] and _quiet(loss):
        return Finding(
            "bad_init",
            (int(epoch[0]), int(epoch[-1])),
            {
                "flat_epochs": run,
                "flat_loss": float(loss.mean()),
                "ln_C": chance,
                "loss_std": float(np.std(loss)),
            },
            f"the training loss sat at {loss.mean():.4f} (ln C = {chance:.4f}, varying by only "
            f"{np.std(loss):.4f}) for all {run} epochs: the outputs stay uniform, no signal gets "
            "through the initial weights (too small, or saturating the units).",
            "a scaled init (He for ReLU, Xavier for tanh/sigmoid) or BatchNorm.",
        )
    later = loss[run:]
    if run < RULES["flat_epochs"] or not len(later) or later.min() > 0.8 * chance:
        return None
    return Finding(
        "bad_init",
        (int(epoch[0]), int(epoch[run - 1])),
        {
            "flat_epochs": run,
            "flat_loss": float(loss[:run].mean()),
            "ln_C": chance,
            "final_train_loss": float(loss[-1]),
        },
        f"the training loss stayed at {loss[:run].mean():.3f} (ln C = {chance:.3f}) for the "
        f"first {run} epochs, then fell to {loss[-1]:.3f}: a long flat start, the mark of "
        "initial weights too small (or too large) for the signal to pass.",
        "a scaled init (He for ReLU, Xavier for tanh/sigmoid) or BatchNorm.",
    )


def _decayed_too_early(c: dict, lrs: list[float] | None, chance: float) -> Finding | None:
    if lrs is None or len(lrs) < 4:
        return None
    loss, epoch, lr = c["train_loss"], c["epoch"].astype(int), np.asarray(lrs, float)
    prev = np.concatenate([[chance], loss])  # the loss before epoch j is prev[j]
    for i in range(1, len(lr) - 2):  # epoch i+1 runs at a rate cut from epoch i's
        if not lr[i] * RULES["decay_factor"] <= lr[i - 1]:
            continue
        before = float((prev[i - 1] - prev[i]) / prev[i - 1])  # the last epoch at the old rate
        tail = loss[i:]  # from the first epoch at the cut rate on
        after = float(np.mean((tail[:-1] - tail[1:]) / tail[:-1]))
        if before >= RULES["fast_fall"] and after < RULES["stall_fraction"] * before:
            return Finding(
                "decayed_too_early",
                (int(epoch[i]), int(epoch[-1])),
                {
                    "decay_epoch": int(epoch[i]),
                    "lr_before": float(lr[i - 1]),
                    "lr_after": float(lr[i]),
                    "fall_before_per_epoch": float(before),
                    "fall_after_per_epoch": after,
                },
                f"the rate was cut from {lr[i - 1]:.3g} to {lr[i]:.3g} at epoch {epoch[i]} while "
                f"the training loss was still falling {before:.1%} per epoch; from then on it fell "
                f"{after:.1%} per epoch: the step stalled.",
                "decay later (or less: a larger gamma, a longer step), or a cosine schedule.",
            )
    return None


def _overfitting(c: dict) -> Finding | None:
    gap = c["train_accuracy"] - c["val_accuracy"]
    epoch = c["epoch"].astype(int)
    low = int(np.argmin(gap))
    growth = float(gap[-1] - gap[low])
    if gap[-1] < RULES["gap"] or growth < RULES["gap_growth"]:
        return None
    best = int(np.argmin(c["val_loss"]))
    return Finding(
        "overfitting",
        (int(epoch[low]), int(epoch[-1])),
        {
            "final_gap": float(gap[-1]),
            "gap_growth": growth,
            "train_accuracy": float(c["train_accuracy"][-1]),
            "val_accuracy": float(c["val_accuracy"][-1]),
            "val_loss_min": float(c["val_loss"][best]),
            "val_loss_final": float(c["val_loss"][-1]),
        },
        f"the train/validation accuracy gap grew from {gap[low]:.3f} (epoch {epoch[low]}) to "
        f"{gap[-1]:.3f} (train {c['train_accuracy'][-1]:.3f}, validation "
        f"{c['val_accuracy'][-1]:.3f}); the validation loss was lowest, {c['val_loss'][best]:.3f},"
        f" at epoch {epoch[best]} and ended at {c['val_loss'][-1]:.3f}.",
        "more data or augmentation, weight decay or dropout, a smaller model"
        + (f", or early stopping at epoch {epoch[best]}." if best < len(epoch) - 1 else "."),
    )


def _underfitting(c: dict, chance: float) -> Finding | None:
    gap = c["train_accuracy"] - c["val_accuracy"]
    epoch = c["epoch"].astype(int)
    span = min(2, len(epoch) - 1)
    rise = {
        k: (c[k][-1] - c[k][-1 - span]) / span if span else 0.0
        for k in ("train_accuracy", "val_accuracy")
    }
    rising = min(rise.values()) >= RULES["rising"] and abs(gap[-1]) <= RULES["small_gap"]
    high = c["train_loss"][-1] > RULES["high_loss"] * chance and gap[-1] < RULES["gap"]
    if not (rising or high):
        return None
    why = (
        f"the final training loss {c['train_loss'][-1]:.3f} is above "
        f"{RULES['high_loss']} x ln C = {RULES['high_loss'] * chance:.3f}"
        if high
        else "both accuracies are still rising"
    )
    return Finding(
        "underfitting",
        (int(epoch[-1 - span]), int(epoch[-1])),
        {
            "final_gap": float(gap[-1]),
            "train_loss": float(c["train_loss"][-1]),
            "train_accuracy": float(c["train_accuracy"][-1]),
            "train_rise_per_epoch": float(rise["train_accuracy"]),
            "val_rise_per_epoch": float(rise["val_accuracy"]),
        },
        f"{why} (train accuracy {c['train_accuracy'][-1]:.3f}, +{rise['train_accuracy']:.3f} "
        f"per epoch; validation +{rise['val_accuracy']:.3f}) and the train/validation gap is "
        f"only {gap[-1]:+.3f}: the model has not fitted the training data.",
        "a bigger model (wider, deeper) or a longer run; a higher rate if the loss falls slowly.",
    )
