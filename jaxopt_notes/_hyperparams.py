"""Readable hyperparameters: what a transform was built with, after the convention's defaults.

optax's ``GradientTransformation`` is a NamedTuple ``(init, update)`` that closes over its
hyperparameters. Ours are subclasses of it that add no field (so they still unpack as two
functions, pass optax's ``isinstance`` checks and stand in ``optax.chain``,
``optax.inject_hyperparams``, ``optax.MultiSteps`` and ``nnx.Optimizer``) and carry a
``hyperparams`` attribute: a dict of every keyword the factory took, defaults filled in.

>>> import jaxopt_notes as jn
>>> jn.hyperparams(jn.rmsprop(0.1, convention="pytorch"))["decay"]  # torch's alpha default
0.99
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import optax


class Transform(optax.GradientTransformation):
    """An ``optax.GradientTransformation`` that also says what it was built with
    (``hyperparams``); no extra field, so it is still the pair ``(init, update)``."""


class TransformExtraArgs(optax.GradientTransformationExtraArgs):
    """The same for an ``optax.GradientTransformationExtraArgs``."""


_RESOLVED = "_resolved_hyperparams"


def resolved(tx: optax.GradientTransformation, **values: Any) -> optax.GradientTransformation:
    """``tx`` marked with the values a factory resolved itself (a convention's default for an
    argument left as None); :func:`recorded` puts them over the arguments it was called with."""
    out = _described(tx, {})
    setattr(out, _RESOLVED, values)
    return out


def _described(tx: optax.GradientTransformation, values: dict) -> Any:
    cls = TransformExtraArgs if isinstance(tx, optax.GradientTransformationExtraArgs) else Transform
    out = cls(tx.init, tx.update)
    out.hyperparams = values
    return out


def recorded(factory: Callable[..., Any]) -> Callable[..., Any]:
    """Decorates a factory so that the transform it returns carries ``hyperparams``: its
    arguments by name, defaults applied, with any value the factory resolved (see
    :func:`resolved`) in place of the argument it was given. The signature is kept (through
    ``functools.wraps``), so ``optax.inject_hyperparams`` binds the same names."""
    signature = inspect.signature(factory)

    @functools.wraps(factory)
    def build(*args: Any, **kwargs: Any) -> Any:
        tx = factory(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return _described(tx, {**bound.arguments, **getattr(tx, _RESOLVED, {})})

    return build


def hyperparams(tx: Any) -> dict[str, Any]:
    """The hyperparameters ``tx`` was built with, as a new dict (keyword -> value), after the
    convention's defaults: e.g. ``adagrad(0.1, convention="pytorch")`` has ``eps`` 1e-10.

    Args:
      tx: a transform made by a jaxopt_notes factory (an optimizer or a link).

    >>> import jaxopt_notes as jn
    >>> jn.hyperparams(jn.adam(1e-3))["b2"]
    0.999
    """
    values = getattr(tx, "hyperparams", None)
    if not isinstance(values, dict):
        raise TypeError(
            "`tx` must be a transform made by a jaxopt_notes factory (those carry their "
            f"hyperparameters), got {type(tx).__name__}; for an optax.inject_hyperparams "
            "transform read `state.hyperparams`"
        )
    return dict(values)
