"""Claims and checks: a stated test, a measured estimate with its interval, and the verdict.

A *claim* is a statement of the notes that could come out false on a real run. It carries its
:class:`Test` (the quantity, the comparison, the threshold and where the threshold comes from,
the number of seeds), fixed in the experiment's ``Config`` before anything runs, and its
:class:`Source` (the seed note, the section, the sentence quoted and rendered in English). The
verdict is computed here from the measured :class:`~jaxopt_notes.experiments._stats.Estimate`:

- ``reproduced``: the whole 95% interval lies on the claimed side of the threshold;
- ``not_reproduced``: the whole interval lies on the other side (or the effect is smaller than
  the stated size, which is the same thing when the threshold is that size);
- ``inconclusive``: the interval straddles the threshold, or the run was degenerate (a value
  that is not finite).

A *check* confirms that the library computes what the math says (an identity, a count, a
textbook point, a theorem that correct code cannot fail). It passes or fails and is never counted
as evidence for the notes. A *beyond* is a statement from an outside source (a paper, a book)
that the notes do not make, kept because it teaches; it is decided like a claim but counted
apart, and names its reference.

A comparison of optimizers, schedules or models is decided at each arm's own best rate chosen
on validation data (the fair test); ``also`` records how it fares at other settings, e.g. the
source's own, so the verdict says which settings the statement survives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from jaxopt_notes.experiments._stats import Estimate

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not_reproduced", "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)
KINDS = ("claim", "check", "beyond")
SEEDS_DIR = "../shared/seeds"  # where the notes live, relative to the repository root


@dataclasses.dataclass(frozen=True)
class Test:
    """What is measured and what counts as the claim holding, stated before the run.

    ``comparison`` is ``">"`` (the quantity must exceed ``threshold``), ``"<"`` (must stay
    below it) or ``"within"`` (``threshold`` is a ``(low, high)`` band). ``origin`` says where the
    threshold comes from: the source's figure, a mathematical bound, or a pre-stated effect size;
    never this project's own measurement.
    """

    quantity: str
    comparison: Literal[">", "<", "within"]
    threshold: float | tuple[float, float]
    origin: str
    seeds: int
    paired: bool = False
    unit: str = "seeds"  # what `seeds` counts: the independent units of the interval

    def __post_init__(self):
        if self.comparison not in (">", "<", "within"):
            raise ValueError(f"`comparison` must be '>', '<' or 'within', got {self.comparison!r}")
        if self.comparison == "within":
            low, high = self.threshold
            if not low < high:
                raise ValueError(f"a 'within' `threshold` must be (low, high), got {low, high}")
        if self.seeds < 0:
            raise ValueError(f"`seeds` must be >= 0 (0: deterministic), got {self.seeds}")

    def describe(self) -> str:
        if self.comparison == "within":
            low, high = self.threshold
            rule = f"in [{_num(low)}, {_num(high)}]"
        else:
            rule = f"{self.comparison} {_num(self.threshold)}"
        seeds = "deterministic" if self.seeds == 0 else f"{self.seeds} {self.unit}"
        if self.seeds and self.paired:
            seeds += ", paired"
        return f"{self.quantity} {rule} ({seeds}; threshold: {self.origin})"

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["threshold"] = list(self.threshold) if self.comparison == "within" else self.threshold
        d["statement"] = self.describe()
        return d


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a claim comes from: a seed note (file, section, quote and English), and a reference."""

    note: str  # file name in ../shared/seeds/, e.g. "004_0bb7a3a390427018.txt"
    section: str  # the section heading, as in the note
    quote: str  # the original sentence (Chinese)
    english: str  # its English rendering
    reference: str = ""  # the outside paper or book section, where there is one

    def __post_init__(self):
        if not self.note or not self.quote or not self.english:
            raise ValueError("a `Source` needs `note`, `quote` and `english`, got an empty one")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _num(x: float) -> str:
    return f"{x:.3g}"


LABEL = {REPRODUCED: "reproduced", NOT_REPRODUCED: "not reproduced", INCONCLUSIVE: "inconclusive"}


def decide(measured: Estimate, test: Test) -> tuple[str, str]:
    """The verdict of one estimate under one test, and the reason in words."""
    interval = f"{_num(measured.value)} (95% CI [{_num(measured.low)}, {_num(measured.high)}])"
    if not measured.finite:
        return INCONCLUSIVE, f"{test.quantity} is {interval}: not finite, a degenerate run"
    if test.comparison == "within":
        lo, hi = test.threshold
        band = f"[{_num(lo)}, {_num(hi)}]"
        if lo <= measured.low and measured.high <= hi:
            return REPRODUCED, f"{test.quantity} = {interval} lies inside {band}"
        if measured.high < lo or measured.low > hi:
            return NOT_REPRODUCED, f"{test.quantity} = {interval} lies outside {band}"
        return INCONCLUSIVE, f"{test.quantity} = {interval} overlaps the edge of {band}"
    t = float(test.threshold)
    above, below = measured.low > t, measured.high < t
    if test.comparison == "<":
        above, below = below, above
    side = "above" if test.comparison == ">" else "below"
    other = "below" if test.comparison == ">" else "above"
    if above:
        return REPRODUCED, f"{test.quantity} = {interval} lies {side} {_num(t)}"
    if below:
        return NOT_REPRODUCED, f"{test.quantity} = {interval} lies {other} {_num(t)}"
    return INCONCLUSIVE, f"{test.quantity} = {interval} straddles {_num(t)}"


def combine(verdicts: Sequence[str]) -> str:
    """All parts reproduced: reproduced; any part not reproduced: not; otherwise inconclusive."""
    if all(v == REPRODUCED for v in verdicts):
        return REPRODUCED
    if any(v == NOT_REPRODUCED for v in verdicts):
        return NOT_REPRODUCED
    return INCONCLUSIVE


def claim(
    text: str,
    measured: Estimate | Sequence[Estimate],
    test: Test | Sequence[Test],
    source: Source,
    evidence: dict[str, Any] | None = None,
    note: str = "",
    *,
    id: str,
    kind: str = "claim",
    also: dict[str, tuple[Estimate, Test]] | None = None,
) -> dict:
    """A claim of the notes decided by ``test`` from ``measured`` (one estimate per test).

    Several (estimate, test) pairs make one claim that holds only if every part holds.
    ``id`` names the claim within its experiment (tests look it up by it).
    ``evidence`` holds the numbers behind the estimate for the report's table (scalars and
    :class:`Estimate` values are shown; long arrays belong in ``metrics``); ``note`` adds what
    the numbers alone do not say (e.g. whether a quick budget could explain a miss).
    ``kind`` is "claim" (a statement of the notes), "beyond" (an outside source's statement:
    ``source.reference`` must name it) or "check" (a theorem decided from an interval).
    ``also`` maps a setting's name (e.g. "at the source's settings") to its own (estimate,
    test); each is decided and reported beside the verdict, which it does not change.
    """
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {KINDS}, got {kind!r}")
    if kind == "beyond" and not source.reference:
        raise ValueError(f"a 'beyond' entry must name its outside `reference`, got none ({id})")
    measured = [measured] if isinstance(measured, Estimate) else list(measured)
    tests = [test] if isinstance(test, Test) else list(test)
    if len(measured) != len(tests) or not tests:
        raise ValueError(f"one estimate per test: got {len(measured)} and {len(tests)}")
    parts = [decide(m, t) for m, t in zip(measured, tests, strict=True)]
    verdict = combine([v for v, _ in parts])
    reason = "; ".join(r for _, r in parts)
    settings = {name: decide(m, t) for name, (m, t) in (also or {}).items()}
    for name, (v, r) in settings.items():
        reason += f". {name[0].upper()}{name[1:]}: {LABEL[v]} ({r})"
    if note:
        reason += f". {note}"
    extra = dict(evidence or {})
    extra |= {f"{name}: {t.quantity}": m for name, (m, t) in (also or {}).items()}
    return {
        "id": id,
        "claim": text,
        "kind": kind,
        "verdict": verdict,
        "settings": {name: v for name, (v, _) in settings.items()},
        "reason": reason,
        "test": _test_entry(tests),
        "measured": [m.as_dict() for m in measured],
        "parts": [v for v, _ in parts],
        "source": source.as_dict(),
        "evidence": _evidence(extra, measured, tests),
    }


def check(
    text: str,
    holds: bool,
    evidence: dict[str, Any],
    source: Source | None = None,
    reason: str = "",
    *,
    id: str,
) -> dict:
    """A check of the library's math: ``holds`` is computed by the caller from ``evidence``."""
    if not evidence:
        raise ValueError("a check needs the `evidence` it was decided from, got none")
    entry = {
        "id": id,
        "claim": text,
        "kind": "check",
        "verdict": REPRODUCED if bool(holds) else NOT_REPRODUCED,
        "reason": reason or ("holds" if holds else "does not hold"),
        "evidence": evidence,
    }
    if source is not None:
        entry["source"] = source.as_dict()
    return entry


def _test_entry(tests: list[Test]) -> dict:
    """One test as its dict; several as one dict over all (``parts`` holds each)."""
    if len(tests) == 1:
        return tests[0].as_dict() | {"parts": [tests[0].as_dict()]}
    parts = [t.as_dict() for t in tests]
    return {
        "quantity": " and ".join(t.quantity for t in tests),
        "comparison": "all of",
        "threshold": [p["threshold"] for p in parts],
        "origin": "; ".join(t.origin for t in tests),
        "seeds": max(t.seeds for t in tests),
        "paired": all(t.paired for t in tests),
        "statement": "; and ".join(t.describe() for t in tests),
        "parts": parts,
    }


def _evidence(extra: dict, measured: list[Estimate], tests: list[Test]) -> dict:
    out = {t.quantity: m.as_dict() for m, t in zip(measured, tests, strict=True)}
    for k, v in extra.items():
        out[k] = v.as_dict() if isinstance(v, Estimate) else v
    return out


def tally(claims: Sequence[dict]) -> dict[str, int]:
    """Counts of the notes' claims by verdict, of beyond-the-notes entries, of checks passed."""
    real = [c for c in claims if c.get("kind") == "claim"]
    beyond = [c for c in claims if c.get("kind") == "beyond"]
    checks = [c for c in claims if c.get("kind") == "check"]
    out = {v: sum(c["verdict"] == v for c in real) for v in VERDICTS}
    out["claims"] = len(real)
    out["beyond"] = len(beyond)
    out["beyond_reproduced"] = sum(c["verdict"] == REPRODUCED for c in beyond)
    out["checks"] = len(checks)
    out["checks_passed"] = sum(c["verdict"] == REPRODUCED for c in checks)
    return out
