"""Hyperparameter checks, run by every factory before anything is traced.

Each check raises a sentence that names the argument, the rule and the value, e.g.
``ValueError("`b1` must be in [0, 1), got 1.5")``. Values that are JAX tracers (as inside
``optax.inject_hyperparams`` under ``jit``) cannot be inspected and are let through.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np

CONVENTIONS = ("optax", "pytorch")


def _is_tracer(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def concrete(value: Any) -> bool:
    """Whether ``value`` can be inspected now: not a tracer (``optax.inject_hyperparams`` hands
    every numeric hyperparameter over as an array, a tracer under ``jit``)."""
    return not _is_tracer(value)


def real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    schedule: bool = False,
) -> None:
    """Checks that ``value`` is a finite real number in the given interval.

    With ``schedule=True`` a callable (a schedule ``step -> value``) is accepted as is.
    """
    if schedule and callable(value):
        return
    if _is_tracer(value):
        return
    if isinstance(value, bool) or not _is_real_scalar(value):
        kind = "a number or a schedule (a callable)" if schedule else "a real number"
        raise TypeError(f"`{name}` must be {kind}, got {value!r} of type {type(value).__name__}")
    x = float(np.asarray(value))
    if not math.isfinite(x):
        raise ValueError(f"`{name}` must be finite, got {x}")
    too_low = low is not None and (x <= low if low_open else x < low)
    too_high = high is not None and (x >= high if high_open else x > high)
    if too_low or too_high:
        raise ValueError(f"`{name}` must be {_interval(low, high, low_open, high_open)}, got {x}")


def beta(name: str, value: Any) -> None:
    """A decay rate of an exponential moving average: in [0, 1)."""
    real(name, value, low=0.0, high=1.0, high_open=True)


def positive(name: str, value: Any, *, schedule: bool = False) -> None:
    real(name, value, low=0.0, low_open=True, schedule=schedule)


def non_negative(name: str, value: Any, *, schedule: bool = False) -> None:
    real(name, value, low=0.0, schedule=schedule)


def integer(name: str, value: Any, *, low: int = 0) -> None:
    """An integer (a Python int or an integer array of shape (), as injected); tracers pass."""
    if _is_tracer(value):
        return
    integral = isinstance(value, int | np.integer) or (
        getattr(value, "shape", None) == ()
        and np.issubdtype(getattr(value, "dtype", float), np.integer)
    )
    if isinstance(value, bool) or not integral:
        raise TypeError(
            f"`{name}` must be an integer, got {value!r} of type {type(value).__name__}"
        )
    if int(value) < low:
        raise ValueError(f"`{name}` must be >= {low}, got {int(value)}")


def flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False, got {value!r}")


def dtype(name: str, value: Any) -> Any:
    """None, or a floating-point or complex dtype, canonicalised as optax does (float64 is
    float32 unless x64 is enabled)."""
    if value is None:
        return None
    try:
        dt = np.dtype(value)
    except TypeError:
        raise TypeError(f"`{name}` must be a dtype or None, got {value!r}") from None
    if not np.issubdtype(dt, np.inexact) and dt.name != "bfloat16":
        raise ValueError(f"`{name}` must be a floating-point dtype (or complex), got {dt.name}")
    return jax.dtypes.canonicalize_dtype(dt)


def nearest(value: str, choices: Iterable[Any]) -> str | None:
    """The choice ``value`` most likely misspells: one with the same letters (two swapped, as in
    ``adma``), else the closest by difflib's ratio; None when nothing is close.

    >>> nearest("adma", ["adamax", "adam"]), nearest("lbfgs", ["sgd", "adam"])
    ('adam', None)
    """
    names = [str(c) for c in choices]
    swapped = [c for c in names if sorted(c) == sorted(value)]
    close = swapped or difflib.get_close_matches(value, names, n=1)
    return close[0] if close else None


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """``value``, checked to be one of ``choices`` (shown as a tuple in the sentence)."""
    choices = tuple(choices)
    if not any(value is c or (isinstance(value, type(c)) and value == c) for c in choices):
        close = nearest(value, choices) if isinstance(value, str) else None
        hint = f"; did you mean {close!r}?" if close else ""
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}{hint}")
    return value


def convention(value: Any) -> str:
    return one_of("convention", value, CONVENTIONS)


def by_convention(value: Any, chosen: str, *, optax: Any, pytorch: Any) -> Any:
    """``value``, or where it was left as None the default of the ``chosen`` convention
    (checked even when ``value`` is given)."""
    convention(chosen)
    if value is not None:
        return value
    return optax if chosen == "optax" else pytorch


def transform(name: str, value: Any) -> None:
    if not (hasattr(value, "init") and hasattr(value, "update")):
        raise TypeError(
            f"`{name}` must be a gradient transformation with `init` and `update`, "
            f"got {value!r} of type {type(value).__name__}"
        )


def function(name: str, value: Any) -> Callable:
    if not callable(value):
        raise TypeError(f"`{name}` must be callable, got {value!r} of type {type(value).__name__}")
    return value


def same_structure(what: str, updates: Any, params: Any) -> None:
    """Raises a ValueError showing both tree structures when they differ."""
    u, p = jax.tree.structure(updates), jax.tree.structure(params)
    if u != p:
        raise ValueError(
            f"{what}: the updates and the params must have the same tree structure, got\n"
            f"  updates: {u}\n  params:  {p}"
        )


def same_shapes(what: str, updates: Any, params: Any) -> None:
    """Raises a ValueError naming the first leaf whose update's shape is not its parameter's
    (and both shapes): arithmetic would broadcast one onto the other without a word. The trees
    must already have the same structure; shapes are static, so under ``jit`` this costs only
    trace time."""
    pairs = zip(jax.tree_util.tree_leaves_with_path(updates), jax.tree.leaves(params), strict=True)
    for (path, u), p in pairs:
        if np.shape(u) != np.shape(p):
            where = jax.tree_util.keystr(path) or "the root"
            raise ValueError(
                f"{what}: the gradient at {where} must have its parameter's shape "
                f"{np.shape(p)}, got {np.shape(u)}"
            )


def _is_real_scalar(value: Any) -> bool:
    if isinstance(value, int | float | np.integer | np.floating):
        return True
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    return shape == () and dtype is not None and np.issubdtype(dtype, np.number)


def _interval(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"{'<' if high_open else '<='} {high:g}"
