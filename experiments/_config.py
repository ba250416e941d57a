"""Experiment configs: fields with stated ranges, ``--set`` parsing, and refusals in sentences.

A ``Config`` is a frozen dataclass. A field may declare its range with :func:`param`; a field
without one gets the default rule of its type: ints must be >= 1 and floats finite and > 0,
unless the default itself is 0 (then >= 0) or negative (then any finite value). Tuples follow
the rule element-wise; strings with ``choices`` must be one of them. A ``Config`` may add its own
cross-field rules in a ``validate(self)`` method that raises ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

_RANGE = "jaxopt_notes.range"


def param(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple | None = None,
    help: str = "",
) -> Any:
    """A config field with its allowed range (``low``/``high``, open or closed) or ``choices``."""
    rule = {
        "low": low,
        "high": high,
        "low_open": low_open,
        "high_open": high_open,
        "choices": choices,
        "help": help,
    }
    if isinstance(default, list | dict | set):
        raise TypeError("config fields must be immutable: use a tuple, not a list")
    return dataclasses.field(default=default, metadata={_RANGE: rule})


def _rule(field: dataclasses.Field, default: Any) -> dict:
    rule = dict(field.metadata.get(_RANGE, {}))
    if rule.get("low") is None and rule.get("high") is None and not rule.get("choices"):
        sample = default[0] if isinstance(default, tuple) and default else default
        if isinstance(sample, bool) or not isinstance(sample, int | float):
            return rule
        if sample < 0:
            rule.update(low=None)
        elif sample == 0:
            rule.update(low=0, low_open=False)
        elif isinstance(sample, int):
            rule.update(low=1, low_open=False)
        else:
            rule.update(low=0, low_open=True)
    return rule


def _describe(rule: dict) -> str:
    if rule.get("choices"):
        return f"one of {list(rule['choices'])}"
    parts = []
    if rule.get("low") is not None:
        parts.append(f"{'>' if rule.get('low_open') else '>='} {rule['low']:g}")
    if rule.get("high") is not None:
        parts.append(f"{'<' if rule.get('high_open') else '<='} {rule['high']:g}")
    return " and ".join(parts) if parts else "finite"


def _check_value(name: str, value: Any, rule: dict) -> None:
    if isinstance(value, tuple):
        if not value:
            raise ValueError(f"`{name}` must hold at least one value, got an empty tuple")
        for v in value:
            _check_value(name, v, rule)
        return
    if rule.get("choices") and value not in rule["choices"]:
        raise ValueError(f"`{name}` must be {_describe(rule)}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    low, high = rule.get("low"), rule.get("high")
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if rule.get("low_open") else value < low
    if high is not None:
        bad |= value >= high if rule.get("high_open") else value > high
    if bad:
        raise ValueError(f"`{name}` must be {_describe(rule)}, got {value!r}")


def validate(cfg: Any, defaults: Any | None = None) -> None:
    """Raises ``ValueError`` naming the field, the rule and the value of the first bad field."""
    defaults = defaults or type(cfg)()
    for f in dataclasses.fields(cfg):
        _check_value(f.name, getattr(cfg, f.name), _rule(f, getattr(defaults, f.name)))
    extra = getattr(cfg, "validate", None)
    if callable(extra):
        extra()


def _parse_one(name: str, text: str, like: Any) -> Any:
    if isinstance(like, bool):
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"`{name}` must be true or false, got {text!r}")
        return text.lower() in ("true", "1")
    try:
        if isinstance(like, int):
            return int(text)
        if isinstance(like, float):
            return float(text)
    except ValueError:
        kind = "an integer" if isinstance(like, int) else "a number"
        raise ValueError(f"`{name}` must be {kind}, got {text!r}") from None
    return text


def parse(cfg: Any, name: str, text: str) -> Any:
    """The value ``--set name=text`` gives the field ``name`` of ``cfg`` (tuples: a,b,c)."""
    like = getattr(cfg, name)
    if isinstance(like, tuple):
        sample = like[0] if like else 0.0
        return tuple(_parse_one(name, t.strip(), sample) for t in text.split(",") if t.strip())
    return _parse_one(name, text, like)


def fields_help(cfg: Any) -> list[str]:
    """One line per field: name, default, rule, and its help text where it has one."""
    defaults = type(cfg)()
    lines = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        rule = _rule(f, getattr(defaults, f.name))
        sample = value[0] if isinstance(value, tuple) and value else value
        if isinstance(sample, bool):
            kind = "true or false"
        elif isinstance(sample, str) and not rule.get("choices"):
            kind = "text"
        else:
            kind = _describe(rule)
        text = f"  {f.name}={shown}  ({kind})"
        if rule.get("help"):
            text += f"  {rule['help']}"
        lines.append(text)
    return lines


def changed(cfg: Any, reference: Any) -> dict[str, tuple[Any, Any]]:
    """Fields where ``cfg`` differs from ``reference``: {name: (reference value, cfg value)}."""
    return {
        f.name: (getattr(reference, f.name), getattr(cfg, f.name))
        for f in dataclasses.fields(cfg)
        if getattr(cfg, f.name) != getattr(reference, f.name)
    }
