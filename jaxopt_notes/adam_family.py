r"""The Adam family, each a short visible chain over Adam's direction.

:func:`adam_moments` (the two EMAs) and :func:`adam_direction` (the moments, bias-corrected
and divided) are the links every member shares; an alias adds what makes it itself:

.. code-block:: text

    adam     adam_direction -> learning rate
    adamw    adam_direction -> add_decayed_weights -> learning rate
    amsgrad  adam_moments -> bias_correction <-> amsgrad_max -> ratio -> learning rate
    nadam    adam_direction(nesterov) -> learning rate
    nadamw   adam_direction(nesterov) -> add_decayed_weights -> learning rate
    adamax   first_moment -> infinity_moment -> bias_correction -> ratio(power=1) -> lr

The links are returned as a list and spread into :func:`~jaxopt_notes.chain`, so the state
of an alias is the flat tuple of its links' states, as if each were written out.
"""

from __future__ import annotations

import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded, resolved
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.combine import chain
from jaxopt_notes.moments import (
    amsgrad_max,
    bias_correction,
    first_moment,
    infinity_moment,
    ratio,
    second_moment,
)
from jaxopt_notes.transforms import add_decayed_weights, scale_by_learning_rate


def adam_moments(
    b1: float, b2: float, *, mu_dtype=None, moment_dtype=None
) -> list[optax.GradientTransformation]:
    """Adam's two moment links, :math:`m` (in ``mu_dtype``, else ``moment_dtype``) and
    :math:`v` (in ``moment_dtype``); the dtypes are checked under these names."""
    mu_dtype = _checks.dtype("mu_dtype", mu_dtype)
    moment_dtype = _checks.dtype("moment_dtype", moment_dtype)
    return [
        first_moment(b1, dtype=moment_dtype if mu_dtype is None else mu_dtype),
        second_moment(b2, dtype=moment_dtype),
    ]


def adam_direction(
    b1: float,
    b2: float,
    eps: float,
    eps_root: float = 0.0,
    *,
    nesterov: bool = False,
    momentum_decay: float | None = None,
    moments: list[optax.GradientTransformation] | None = None,
    mu_dtype=None,
    moment_dtype=None,
) -> list[optax.GradientTransformation]:
    r"""Adam's direction :math:`\hat m / (\sqrt{\hat v + \epsilon_{root}} + \epsilon)` as
    links: :func:`adam_moments` (or the given ``moments``, e.g. AdaBelief's), the bias
    correction (Nadam's look-ahead with ``nesterov``) and the ratio that closes the run.
    ``mu_dtype``, ``moment_dtype``: as in :func:`adam_moments` (with ``moments`` given, the
    dtypes are its links' own)."""
    if moments is None:
        moments = adam_moments(b1, b2, mu_dtype=mu_dtype, moment_dtype=moment_dtype)
    elif mu_dtype is not None or moment_dtype is not None:
        raise ValueError(
            "`mu_dtype` and `moment_dtype` must be None when `moments` is given (its links "
            f"hold their own dtypes), got mu_dtype={mu_dtype!r}, moment_dtype={moment_dtype!r}"
        )
    correction = bias_correction(b1, b2, nesterov=nesterov, momentum_decay=momentum_decay)
    return [*moments, correction, ratio(eps, eps_root)]


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
    docs' benchmarks page for its measured effect).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adam(0.1)
    >>> tx.update(jnp.array([5.0, -0.01]), tx.init(jnp.zeros(2)))[0]  # first step: -lr*sign(g)
    Array([-0.1,  0.1], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        *adam_direction(b1, b2, eps, eps_root, mu_dtype=mu_dtype, moment_dtype=moment_dtype),
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
    weight_decay = _decoupled_default(weight_decay, convention)
    tx = chain(
        *adam_direction(b1, b2, eps, mu_dtype=mu_dtype),
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
        *adam_moments(b1, b2, mu_dtype=mu_dtype),
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
    psi = _checks.by_convention(momentum_decay, convention, optax=None, pytorch=4e-3)
    look_ahead = adam_direction(b1, b2, eps, nesterov=True, momentum_decay=psi, mu_dtype=mu_dtype)
    return resolved(chain(*look_ahead, scale_by_learning_rate(learning_rate)), momentum_decay=psi)


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
    weight_decay = _decoupled_default(weight_decay, convention)
    psi = _checks.by_convention(momentum_decay, convention, optax=None, pytorch=4e-3)
    tx = chain(
        *adam_direction(b1, b2, eps, nesterov=True, momentum_decay=psi, mu_dtype=mu_dtype),
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
        first_moment(b1, dtype=_checks.dtype("mu_dtype", mu_dtype)),
        infinity_moment(b2, eps),
        bias_correction(b1),
        ratio(eps=0.0, power=1),
        scale_by_learning_rate(learning_rate),
    )


def _decoupled_default(weight_decay: float | None, convention: str) -> float:
    r"""AdamW's :math:`\lambda` when left as None: 1e-4 in optax, 1e-2 in torch.optim.AdamW."""
    return _checks.by_convention(weight_decay, convention, optax=1e-4, pytorch=1e-2)
