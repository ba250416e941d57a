r"""The SGD family (sgd, momentum, Nesterov, AdaGrad, RMSProp) and the table of every optimizer.

Each is a short visible chain of the building blocks; the Adam family lives in
:mod:`jaxopt_notes.adam_family`, the newer methods in :mod:`jaxopt_notes.modern`,
:mod:`jaxopt_notes.trust_ratio` and :mod:`jaxopt_notes.adadelta`, those of 2022-2024 in the
``optimizers_*`` modules (Muon; ADOPT, AdEMAMix, Adan, Rprop; Adafactor; Schedule-Free; DoG,
DoWG, Prodigy, D-Adaptation; Shampoo; SOAP; Sophia, which needs the loss, is not in the
table). Every optimizer takes
``convention="optax"`` (default: the same numbers as the optax optimizer of the same name) or
``convention="pytorch"`` (the same numbers as ``torch.optim``). Where the two frameworks
differ the chain differs, and the docstring says how. ``learning_rate`` is a float or a
schedule (see :mod:`jaxopt_notes.schedules`) everywhere.
"""

from __future__ import annotations

from collections.abc import Callable

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded, resolved
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.adadelta import adadelta
from jaxopt_notes.adam_family import adam, adamax, adamw, amsgrad, nadam, nadamw
from jaxopt_notes.combine import chain, switch
from jaxopt_notes.modern import adabelief, lion, radam, yogi
from jaxopt_notes.moments import scale_by_rms, scale_by_sum_of_squares
from jaxopt_notes.optimizers_dadapt import dadapt_adamw, prodigy
from jaxopt_notes.optimizers_factored import adafactor
from jaxopt_notes.optimizers_free import dog, dowg
from jaxopt_notes.optimizers_muon import muon
from jaxopt_notes.optimizers_recent import adan, ademamix, adopt
from jaxopt_notes.optimizers_rprop import rprop
from jaxopt_notes.optimizers_schedule_free import schedule_free_adamw, schedule_free_sgd
from jaxopt_notes.optimizers_shampoo import shampoo
from jaxopt_notes.optimizers_soap import soap
from jaxopt_notes.transforms import scale_by_learning_rate, trace
from jaxopt_notes.trust_ratio import lamb, lars


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
    eps = _checks.by_convention(eps, convention, optax=1e-7, pytorch=1e-10)
    g0 = _checks.by_convention(initial_accumulator_value, convention, optax=0.1, pytorch=0.0)
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
    decay = _checks.by_convention(decay, convention, optax=0.9, pytorch=0.99)
    links = _momentum(momentum, nesterov)
    tx = chain(
        scale_by_rms(decay, eps, eps_in_sqrt=not pytorch),
        *links,
        scale_by_learning_rate(learning_rate),
    )
    return resolved(tx, decay=decay)


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
    "muon": muon,
    "adopt": adopt,
    "ademamix": ademamix,
    "adan": adan,
    "rprop": rprop,
    "adafactor": adafactor,
    "schedule_free_sgd": schedule_free_sgd,
    "schedule_free_adamw": schedule_free_adamw,
    "prodigy": prodigy,
    "dadapt_adamw": dadapt_adamw,
    "dog": dog,
    "dowg": dowg,
    "shampoo": shampoo,
    "soap": soap,
}

# per name, the hyperparameters that decide the state's structure: optax.inject_hyperparams
# must leave them static (``static_args=STATIC_ARGS.get(name, ())``) or tracing refuses them
STATIC_ARGS: dict[str, tuple[str, ...]] = {"adafactor": ("min_dim_size_to_factor",)}


def get(name: str, **hyperparameters) -> GT:
    """The optimizer called ``name`` (a key of ``OPTIMIZERS``) built with ``hyperparameters``."""
    _checks.one_of("name", name, sorted(OPTIMIZERS))
    return OPTIMIZERS[name](**hyperparameters)
