"""Search spaces: a range per hyperparameter, sampled at random on its own scale.

The notes' advice: sample at random rather than on a grid (a grid spends most trials repeating
the values of the unimportant hyperparameters) and on a log scale for anything whose effect is
multiplicative (a learning rate, a weight decay). A momentum or an EMA decay ``beta`` acts through
``1 - beta`` (the averaging window), so ``"log1m"`` samples ``1 - beta`` on a log scale.

>>> r = parse_range("learning_rate=1e-4:1e-1")
>>> r.name, r.low, r.high, r.scale
('learning_rate', 0.0001, 0.1, 'log')
>>> sample([r], 3, seed=0)["learning_rate"].round(5)
array([0.00814, 0.00064, 0.00013])
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from jaxopt_notes import _checks

SCALES = ("log", "linear", "log1m")


@dataclasses.dataclass(frozen=True)
class Range:
    """Values of ``name`` from ``low`` to ``high`` on the scale ``scale``."""

    name: str
    low: float
    high: float
    scale: str = "log"

    def __post_init__(self):
        _checks.one_of(f"{self.name}.scale", self.scale, SCALES)
        for end in (self.low, self.high):
            if not (isinstance(end, int | float) and math.isfinite(end)):
                raise ValueError(f"the range of {self.name!r} must have finite ends, got {end!r}")
        if self.low > self.high:
            raise ValueError(
                f"the range of {self.name!r} must have low <= high, got {self.low} > {self.high}"
            )
        if self.scale == "log" and self.low <= 0:
            raise ValueError(
                f"the range of {self.name!r} is on a log scale, so low must be > 0, got {self.low}"
            )
        if self.scale == "log1m" and self.high >= 1:
            raise ValueError(
                f"the range of {self.name!r} is on a log scale of 1 - value, so high must be "
                f"< 1, got {self.high}"
            )

    def to_unit(self, x: np.ndarray) -> np.ndarray:
        """Values on the sampling scale (log10 for ``log``, -log10(1 - x) for ``log1m``)."""
        x = np.asarray(x, float)
        return {"log": np.log10, "linear": lambda v: v, "log1m": lambda v: -np.log10(1 - v)}[
            self.scale
        ](x)

    def from_unit(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, float)
        return {"log": lambda v: 10.0**v, "linear": lambda v: v, "log1m": lambda v: 1 - 10.0**-v}[
            self.scale
        ](u)

    def narrowed(self, values: np.ndarray, margin: float = 0.1) -> Range:
        """The sub-range spanned by ``values``, widened by ``margin`` of this range's width on the
        sampling scale, clipped to this range: the fine stage's range."""
        a, b = self.to_unit([self.low, self.high])
        lo, hi = self.to_unit(np.min(values)), self.to_unit(np.max(values))
        pad = margin * (b - a)
        lo, hi = max(a, lo - pad), min(b, hi + pad)
        low, high = (float(v) for v in self.from_unit([lo, hi]))
        return dataclasses.replace(self, low=min(low, high), high=max(low, high))


def parse_range(text: str) -> Range:
    """``"name=low:high[:scale]"``: ``"learning_rate=1e-4:1e-1"``, ``"b1=0.8:0.99:log1m"``."""
    name, sep, spec = text.partition("=")
    parts = spec.split(":")
    if not sep or not name or len(parts) not in (2, 3):
        raise ValueError(
            f"`search` must be NAME=LOW:HIGH or NAME=LOW:HIGH:SCALE (scale one of {SCALES}), "
            f"got {text!r}"
        )
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise ValueError(f"the range of {name!r} must have numeric ends, got {spec!r}") from None
    return Range(name.strip().replace("-", "_"), low, high, parts[2] if len(parts) == 3 else "log")


def check_space(space: list[Range], allowed: tuple[str, ...], fixed: tuple[str, ...] = ()) -> None:
    """Refuses an empty space, a name twice, or a name the run config cannot vary (``fixed``:
    names the config has but a compiled stage cannot vary)."""
    if not space:
        raise ValueError(f"the search space must name at least one hyperparameter of {allowed}")
    names = [r.name for r in space]
    for name in names:
        if name in fixed:
            raise ValueError(
                f"`{name}` is a field of the run config, but it is fixed inside the compiled "
                f"model or loop, so one stage cannot vary it; search {allowed}, or compare "
                f"values of `{name}` with separate runs"
            )
        if name not in allowed:
            raise ValueError(
                f"`{name}` is not a hyperparameter this run config can search; it can search "
                f"{allowed}"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"each hyperparameter may be searched once, got {names}")


def sample(space: list[Range], n: int, *, seed: int) -> dict[str, np.ndarray]:
    """``n`` random points, independently uniform on each range's sampling scale."""
    if n < 1:
        raise ValueError(f"`trials` must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    out = {}
    for r in space:
        a, b = r.to_unit([r.low, r.high])
        out[r.name] = r.from_unit(rng.uniform(a, b, n))
    return out
