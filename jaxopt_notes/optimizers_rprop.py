r"""Rprop (Riedmiller & Braun 1993), in optax and torch.optim today: sign-based steps whose
sizes adapt per coordinate.

A module of its own (:mod:`jaxopt_notes.optimizers_recent` would pass its ~400-line budget):

.. code-block:: text

    rprop     scale_by_rprop -> scale(-1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.combine import chain, zero_count
from jaxopt_notes.moments import _zeros
from jaxopt_notes.transforms import _plain, scale


def _at(value: Any, count: jax.Array) -> Any:
    """A hyperparameter that may be a schedule, read at ``count``."""
    return value(count) if callable(value) else value


# --------------------------------------------------------------------------------- Rprop
def _complex(x: Any) -> bool:
    return jnp.iscomplexobj(x)


def _by_parts(fn: Callable[..., tuple]) -> Callable[..., tuple]:
    """``fn`` on real arrays, extended to complex ones as two real coordinates each: applied
    to the real and to the imaginary parts alone, its outputs put back together."""

    def both(*xs):
        if not any(_complex(x) for x in xs):
            return fn(*xs)
        re, im = fn(*(jnp.real(x) for x in xs)), fn(*(jnp.imag(x) for x in xs))
        return tuple(jax.lax.complex(a, b) for a, b in zip(re, im, strict=True))

    return both


class RpropState(NamedTuple):
    step_sizes: Any
    previous: Any  # optax: the last step taken; pytorch: the last gradient (0 after a flip)


@recorded
def scale_by_rprop(
    learning_rate: LearningRate,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
    *,
    convention: str = "optax",
) -> optax.GradientTransformation:
    r"""Rprop's steps (Riedmiller & Braun 1993): only the sign of the gradient counts; each
    coordinate's step size grows by :math:`\eta_+` while the sign holds and shrinks by
    :math:`\eta_-` when it flips (and that step is skipped), within [min, max]:

    .. math:: s_t = \operatorname{clip}(s_{t-1}\cdot\{\eta_+, \eta_-, 1\}), \qquad
              u_t = s_t \operatorname{sign}(g_t) \;\; (0 \text{ after a flip})

    from :math:`s_0` = ``learning_rate``. Returns :math:`+u` (ascent; :func:`rprop` negates).
    ``convention="pytorch"`` is torch.optim.Rprop: the step above at once, the sign compared
    with the previous gradient. ``"optax"`` is optax.rprop, which returns the step decided at
    the *previous* update (its first update is 0), compares the sign with that previous step,
    and keeps the size unclipped where the product is 0. A complex coordinate is two real ones
    (its real and imaginary parts step alone; the sizes are kept as one complex number).
    """
    _checks.positive("learning_rate", learning_rate, schedule=True)
    _checks.real("eta_minus", eta_minus, low=0.0, high=1.0, low_open=True)
    _checks.real("eta_plus", eta_plus, low=1.0)
    _checks.non_negative("min_step_size", min_step_size)
    _checks.non_negative("max_step_size", max_step_size)
    pytorch = _checks.convention(convention) == "pytorch"

    def init_fn(params):
        s0 = _at(learning_rate, zero_count())  # a schedule is read once: Rprop adapts the rest
        start = lambda p: jnp.full_like(p, s0 * (1 + 1j if _complex(p) else 1))  # noqa: E731
        return RpropState(jax.tree.map(start, params), _zeros(params))

    def leaf(g, previous, size):  # real arrays: (the step, what to remember, the new size)
        flip = jnp.sign(g * previous)
        grown = jnp.clip(
            size * jnp.where(flip > 0, eta_plus, eta_minus), min_step_size, max_step_size
        )
        if pytorch:  # step now; remember the gradient, zeroed where it flipped
            size = jnp.where(flip == 0, jnp.clip(size, min_step_size, max_step_size), grown)
            kept = jnp.where(flip < 0, 0.0, g)
            return jnp.sign(kept) * size, kept, size
        size = jnp.where(flip == 0, size, grown)  # remember this step, take the one before
        return (
            jnp.where(flip < 0, 0.0, previous),
            jnp.where(flip < 0, 0.0, size * jnp.sign(g)),
            size,
        )

    def update_fn(updates, state, params=None):
        del params
        _plain("scale_by_rprop", updates)
        out = jax.tree.map(_by_parts(leaf), updates, state.previous, state.step_sizes)
        pick = lambda i: jax.tree.map(lambda _, o: o[i], updates, out)  # noqa: E731
        return pick(0), RpropState(pick(2), pick(1))

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def rprop(
    learning_rate: LearningRate,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
    *,
    convention: str = "optax",
) -> GT:
    r"""Rprop (Riedmiller & Braun 1993, "A direct adaptive method for faster backpropagation
    learning: the RPROP algorithm"): sign-based steps whose sizes adapt per coordinate (see
    :func:`scale_by_rprop`). Full-batch: with noisy gradients the signs flip at random.

    Args:
      learning_rate: the initial step size :math:`s_0` (a schedule is read at step 0 only:
        Rprop adapts the sizes itself, so there is no learning-rate link and
        :func:`~jaxopt_notes.current_learning_rate` has nothing to read outside
        ``optax.inject_hyperparams``).
      eta_minus, eta_plus: the shrink and growth factors (0.5, 1.2).
      min_step_size, max_step_size: the bounds of the step sizes (1e-6, 50).
      convention: ``"optax"`` (optax.rprop: a step late, see :func:`scale_by_rprop`) or
        ``"pytorch"`` (torch.optim.Rprop).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.rprop(0.1, convention="pytorch")
    >>> s = tx.init(jnp.zeros(1))
    >>> u1, s = tx.update(jnp.array([3.0]), s)
    >>> u2, s = tx.update(jnp.array([5.0]), s)  # the same sign: 1.2 times the step
    >>> u1, u2
    (Array([-0.1], dtype=float32), Array([-0.12], dtype=float32))
    """
    return chain(
        scale_by_rprop(
            learning_rate, eta_minus, eta_plus, min_step_size, max_step_size, convention=convention
        ),
        scale(-1.0),
    )
