r"""Learning-rate schedules: each returns a jit-safe function ``step -> learning_rate``.

Steps count from 0; a negative step (which a traced count cannot refuse) reads as step 0. Any
of them can be passed wherever a ``learning_rate`` is accepted.

>>> from jaxopt_notes import schedules
>>> lr = schedules.linear_warmup(schedules.cosine_decay(0.1, decay_steps=100), warmup_steps=10)
>>> [round(float(lr(t)), 4) for t in (0, 5, 10, 60, 110)]
[0.0, 0.05, 0.1, 0.05, 0.0]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxopt_notes import _checks
from jaxopt_notes._types import Schedule


def _as_float(step) -> jax.Array:
    # clamped at 0: below it step decay gave inf, inverse-time decay NaN, warm-up a negative rate
    return jnp.maximum(jnp.asarray(step).astype(jnp.result_type(float)), 0.0)


def constant(value: float) -> Schedule:
    r""":math:`\eta_t = \eta_0`."""
    _checks.non_negative("value", value)
    return lambda step: jnp.full_like(_as_float(step), value)


def step_decay(init_value: float, *, gamma: float = 0.1, every: int) -> Schedule:
    r""":math:`\eta_t = \eta_0\, \gamma^{\lfloor t / N \rfloor}`: multiply by ``gamma`` every
    ``every`` = N steps. ResNet's recipe is ``gamma=0.1`` every 30 epochs' worth of steps."""
    _checks.non_negative("init_value", init_value)
    _checks.real("gamma", gamma, low=0.0, low_open=True)
    _checks.integer("every", every, low=1)
    return lambda step: init_value * gamma ** jnp.floor(_as_float(step) / every)


def exponential_decay(
    init_value: float, *, decay_rate: float, decay_steps: int = 1, staircase: bool = False
) -> Schedule:
    r""":math:`\eta_t = \eta_0\, r^{t / T}` (or :math:`r^{\lfloor t/T \rfloor}` with
    ``staircase``), with r = ``decay_rate`` and T = ``decay_steps``."""
    _checks.non_negative("init_value", init_value)
    _checks.real("decay_rate", decay_rate, low=0.0, low_open=True)
    _checks.integer("decay_steps", decay_steps, low=1)
    _checks.flag("staircase", staircase)

    def schedule(step):
        p = _as_float(step) / decay_steps
        return init_value * decay_rate ** (jnp.floor(p) if staircase else p)

    return schedule


def inverse_time_decay(
    init_value: float, *, decay_rate: float = 1.0, decay_steps: int = 1, power: float = 1.0
) -> Schedule:
    r""":math:`\eta_t = \eta_0 / (1 + k\, t / T)^{p}`; ``power=0.5`` is the :math:`1/\sqrt{t}`
    decay of the convergence proofs for convex problems, ``power=1`` is :math:`1/t`."""
    _checks.non_negative("init_value", init_value)
    _checks.non_negative("decay_rate", decay_rate)
    _checks.integer("decay_steps", decay_steps, low=1)
    _checks.positive("power", power)
    return lambda step: init_value / (1 + decay_rate * _as_float(step) / decay_steps) ** power


def cosine_decay(init_value: float, *, decay_steps: int, alpha: float = 0.0) -> Schedule:
    r""":math:`\eta_t = \eta_0\,[(1-\alpha)\tfrac12(1 + \cos(\pi \min(t, T)/T)) + \alpha]`
    (Loshchilov & Hutter 2017, one cycle without restarts)."""
    _checks.non_negative("init_value", init_value)
    _checks.integer("decay_steps", decay_steps, low=1)
    _checks.real("alpha", alpha, low=0.0, high=1.0)

    def schedule(step):
        frac = jnp.minimum(_as_float(step), decay_steps) / decay_steps
        return init_value * ((1 - alpha) * 0.5 * (1 + jnp.cos(jnp.pi * frac)) + alpha)

    return schedule


def linear_warmup(schedule: Schedule, *, warmup_steps: int, init_value: float = 0.0) -> Schedule:
    r"""Ramps linearly from ``init_value`` to ``schedule(0)`` over ``warmup_steps`` steps, then
    follows ``schedule`` shifted by the warm-up: :math:`\eta_t = s(t - W)` for :math:`t \ge W`.
    """
    _checks.function("schedule", schedule)
    _checks.integer("warmup_steps", warmup_steps)
    _checks.non_negative("init_value", init_value)

    def warmed(step):
        t = _as_float(step)
        peak = schedule(jnp.zeros_like(t))
        ramp = init_value + (peak - init_value) * t / max(warmup_steps, 1)
        return jnp.where(t < warmup_steps, ramp, schedule(jnp.maximum(t - warmup_steps, 0)))

    return warmed


def cyclic(
    init_value: float, *, period: int, period_mult: float = 1.0, alpha: float = 0.0
) -> Schedule:
    r"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017), the schedule of
    snapshot ensembles (Huang et al. 2017). Cycle :math:`i` lasts :math:`T_0 m^i` steps
    (``period``, ``period_mult``); within it, with :math:`\tau` the steps since its start,

    .. math:: \eta_t = \eta_0\,[(1-\alpha)\tfrac12(1 + \cos(\pi \tau / T_i)) + \alpha].

    The last step of each cycle has the smallest rate: the place to take a snapshot.
    """
    _checks.non_negative("init_value", init_value)
    _checks.integer("period", period, low=1)
    _checks.real("period_mult", period_mult, low=1.0)
    _checks.real("alpha", alpha, low=0.0, high=1.0)

    def schedule(step):
        t = _as_float(step)
        if period_mult == 1.0:
            start, length = jnp.floor(t / period) * period, jnp.asarray(period, t.dtype)
        else:
            m = period_mult
            i = jnp.floor(jnp.log1p(t / period * (m - 1)) / jnp.log(m))
            start, length = period * (m**i - 1) / (m - 1), period * m**i
        tau = jnp.clip(t - start, 0, length)
        return init_value * ((1 - alpha) * 0.5 * (1 + jnp.cos(jnp.pi * tau / length)) + alpha)

    return schedule
