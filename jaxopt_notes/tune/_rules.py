"""The doctor's rules: one function per case over the per-epoch curves, each returning the
:class:`Finding` it decided (its epochs, curves, rule and numbers) or ``None``. The cases and
what a :class:`~jaxopt_notes.tune.Diagnosis` makes of them are in :mod:`.doctor`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# the rules' thresholds; named so the explanations can cite them
RULES = {
    "min_epochs": 4,  # a trend (plateau, flat start, stall, growing gap) needs this many epochs
    "explode_factor": 1.5,  # a loss above 1.5 x chance is worse than guessing: diverging
    "flat_band": 0.05,  # within 5% of chance counts as "at the chance level"
    "flat_epochs": 2,  # a flat start this long is a long flat start
    "quiet": 0.002,  # a flat loss varying by under 0.2% between epochs is sitting still
    "learning": 0.1,  # validation accuracy 10 points above 1/C: the signal gets through
    "decay_factor": 3.0,  # a rate cut at least 3x between two epochs is a decay step
    "fast_fall": 0.05,  # falling 5%/epoch or more before the cut is still falling fast
    "stall_fraction": 0.25,  # after the cut, less than 1/4 of that speed is a stall
    "gap": 0.08,  # a train - validation accuracy gap of 8 points is large
    "gap_growth": 0.04,  # it grew by 4 points or more from its smallest
    "high_loss": 0.25,  # a final training loss a quarter of the way from floor to chance
}
CURVES = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


@dataclasses.dataclass
class Finding:
    """One case the curves show: the epochs and curves it read, the rule that decided it, the
    deciding numbers, what to try."""

    case: str
    epochs: tuple[int, int]
    curves: tuple[str, ...]
    rule: str
    evidence: dict[str, float]
    explanation: str
    advice: str


def findings(c: dict, chance: float, floor: float, lrs: list[float] | None) -> list[Finding]:
    exploded = _exploded(c, chance)
    if exploded or len(c["epoch"]) < RULES["min_epochs"]:
        return [exploded] if exploded else []
    found = [_plateau(c, chance), _bad_init(c, chance), _decayed_too_early(c, lrs, chance)]
    findings = [f for f in found if f]
    over = _overfitting(c)
    # underfitting is what is left when nothing above explains a high loss
    under = None if findings or over else _underfitting(c, chance, floor)
    return findings + [f for f in (over, under) if f]


def curves(history: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    keys = ("epoch", *CURVES)
    for i, record in enumerate(history):
        missing = [k for k in keys if k not in record]
        if missing:
            raise ValueError(f"epoch record {i + 1} must have {list(keys)}, it lacks {missing}")
        bad = [k for k in keys if not _number_or_null(record[k])]
        if bad:
            shown = {k: record[k] for k in bad}
            raise ValueError(f"epoch record {i + 1} must hold numbers (or null), got {shown}")
    return {k: np.array([np.nan if r[k] is None else float(r[k]) for r in history]) for k in keys}


def _number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _learning(c: dict, upto: int | None = None) -> bool:
    """Whether the validation accuracy rose clearly above chance (in epochs ``:upto``)."""
    acc = np.nan_to_num(c["val_accuracy"][:upto], nan=0.0)
    return bool(acc.max(initial=0.0) >= c["chance_accuracy"] + RULES["learning"])


def _exploded(c: dict, chance: float) -> Finding | None:
    loss, epoch = c["train_loss"], c["epoch"].astype(int)
    bad = ~np.isfinite(loss) | (loss > RULES["explode_factor"] * chance)
    if not bad.any():
        return None
    first = int(np.argmax(bad))
    value = float(loss[first])
    return Finding(
        "lr_too_high",
        (int(epoch[first]), int(epoch[-1])),
        ("train_loss",),
        f"a training loss that is not finite or above {RULES['explode_factor']} x chance",
        {"epoch": int(epoch[first]), "train_loss": value, "chance": chance},
        f"the training loss reached {value:.4g} in epoch {epoch[first]}, above "
        f"{RULES['explode_factor']} x chance = {RULES['explode_factor'] * chance:.3f} "
        "(worse than guessing): the steps overshoot and the loss explodes.",
        "a learning rate 3-10x lower (a range test finds the edge), or gradient clipping.",
    )


def _plateau(c: dict, chance: float) -> Finding | None:
    loss, epoch = c["train_loss"], c["epoch"].astype(int)
    at_chance = (loss >= (1 - RULES["flat_band"]) * chance).all()
    # bouncing: up as well as down; a loss that only creeps down is a slow start (the sigmoid
    # LeNet's early plateau), and one that sits still is a dead init
    bouncing = bool((np.diff(loss) > 0).any()) and not _quiet(loss)
    if not at_chance or not bouncing or _learning(c):
        return None
    return Finding(
        "lr_too_high",
        (int(epoch[0]), int(epoch[-1])),
        ("train_loss", "val_accuracy"),
        f"the training loss within {RULES['flat_band']:.0%} of chance in every epoch, rising "
        f"as well as falling (not still), and the validation accuracy never "
        f"{RULES['learning']:.0%} above 1/C",
        {
            "min_train_loss": float(loss.min()),
            "chance": chance,
            "max_val_accuracy": float(np.nanmax(c["val_accuracy"])),
        },
        f"the training loss never fell below {loss.min():.3f}, within "
        f"{RULES['flat_band']:.0%} of chance = {chance:.3f}, in {len(loss)} epochs, and the "
        f"validation accuracy never passed {np.nanmax(c['val_accuracy']):.3f}: a plateau at "
        "the chance level from the start, where too large a step keeps bouncing (or has "
        "killed the units).",
        "a learning rate 3-10x lower; if a lower rate does not help, check the init and "
        "the labels.",
    )


def _quiet(loss: np.ndarray) -> bool:
    """Whether a flat loss sits still (uniform outputs: no signal) rather than bouncing."""
    return bool(np.std(loss) <= RULES["quiet"] * np.mean(loss))


def _bad_init(c: dict, chance: float) -> Finding | None:
    loss, epoch = c["train_loss"], c["epoch"].astype(int)
    acc_flat = c["val_accuracy"] < c["chance_accuracy"] + RULES["learning"]
    flat = (np.abs(loss - chance) <= RULES["flat_band"] * chance) & acc_flat
    run = int(np.argmin(flat)) if not flat.all() else len(flat)
    curves = ("train_loss", "val_accuracy")
    if run == len(loss) and run >= RULES["flat_epochs"] and _quiet(loss):
        return Finding(
            "bad_init",
            (int(epoch[0]), int(epoch[-1])),
            curves,
            f"the training loss within {RULES['flat_band']:.0%} of chance and still (varying "
            f"by under {RULES['quiet']:.1%}), the validation accuracy at chance, in every epoch",
            {
                "flat_epochs": run,
                "flat_loss": float(loss.mean()),
                "chance": chance,
                "loss_std": float(np.std(loss)),
            },
            f"the training loss sat at {loss.mean():.4f} (chance = {chance:.4f}, varying by only "
            f"{np.std(loss):.4f}) for all {run} epochs: the outputs stay uniform, no signal gets "
            "through the initial weights (too small, or saturating the units).",
            "a scaled init (He for ReLU, Xavier for tanh/sigmoid) or BatchNorm.",
        )
    later = loss[run:]
    if run < RULES["flat_epochs"] or not len(later) or later.min() > 0.8 * chance:
        return None
    if not _quiet(loss[:run]):  # a flat start that moves: a slow start, not a dead init
        return None
    return Finding(
        "bad_init",
        (int(epoch[0]), int(epoch[run - 1])),
        curves,
        f"the training loss within {RULES['flat_band']:.0%} of chance and still (varying by "
        f"under {RULES['quiet']:.1%}), with the validation accuracy at chance, for the first "
        f"{RULES['flat_epochs']} epochs or more, then falling below 0.8 x chance",
        {
            "flat_epochs": run,
            "flat_loss": float(loss[:run].mean()),
            "chance": chance,
            "final_train_loss": float(loss[-1]),
        },
        f"the training loss stayed at {loss[:run].mean():.3f} (chance = {chance:.3f}) and the "
        f"validation accuracy at chance for the first {run} epochs, then the loss fell to "
        f"{loss[-1]:.3f}: a long flat start, the mark of initial weights too small (or too "
        "large) for the signal to pass.",
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
                ("train_loss", "learning_rate"),
                f"a rate cut of {RULES['decay_factor']:g}x or more in one epoch while the "
                f"training loss fell {RULES['fast_fall']:.0%}/epoch or more, and after it less "
                f"than {RULES['stall_fraction']:g} of that speed",
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
        ("train_accuracy", "val_accuracy", "val_loss"),
        f"a final train - validation accuracy gap of {RULES['gap']:.0%} or more that grew by "
        f"{RULES['gap_growth']:.0%} or more from its smallest",
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


def _underfitting(c: dict, chance: float, floor: float) -> Finding | None:
    gap = c["train_accuracy"] - c["val_accuracy"]
    epoch, loss = c["epoch"].astype(int), c["train_loss"]
    line = floor + RULES["high_loss"] * (chance - floor)
    # both losses: augmentation alone raises the training loss of a model that fits well; the
    # validation loss is on plain labels (floor 0)
    val, val_line = c["val_loss"][-1], RULES["high_loss"] * chance
    if not (loss[-1] > line and val > val_line and gap[-1] < RULES["gap"]):
        return None
    return Finding(
        "underfitting",
        (int(epoch[-1]), int(epoch[-1])),
        ("train_loss", "val_loss", "train_accuracy", "val_accuracy"),
        f"final training and validation losses both more than {RULES['high_loss']:g} of the "
        f"way from their floor (the validation loss's is 0) to chance, with a train - "
        f"validation accuracy gap under {RULES['gap']:.0%}",
        {
            "final_gap": float(gap[-1]),
            "train_loss": float(loss[-1]),
            "val_loss": float(val),
            "threshold": float(line),
            "val_threshold": float(val_line),
            "floor": floor,
            "train_accuracy": float(c["train_accuracy"][-1]),
        },
        f"the final training loss {loss[-1]:.3f} is above floor + {RULES['high_loss']:g} x "
        f"(chance - floor) = {line:.3f} (floor {floor:.3f}, chance {chance:.3f}) and the "
        f"validation loss {val:.3f} above {val_line:.3f} (train accuracy "
        f"{c['train_accuracy'][-1]:.3f}); the train/validation gap is only {gap[-1]:+.3f}: "
        "the model has not fitted the training data.",
        "a bigger model (wider, deeper) or a longer run; a higher rate if the loss falls slowly.",
    )
