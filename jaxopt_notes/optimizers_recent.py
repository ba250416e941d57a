r"""Optimizers of 2022-2024 as visible chains: ADOPT, AdEMAMix and Adan.

A module beside :mod:`jaxopt_notes.modern` because that home of the aliases is at its ~400-line
budget. Each adds one or two links to the moment links and transforms already there:

.. code-block:: text

    adopt     adopt_scale -> adopt_momentum -> learning rate
    ademamix  first_moment -> second_moment -> bias_correction -> slow_momentum -> ratio
              -> add_decayed_weights -> learning rate
    adan      scale_by_adan -> add_decayed_weights -> learning rate

:func:`slow_momentum` is a moment link (it stands inside a moment run and adds to ``mu``);
the others are plain links, trees in and trees out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import GT, LearningRate, Schedule
from jaxopt_notes.combine import chain, increment, zero_count
from jaxopt_notes.moments import (
    _needs,
    _real_zeros,
    _store,
    _zeros,
    abs_sq,
    bias_correction,
    first_moment,
    ratio,
    second_moment,
)
from jaxopt_notes.transforms import _plain, add_decayed_weights, scale_by_learning_rate


def _at(value: Any, count: jax.Array) -> Any:
    """A hyperparameter that may be a schedule, read at ``count``."""
    return value(count) if callable(value) else value


def _clip(x: jax.Array, c: Any) -> jax.Array:
    """Clipping by value; a complex entry has its real and imaginary parts clipped alone."""
    if jnp.iscomplexobj(x):
        return jax.lax.complex(jnp.clip(x.real, -c, c), jnp.clip(x.imag, -c, c))
    return jnp.clip(x, -c, c)


# --------------------------------------------------------------------------------- ADOPT
class AdoptScaleState(NamedTuple):
    count: jax.Array  # steps taken, int32
    nu: Any


def _quarter_power(step: jax.Array) -> jax.Array:
    return step**0.25


@recorded
def adopt_scale(
    b2: float = 0.9999,
    eps: float = 1e-6,
    *,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], Any] | float = _quarter_power,
) -> optax.GradientTransformation:
    r"""ADOPT's normalisation: the gradient divided by the root of the second moment *before*
    this gradient enters it, then clipped (Taniguchi et al. 2024):

    .. math:: u_t = \operatorname{clip}\Big(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)},
              \pm c(t-1)\Big), \qquad v_t = b_2 v_{t-1} + (1-b_2) g_t^2, \quad v_1 = g_1^2

    Leaving :math:`g_t` out of its own denominator is what makes the step unbiased and the
    method converge for any :math:`b_2`. :math:`c(t) = t^{1/4}` by default (a number: a
    constant), so the first step (:math:`v_0 = 0`, :math:`c(0) = 0`) is 0.
    """
    _checks.beta("b2", b2)
    _checks.non_negative("eps", eps)
    _checks.flag("use_clipping", use_clipping)
    if not callable(clip_value_fn):
        _checks.non_negative("clip_value_fn", clip_value_fn)

    def init_fn(params):
        return AdoptScaleState(zero_count(), _real_zeros(params))

    def update_fn(updates, state, params=None):
        del params
        _plain("adopt_scale", updates)
        c = _at(clip_value_fn, state.count)
        scaled = lambda g, v: g / jnp.maximum(jnp.sqrt(v), eps).astype(g.dtype)  # noqa: E731
        out = jax.tree.map(scaled, updates, state.nu)
        if use_clipping:
            out = jax.tree.map(lambda u: _clip(u, c), out)
        b2_ = jnp.where(state.count > 0, b2, 0)  # v_1 = g_1^2
        nu = jax.tree.map(lambda g, v: (1 - b2_) * abs_sq(g) + b2_ * v, updates, state.nu)
        return out, AdoptScaleState(increment(state.count), nu)

    return optax.GradientTransformation(init_fn, update_fn)


class AdoptMomentumState(NamedTuple):
    count: jax.Array  # steps taken, int32
    mu: Any


@recorded
def adopt_momentum(
    b1: float = 0.9, *, nesterov: bool = False, dtype: Any = None
) -> optax.GradientTransformation:
    r"""ADOPT's momentum of the normalised gradients, an EMA that skips the first step:
    :math:`m_t = b_1 m_{t-1} + (1-b_1) u_t` for :math:`t > 1`, :math:`m_1 = 0` (whose
    :math:`u_1` divided by :math:`v_0 = 0`). ``nesterov`` steps along
    :math:`b_1 m_t + (1-b_1) u_t`. No bias correction. ``dtype`` stores :math:`m`."""
    _checks.beta("b1", b1)
    _checks.flag("nesterov", nesterov)
    dtype = _checks.dtype("dtype", dtype)

    def init_fn(params):
        return AdoptMomentumState(zero_count(), _zeros(params, dtype=dtype))

    def update_fn(updates, state, params=None):
        del params
        _plain("adopt_momentum", updates)
        b1_ = jnp.where(state.count > 0, b1, 1)
        ema = lambda u, m: (1 - b1_) * u + b1_ * m  # noqa: E731
        mu = jax.tree.map(ema, updates, state.mu)
        out = jax.tree.map(ema, updates, mu) if nesterov else mu
        return out, AdoptMomentumState(increment(state.count), _store(mu, dtype))

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def adopt(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], Any] | float = _quarter_power,
    convention: str = "optax",
) -> GT:
    r"""ADOPT (Taniguchi et al. 2024, "ADOPT: modified Adam can converge with any
    :math:`\beta_2` with the optimal rate"): Adam with the normalisation moved before the
    momentum, by the second moment of the *previous* steps.

    .. math:: m_t = b_1 m_{t-1} + (1-b_1)\operatorname{clip}\Big(\frac{g_t}
              {\max(\sqrt{v_{t-1}}, \epsilon)}\Big), \qquad \theta_t = \theta_{t-1} - \eta m_t

    Args:
      learning_rate: :math:`\eta`, a float or a schedule.
      b1: the momentum's decay.
      b2: the second moment's decay (0.9999).
      eps: the floor of :math:`\sqrt{v}` (1e-6).
      mu_dtype: the dtype :math:`m` is stored in.
      nesterov: step along :math:`b_1 m_t + (1-b_1) u_t`.
      use_clipping, clip_value_fn: clip the normalised gradient to :math:`\pm c(t)`
        (:math:`t^{1/4}`; the paper's stabilisation, optax's default).
      convention: torch.optim has no ADOPT; both values give ``optax.contrib.adopt``'s
        numbers (complex gradients here have their real and imaginary parts clipped alone).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adopt(0.1)
    >>> s = tx.init(jnp.zeros(1))
    >>> u1, s = tx.update(jnp.array([2.0]), s)  # v_0 = 0: the first step is 0
    >>> u2, s = tx.update(jnp.array([2.0]), s)  # -0.1 * (1 - 0.9) * clip(2 / 2, 1)
    >>> u1, u2
    (Array([-0.], dtype=float32), Array([-0.01], dtype=float32))
    """
    _checks.convention(convention)
    return chain(
        adopt_scale(b2, eps, use_clipping=use_clipping, clip_value_fn=clip_value_fn),
        adopt_momentum(b1, nesterov=nesterov, dtype=_checks.dtype("mu_dtype", mu_dtype)),
        scale_by_learning_rate(learning_rate),
    )


# ------------------------------------------------------------------------------ AdEMAMix
class SlowMomentumState(NamedTuple):
    count: jax.Array  # steps taken, int32 (where the schedules of b3 and alpha are read)
    mu_slow: Any


@recorded
def slow_momentum(
    b3: float | Schedule = 0.9999, alpha: float | Schedule = 5.0, *, dtype: Any = None
) -> optax.GradientTransformation:
    r"""AdEMAMix's second, slow EMA of the gradient, added to the (bias-corrected) first
    moment of the run: :math:`\hat m \leftarrow \hat m + \alpha\, m^{slow}_t`,
    :math:`m^{slow}_t = b_3 m^{slow}_{t-1} + (1-b_3) g_t`.

    A moment link: put it after :func:`~jaxopt_notes.bias_correction`, before
    :func:`~jaxopt_notes.ratio`. The slow EMA is not bias-corrected (it fills slowly, on
    purpose); :math:`b_3` and :math:`\alpha` may be schedules of the step (the paper warms
    both up). ``dtype`` stores :math:`m^{slow}`.
    """
    if not callable(b3):
        _checks.beta("b3", b3)
    _checks.non_negative("alpha", alpha, schedule=True)
    dtype = _checks.dtype("dtype", dtype)

    def init_fn(params):
        return SlowMomentumState(zero_count(), _zeros(params, dtype=dtype))

    def update_fn(updates, state, params=None):
        del params
        m = _needs(updates, "slow_momentum", "mu")
        b, a = _at(b3, state.count), _at(alpha, state.count)
        slow = jax.tree.map(lambda g, s: (1 - b) * g + b * s, m.grad, state.mu_slow)
        mu = jax.tree.map(lambda fast, s: fast + a * s, m.mu, slow)
        return m._replace(mu=mu), SlowMomentumState(increment(state.count), _store(slow, dtype))

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def ademamix(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    b3: float | Schedule = 0.9999,
    alpha: float | Schedule = 5.0,
    eps: float = 1e-8,
    *,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: float = 0.0,
    mask: Any = None,
    convention: str = "optax",
) -> GT:
    r"""AdEMAMix (Pagliardini et al. 2024, "The AdEMAMix optimizer: better, faster, older"):
    Adam whose numerator mixes a fast and a very slow EMA of the gradient, so that gradients
    from tens of thousands of steps ago still count.

    .. math:: \theta_t = \theta_{t-1} - \eta\Big(\frac{\hat m_t + \alpha\, m^{slow}_t}
              {\sqrt{\hat v_t + \epsilon_{root}} + \epsilon} + \lambda \theta_{t-1}\Big)

    Args:
      learning_rate: :math:`\eta`, a float or a schedule.
      b1, b2: Adam's decays.
      b3: the slow EMA's decay (0.9999), a float or a schedule.
      alpha: its weight (5), a float or a schedule.
      eps, eps_root: beside and under the root.
      mu_dtype: the dtype of all three moments (as optax stores them).
      weight_decay, mask: decoupled weight decay and the leaves it applies to.
      convention: torch.optim has no AdEMAMix; both values give ``optax.contrib.ademamix``'s
        numbers.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.ademamix(0.1, b3=0.5, alpha=2.0, eps=0.0)
    >>> p = jnp.zeros(1)
    >>> tx.update(jnp.array([4.0]), tx.init(p), p)[0]  # -0.1 (4 + 2 * 2) / 4
    Array([-0.2], dtype=float32)
    """
    _checks.convention(convention)
    dtype = _checks.dtype("mu_dtype", mu_dtype)
    return chain(
        first_moment(b1, dtype=dtype),
        second_moment(b2, dtype=dtype),
        bias_correction(b1, b2),
        slow_momentum(b3, alpha, dtype=dtype),
        ratio(eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# ---------------------------------------------------------------------------------- Adan
class AdanState(NamedTuple):
    count: jax.Array  # steps taken, int32
    mu: Any  # EMA of g
    mu_diff: Any  # EMA of g_t - g_{t-1}
    nu: Any  # EMA of (g_t + (1 - b2)(g_t - g_{t-1}))^2
    previous: Any  # g_{t-1}


@recorded
def scale_by_adan(
    b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8, eps_root: float = 1e-8
) -> optax.GradientTransformation:
    r"""Adan's direction (Xie et al. 2022, Algorithm 1), with :math:`d_t = g_t - g_{t-1}`
    (:math:`d_1 = 0`) and every EMA bias-corrected:

    .. math:: u_t = \frac{\hat m_t + (1-b_2)\,\hat d_t}{\sqrt{\hat n_t + \epsilon_{root}}
              + \epsilon}, \quad m = \mathrm{EMA}_{b_1}(g), \; d = \mathrm{EMA}_{b_2}(g_t -
              g_{t-1}), \; n = \mathrm{EMA}_{b_3}\big((g_t + (1-b_2)(g_t - g_{t-1}))^2\big)

    The gradient difference is a cheap Nesterov look-ahead: it estimates the gradient at the
    extrapolated point without evaluating it there. One link, since its three EMAs are not
    Adam's moments (optax's ``scale_by_adan`` is one transform too).
    """
    for name, b in (("b1", b1), ("b2", b2), ("b3", b3)):
        _checks.beta(name, b)
    _checks.non_negative("eps", eps)
    _checks.non_negative("eps_root", eps_root)

    def init_fn(params):
        fresh = lambda: _zeros(params)  # noqa: E731  (one buffer per field: states are donated)
        return AdanState(zero_count(), fresh(), fresh(), _real_zeros(params), fresh())

    def update_fn(updates, state, params=None):
        del params
        _plain("scale_by_adan", updates)
        ema = lambda b: lambda x, m: (1 - b) * x + b * m  # noqa: E731
        first = state.count == 0
        diff = jax.tree.map(
            lambda g, p: jnp.where(first, jnp.zeros_like(g), g - p), updates, state.previous
        )
        mu = jax.tree.map(ema(b1), updates, state.mu)
        mu_diff = jax.tree.map(ema(b2), diff, state.mu_diff)
        mixed = jax.tree.map(lambda g, d: abs_sq(g + (1 - b2) * d), updates, diff)
        nu = jax.tree.map(ema(b3), mixed, state.nu)
        t = increment(state.count)
        hat = lambda x, b: x / (1 - b**t).astype(x.dtype)  # noqa: E731

        def step(m, d, n):
            den = jnp.sqrt(hat(n, b3) + eps_root) + eps
            return (hat(m, b1) + (1 - b2) * hat(d, b2)) / den.astype(m.dtype)

        out = jax.tree.map(step, mu, mu_diff, nu)
        return out, AdanState(t, mu, mu_diff, nu, updates)

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def adan(
    learning_rate: LearningRate,
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    *,
    eps_root: float = 1e-8,
    weight_decay: float = 0.0,
    mask: Any = None,
    convention: str = "optax",
) -> GT:
    r"""Adan (Xie et al. 2022, "Adan: adaptive Nesterov momentum algorithm for faster
    optimizing deep models"): Adam-like, with a Nesterov look-ahead estimated from the
    difference of consecutive gradients (see :func:`scale_by_adan`).

    .. math:: \theta_t = \theta_{t-1} - \eta\,(u_t + \lambda\theta_{t-1})

    Args:
      learning_rate: :math:`\eta`, a float or a schedule.
      b1, b2, b3: the decays of :math:`m`, :math:`d`, :math:`n` (0.98, 0.92, 0.99, the
        paper's :math:`1-\beta` values 0.02, 0.08, 0.01).
      eps, eps_root: beside and under the root (1e-8 each, optax's).
      weight_decay, mask: decoupled weight decay (optax's form, :math:`-\eta\lambda\theta`;
        the paper's Algorithm 1 divides by :math:`1+\eta\lambda` instead) and its leaves.
      convention: torch.optim has no Adan; both values give ``optax.adan``'s numbers.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adan(0.1, eps=0.0, eps_root=0.0)
    >>> p = jnp.zeros(1)
    >>> tx.update(jnp.array([3.0]), tx.init(p), p)[0]  # first step: -lr sign(g)
    Array([-0.1], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        scale_by_adan(b1, b2, b3, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
