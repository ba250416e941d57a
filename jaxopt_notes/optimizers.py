r"""The optimizer family, each a short visible chain of the building blocks.

Every optimizer takes ``convention="optax"`` (default: the same numbers as the optax
optimizer of the same name) or ``convention="pytorch"`` (the same numbers as ``torch.optim``).
Where the two frameworks differ the chain differs, and the docstring says how. ``learning_rate``
is a float or a schedule (see :mod:`jaxopt_notes.schedules`) everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded, resolved
from jaxopt_notes._types import LearningRate
from jaxopt_notes.adadelta import adadelta
from jaxopt_notes.combine import chain, switch
from jaxopt_notes.modern import adabelief, lion, radam, yogi
from jaxopt_notes.moments import (
    amsgrad_max,
    bias_correction,
    first_moment,
    infinity_moment,
    ratio,
    scale_by_rms,
    scale_by_sum_of_squares,
    second_moment,
)
from jaxopt_notes.transforms import add_decayed_weights, scale_by_learning_rate, trace
from jaxopt_notes.trust_ratio import lamb, lars

GT = optax.GradientTransformationExtraArgs


def _pick(value, convention: str, *, optax_default, pytorch_default):
    """A hyperparameter left as None takes the default of the chosen convention."""
    if value is not None:
        return value
    return optax_default if _checks.convention(convention) == "optax" else pytorch_default


@recorded
def sgd(
    learning_rate: LearningRate,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype=None,
    *,
    convention: str = "optax",
) -> GT:
    r"""Stochastic gradient descent, with heavy-ball or Nesterov momentum when ``momentum`` is set.

    .. math:: v_t = \mu v_{t-1} + g_t, \quad
              \theta_{t} = \theta_{t-1} - \eta\,(v_t \text{ or } g_t + \mu v_t)

    ``momentum=None`` (default) is plain SGD, with no buffer; any number, 0 included, adds the
    :func:`~jaxopt_notes.trace` link (as in optax), so a momentum injected by
    ``optax.inject_hyperparams`` may change, even to 0, while the state keeps its shape.
    ``accumulator_dtype`` (optax's name) stores the momentum buffer in that type.
    Conventions: optax and torch.optim.SGD agree (buffer starts at 0, so :math:`v_1 = g_1`).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.sgd(0.1, momentum=0.9)
    >>> u, s = tx.update(jnp.array([1.0]), tx.init(jnp.zeros(1)))
    >>> u
    Array([-0.1], dtype=float32)
    """
    _checks.convention(convention)
    links = _momentum(momentum, nesterov, accumulator_dtype)
    return chain(*links, scale_by_learning_rate(learning_rate))


def _momentum(momentum: float | None, nesterov: bool, accumulator_dtype=None) -> list:
    """The trace link when ``momentum`` is given: decided by ``None`` alone, which is static."""
    _checks.flag("nesterov", nesterov)
    if momentum is None:
        if nesterov:
            raise ValueError("`nesterov=True` needs `momentum` > 0, got momentum=None")
        return []
    _checks.beta("momentum", momentum)
    if nesterov and _checks.concrete(momentum) and momentum == 0:
        raise ValueError("`nesterov=True` needs `momentum` > 0, got momentum=0")
    return [trace(momentum, nesterov, accumulator_dtype)]


@recorded
def adagrad(
    learning_rate: LearningRate,
    eps: float | None = None,
    *,
    initial_accumulator_value: float | None = None,
    convention: str = "optax",
) -> GT:
    r"""AdaGrad (Duchi et al. 2011): per-coordinate steps shrink with the gradients' history.

    .. math:: G_t = G_0 + \sum_{i \le t} g_i^2, \quad \theta_t = \theta_{t-1} - \eta\,
              \frac{g_t}{\sqrt{G_t + \epsilon}}

    Conventions differ: optax puts :math:`\epsilon` = 1e-7 inside the root and starts at
    :math:`G_0` = 0.1; torch.optim.Adagrad uses :math:`g_t / (\sqrt{G_t} + \epsilon)` with
    :math:`\epsilon` = 1e-10 and :math:`G_0` = 0.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adagrad(1.0, convention="pytorch")
    >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
    Array([-1.], dtype=float32)
    """
    pytorch = _checks.convention(convention) == "pytorch"
    eps = _pick(eps, convention, optax_default=1e-7, pytorch_default=1e-10)
    g0 = _pick(initial_accumulator_value, convention, optax_default=0.1, pytorch_default=0.0)
    tx = chain(
        scale_by_sum_of_squares(eps, initial_accumulator_value=g0, eps_in_sqrt=not pytorch),
        scale_by_learning_rate(learning_rate),
    )
    return resolved(tx, eps=eps, initial_accumulator_value=g0)


@recorded
def rmsprop(
    learning_rate: LearningRate,
    decay: float | None = None,
    eps: float = 1e-8,
    *,
    momentum: float | None = None,
    nesterov: bool = False,
    convention: str = "optax",
) -> GT:
    r"""RMSProp (Hinton 2012): divide by a running root mean square of recent gradients.

    .. math:: v_t = \rho v_{t-1} + (1-\rho) g_t^2, \quad
              \theta_t = \theta_{t-1} - \eta\, \frac{g_t}{\sqrt{v_t + \epsilon}}

    followed by heavy-ball momentum on the scaled gradient when ``momentum`` is set (a number;
    ``None``, the default, adds no buffer, as in :func:`sgd`).
    Conventions differ: optax puts :math:`\epsilon` inside the root and defaults
    :math:`\rho` = 0.9; torch.optim.RMSprop divides by :math:`\sqrt{v_t} + \epsilon` and
    defaults :math:`\rho` (its ``alpha``) = 0.99.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.rmsprop(0.1, decay=0.75, eps=0.0)
    >>> tx.update(jnp.array([4.0]), tx.init(jnp.zeros(1)))[0]  # -0.1 * 4 / sqrt(0.25 * 16)
    Array([-0.2], dtype=float32)
    """
    pytorch = _checks.convention(convention) == "pytorch"
    decay = _pick(decay, convention, optax_default=0.9, pytorch_default=0.99)
    links = _momentum(momentum, nesterov)
    tx = chain(
        scale_by_rms(decay, eps, eps_in_sqrt=not pytorch),
        *links,
        scale_by_learning_rate(learning_rate),
    )
    return resolved(tx, decay=decay)


@recorded
def adam(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    eps_root: float = 0.0,
    mu_dtype=None,
    moment_dtype=None,
    convention: str = "optax",
) -> GT:
    r"""Adam (Kingma & Ba 2015): momentum (an EMA of gradients) + RMS scaling + bias correction.

    .. math:: m_t = b_1 m_{t-1} + (1-b_1) g_t, \quad v_t = b_2 v_{t-1} + (1-b_2) g_t^2,

    .. math:: \theta_t = \theta_{t-1} - \eta\, \frac{m_t / (1-b_1^t)}
              {\sqrt{v_t / (1-b_2^t)} + \epsilon}

    Conventions: optax and torch.optim.Adam agree. ``mu_dtype`` (optax's name and meaning)
    stores :math:`m` alone in that type. ``moment_dtype=jnp.bfloat16`` (opt-in) stores
    :math:`m` and :math:`v` in bfloat16, halving the optimizer state of float32 params (with
    both given, ``mu_dtype`` is :math:`m`'s); the update is still computed in float32 (see the
    README for its measured effect).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adam(0.1)
    >>> tx.update(jnp.array([5.0, -0.01]), tx.init(jnp.zeros(2)))[0]  # first step: -lr*sign(g)
    Array([-0.1,  0.1], dtype=float32)
    """
    _checks.convention(convention)
    _checks.dtype("mu_dtype", mu_dtype)
    _checks.dtype("moment_dtype", moment_dtype)
    return chain(
        first_moment(b1, dtype=moment_dtype if mu_dtype is None else mu_dtype),
        second_moment(b2, dtype=moment_dtype),
        bias_correction(b1, b2),
        ratio(eps, eps_root),
        scale_by_learning_rate(learning_rate),
    )


@recorded
def adamw(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float | None = None,
    *,
    mask=None,
    mu_dtype=None,
    convention: str = "optax",
) -> GT:
    r"""AdamW (Loshchilov & Hutter 2019): Adam with weight decay decoupled from the scaling.

    .. math:: \theta_t = \theta_{t-1} - \eta\,\Big(\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
              + \lambda\, \theta_{t-1}\Big)

    Conventions: the same update in both (torch multiplies :math:`\theta` by
    :math:`1-\eta\lambda` first, which is the same sum); only the default :math:`\lambda`
    differs: 1e-4 in optax, 1e-2 in torch.optim.AdamW. ``mu_dtype``: as in :func:`adam`.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adamw(0.1, weight_decay=0.5)
    >>> tx.update(jnp.array([1.0]), tx.init(jnp.ones(1)), jnp.ones(1))[0]  # -0.1 * (1 + 0.5)
    Array([-0.15], dtype=float32)
    """
    weight_decay = _pick(weight_decay, convention, optax_default=1e-4, pytorch_default=1e-2)
    tx = chain(
        _first_moment(b1, mu_dtype),
        second_moment(b2),
        bias_correction(b1, b2),
        ratio(eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
    return resolved(tx, weight_decay=weight_decay)


@recorded
def amsgrad(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    mu_dtype=None,
    convention: str = "optax",
) -> GT:
    r"""AMSGrad (Reddi et al. 2018): Adam whose second moment never decreases.

    .. math:: \theta_t = \theta_{t-1} - \eta\,\frac{\hat m_t}{\sqrt{\hat v^{max}_t}+\epsilon}

    Conventions differ in what is maxed. optax: :math:`\hat v^{max}_t = \max(\hat
    v^{max}_{t-1}, v_t/(1-b_2^t))`, the max of bias-corrected moments. torch.optim.Adam
    (``amsgrad=True``): :math:`\max_{i \le t} v_i` of the raw moments, then divided by
    :math:`1-b_2^t`. The chain shows it: the running max sits after or before the correction.
    ``mu_dtype``: as in :func:`adam`.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.amsgrad(0.1)
    >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]
    Array([-0.1], dtype=float32)
    """
    if _checks.convention(convention) == "optax":
        corrected = [bias_correction(b1, b2), amsgrad_max()]
    else:
        corrected = [amsgrad_max(), bias_correction(b1, b2)]
    return chain(
        _first_moment(b1, mu_dtype),
        second_moment(b2),
        *corrected,
        ratio(eps),
        scale_by_learning_rate(learning_rate),
    )


@recorded
def nadam(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    momentum_decay: float | None = None,
    mu_dtype=None,
    convention: str = "optax",
) -> GT:
    r"""Nadam (Dozat 2016): Adam with a Nesterov look-ahead in the first moment.

    .. math:: \hat m_t = \frac{\mu_{t+1} m_t}{1-\prod_{i\le t+1}\mu_i}
              + \frac{(1-\mu_t)\, g_t}{1 - \prod_{i\le t}\mu_i},\quad
              \theta_t = \theta_{t-1} - \eta\, \frac{\hat m_t}{\sqrt{v_t/(1-b_2^t)}+\epsilon}

    Conventions differ in :math:`\mu_t`. optax: constant :math:`\mu_t = b_1` (so the
    products are :math:`b_1^{t+1}` and :math:`b_1^t`). torch.optim.NAdam: the warming
    schedule :math:`\mu_t = b_1(1 - \tfrac12 0.96^{t\psi})`, :math:`\psi` =
    ``momentum_decay`` = 4e-3 by default. ``mu_dtype``: as in :func:`adam`.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.nadam(0.1)
    >>> tx.update(jnp.array([3.0]), tx.init(jnp.zeros(1)))[0]
    Array([-0.1], dtype=float32)
    """
    psi = _pick(momentum_decay, convention, optax_default=None, pytorch_default=4e-3)
    tx = chain(
        _first_moment(b1, mu_dtype),
        second_moment(b2),
        bias_correction(b1, b2, nesterov=True, momentum_decay=psi),
        ratio(eps),
        scale_by_learning_rate(learning_rate),
    )
    return resolved(tx, momentum_decay=psi)


@recorded
def nadamw(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float | None = None,
    *,
    momentum_decay: float | None = None,
    mask=None,
    mu_dtype=None,
    convention: str = "optax",
) -> GT:
    r"""NAdamW: :func:`nadam` with decoupled weight decay, as AdamW is to Adam (Dozat 2016;
    Loshchilov & Hutter 2019).

    .. math:: \theta_t = \theta_{t-1} - \eta\,\Big(\frac{\hat m_t}{\sqrt{v_t/(1-b_2^t)}
              + \epsilon} + \lambda\, \theta_{t-1}\Big)

    with Nadam's look-ahead :math:`\hat m_t` (see :func:`nadam`).

    Args:
      learning_rate: :math:`\eta`, a float or a schedule.
      b1: the decay of :math:`m`.
      b2: the decay of :math:`v`.
      eps: added to the root (1e-8).
      weight_decay: :math:`\lambda`, applied after the ratio (``None``: 1e-4 under optax,
        1e-2 under pytorch, AdamW's defaults there; torch's NAdam itself defaults to 0).
      momentum_decay: torch's :math:`\psi` (``None``: none under optax, 4e-3 under pytorch).
      mask: the leaves that decay, as in :func:`~jaxopt_notes.add_decayed_weights`.
      mu_dtype: the dtype :math:`m` is stored in.
      convention: ``"optax"`` (optax.nadamw, constant :math:`\mu_t = b_1`) or ``"pytorch"``
        (torch.optim.NAdam with ``decoupled_weight_decay=True``: the warming momentum
        schedule; torch multiplies :math:`\theta` by :math:`1 - \eta\lambda` first, which
        is the same sum).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> g, p = jnp.array([3.0]), jnp.ones(1)
    >>> tx, plain = jn.nadamw(0.1, weight_decay=0.5), jn.nadam(0.1)
    >>> tx.update(g, tx.init(p), p)[0] - plain.update(g, plain.init(p), p)[0]  # -0.1 * 0.5 * p
    Array([-0.05], dtype=float32)
    """
    weight_decay = _pick(weight_decay, convention, optax_default=1e-4, pytorch_default=1e-2)
    psi = _pick(momentum_decay, convention, optax_default=None, pytorch_default=4e-3)
    tx = chain(
        _first_moment(b1, mu_dtype),
        second_moment(b2),
        bias_correction(b1, b2, nesterov=True, momentum_decay=psi),
        ratio(eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
    return resolved(tx, weight_decay=weight_decay, momentum_decay=psi)


@recorded
def adamax(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    mu_dtype=None,
    convention: str = "optax",
) -> GT:
    r"""AdaMax (Kingma & Ba 2015, sec. 7): Adam with the infinity norm for the second moment.

    .. math:: u_t = \max(b_2 u_{t-1}, |g_t| + \epsilon), \quad
              \theta_t = \theta_{t-1} - \eta\,\frac{m_t}{(1-b_1^t)\, u_t}

    Conventions: optax and torch.optim.Adamax agree (:math:`\epsilon` inside the max).
    ``mu_dtype`` stores :math:`m` in that type (optax's adamax has no such keyword).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adamax(0.1, eps=0.0)
    >>> tx.update(jnp.array([-4.0]), tx.init(jnp.zeros(1)))[0]
    Array([0.1], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        _first_moment(b1, mu_dtype),
        infinity_moment(b2, eps),
        bias_correction(b1),
        ratio(eps=0.0, power=1),
        scale_by_learning_rate(learning_rate),
    )


@recorded
def adam_then_sgd(
    learning_rate: LearningRate,
    sgd_learning_rate: LearningRate,
    *,
    switch_step: int,
    momentum: float = 0.9,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    criterion=None,
) -> GT:
    r"""Adam early for speed, SGD with momentum late to settle (Keskar & Socher 2017's idea).

    Runs :func:`adam` until step ``switch_step`` (or until ``criterion(count, grads)`` is
    true, see :func:`jaxopt_notes.switch`), then :func:`sgd` with ``momentum``.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adam_then_sgd(0.1, 0.01, switch_step=100)
    >>> int(tx.init(jnp.zeros(1)).switched_at)
    -1
    """
    return switch(
        adam(learning_rate, b1, b2, eps),
        sgd(sgd_learning_rate, momentum),
        switch_step=switch_step,
        criterion=criterion,
    )


def _first_moment(b1: float, mu_dtype) -> optax.GradientTransformation:
    """The first moment link, its dtype checked under optax's name for it."""
    return first_moment(b1, dtype=_checks.dtype("mu_dtype", mu_dtype))


def _heavy_ball(
    learning_rate: LearningRate, momentum: float = 0.9, *, convention: str = "optax"
) -> GT:
    """:func:`sgd` with momentum 0.9 by default. A plain signature, not ``**kw``, because
    ``optax.inject_hyperparams`` binds every parameter by name."""
    return sgd(learning_rate, momentum, convention=convention)


def _nesterov(
    learning_rate: LearningRate, momentum: float = 0.9, *, convention: str = "optax"
) -> GT:
    """:func:`sgd` with Nesterov momentum, 0.9 by default."""
    return sgd(learning_rate, momentum, nesterov=True, convention=convention)


OPTIMIZERS: dict[str, Callable[..., GT]] = {
    "sgd": sgd,
    "momentum": _heavy_ball,
    "nesterov": _nesterov,
    "adagrad": adagrad,
    "rmsprop": rmsprop,
    "adam": adam,
    "adamw": adamw,
    "amsgrad": amsgrad,
    "nadam": nadam,
    "adamax": adamax,
    "lion": lion,
    "adabelief": adabelief,
    "yogi": yogi,
    "radam": radam,
    "nadamw": nadamw,
    "adadelta": adadelta,
    "lamb": lamb,
    "lars": lars,
}


def get(name: str, **hyperparameters) -> GT:
    """The optimizer called ``name`` (a key of ``OPTIMIZERS``) built with ``hyperparameters``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"`name` must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](**hyperparameters)
