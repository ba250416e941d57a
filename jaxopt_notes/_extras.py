"""Optional dependencies: importing one that is missing names the extra that installs it.

The core (``import jaxopt_notes``, the optimizers, schedules and Hessian tools) needs jax,
optax, flax and numpy. The data loaders, training, plots, benchmarks and experiments need
more; they import it through :func:`require`, so a slim install fails with a sentence saying
what to install instead of a bare ``ModuleNotFoundError``.

>>> require("json", "train").dumps([1])
'[1]'
>>> require("surely_not_installed", "train")
Traceback (most recent call last):
    ...
jaxopt_notes._extras.MissingExtra: surely_not_installed is not installed; it comes with the ...]"
"""

from __future__ import annotations

import importlib
from types import ModuleType

from jaxopt_notes import _checks

EXTRAS = ("train", "experiments", "torch", "docs", "test", "all")

# import name -> distribution name, where they differ
_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "tensorflow_datasets": "tensorflow-datasets",
    "orbax": "orbax-checkpoint",
}


class MissingExtra(ModuleNotFoundError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str) -> ModuleType:
    """Imports ``module`` (e.g. ``"matplotlib.pyplot"``); if its package is not installed,
    raises :class:`MissingExtra` naming ``extra``, the one of :data:`EXTRAS` that installs it."""
    _checks.one_of("extra", extra, EXTRAS)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        top = module.split(".")[0]
        if error.name is None or error.name.split(".")[0] != top:
            raise  # the package is there but itself lacks something: its own error says what
        package = _DISTRIBUTIONS.get(top, top)
        raise MissingExtra(
            f"{package} is not installed; it comes with the `{extra}` extra: "
            f'pip install "jaxopt_notes[{extra}]"',
            name=error.name,
        ) from None
