r"""Transforms around an optimizer: Lookahead, SAM, and averages of the parameters.

:func:`lookahead` and :func:`sam` wrap other transforms (any, optax's too) and return updates
for the parameters; :func:`ema_params` and :func:`polyak_params` are links placed *last* in a
chain (after the learning rate): they pass the updates through unchanged and keep, in their
state, an average of the parameters the updates lead to, read with :func:`averaged_params`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes.combine import increment, zero_count
from jaxopt_notes.transforms import global_norm, stateless, with_params

LookaheadParams = optax.LookaheadParams


class LookaheadState(NamedTuple):
    fast_state: Any
    steps_since_sync: jax.Array  # int32, in [0, sync_period)


def _lookahead_params(params: Any) -> LookaheadParams:
    if not isinstance(params, LookaheadParams):
        raise TypeError(
            "`lookahead` needs its params as `optax.LookaheadParams(fast=..., slow=...)` (make "
            "them with `optax.LookaheadParams.init_synced(params)`), got "
            f"{type(params).__name__}"
        )
    return params


@recorded
def lookahead(
    fast_optimizer: optax.GradientTransformation,
    sync_period: int = 6,
    slow_step_size: float = 0.5,
    reset_state: bool = False,
) -> optax.GradientTransformationExtraArgs:
    r"""Lookahead (Zhang et al. 2019, "Lookahead optimizer: k steps forward, 1 step back"):
    ``fast_optimizer`` takes :math:`k` steps, then the slow weights move part of the way to
    where they ended and the fast weights restart from there.

    .. math:: \phi_{t+1} = \phi_t + \alpha\,(\theta_{t,k} - \phi_t), \qquad
              \theta_{t+1,0} = \phi_{t+1}

    The params are ``optax.LookaheadParams(fast, slow)``: take gradients at ``fast``,
    evaluate at ``slow``. Each update returns updates for both (apply them unchanged): the
    fast optimizer's step for ``fast``, zero for ``slow``, except every :math:`k`-th step,
    which also does the synchronisation. optax.lookahead's semantics and state layout.

    Args:
      fast_optimizer: the inner optimizer (any transform).
      sync_period: :math:`k`, the fast steps per slow step (>= 1; 6 in the paper's runs).
      slow_step_size: :math:`\alpha` in [0, 1] (0.5).
      reset_state: restart the fast optimizer's state at each synchronisation.

    >>> import jax.numpy as jnp, optax, jaxopt_notes as jn
    >>> tx = jn.lookahead(jn.sgd(0.5), sync_period=2, slow_step_size=0.5)
    >>> params = optax.LookaheadParams.init_synced(jnp.ones(1))
    >>> state = tx.init(params)
    >>> for _ in range(2):
    ...     updates, state = tx.update(jnp.ones(1), state, params)
    ...     params = jn.apply_updates(params, updates)
    >>> params.fast, params.slow  # fast went 1 -> 0 in two steps; slow halfway
    (Array([0.5], dtype=float32), Array([0.5], dtype=float32))
    """
    _checks.transform("fast_optimizer", fast_optimizer)
    _checks.integer("sync_period", sync_period, low=1)
    _checks.real("slow_step_size", slow_step_size, low=0.0, high=1.0)
    _checks.flag("reset_state", reset_state)
    fast = optax.with_extra_args_support(fast_optimizer)

    def init_fn(params):
        params = _lookahead_params(params)
        return LookaheadState(fast.init(params.fast), zero_count())

    def update_fn(updates, state, params=None, **extra_args):
        params = _lookahead_params(params)
        step, fast_state = fast.update(updates, state.fast_state, params.fast, **extra_args)
        sync = state.steps_since_sync == sync_period - 1
        # where the fast weights would land, measured from the slow ones
        gap = jax.tree.map(lambda f, u, s: f + u - s, params.fast, step, params.slow)
        slow_step = jax.tree.map(
            lambda d: jnp.where(sync, slow_step_size * d, jnp.zeros_like(d)), gap
        )
        fast_step = jax.tree.map(
            lambda u, d: jnp.where(sync, u - (1 - slow_step_size) * d, u), step, gap
        )
        if reset_state:
            fresh = fast.init(params.fast)
            fast_state = jax.tree.map(lambda a, b: jnp.where(sync, b, a), fast_state, fresh)
        steps = (state.steps_since_sync + 1) % sync_period
        return LookaheadParams(fast=fast_step, slow=slow_step), LookaheadState(fast_state, steps)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@recorded
def normalize() -> optax.GradientTransformation:
    r""":math:`u = g / \|g\|`, the gradient scaled to global norm 1 (SAM's ascent direction;
    optax.contrib.normalize). A zero gradient gives NaN, as there.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> jn.normalize().update(jnp.array([3.0, 4.0]), ())[0]
    Array([0.6, 0.8], dtype=float32)
    """

    def unit(updates):
        norm = global_norm(updates)
        return jax.tree.map(lambda g: g / norm.astype(g.dtype), updates)

    return stateless("normalize", unit)


class SAMState(NamedTuple):
    steps_since_sync: jax.Array  # int32, in [0, sync_period)
    opt_state: Any
    adv_state: Any
    cache: Any  # the params of the last outer step: where the adversarial steps started


@recorded
def sam(
    optimizer: optax.GradientTransformation,
    adv_optimizer: optax.GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
) -> optax.GradientTransformationExtraArgs:
    r"""SAM (Foret et al. 2021, "Sharpness-aware minimization for efficiently improving
    generalization"), as optax.contrib.sam defines it (its default, transparent mode).

    Of every ``sync_period`` calls, the first ``sync_period - 1`` are adversarial: they move
    the params *up* the loss by ``adv_optimizer``'s step, negated (with
    ``chain(jn.normalize(), jn.sgd(rho))`` that is :math:`\epsilon = \rho\, g/\|g\|`). The
    last is the outer step: ``optimizer`` gets the gradient taken at the perturbed params, and
    the update returns the params to where the adversarial steps started, plus its step:

    .. math:: \theta_{t+1} = \theta_t + \mathrm{opt}\big(\nabla L(\theta_t + \epsilon_t)\big)

    Args:
      optimizer: the outer optimizer (its state advances only on outer steps).
      adv_optimizer: the adversarial one (reset after each outer step when ``reset_state``).
      sync_period: calls per outer step (2: one ascent step, one descent step).
      reset_state: restart ``adv_optimizer``'s state at each outer step (True).

    optax's ``opaque_mode`` (the adversarial steps run inside one call, through a
    ``grad_fn``) is not offered: each call here is one step, seen by the training loop.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.sam(jn.sgd(0.1), jn.chain(jn.normalize(), jn.sgd(0.05)))
    >>> params = jnp.array([3.0, 4.0])
    >>> state = tx.init(params)
    >>> up, state = tx.update(jnp.array([3.0, 4.0]), state, params)  # ascent: rho g / |g|
    >>> up
    Array([0.03, 0.04], dtype=float32)
    """
    _checks.transform("optimizer", optimizer)
    _checks.transform("adv_optimizer", adv_optimizer)
    _checks.integer("sync_period", sync_period, low=1)
    _checks.flag("reset_state", reset_state)
    outer, adv = (optax.with_extra_args_support(t) for t in (optimizer, adv_optimizer))

    def init_fn(params):
        return SAMState(zero_count(), outer.init(params), adv.init(params), params)

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("`sam` needs `params` in `update`, got None")
        first, last = state.steps_since_sync == 0, state.steps_since_sync == sync_period - 1
        pick = lambda c, a, b: jax.tree.map(lambda x, y: jnp.where(c, x, y), a, b)  # noqa: E731
        ascent, adv_state = adv.update(updates, state.adv_state, params, **extra_args)
        ascent = jax.tree.map(jnp.negative, ascent)
        step, opt_state = outer.update(updates, state.opt_state, state.cache, **extra_args)
        back = jax.tree.map(lambda c, p, u: c - p + u, state.cache, params, step)
        kept_adv = adv.init(params) if reset_state else state.adv_state
        new_state = SAMState(
            (state.steps_since_sync + 1) % sync_period,
            pick(last, opt_state, state.opt_state),
            pick(last, kept_adv, adv_state),
            pick(first, params, state.cache),
        )
        return pick(last, back, ascent), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class ParamsAverageState(NamedTuple):
    count: jax.Array  # steps averaged, int32
    average: Any  # the averaged parameters, a tree like the params


def _averaging(
    name: str, dtype: Any, mix: Callable[[jax.Array], Callable[[Any, Any], Any]]
) -> optax.GradientTransformation:
    """A link that passes the updates through and keeps an average of the params after the
    step (in ``dtype``, else the params'), starting from the params it is initialised with:
    ``mix(t)(average, params)`` is a leaf's average after step ``t``."""

    def init_fn(params):
        average = jax.tree.map(lambda p: jnp.asarray(p, dtype or jnp.result_type(p)), params)
        return ParamsAverageState(zero_count(), average)

    def update_fn(updates, state, params=None):
        with_params(name, updates, params)
        theta = jax.tree.map(lambda p, u: (p + u).astype(jnp.result_type(p)), params, updates)
        t = increment(state.count)
        average = jax.tree.map(mix(t), state.average, theta)
        return updates, ParamsAverageState(t, average)

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def ema_params(
    decay: float = 0.999, debias: bool = True, *, accumulator_dtype: Any = None
) -> optax.GradientTransformation:
    r"""An exponential moving average of the parameters, kept in the state (read it with
    :func:`averaged_params`); the updates pass through unchanged. Place it last in a chain.

    .. math:: \bar\theta_t = \frac{\sum_{i \le t} \beta^{t-i} (1-\beta)\, \theta_i}{1-\beta^t}
              \;\text{(debias)}, \qquad
              \bar\theta_t = \beta \bar\theta_{t-1} + (1-\beta)\,\theta_t,\;
              \bar\theta_0 = \theta_0 \;\text{(otherwise)}

    with :math:`\theta_t` = params + updates, the parameters after step :math:`t`. Debiased,
    it is optax.ema's average of the iterates (a weighted mean of them alone); otherwise it
    starts from the initial parameters, as the EMA of weights in most training code does.
    Evaluate on :math:`\bar\theta` (Polyak & Juditsky 1992; e.g. Izmailov et al. 2018).

    Args:
      decay: :math:`\beta` in [0, 1) (0.999: an average over about 1,000 steps).
      debias: divide by :math:`1-\beta^t` (True), or start from the initial params (False).
      accumulator_dtype: the dtype the average is kept in (``None``: the params').

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.chain(jn.sgd(1.0), jn.ema_params(0.5))
    >>> params = jnp.zeros(1)
    >>> state = tx.init(params)
    >>> for _ in range(2):  # params: 0 -> 1 -> 2
    ...     updates, state = tx.update(-jnp.ones(1), state, params)
    ...     params = jn.apply_updates(params, updates)
    >>> jn.averaged_params(state)  # (0.5 * 1 + 2) / 1.5
    Array([1.6666666], dtype=float32)
    """
    _checks.beta("decay", decay)
    _checks.flag("debias", debias)
    dtype = _checks.dtype("accumulator_dtype", accumulator_dtype)

    def mix(t):
        if debias:  # the debiased average kept directly: weight of the past, of the new
            keep = decay * (1 - decay ** (t - 1)) / (1 - decay**t)
        else:
            keep = jnp.asarray(decay)

        def leaf(a, x):
            w = keep.astype(jnp.result_type(a))
            return (w * a + (1 - w) * x.astype(a.dtype)).astype(a.dtype)

        return leaf

    return _averaging("ema_params", dtype, mix)


@recorded
def polyak_params(*, accumulator_dtype: Any = None) -> optax.GradientTransformation:
    r"""The running mean of the parameters after each step (Polyak-Ruppert averaging; Polyak
    & Juditsky 1992, "Acceleration of stochastic approximation by averaging"), kept in the
    state (read it with :func:`averaged_params`); the updates pass through unchanged.

    .. math:: \bar\theta_t = \frac1t \sum_{i=1}^t \theta_i = \bar\theta_{t-1}
              + \frac{\theta_t - \bar\theta_{t-1}}{t}, \qquad \bar\theta_0 = \theta_0

    Every iterate weighs the same, so start it late (e.g. in a :func:`~jaxopt_notes.switch`
    or a fresh chain) to leave out the first, far iterates. Place it last in a chain.

    Args:
      accumulator_dtype: the dtype the average is kept in (``None``: the params').

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.chain(jn.sgd(1.0), jn.polyak_params())
    >>> params = jnp.zeros(1)
    >>> state = tx.init(params)
    >>> for _ in range(3):  # params: 0 -> 1 -> 2 -> 3
    ...     updates, state = tx.update(-jnp.ones(1), state, params)
    ...     params = jn.apply_updates(params, updates)
    >>> jn.averaged_params(state)
    Array([2.], dtype=float32)
    """
    dtype = _checks.dtype("accumulator_dtype", accumulator_dtype)

    def mean(t):
        def leaf(a, x):
            return (a + (x.astype(a.dtype) - a) / t.astype(jnp.finfo(a.dtype).dtype)).astype(
                a.dtype
            )

        return leaf

    return _averaging("polyak_params", dtype, mean)


def averaged_params(state: Any) -> Any:
    """The averaged parameters kept by :func:`ema_params` or :func:`polyak_params`, wherever
    the link sits in the optimizer's state.

    Args:
      state: an optimizer's state holding one such average.
    """
    is_average = lambda s: isinstance(s, ParamsAverageState)  # noqa: E731
    found = [s for s in jax.tree.leaves(state, is_leaf=is_average) if is_average(s)]
    if len(found) != 1:
        raise ValueError(
            "`state` must hold one parameter average (of `ema_params` or `polyak_params`), "
            f"got {len(found)}"
        )
    return found[0].average
