r"""AdaDelta (Zeiler 2012): the second moment of the gradients, and a closing link that scales
by the ratio of two RMS's, the past steps' over the gradients'.

.. code-block:: text

    adadelta  [add_decayed_weights] -> second_moment(rho) -> delta_ratio(rho, eps) -> lr

:func:`delta_ratio` closes a moment run, in place of :func:`~jaxopt_notes.ratio`; it needs
only the second moment (``nu``), and keeps the EMA of the squared steps it took.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.combine import chain
from jaxopt_notes.moments import _ema_sq, _needs, _real_zeros, second_moment
from jaxopt_notes.transforms import add_decayed_weights, scale_by_learning_rate


class DeltaRatioState(NamedTuple):
    delta_sq: Any  # the EMA of the squared steps, E[dx^2]


@recorded
def delta_ratio(rho: float = 0.9, eps: float = 1e-6) -> optax.GradientTransformation:
    r"""Closes a moment run with AdaDelta's step: the gradient times the ratio of the RMS of
    past steps to the RMS of gradients.

    .. math:: \Delta_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}
              \, g_t, \qquad E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1-\rho)|\Delta_t|^2

    with :math:`v_t` the stream's second moment (:func:`~jaxopt_notes.second_moment` with
    decay :math:`\rho`) and :math:`E[\Delta^2]_0 = 0`. The numerator gives the step the
    units of the parameters, so no learning rate is needed in the paper (optax and torch
    still multiply by one, 1 by default).

    Args:
      rho: the decay of :math:`E[\Delta^2]` (0.9).
      eps: added under both roots (1e-6); the first steps have size about
        :math:`\sqrt{\epsilon}` relative to the gradient's RMS.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.chain(jn.second_moment(0.5), jn.delta_ratio(0.5, eps=1.0))
    >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]  # sqrt(1) / sqrt(2 + 1) * 2
    Array([1.1547005], dtype=float32)
    """
    _checks.beta("rho", rho)
    _checks.non_negative("eps", eps)

    def init_fn(params):
        return DeltaRatioState(delta_sq=_real_zeros(params))

    def update_fn(updates, state, params=None):
        del params
        _needs(updates, "delta_ratio", "nu")

        def step(g, v, x):
            return (jnp.sqrt(x + eps) / jnp.sqrt(v + eps)).astype(g.dtype) * g

        delta = jax.tree.map(step, updates.grad, updates.nu, state.delta_sq)
        delta_sq = jax.tree.map(lambda d, x: _ema_sq(d, x, rho), delta, state.delta_sq)
        return delta, DeltaRatioState(delta_sq=delta_sq)

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def adadelta(
    learning_rate: LearningRate = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    *,
    mask: Any = None,
    convention: str = "optax",
) -> GT:
    r"""AdaDelta (Zeiler 2012, "ADADELTA: an adaptive learning rate method"): AdaGrad whose
    sum of squares is a decaying average, and whose step carries its own units.

    .. math:: v_t = \rho v_{t-1} + (1-\rho) g_t^2, \quad
              \Delta_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\,
              g_t, \quad \theta_t = \theta_{t-1} - \eta\, \Delta_t

    with :math:`g_t` the gradient plus :math:`\lambda\theta` (coupled weight decay, before
    the scaling, as in both frameworks).

    Args:
      learning_rate: :math:`\eta`, a float or a schedule (1.0: the paper has none; optax's
        default ``None`` is the same as 1).
      rho: the decay of both averages (0.9).
      eps: added under both roots (1e-6).
      weight_decay: :math:`\lambda`, coupled L2 (0).
      mask: the leaves that decay, as in :func:`~jaxopt_notes.add_decayed_weights`.
      convention: optax.adadelta and torch.optim.Adadelta agree (same defaults, same order
        of operations): both values give the same numbers.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adadelta(1.0, rho=0.5, eps=1.0)
    >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)), jnp.zeros(1))[0]
    Array([-1.1547005], dtype=float32)
    """
    _checks.convention(convention)
    _checks.beta("rho", rho)  # named as the caller wrote it, before second_moment's `b2`
    return chain(
        add_decayed_weights(weight_decay, mask),
        second_moment(rho),
        delta_ratio(rho, eps),
        scale_by_learning_rate(learning_rate),
    )
