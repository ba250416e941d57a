"""Redraws experiments' figures from their ``result.json``, without running anything again.

Every experiment's ``draw(metrics, cfg, out_dir)`` reads only what ``main`` stored in the
metrics, and ``main`` calls it on :func:`stored` (the metrics as JSON gives them back), so a
figure drawn at the end of a run and one redrawn later by :func:`plot` come from the same
numbers through the same code.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from jaxopt_notes.experiments import _common

# ``_common.to_json`` writes a float that is not finite as its name
_NOT_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def from_json(value: Any) -> Any:
    """``to_json``'s output with the non-finite floats it wrote as strings made floats again."""
    if isinstance(value, dict):
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if isinstance(value, str) and value in _NOT_FINITE:
        return _NOT_FINITE[value]
    return value


def stored(metrics: dict) -> dict:
    """``metrics`` as they read back from ``result.json``: what every ``draw`` is given."""
    return from_json(json.loads(json.dumps(_common.to_json(metrics))))


def compact(values: Any, digits: int = 4) -> Any:
    """``values`` (an array, nested lists) as nested lists of floats rounded to ``digits``
    significant digits: finer than a figure's pixels, and a fraction of the text in JSON."""
    a = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(a))))
        out = np.where(np.isfinite(a) & (a != 0), np.round(a * scale) / scale, a)
    return out.tolist()


def thin(length: int, points: int = 200, *, log: bool = False) -> np.ndarray:
    """Every k-th index of ``range(length)`` and the last, about ``points`` of them at most:
    for smooth curves (and bands around them) kept for a figure only. ``log``: evenly spaced
    on a log axis of 1-based steps instead (all of the first ones, fewer later)."""
    if log:
        return np.unique(np.round(np.geomspace(1, max(length, 1), points)).astype(int)) - 1
    index = np.arange(0, length, max(1, -(-length // points)))
    return index if length == 0 or index[-1] == length - 1 else np.append(index, length - 1)


def curve(values: Any, points: int = 400) -> dict:
    """A curve kept for a figure, ``{"index": [...], "value": [...]}``: all of it when it has
    at most ``points`` values, else the lowest and highest value of each of ``points / 2``
    stretches (and the ends), which draws the same line at a figure's resolution, spikes
    included; values to 4 significant digits. A stretch's first non-finite value is kept so a
    line still breaks where the curve does."""
    v = np.asarray(values, dtype=float)
    if len(v) <= points:
        index = np.arange(len(v))
    else:
        keep = [0, len(v) - 1]
        edges = np.linspace(0, len(v), points // 2 + 1).astype(int)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            finite = np.flatnonzero(np.isfinite(v[lo:hi]))
            if len(finite) < hi - lo:
                keep.append(lo + int(np.argmin(np.isfinite(v[lo:hi]))))
            if len(finite):
                seg = v[lo:hi][finite]
                keep += [lo + finite[np.argmin(seg)], lo + finite[np.argmax(seg)]]
        index = np.unique(keep)
    return {"index": index.tolist(), "value": compact(v[index])}


def figures(drawn: str | list[str]) -> list[str]:
    """A ``draw``'s return value (one file name or several) as a list."""
    return [drawn] if isinstance(drawn, str) else list(drawn)


def config(module, values: dict, where: str = "result.json"):
    """``module.Config`` rebuilt from its ``dataclasses.asdict`` form in ``result.json``.

    JSON has no tuples, and a Config field is never a list (fields are immutable), so every
    list is made a tuple again, nested ones too. A field the stored config lacks keeps its
    default; one the Config does not have is refused.
    """
    fields = {f.name for f in dataclasses.fields(module.Config)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(
            f"`config` in {where} must hold only fields of "
            f"{module.__name__.rsplit('.', 1)[-1]}'s Config, got {unknown[0]!r}"
        )
    return module.Config(**{k: _as_tuple(v) for k, v in values.items()})


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list) else value


def result_files(folder: str | Path) -> list[Path]:
    """The ``result.json`` of one experiment's folder, or of every experiment under a folder."""
    where = Path(folder)
    if not where.is_dir():
        raise ValueError(f"`folder` must be an existing folder, got {str(folder)!r}")
    if (where / "result.json").is_file():
        return [where / "result.json"]
    found = sorted(
        p
        for p in where.glob("*/result.json")
        if not p.parent.name.startswith(".")  # a run still being written, or an old one
    )
    if not found:
        raise ValueError(
            f"`folder` must hold a result.json or folders that do, found none in {str(folder)!r}"
        )
    return found


def plot_one(path: Path) -> list[str]:
    """Redraws one run's figures beside its ``result.json``; returns the paths written."""
    from jaxopt_notes import experiments

    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"`{path}` must be JSON, got an error at line {error.lineno}") from None
    if not isinstance(result, dict):
        raise ValueError(f"`{path}` must hold a JSON object, got {type(result).__name__}")
    missing = [k for k in ("name", "config", "metrics") if k not in result]
    if missing:
        raise ValueError(f"`{path}` must have a {missing[0]!r} entry, got none")
    name = result["name"]
    if name not in experiments.NAMES:
        raise ValueError(
            f"`name` in {path} must be one of the experiments {experiments.NAMES}, got {name!r}"
        )
    module = experiments.load(name)
    if not callable(getattr(module, "draw", None)):
        raise ValueError(f"`name` in {path} must be an experiment with a draw(), got {name!r}")
    for key in ("config", "metrics"):
        if not isinstance(result[key], dict):
            raise ValueError(f"`{key}` in {path} must be an object, got {result[key]!r:.60}")
    cfg = config(module, result["config"], str(path))
    try:
        drawn = module.draw(from_json(result["metrics"]), cfg, path.parent)
    except KeyError as missing:  # a result written before its figures were drawn from it
        raise ValueError(
            f"`metrics` in {path} must hold what {name}'s figures draw, got no {missing}: "
            f"run {name} again to redraw them"
        ) from None
    return [str(path.parent / f) for f in figures(drawn)]


def plot(folder: str | Path) -> list[str]:
    """Redraws the figures of every run under ``folder`` from its ``result.json``.

    ``folder`` is one experiment's folder (``out/NAME``) or a folder of many (``--all``'s
    ``out``). Nothing is run again: each module's ``draw`` reads the stored metrics and the
    stored config. Returns the paths of the figures written.
    """
    return [p for path in result_files(folder) for p in plot_one(path)]
