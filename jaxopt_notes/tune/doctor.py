"""Reading a run's curves the way the notes do, and naming what they show.

The notes' cases (cs231n's slides on choosing hyperparameters, Saito 6.5), each a rule over the
per-epoch curves of ``metrics.jsonl`` (``train_loss``, ``val_loss``, ``train_accuracy``,
``val_accuracy``; ``learning_rate`` where recorded, else recomputed from ``config.toml``). The
loss is read against two levels: ``chance``, the loss of a uniform guess (``ln C`` for the
cross-entropy over C classes), and ``floor``, the lowest loss the run can reach (0, or the
entropy of the smoothed labels under label smoothing):

- ``lr_too_high``: the loss explodes (a non-finite value, or above ``1.5 chance``), or bounces
  around the chance level for the whole run while the validation accuracy stays at chance;
- ``bad_init``: a long flat start, the loss stuck near chance for two epochs or more with the
  validation accuracy at chance too, that later falls (or sits still there for the whole run):
  the signal cannot get through the initial weights;
- ``decayed_too_early``: the rate dropped (3x or more in one epoch) while the loss was still
  falling fast, and the loss stalled after it;
- ``overfitting``: the train/validation accuracy gap is large and growing while the training
  accuracy climbs;
- ``underfitting``: the training loss still far above its floor (a quarter of the way up to
  chance) with no large gap: a bigger model or a longer run (named only when no other case
  explains the run).

An exploding loss is named after any number of epochs. Every other rule reads a trend (a
plateau, a flat start that ends, a stall after a cut, a gap that grows), which takes
``RULES["min_epochs"]`` epochs to see: a shorter run that did not explode is "not enough
epochs to tell" (``not_enough_epochs``), not healthy and not a case. A longer run with none of
the cases is ``healthy``. Every finding states its evidence: the epochs, the curves and the
rule that decided it, with the numbers.

>>> history = [{"epoch": e, "train_loss": 2.3 / e, "val_loss": 2.3 / e,
...             "train_accuracy": 1 - .5 / e, "val_accuracy": 1 - .5 / e - .01}
...            for e in range(1, 9)]
>>> diagnose(history).cases
['healthy']
>>> diagnose(history[:2]).cases
['not_enough_epochs']
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxopt_notes.tune._rules import CURVES, RULES, Finding, curves, findings

CASES = ("lr_too_high", "bad_init", "decayed_too_early", "overfitting", "underfitting")
# what the doctor says where it names no case
VERDICTS = ("healthy", "not_enough_epochs")


@dataclasses.dataclass
class Diagnosis:
    history: list[dict[str, Any]]
    findings: list[Finding]
    num_classes: int
    learning_rates: list[float] | None = None
    # per weight matrix, from the checkpoints: how far the run moved it from its init
    weights: list[dict[str, Any]] | None = None
    chance: float | None = None  # the loss of a uniform guess (default ln C)
    floor: float = 0.0  # the lowest reachable loss (label smoothing's entropy)

    @property
    def too_short(self) -> bool:
        """Fewer epochs than the trend rules need (and no explosion to name)."""
        return not self.findings and len(self.history) < RULES["min_epochs"]

    @property
    def cases(self) -> list[str]:
        if self.findings:
            return [f.case for f in self.findings]
        return ["not_enough_epochs" if self.too_short else "healthy"]

    @property
    def healthy(self) -> bool:
        return not self.findings and not self.too_short

    def report(self) -> str:
        """The findings as text, one paragraph each (or why the run looks healthy)."""
        text = self._findings_text()
        if self.weights:
            moved = ", ".join(f"{w['layer']} {w['moved']:.3g}" for w in self.weights)
            text += f"\nweights moved from their init (|w - w0| / |w0|): {moved}"
        return text

    def _findings_text(self) -> str:
        if self.findings:
            return "\n".join(
                f"{f.case} (epochs {f.epochs[0]}-{f.epochs[1]} of {', '.join(f.curves)}; rule: "
                f"{f.rule}): {f.explanation} Try: {f.advice}"
                for f in self.findings
            )
        last, n = self.history[-1], len(self.history)
        state = (
            f"after {n} epoch{'s' if n > 1 else ''} train loss {_show(last['train_loss'], 3)}, "
            f"validation accuracy {_show(last['val_accuracy'], 4)} (from "
            f"{_show(self.history[0]['val_accuracy'], 4)} after epoch 1)"
        )
        if self.too_short:
            return (
                f"not enough epochs to tell: {state}. The loss did not explode (the one rule "
                f"a single epoch decides); every other rule reads a trend over at least "
                f"{RULES['min_epochs']} epochs of {', '.join(CURVES)}. Train longer, then ask "
                "again."
            )
        return (
            f"healthy: {state}; no rule of the notes' cases ({', '.join(CASES)}) fired on "
            f"epochs 1-{last['epoch']} of {', '.join(CURVES)}"
        )

    def inputs(self) -> dict[str, Any]:
        """The arguments of :func:`diagnose` that give this diagnosis again."""
        return {
            "history": self.history,
            "num_classes": self.num_classes,
            "learning_rates": self.learning_rates,
            "chance": self.chance,
            "floor": self.floor,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "findings": [dataclasses.asdict(f) for f in self.findings],
            "num_classes": self.num_classes,
            "chance": self.chance,
            "floor": self.floor,
            "epochs": len(self.history),
            "rules": RULES,
            "weights": self.weights,
            "report": self.report(),
        }


def _show(value: Any, digits: int) -> str:
    return "null" if value is None else f"{value:.{digits}f}"


def diagnose(
    history: list[dict[str, Any]],
    *,
    num_classes: int = 10,
    learning_rates: list[float] | None = None,
    chance: float | None = None,
    floor: float = 0.0,
) -> Diagnosis:
    """Names the notes' cases in per-epoch ``history`` records (see the module docstring).

    Records of another kind (``"kind": "curvature"``, from ``train --track-curvature``) are
    set aside; a null loss or accuracy (a diverged run's) reads as NaN. ``learning_rates``
    (one per epoch, the rate at its end) enables ``decayed_too_early``; by default it is read
    from the records' ``learning_rate`` when they have one. ``chance`` is the loss of a uniform
    guess (default ``ln num_classes``), ``floor`` the lowest loss reachable (0; the smoothed
    labels' entropy under label smoothing).
    """
    for i, record in enumerate(history):
        if not isinstance(record, dict):
            raise ValueError(f"record {i + 1} of `history` must be a JSON object, got {record!r}")
    history = [r for r in history if "kind" not in r]
    if not history:
        raise ValueError("`history` must hold at least one epoch record, got none")
    if not (isinstance(num_classes, int) and num_classes >= 2):
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}")
    chance = math.log(num_classes) if chance is None else float(chance)
    if not 0 <= floor < chance:
        raise ValueError(f"`floor` must be in [0, chance = {chance:.4g}), got {floor!r}")
    c = curves(history)
    if learning_rates is None and all("learning_rate" in r for r in history):
        learning_rates = [float(r["learning_rate"]) for r in history]
    c["chance_accuracy"] = 1 / num_classes
    found = findings(c, chance, floor, learning_rates)
    return Diagnosis(history, found, num_classes, learning_rates, None, chance, floor)
