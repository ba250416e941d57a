r"""Element-wise gradient transformations: momentum, clipping, weight decay, learning rate.

Each is a factory that checks its hyperparameters, then returns an
``optax.GradientTransformation`` whose ``update_fn`` is a few lines of per-array math.
The moment estimates of adaptive methods are in :mod:`jaxopt_notes.moments`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import Schedule
from jaxopt_notes.combine import increment, zero_count
from jaxopt_notes.moments import Moments, abs_sq


def _plain(name: str, updates: Any) -> None:
    if isinstance(updates, Moments):
        raise ValueError(
            f"`{name}` got a Moments stream: close it with `jn.ratio` before `{name}` in the chain"
        )


def stateless(name: str, fn: Callable[[Any], Any]) -> optax.GradientTransformation:
    """A link with no state whose update is ``fn(updates)``, on plain trees only (a Moments
    stream is refused by ``name``); the plumbing of scale, clip, normalize and the like."""

    def update_fn(updates, state, params=None):
        del params
        _plain(name, updates)
        return fn(updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def with_params(name: str, updates: Any, params: Any, mask: Any = None) -> Any:
    """Checks what a link that reads the params needs (``params`` given, plain ``updates`` of
    their structure) and returns ``mask`` resolved to a tree of bools (``None``: every leaf;
    a callable: applied to the params)."""
    if params is None:
        raise ValueError(f"`{name}` needs `params` in `update`, got None")
    _plain(name, updates)
    _checks.same_structure(name, updates, params)
    keep = mask(params) if callable(mask) else mask
    return jax.tree.map(lambda _: True, params) if keep is None else keep


class TraceState(NamedTuple):
    trace: Any


@recorded
def trace(
    decay: float, nesterov: bool = False, accumulator_dtype: Any = None
) -> optax.GradientTransformation:
    r"""Heavy-ball momentum (Polyak) or its Nesterov form (Sutskever et al., 2013).

    .. math:: v_t = \beta v_{t-1} + g_t, \qquad u_t = v_t \;\text{(heavy ball)}
              \quad\text{or}\quad u_t = g_t + \beta v_t \;\text{(Nesterov)}

    with :math:`\beta` = ``decay`` and :math:`v_0 = 0`. This is torch.optim.SGD's momentum
    buffer as well as optax's ``trace``: both conventions agree. The window of past gradients
    it averages is about :math:`1/(1-\beta)` steps. ``accumulator_dtype`` (optax's name, e.g.
    ``jnp.bfloat16``) stores :math:`v` in that type; each step still adds in the gradient's.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.trace(decay=0.5)
    >>> s = tx.init(jnp.zeros(1))
    >>> for _ in range(3):
    ...     u, s = tx.update(jnp.ones(1), s)
    >>> u  # 1 + 0.5 + 0.25
    Array([1.75], dtype=float32)
    """
    _checks.beta("decay", decay)
    _checks.flag("nesterov", nesterov)
    accumulator_dtype = _checks.dtype("accumulator_dtype", accumulator_dtype)

    def init_fn(params):
        zeros = lambda p: jnp.zeros_like(p, dtype=accumulator_dtype)  # noqa: E731
        return TraceState(trace=jax.tree.map(zeros, params))

    def update_fn(updates, state, params=None):
        del params
        _plain("trace", updates)
        new = jax.tree.map(lambda g, v: g + decay * v.astype(g.dtype), updates, state.trace)
        if nesterov:
            updates = jax.tree.map(lambda g, v: g + decay * v, updates, new)
        else:
            updates = new
        if accumulator_dtype is not None:
            new = jax.tree.map(lambda v: v.astype(accumulator_dtype), new)
        return updates, TraceState(trace=new)

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def scale(step_size: float) -> optax.GradientTransformation:
    r""":math:`u = s \cdot g` for a constant ``step_size`` :math:`s` (of either sign)."""
    _checks.real("step_size", step_size)
    return stateless("scale", lambda updates: jax.tree.map(lambda g: step_size * g, updates))


class ScheduleState(NamedTuple):
    count: jax.Array  # steps taken, int32
    learning_rate: jax.Array  # the rate of the step just taken (before any: of the first)


def _rate(value: Any) -> jax.Array:
    """A learning rate as the state keeps it: one float dtype whatever the schedule returns,
    so that ``init`` and ``update`` make the same state (``lax.cond`` in ``optax.MultiSteps``)."""
    return jnp.asarray(value, jnp.result_type(float))


@recorded
def scale_by_learning_rate(learning_rate: float | Schedule) -> optax.GradientTransformation:
    r""":math:`u_t = -\eta_t\, g_t`: the descent step. ``learning_rate`` is a float or a schedule
    ``step -> eta`` evaluated at the count of steps taken before this one (0 on the first).

    The state keeps the count and the rate of the step just taken, so that
    :func:`current_learning_rate` reads it under any schedule.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.scale_by_learning_rate(jn.schedules.step_decay(1.0, gamma=0.1, every=1))
    >>> s = tx.init(jnp.zeros(1))
    >>> u0, s = tx.update(jnp.ones(1), s)
    >>> u1, s = tx.update(jnp.ones(1), s)
    >>> float(u0[0]), round(float(u1[0]), 6)
    (-1.0, -0.1)
    """
    _checks.non_negative("learning_rate", learning_rate, schedule=True)

    def rate(count):  # a constant is read at each update: an injected value takes at once
        return learning_rate(count) if callable(learning_rate) else learning_rate

    def init_fn(params):
        del params
        return ScheduleState(count=zero_count(), learning_rate=_rate(rate(zero_count())))

    def update_fn(updates, state, params=None):
        del params
        _plain("scale_by_learning_rate", updates)
        eta = rate(state.count)
        updates = jax.tree.map(lambda g: -jnp.asarray(eta, g.dtype) * g, updates)
        return updates, ScheduleState(count=increment(state.count), learning_rate=_rate(eta))

    return optax.GradientTransformation(init_fn, update_fn)


def current_learning_rate(state: Any) -> jax.Array:
    """The learning rate of the step just taken (before any step: of the first), read from an
    optimizer's state under any schedule (a float included).

    Found in the state of :func:`scale_by_learning_rate`, wherever it sits in a chain (inside
    ``optax.MultiSteps`` or :func:`~jaxopt_notes.skip_nonfinite` too), or in
    ``state.hyperparams["learning_rate"]`` of an ``optax.inject_hyperparams`` state.

    Args:
      state: the state of an optimizer (``tx.init(params)`` or a later one).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adam(jn.schedules.exponential_decay(0.1, decay_rate=0.5))
    >>> state = tx.init(jnp.zeros(2))
    >>> for _ in range(3):
    ...     _, state = tx.update(jnp.ones(2), state)
    >>> jn.current_learning_rate(state)  # 0.1 * 0.5**2, the third step's
    Array(0.025, dtype=float32)
    """

    def holds_rate(s: Any) -> bool:
        injected = isinstance(getattr(s, "hyperparams", None), dict)
        return isinstance(s, ScheduleState) or (injected and "learning_rate" in s.hyperparams)

    found = [s for s in jax.tree.leaves(state, is_leaf=holds_rate) if holds_rate(s)]
    if len(found) != 1:
        raise ValueError(
            "`state` must hold one learning rate (the state of one `scale_by_learning_rate` "
            f"or of an `optax.inject_hyperparams` with `learning_rate`), got {len(found)}"
            + ("; read the state of each part (e.g. of a `jn.switch`)" if found else "")
        )
    s = found[0]
    return s.learning_rate if isinstance(s, ScheduleState) else s.hyperparams["learning_rate"]


@recorded
def clip(max_delta: float) -> optax.GradientTransformation:
    r"""Clipping by value: :math:`u_i = \min(\max(g_i, -\delta), \delta)`, each coordinate
    alone. Unlike :func:`clip_by_global_norm` it can turn the direction of the gradient.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> jn.clip(1.0).update(jnp.array([3.0, 0.5]), ())[0]
    Array([1. , 0.5], dtype=float32)
    """
    _checks.non_negative("max_delta", max_delta)
    return stateless(
        "clip", lambda u: jax.tree.map(lambda g: jnp.clip(g, -max_delta, max_delta), u)
    )


def global_norm(tree: Any) -> jax.Array:
    r""":math:`\sqrt{\sum_i \|x_i\|^2}` over every leaf of ``tree`` (real for complex leaves:
    :math:`|x|^2 = x \bar x`)."""
    return jnp.sqrt(sum(jnp.sum(abs_sq(x)) for x in jax.tree.leaves(tree)))


@recorded
def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    r"""Rescales the whole gradient when its global norm exceeds ``max_norm`` :math:`c`:

    .. math:: u = g \cdot \min\left(1, \frac{c}{\|g\|}\right)

    The direction is kept (Pascanu et al., 2013).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> jn.clip_by_global_norm(1.0).update(jnp.array([3.0, 4.0]), ())[0]
    Array([0.6, 0.8], dtype=float32)
    """
    _checks.positive("max_norm", max_norm)

    def rescale(updates):
        norm = global_norm(updates)
        small = norm < max_norm
        return jax.tree.map(
            lambda g: jnp.where(small, g, (g / norm.astype(g.dtype)) * max_norm), updates
        )

    return stateless("clip_by_global_norm", rescale)


class AddDecayedWeightsState(NamedTuple):
    count: jax.Array  # steps taken, int32 (for a scheduled decay)


@recorded
def add_decayed_weights(
    weight_decay: float | Schedule = 0.0, mask: Any | Callable[[Any], Any] | None = None
) -> optax.GradientTransformation:
    r""":math:`u = g + \lambda \theta` with :math:`\lambda` = ``weight_decay`` (float or
    schedule). ``mask`` (a tree of bools like the params, or a function of the params giving
    one) picks the leaves that decay; e.g. skip biases.

    Where it sits decides what it is: *before* an adaptive scaling it is coupled L2
    regularisation (the decay is divided by :math:`\sqrt{v}` too: torch ``Adam(weight_decay)``);
    *after* it, just before the learning rate, it is decoupled weight decay (AdamW,
    Loshchilov & Hutter 2019): :math:`\theta \leftarrow \theta - \eta(u + \lambda\theta)`.
    """
    _checks.non_negative("weight_decay", weight_decay, schedule=True)

    def init_fn(params):
        del params
        return AddDecayedWeightsState(count=zero_count())

    def update_fn(updates, state, params=None):
        keep = with_params("add_decayed_weights", updates, params, mask)
        lam = weight_decay(state.count) if callable(weight_decay) else weight_decay
        decay = lambda g, p, k: g + jnp.asarray(lam, p.dtype) * p if k else g  # noqa: E731
        updates = jax.tree.map(decay, updates, params, keep)
        return updates, AddDecayedWeightsState(count=increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)
