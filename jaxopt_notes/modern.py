r"""The modern optimizers as visible chains: Lion, AdaBelief, Yogi and RAdam.

Each adds one new link to the moment links of :mod:`jaxopt_notes.moments` and the transforms
of :mod:`jaxopt_notes.transforms`; the rest of its chain is Adam's
(:func:`~jaxopt_notes.adam_family.adam_direction`, given other moments):

.. code-block:: text

    lion       sign_momentum -> add_decayed_weights -> learning rate
    adabelief  adam_direction(moments: first_moment -> belief_moment) -> learning rate
    yogi       adam_direction(moments: first_moment from 1e-6 -> yogi_moment) -> lr
    radam      adam_moments -> bias_correction -> rectify -> learning rate

:func:`sign_momentum` is a plain link (trees in, trees out). :func:`belief_moment` and
:func:`yogi_moment` are moment links: they fill ``nu`` of the :class:`~jaxopt_notes.Moments`
stream and may stand inside a moment run. :func:`rectify` closes a run, in place of
:func:`~jaxopt_notes.ratio`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.adam_family import adam_direction, adam_moments
from jaxopt_notes.combine import chain, increment, zero_count
from jaxopt_notes.moments import (
    SecondMomentState,
    _ema_sq,
    _needs,
    _real,
    _real_zeros,
    _store,
    abs_sq,
    bias_correction,
    first_moment,
    moment_link,
)
from jaxopt_notes.transforms import _plain, add_decayed_weights, scale_by_learning_rate


# ------------------------------------------------------------------------------ the links
class SignMomentumState(NamedTuple):
    mu: Any


@recorded
def sign_momentum(
    b1: float = 0.9, b2: float = 0.99, *, dtype: Any = None
) -> optax.GradientTransformation:
    r"""Lion's update direction: the sign of an interpolated momentum, then the EMA.

    .. math:: u_t = \operatorname{sign}(b_1 m_{t-1} + (1-b_1) g_t), \qquad
              m_t = b_2 m_{t-1} + (1-b_2) g_t

    Two rates: :math:`b_1` weighs the gradient in the step taken now, :math:`b_2` in the
    momentum kept for later (:math:`m_0 = 0`). Every coordinate moves by exactly 1 (0 where
    the interpolation is 0). ``dtype`` stores :math:`m` in that type.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.sign_momentum()
    >>> tx.update(jnp.array([3.0, -0.2, 0.0]), tx.init(jnp.zeros(3)))[0]
    Array([ 1., -1.,  0.], dtype=float32)
    """
    _checks.beta("b1", b1)
    _checks.beta("b2", b2)
    dtype = _checks.dtype("dtype", dtype)

    def init_fn(params):
        return SignMomentumState(mu=jax.tree.map(lambda p: jnp.zeros_like(p, dtype), params))

    def update_fn(updates, state, params=None):
        del params
        _plain("sign_momentum", updates)
        mix = lambda b: lambda g, m: (1 - b) * g + b * m.astype(g.dtype)  # noqa: E731
        signs = jax.tree.map(lambda g, m: jnp.sign(mix(b1)(g, m)), updates, state.mu)
        mu = jax.tree.map(mix(b2), updates, state.mu)
        return signs, SignMomentumState(mu=_store(mu, dtype))

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def belief_moment(
    b2: float = 0.999, eps_root: float = 1e-16, *, dtype: Any = None
) -> optax.GradientTransformation:
    r"""AdaBelief's second moment: the EMA of the squared prediction error :math:`g_t - m_t`.

    .. math:: s_t = b_2 s_{t-1} + (1-b_2)\,|g_t - m_t|^2 + \epsilon_{root}

    :math:`m_t` is the first moment of the stream (put :func:`~jaxopt_notes.first_moment`
    before it); :math:`s_t` is small where the gradient follows its own trend, so the step
    there is large. :math:`\epsilon_{root}` is added to the state itself at every step, as in
    the paper and in optax (it is then bias-corrected with the rest). Sets ``nu``.
    """
    _checks.beta("b2", b2)
    _checks.non_negative("eps_root", eps_root)
    dtype = _checks.dtype("dtype", dtype)

    def surprise(m, nu):
        m = _needs(m, "belief_moment", "mu")
        return jax.tree.map(lambda g, mu, t: _ema_sq(g - mu, t, b2) + eps_root, m.grad, m.mu, nu)

    init = lambda p: _real_zeros(p, dtype=dtype)  # noqa: E731
    return moment_link("nu", SecondMomentState, init, surprise, dtype)


@recorded
def yogi_moment(
    b2: float = 0.999, initial_accumulator_value: float = 1e-6
) -> optax.GradientTransformation:
    r"""Yogi's second moment: an additive update that moves :math:`v` towards :math:`g^2` by
    a step proportional to :math:`g^2`, whatever the distance.

    .. math:: v_t = v_{t-1} - (1-b_2)\,\operatorname{sign}(v_{t-1} - g_t^2)\, g_t^2

    Adam's EMA, :math:`v_t = v_{t-1} - (1-b_2)(v_{t-1} - g_t^2)`, shrinks :math:`v` by a
    fraction of itself, so one rare large gradient is forgotten fast; Yogi's steps do not
    depend on :math:`v`, so it shrinks slowly. :math:`v_0` is ``initial_accumulator_value``.
    Sets ``nu``.
    """
    _checks.beta("b2", b2)
    _checks.non_negative("initial_accumulator_value", initial_accumulator_value)

    def additive(g, t):
        sq, v = abs_sq(g), t.astype(_real(g))
        return v - (1 - b2) * jnp.sign(v - sq) * sq

    init = lambda p: _real_zeros(p, initial_accumulator_value)  # noqa: E731
    return moment_link(
        "nu", SecondMomentState, init, lambda m, nu: jax.tree.map(additive, m.grad, nu)
    )


class RectifyState(NamedTuple):
    count: jax.Array  # steps taken, int32


@recorded
def rectify(
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    convention: str = "optax",
) -> optax.GradientTransformation:
    r"""RAdam's rectification: closes a moment run, adaptive only once :math:`v` is reliable.

    With :math:`\rho_\infty = 2/(1-b_2) - 1` and :math:`\rho_t = \rho_\infty - 2 t b_2^t /
    (1-b_2^t)` (the length of the simple moving average that the EMA approximates),

    .. math:: u_t = \begin{cases} r_t\, \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}}
              + \epsilon) & \rho_t \ge \rho_{min} \\ \hat m_t & \text{otherwise} \end{cases},
              \quad r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}
              {(\rho_\infty-4)(\rho_\infty-2)\rho_t}}

    :math:`\rho_{min}` = ``threshold``. Needs the bias-corrected moments
    (:func:`~jaxopt_notes.bias_correction` before it). ``convention="pytorch"`` follows
    torch.optim.RAdam: adaptive only when :math:`\rho_t > \rho_{min}` (strictly), and
    :math:`\epsilon` added to :math:`\sqrt{v_t}` before the bias correction, i.e.
    :math:`\epsilon / \sqrt{1-b_2^t}` beside :math:`\sqrt{\hat v_t}`.
    """
    _checks.beta("b2", b2)
    _checks.non_negative("eps", eps)
    _checks.non_negative("eps_root", eps_root)
    _checks.real("threshold", threshold)
    pytorch = _checks.convention(convention) == "pytorch"
    rho_inf = 2 / (1 - b2) - 1

    def init_fn(params):
        del params
        return RectifyState(count=zero_count())

    def update_fn(updates, state, params=None):
        del params
        _needs(updates, "rectify", "mu", "nu")
        t = increment(state.count)
        b2t = b2**t
        rho = rho_inf - 2 * t * b2t / (1 - b2t)
        adaptive = rho > threshold if pytorch else rho >= threshold
        r_sq = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
        r = jnp.sqrt(jnp.maximum(r_sq, 0.0))  # r_sq < 0 only where not adaptive
        eps_t = eps / jnp.sqrt(1 - b2t) if pytorch else eps

        def step(mu, nu):
            den = (jnp.sqrt(nu + eps_root) + eps_t).astype(mu.dtype)
            return jnp.where(adaptive, r.astype(mu.dtype) * mu / den, mu)

        return jax.tree.map(step, updates.mu, updates.nu), RectifyState(count=t)

    return optax.GradientTransformation(init_fn, update_fn)


def _started_at(link: optax.GradientTransformation, value: float) -> optax.GradientTransformation:
    """``link`` with every leaf of its initial state set to ``value`` (Yogi's first moment
    starts at 1e-6, as in optax); its update is the link's own."""

    def init_fn(params):
        return jax.tree.map(lambda x: jnp.full_like(x, value), link.init(params))

    return optax.GradientTransformation(init_fn, link.update)


# ------------------------------------------------------------------------- the optimizers
@recorded
def lion(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.99,
    *,
    weight_decay: float = 1e-3,
    mask=None,
    mu_dtype=None,
    convention: str = "optax",
) -> GT:
    r"""Lion (Chen et al. 2023, "Symbolic discovery of optimization algorithms"): the sign of
    an interpolated momentum, with decoupled weight decay.

    .. math:: \theta_t = \theta_{t-1} - \eta\,\big(\operatorname{sign}(b_1 m_{t-1} +
              (1-b_1) g_t) + \lambda \theta_{t-1}\big), \qquad m_t = b_2 m_{t-1} + (1-b_2) g_t

    Args:
      learning_rate: :math:`\eta`, a float or a schedule. Every step has size :math:`\eta`
        per coordinate, so the paper takes it 3-10x smaller than Adam's.
      b1: the gradient's weight in the step taken now (0.9).
      b2: the decay of the momentum kept (0.99).
      weight_decay: :math:`\lambda`, applied after the sign, before the learning rate (1e-3,
        optax's default; the paper pairs a smaller :math:`\eta` with a larger :math:`\lambda`).
      mask: the leaves that decay, as in :func:`~jaxopt_notes.add_decayed_weights`.
      mu_dtype: the dtype :math:`m` is stored in (optax's name).
      convention: torch.optim has no Lion, so ``"optax"`` and ``"pytorch"`` give the same
        numbers, optax's.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.lion(0.1, weight_decay=0.0)
    >>> tx.update(jnp.array([3.0, -0.2]), tx.init(jnp.zeros(2)), jnp.zeros(2))[0]
    Array([-0.1,  0.1], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        sign_momentum(b1, b2, dtype=_checks.dtype("mu_dtype", mu_dtype)),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


@recorded
def adabelief(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
    mu_dtype=None,
    convention: str = "optax",
) -> GT:
    r"""AdaBelief (Zhuang et al. 2020, "AdaBelief optimizer: adapting stepsizes by the belief
    in observed gradients"): Adam with the second moment of :math:`g - m` instead of :math:`g`.

    .. math:: s_t = b_2 s_{t-1} + (1-b_2)(g_t - m_t)^2 + \epsilon_{root}, \qquad
              \theta_t = \theta_{t-1} - \eta\,\frac{m_t/(1-b_1^t)}{\sqrt{s_t/(1-b_2^t)}
              + \epsilon}

    Args:
      learning_rate: :math:`\eta`, a float or a schedule.
      b1: the decay of :math:`m`.
      b2: the decay of :math:`s`.
      eps: added to :math:`\sqrt{\hat s_t}` (1e-16).
      eps_root: added to :math:`s_t` in the state at every step, before the bias correction
        (1e-16), as in the paper's algorithm and optax.
      nesterov: Nadam's look-ahead first moment (see :func:`~jaxopt_notes.bias_correction`).
      mu_dtype: the dtype :math:`m` is stored in.
      convention: torch.optim has no AdaBelief; both values give optax's numbers.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adabelief(0.1, b1=0.5, b2=0.5)  # m^ = g = 2, s^ = (g - m)^2 = 1 (Adam: -0.1)
    >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
    Array([-0.2], dtype=float32)
    """
    _checks.convention(convention)
    moments = [
        first_moment(b1, dtype=_checks.dtype("mu_dtype", mu_dtype)),
        belief_moment(b2, eps_root),
    ]
    return chain(
        *adam_direction(b1, b2, eps, nesterov=nesterov, moments=moments),
        scale_by_learning_rate(learning_rate),
    )


@recorded
def yogi(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
    *,
    eps_root: float = 0.0,
    initial_accumulator_value: float = 1e-6,
    convention: str = "optax",
) -> GT:
    r"""Yogi (Zaheer et al. 2018, "Adaptive methods for nonconvex optimization"): Adam whose
    second moment moves additively, by :math:`(1-b_2) g^2` towards :math:`g^2`.

    .. math:: v_t = v_{t-1} - (1-b_2)\operatorname{sign}(v_{t-1} - g_t^2)\,g_t^2, \qquad
              \theta_t = \theta_{t-1} - \eta\,\frac{m_t/(1-b_1^t)}{\sqrt{v_t/(1-b_2^t)
              + \epsilon_{root}} + \epsilon}

    Args:
      learning_rate: :math:`\eta`, a float or a schedule.
      b1: the decay of :math:`m`.
      b2: the decay of :math:`v`.
      eps: added to the root (1e-3, the paper's and optax's: larger than Adam's).
      eps_root: added under the root (0).
      initial_accumulator_value: :math:`m_0 = v_0` (1e-6). optax starts *both* moments
        there, and so do we; the bias correction still divides by :math:`1-b^t`.
      convention: torch.optim has no Yogi; both values give optax's numbers.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.yogi(0.1, initial_accumulator_value=0.0, eps=0.0)
    >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
    Array([-0.1], dtype=float32)
    """
    _checks.convention(convention)
    moments = [
        _started_at(first_moment(b1), initial_accumulator_value),
        yogi_moment(b2, initial_accumulator_value),
    ]
    return chain(
        *adam_direction(b1, b2, eps, eps_root, moments=moments),
        scale_by_learning_rate(learning_rate),
    )


@recorded
def radam(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
    mu_dtype=None,
    convention: str = "optax",
) -> GT:
    r"""RAdam (Liu et al. 2020, "On the variance of the adaptive learning rate and beyond"):
    Adam whose adaptive step is switched on, and scaled by :math:`r_t`, once the second
    moment has seen enough steps; until then it is SGD with (bias-corrected) momentum.

    .. math:: \theta_t = \theta_{t-1} - \eta \begin{cases} r_t\, \hat m_t /
              (\sqrt{\hat v_t} + \epsilon) & \rho_t \ge 5 \\ \hat m_t & \text{otherwise}
              \end{cases}

    with :math:`\rho_t`, :math:`r_t` as in :func:`rectify` (with :math:`b_2` = 0.999 the
    first 5 steps are not adaptive).

    Args:
      learning_rate: :math:`\eta`, a float or a schedule.
      b1: the decay of :math:`m`.
      b2: the decay of :math:`v`.
      eps: added to the root (1e-8).
      eps_root: added under the root (0).
      threshold: :math:`\rho_t` from which the step is adaptive (5, as in optax, torch and
        the authors' code; the paper's Algorithm 2 writes :math:`\rho_t > 4`).
      nesterov: Nadam's look-ahead first moment (optax's option; torch has none).
      mu_dtype: the dtype :math:`m` is stored in.
      convention: ``"optax"`` (optax.radam) or ``"pytorch"`` (torch.optim.RAdam). They
        differ in two details: torch is adaptive only for :math:`\rho_t > 5` (strictly), and
        adds :math:`\epsilon` to :math:`\sqrt{v_t}` before the bias correction, so
        :math:`\hat m_t \sqrt{1-b_2^t} / (\sqrt{v_t} + \epsilon)`, i.e. an effective
        :math:`\epsilon / \sqrt{1-b_2^t}` beside :math:`\sqrt{\hat v_t}` (larger early on).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.radam(0.1)
    >>> tx.update(jnp.array([5.0]), tx.init(jnp.zeros(1)))[0]  # not adaptive yet: -lr * m^
    Array([-0.5], dtype=float32)
    """
    return chain(
        *adam_moments(b1, b2, mu_dtype=mu_dtype),
        bias_correction(b1, b2, nesterov=nesterov),
        rectify(b2, eps, eps_root, threshold, convention=convention),
        scale_by_learning_rate(learning_rate),
    )
