"""The type aliases the package shares: one definition each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

PyTree = Any  # any nest of arrays jax.tree can walk (dicts, tuples, nnx.State, ...)
Schedule = Callable[[jax.Array], jax.Array]  # step -> learning rate, jit-safe
LearningRate = float | Schedule
LossFn = Callable[[PyTree], jax.Array]  # params -> scalar loss
GT = optax.GradientTransformationExtraArgs  # what an optimizer factory returns
