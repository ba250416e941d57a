r"""Prodigy and D-Adaptation AdamW: Adam whose step size is a growing estimate of the
distance to the solution (the rest of :mod:`jaxopt_notes.optimizers_free`'s family, here
because that module would pass its ~400-line budget).

.. code-block:: text

    prodigy       scale_by_prodigy (distance, Adam moments of d g, decay)
    dadapt_adamw  scale_by_dadapt_adamw (distance, Adam moments, decay)

The learning rate multiplies :math:`d_t` *inside* the moments' EMAs (each past step kept its
own rate), so it cannot stand as a last link: one link holds the estimate and makes the step,
and ``learning_rate`` is a multiplier on :math:`d_t` (1 by default; a schedule gives the
warm-up or decay).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.combine import chain, increment, zero_count
from jaxopt_notes.optimizers_free import _copy, _dist, _lowest_float
from jaxopt_notes.transforms import with_params


def _vdot(a: Any, b: Any) -> jax.Array:
    r""":math:`\sum \bar a b` over the leaves (real parts: the methods' inner products); a
    product and a sum, not ``jnp.vdot``: a dot over sharded axes needs an output sharding
    named, a sum reduces to a replicated scalar by itself."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return sum(jnp.sum(x.conj() * y).real for x, y in pairs)


# ------------------------------------------------------------------------------- Prodigy
def _at(value: Any, count: jax.Array) -> Any:
    return value(count) if callable(value) else value


def _ema_sq(decay: Any, v: jax.Array, x: jax.Array) -> jax.Array:
    r""":math:`\beta v + (1-\beta)|x|^2`, rounded as optax rounds ``b v + (1 - b) x x``."""
    return decay * v + ((1 - decay) * x * x.conj()).real.astype(v.dtype)


def _checked_betas(betas: tuple[float, float]) -> tuple[float, float]:
    if len(tuple(betas)) != 2:
        raise ValueError(f"`betas` must be a pair (b1, b2), got {betas!r}")
    _checks.beta("betas[0]", betas[0])
    _checks.beta("betas[1]", betas[1])
    return tuple(betas)


class ProdigyState(NamedTuple):
    exp_avg: Any  # EMA of d g
    exp_avg_sq: Any  # EMA of (d g)^2
    grad_sum: Any  # s_t, the weighted sum of d g
    params0: Any  # x_0
    estim_lr: jax.Array  # d_t
    numerator_weighted: jax.Array
    count: jax.Array  # steps taken, int32


@recorded
def scale_by_prodigy(
    learning_rate: LearningRate = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float = 0.0,
    safeguard_warmup: bool = False,
) -> optax.GradientTransformation:
    r"""Prodigy's distance estimate and the step it sets (Mishchenko & Defazio 2024,
    Algorithm 4): Adam on :math:`d_{t-1} g_t`, stepped by :math:`\eta_t d_{t-1}`, with

    .. math:: d_t = \max\Big(d_{t-1}, \frac{r_t}{\|s_t\|_1}\Big), \quad
              r_t = \beta_3 r_{t-1} + \eta_t \tfrac{d_{t-1}^2}{d_0}\langle g_t, x_0 - x_t
              \rangle, \quad s_t = \beta_3 s_{t-1} + \eta_t \tfrac{d_{t-1}^2}{d_0} g_t

    (with Adam's bias correction folded into :math:`\eta_t`; ``safeguard_warmup`` drops
    :math:`\eta_t` from :math:`s_t`). :math:`d_t` only grows: the step size rises from
    :math:`d_0` = ``estim_lr0`` until the iterates stop moving away from :math:`x_0`. The
    update includes decoupled decay :math:`-\eta_t d_{t-1}\lambda x` and the sign.
    """
    b1, b2 = _checked_betas(betas)
    b3 = b2**0.5 if beta3 is None else beta3
    _checks.beta("beta3", b3)
    for name, v in (("eps", eps), ("weight_decay", weight_decay)):
        _checks.non_negative(name, v)
    _checks.positive("estim_lr0", estim_lr0)
    _checks.positive("estim_lr_coef", estim_lr_coef)
    _checks.flag("safeguard_warmup", safeguard_warmup)

    def init_fn(params):
        dtype, zeros = _lowest_float(params), jax.tree.map(jnp.zeros_like, params)
        real = jax.tree.map(lambda p: jnp.zeros_like(p, jnp.finfo(p.dtype).dtype), params)
        zero = jnp.zeros((), dtype)
        return ProdigyState(
            zeros,
            real,
            _copy(zeros),
            _copy(params),
            jnp.asarray(estim_lr0, dtype),
            zero,
            zero_count(),
        )

    def update_fn(updates, state, params=None):
        with_params("scale_by_prodigy", updates, params)
        t, d = increment(state.count), state.estim_lr
        dlr = jnp.asarray(
            d * _at(learning_rate, state.count) * ((1 - b2**t) ** 0.5) / (1 - b1**t), d.dtype
        )
        dg = jax.tree.map(lambda g: d * g, updates)
        ea = jax.tree.map(lambda m, x: b1 * m + (1 - b1) * x, state.exp_avg, dg)
        eas = jax.tree.map(lambda v, x: _ema_sq(b2, v, x), state.exp_avg_sq, dg)
        into_s = d if safeguard_warmup else dlr
        s = jax.tree.map(lambda sk, x: b3 * sk + into_s * x / estim_lr0, state.grad_sum, dg)
        moved = _vdot(updates, _dist(state.params0, params))
        num = b3 * state.numerator_weighted + (d / estim_lr0) * dlr * moved
        s_l1 = sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(s))
        d_new = jnp.maximum(d, estim_lr_coef * num / s_l1)

        def step(m, v, p):
            return (-weight_decay * dlr * p - dlr * m / (jnp.sqrt(v) + d_new * eps)).astype(p.dtype)

        out = jax.tree.map(step, ea, eas, params)
        keep = lambda x, like: x.astype(like.dtype)  # noqa: E731  (a mixed tree promotes)
        d_new, num = keep(d_new, d), keep(num, state.numerator_weighted)
        return out, ProdigyState(ea, eas, s, state.params0, d_new, num, t)

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def prodigy(
    learning_rate: LearningRate = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float = 0.0,
    safeguard_warmup: bool = False,
    *,
    convention: str = "optax",
) -> GT:
    r"""Prodigy (Mishchenko & Defazio 2024, "Prodigy: an expeditiously adaptive
    parameter-free learner"): AdamW whose step size is its own running estimate of the
    distance to the solution (see :func:`scale_by_prodigy`).

    .. math:: \theta_t = \theta_{t-1} - \eta_t d_{t-1}\Big(\frac{m_t}{\sqrt{v_t} + d_t
              \epsilon} + \lambda\theta_{t-1}\Big), \quad m, v \text{ the EMAs of } d\,g

    Args:
      learning_rate: :math:`\eta_t`, a multiplier on :math:`d` (1.0; schedules warm up or
        decay it).
      betas: Adam's :math:`(b_1, b_2)`.
      beta3: the decay of the estimate's sums (None: :math:`\sqrt{b_2}`).
      eps: beside the root, scaled by :math:`d_t`.
      estim_lr0: :math:`d_0` (1e-6), the first step size.
      estim_lr_coef: a factor on the estimate (1.0).
      weight_decay: :math:`\lambda`, decoupled.
      safeguard_warmup: leave :math:`\eta_t` out of :math:`s_t` (for warm-up schedules).
      convention: torch.optim has no Prodigy; both give ``optax.contrib.prodigy``'s numbers.

    The learning rate is inside the moments (module docstring), so there is no rate link:
    ``current_learning_rate`` reads it only from an ``optax.inject_hyperparams`` state; the
    distance estimate :math:`d_t` is the state's ``estim_lr``.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx, p = jn.prodigy(estim_lr0=1e-3, eps=0.0), jnp.ones(2)
    >>> tx.update(jnp.array([3.0, -4.0]), tx.init(p), p)[0]  # d_0 sign(g): Adam's first step
    Array([-0.001,  0.001], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        scale_by_prodigy(
            learning_rate,
            betas,
            beta3,
            eps,
            estim_lr0,
            estim_lr_coef,
            weight_decay,
            safeguard_warmup,
        )  # fmt: skip
    )


# ---------------------------------------------------------------- D-Adaptation AdamW
class DAdaptAdamWState(NamedTuple):
    exp_avg: Any  # EMA of d eta g
    exp_avg_sq: Any  # EMA of g^2
    grad_sum: Any  # s_t
    estim_lr: jax.Array  # d_t
    numerator_weighted: jax.Array
    count: jax.Array  # steps taken, int32


@recorded
def scale_by_dadapt_adamw(
    learning_rate: LearningRate = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    r"""D-Adaptation's distance estimate for Adam and the step it sets (Defazio & Mishchenko
    2023, Algorithm 4), with :math:`\gamma_t = \eta_t d_{t-1}` (bias correction folded in)
    and :math:`\beta = \sqrt{b_2}`:

    .. math:: s_t = \beta s_{t-1} + (1-\beta)\gamma_t g_t, \quad
              r_t = \beta r_{t-1} + (1-\beta)\gamma_t \Big\langle g_t,
              \frac{s_{t-1}}{\sqrt{v_{t-1}} + \epsilon}\Big\rangle, \quad
              d_t = \max\Big(d_{t-1}, \frac{r_t}{(1-\beta)\|s_t\|_1}\Big)

    and the step :math:`-m_t/(\sqrt{v_t}+\epsilon) - \gamma_t\lambda x`, :math:`m` the EMA
    of :math:`\gamma g`, :math:`v` of :math:`g^2`.
    """
    b1, b2 = _checked_betas(betas)
    sb2 = b2**0.5
    for name, v in (("eps", eps), ("weight_decay", weight_decay)):
        _checks.non_negative(name, v)
    _checks.positive("estim_lr0", estim_lr0)

    def init_fn(params):
        dtype, zeros = _lowest_float(params), jax.tree.map(jnp.zeros_like, params)
        real = jax.tree.map(lambda p: jnp.zeros_like(p, jnp.finfo(p.dtype).dtype), params)
        zero = jnp.zeros((), dtype)
        return DAdaptAdamWState(
            zeros, real, _copy(zeros), jnp.asarray(estim_lr0, dtype), zero, zero_count()
        )

    def update_fn(updates, state, params=None):
        with_params("scale_by_dadapt_adamw", updates, params)
        t = increment(state.count)
        bc = ((1 - b2**t) ** 0.5) / (1 - b1**t)
        dlr = (state.estim_lr * _at(learning_rate, state.count) * bc).astype(state.estim_lr.dtype)
        weighted = jax.tree.map(
            lambda sk, v: sk / (jnp.sqrt(v) + eps), state.grad_sum, state.exp_avg_sq
        )
        along = _vdot(updates, weighted)
        ea = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * dlr * g, state.exp_avg, updates)
        eas = jax.tree.map(lambda v, g: _ema_sq(b2, v, g), state.exp_avg_sq, updates)
        s = jax.tree.map(lambda sk, g: sb2 * sk + (1 - sb2) * dlr * g, state.grad_sum, updates)
        s_l1 = sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(s))
        num = sb2 * state.numerator_weighted + (1 - sb2) * dlr * along
        d_new = jnp.maximum(state.estim_lr, num / ((1 - sb2) * s_l1))

        def step(m, v, p):
            return (-weight_decay * dlr * p - m / (jnp.sqrt(v) + eps)).astype(p.dtype)

        out = jax.tree.map(step, ea, eas, params)
        keep = lambda x, like: x.astype(like.dtype)  # noqa: E731  (a mixed tree promotes)
        d_new, num = keep(d_new, state.estim_lr), keep(num, state.numerator_weighted)
        return out, DAdaptAdamWState(ea, eas, s, d_new, num, t)

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def dadapt_adamw(
    learning_rate: LearningRate = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    weight_decay: float = 0.0,
    *,
    convention: str = "optax",
) -> GT:
    r"""D-Adaptation AdamW (Defazio & Mishchenko 2023, "Learning-rate-free learning by
    D-Adaptation"): AdamW whose step size is its lower bound :math:`d_t` on the distance to
    the solution, grown as the iterates show it is larger (see :func:`scale_by_dadapt_adamw`).

    Args:
      learning_rate: :math:`\eta_t`, a multiplier on :math:`d` (1.0; a schedule decays it).
      betas: Adam's :math:`(b_1, b_2)`.
      eps: beside the root.
      estim_lr0: :math:`d_0` (1e-6).
      weight_decay: :math:`\lambda`, decoupled, times :math:`\gamma_t`.
      convention: torch.optim has no D-Adaptation; both give
        ``optax.contrib.dadapt_adamw``'s numbers.

    As for :func:`prodigy`, the rate is inside the moments: no rate link; the estimate
    :math:`d_t` is the state's ``estim_lr``.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx, p = jn.dadapt_adamw(estim_lr0=1e-3, eps=0.0), jnp.ones(2)
    >>> tx.update(jnp.array([3.0, -4.0]), tx.init(p), p)[0]  # d_0 sign(g) on the first step
    Array([-0.001,  0.001], dtype=float32)
    """
    _checks.convention(convention)
    return chain(scale_by_dadapt_adamw(learning_rate, betas, eps, estim_lr0, weight_decay))
