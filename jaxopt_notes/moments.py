r"""Moment estimates as separate links: how Adam, AMSGrad, Nadam and AdaMax are composed.

Adaptive methods need the raw gradient :math:`g`, a first moment :math:`m` and a second
moment :math:`v` at once, and corrections act on :math:`m` and :math:`v` before they are
divided. So between these links the stream is structured: a :class:`Moments` record
``(grad, mu, nu)`` of trees shaped like the params. The first moment link opens it, the
others fill or correct ``mu`` and ``nu``, and :func:`ratio` closes it into a plain update:

.. code-block:: text

    g --first_moment--> (g, m) --second_moment--> (g, m, v) --bias_correction--> (g, m^, v^)
      --[amsgrad_max]--> (g, m^, max v^) --ratio--> m^ / (sqrt(v^) + eps)

What may stand inside a run: only these moment links (:func:`first_moment`,
:func:`second_moment`, :func:`accumulate_squares`, :func:`infinity_moment`,
:func:`bias_correction`, :func:`amsgrad_max`, and ``jaxopt_notes.modern``'s
``belief_moment`` and ``yogi_moment``), then :func:`ratio` (or ``modern.rectify``, or
``adadelta.delta_ratio``). Any other transform there, ours or optax's, would map over the
record instead of the gradient; ours refuse it by name, and the record refuses to be flattened
or read as an array, so a foreign one (``optax.clip``, ``optax.clip_by_global_norm``, a
stateful ``optax.trace``) fails at once with a sentence (naming its place when in
:func:`jaxopt_notes.chain`), never silently. Outside such a run (before the opening link,
after :func:`ratio`) updates are plain trees, so optax's own transforms and ours
mix freely around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._stream import Moments
from jaxopt_notes.combine import chain, increment, zero_count


def _open(updates: Any) -> Moments:
    if isinstance(updates, Moments):
        return updates
    return Moments(grad=jax.tree.map(jnp.asarray, updates))  # Python floats become arrays


def _zeros(params: Any, value: float = 0.0, dtype: Any = None) -> Any:
    return jax.tree.map(lambda p: jnp.full_like(p, value, dtype=dtype), params)


def _real_zeros(params: Any, value: float = 0.0, dtype: Any = None) -> Any:
    """A second moment's initial state: real even for complex params, since it holds
    :math:`|g|^2` (``dtype``, when given, wins)."""
    return jax.tree.map(lambda p: jnp.full_like(p, value, dtype=dtype or _real(p)), params)


def _real(x: Any) -> Any:
    dtype = jnp.result_type(x)
    return jnp.finfo(dtype).dtype if jnp.issubdtype(dtype, jnp.complexfloating) else dtype


def abs_sq(g: jax.Array) -> jax.Array:
    """:math:`|g|^2 = g \\bar g`, real for complex ``g`` (``g**2`` would be complex and wrong);
    for real ``g`` it is ``g**2``, the same operation as before."""
    return (g.conj() * g).real if jnp.iscomplexobj(g) else g**2


def _store(tree: Any, dtype: Any) -> Any:
    """The moment as kept in the state: in ``dtype`` when one is given (e.g. bfloat16)."""
    return tree if dtype is None else jax.tree.map(lambda x: x.astype(dtype), tree)


def _needs(updates: Any, link: str, *fields: str) -> Moments:
    """The stream, after checking that the links before ``link`` filled ``fields``."""
    if not isinstance(updates, Moments) or any(getattr(updates, f) is None for f in fields):
        what = " and a ".join({"mu": "first", "nu": "second"}[f] for f in fields)
        raise ValueError(f"`{link}` needs a {what} moment before it in the chain, got none")
    return updates


def moment_link(
    sets: str,
    state_type: type,
    init: Callable[[Any], Any],
    step: Callable[[Moments, Any], Any],
    dtype: Any = None,
) -> optax.GradientTransformation:
    """A moment link from its math alone: ``init(params)`` is the kept tree, ``step(stream,
    kept)`` its new value, which fills the field ``sets`` of the stream and is kept (in
    ``dtype`` when given) as the one field of ``state_type``: the plumbing of every moment link."""

    def init_fn(params):
        return state_type(init(params))

    def update_fn(updates, state, params=None):
        del params
        m = _open(updates)
        value = step(m, state[0])
        return m._replace(**{sets: value}), state_type(_store(value, dtype))

    return optax.GradientTransformation(init_fn, update_fn)


class FirstMomentState(NamedTuple):
    mu: Any


@recorded
def first_moment(b1: float = 0.9, *, dtype: Any = None) -> optax.GradientTransformation:
    r"""Momentum in EMA form, the first moment of Adam: :math:`m_t = b_1 m_{t-1} + (1-b_1) g_t`.

    This is :func:`jaxopt_notes.trace` with the gradient weighted by :math:`1-b_1`. Opens a
    :class:`Moments` stream with ``mu`` set; close it with :func:`ratio`. With ``dtype`` (e.g.
    ``jnp.bfloat16``) the state is stored in that type; each step still computes in the
    gradient's precision, so only the rounding of the stored moment changes.
    """
    _checks.beta("b1", b1)
    dtype = _checks.dtype("dtype", dtype)

    def ema(m, mu):
        return jax.tree.map(lambda g, t: (1 - b1) * g + b1 * t.astype(g.dtype), m.grad, mu)

    return moment_link("mu", FirstMomentState, lambda p: _zeros(p, dtype=dtype), ema, dtype)


class SecondMomentState(NamedTuple):
    nu: Any


@recorded
def second_moment(
    b2: float = 0.999, initial_scale: float = 0.0, *, dtype: Any = None
) -> optax.GradientTransformation:
    r"""EMA of squared gradients, RMSProp's and Adam's :math:`v_t = b_2 v_{t-1} + (1-b_2)|g_t|^2`.

    :math:`v_0` is ``initial_scale``; :math:`|g|^2 = g \bar g` keeps :math:`v` real (and the
    state real-typed) for complex parameters, as optax does. Opens or extends a
    :class:`Moments` stream, setting ``nu``. ``dtype`` stores the state in that type, as in
    :func:`first_moment`.
    """
    _checks.beta("b2", b2)
    _checks.non_negative("initial_scale", initial_scale)
    dtype = _checks.dtype("dtype", dtype)

    def ema(m, nu):
        return jax.tree.map(lambda g, t: _ema_sq(g, t, b2), m.grad, nu)

    init = lambda p: _real_zeros(p, initial_scale, dtype)  # noqa: E731
    return moment_link("nu", SecondMomentState, init, ema, dtype)


@recorded
def accumulate_squares(initial_accumulator_value: float = 0.0) -> optax.GradientTransformation:
    r"""AdaGrad's running sum of squared gradients: :math:`v_t = v_{t-1} + |g_t|^2`, :math:`v_0`
    = ``initial_accumulator_value``. Opens or extends a :class:`Moments` stream (``nu``)."""
    _checks.non_negative("initial_accumulator_value", initial_accumulator_value)

    def add(m, nu):
        return jax.tree.map(lambda g, t: abs_sq(g) + t.astype(_real(g)), m.grad, nu)

    init = lambda p: _real_zeros(p, initial_accumulator_value)  # noqa: E731
    return moment_link("nu", SecondMomentState, init, add)


@recorded
def infinity_moment(b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    r"""AdaMax's exponentially weighted infinity norm: :math:`u_t = \max(b_2 u_{t-1}, |g_t| +
    \epsilon)`. Sets ``nu``; close with ``ratio(power=1)`` since :math:`u_t` is not squared."""
    _checks.beta("b2", b2)
    _checks.non_negative("eps", eps)

    def decayed_max(m, nu):
        return jax.tree.map(lambda g, t: jnp.maximum(jnp.abs(g) + eps, b2 * t), m.grad, nu)

    return moment_link("nu", SecondMomentState, _real_zeros, decayed_max)


class BiasCorrectionState(NamedTuple):
    count: jax.Array  # steps taken, int32
    mu_product: jax.Array  # product of the Nadam momentum schedule (with `momentum_decay`)


@recorded
def bias_correction(
    b1: float | None = None,
    b2: float | None = None,
    *,
    nesterov: bool = False,
    momentum_decay: float | None = None,
) -> optax.GradientTransformation:
    r"""Removes the bias of zero-initialised EMAs: :math:`\hat m = m_t/(1-b_1^t)`,
    :math:`\hat v = v_t/(1-b_2^t)`. A moment whose decay is ``None`` passes through.

    ``nesterov=True`` gives Nadam's look-ahead first moment (Dozat 2016, optax's form):

    .. math:: \hat m = \frac{b_1 m_t}{1 - b_1^{t+1}} + \frac{(1 - b_1) g_t}{1 - b_1^t}

    With ``momentum_decay=psi`` the momentum coefficient follows torch's NAdam schedule
    :math:`\mu_t = b_1 (1 - \tfrac12 0.96^{t \psi})` and
    :math:`\hat m = \frac{\mu_{t+1} m_t}{1 - \prod_{i \le t+1} \mu_i} +
    \frac{(1-\mu_t) g_t}{1 - \prod_{i \le t} \mu_i}`.
    :math:`b^t` is computed in float32 or wider, then divided in the moment's own dtype, so
    bfloat16/float16 moments neither overflow nor divide by zero.
    """
    if b1 is not None:
        _checks.beta("b1", b1)
    if b2 is not None:
        _checks.beta("b2", b2)
    _checks.flag("nesterov", nesterov)
    if (nesterov or momentum_decay is not None) and b1 is None:
        raise ValueError("`b1` must be given when `nesterov` or `momentum_decay` is set, got None")
    if momentum_decay is not None:
        _checks.non_negative("momentum_decay", momentum_decay)
        if not nesterov:
            raise ValueError("`momentum_decay` needs `nesterov=True`, got nesterov=False")

    def init_fn(params):
        del params
        return BiasCorrectionState(zero_count(), jnp.ones([]))

    def update_fn(updates, state, params=None):
        del params
        m = _open(updates)
        t = increment(state.count)
        mu_product = state.mu_product
        if momentum_decay is not None:
            mu_t, mu_next = (b1 * (1 - 0.5 * 0.96 ** (s * momentum_decay)) for s in (t, t + 1))
            mu_product = state.mu_product * mu_t
            c_mu, c_g = mu_next / (1 - mu_product * mu_next), (1 - mu_t) / (1 - mu_product)
            mu = jax.tree.map(lambda a, g: _times(a, c_mu) + _times(g, c_g), m.mu, m.grad)
        elif nesterov:
            c_mu, c_g = b1 / (1 - b1 ** increment(t)), (1 - b1) / (1 - b1**t)
            mu = jax.tree.map(lambda a, g: _times(a, c_mu) + _times(g, c_g), m.mu, m.grad)
        else:
            mu = m.mu if b1 is None else _divide(m.mu, 1 - b1**t)
        nu = m.nu if b2 is None else _divide(m.nu, 1 - b2**t)
        return Moments(m.grad, mu, nu), BiasCorrectionState(t, mu_product)

    return optax.GradientTransformation(init_fn, update_fn)


def _ema_sq(g: jax.Array, t: jax.Array, b2: Any) -> jax.Array:
    sq = abs_sq(g)
    return (1 - b2) * sq + b2 * t.astype(sq.dtype)


def _divide(tree: Any, correction: jax.Array) -> Any:
    return jax.tree.map(lambda x: x / correction.astype(x.dtype), tree)


def _times(x: jax.Array, c: jax.Array) -> jax.Array:
    return x * c.astype(x.dtype)


class AmsgradMaxState(NamedTuple):
    nu_max: Any


@recorded
def amsgrad_max() -> optax.GradientTransformation:
    r"""AMSGrad's running maximum of the second moment: :math:`v \leftarrow \max(v^{max}_{t-1},
    v)`, so the effective step size never grows (Reddi et al., 2018).

    Placed after :func:`bias_correction` it maxes :math:`\hat v` (optax); placed before, it
    maxes the raw :math:`v` and the correction divides the max (torch.optim).
    """

    def running_max(m, nu_max):
        return jax.tree.map(jnp.maximum, nu_max, _needs(m, "amsgrad_max", "nu").nu)

    return moment_link("nu", AmsgradMaxState, _real_zeros, running_max)


@recorded
def ratio(eps: float = 1e-8, eps_root: float = 0.0, power: float = 0.5):
    r"""Closes a :class:`Moments` stream into a plain update:
    :math:`u = m / ((v + \epsilon_{root})^{p} + \epsilon)`, with :math:`m` the gradient where
    no first moment was estimated. ``power`` is 1/2 for squared moments, 1 for AdaMax.
    Where the denominator is 0 (only when every gradient so far was 0) the update is 0.
    """
    _checks.non_negative("eps", eps)
    _checks.non_negative("eps_root", eps_root)
    if _checks.concrete(power) and float(power) not in (0.5, 1):
        raise ValueError(f"`power` must be 0.5 or 1, got {power!r}")

    # with a positive constant eps the denominator cannot be 0: skip the guard (one less select)
    guard = not (isinstance(eps, int | float) and eps > 0)

    def root(x):  # sqrt for the usual power 1/2; a traced power (injected) takes the general pow
        if not _checks.concrete(power):
            return x**power
        return jnp.sqrt(x) if float(power) == 0.5 else x

    def divide(num, v):
        den = root(v + eps_root) + eps
        if not guard:  # a real v under a complex m: the promotion made explicit (no-op if real)
            return num / den.astype(num.dtype)
        return jnp.where(den > 0, num / den.astype(num.dtype), jnp.zeros_like(num))

    def update_fn(updates, state, params=None):
        del params
        _needs(updates, "ratio", "nu")
        num = updates.grad if updates.mu is None else updates.mu
        return jax.tree.map(divide, num, updates.nu), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


@recorded
def scale_by_rms(
    decay: float = 0.9, eps: float = 1e-8, *, eps_in_sqrt: bool = True, initial_scale: float = 0.0
) -> optax.GradientTransformationExtraArgs:
    r"""RMSProp's scaling, :math:`u = g / \sqrt{v_t + \epsilon}` (optax, ``eps_in_sqrt=True``)
    or :math:`g / (\sqrt{v_t} + \epsilon)` (torch), :math:`v_t` the EMA of :math:`g^2`.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.scale_by_rms(decay=0.5, eps=0.0)
    >>> tx.update(jnp.array([2.0]), tx.init(jnp.zeros(1)))[0]  # 2 / sqrt(0.5 * 4)
    Array([1.4142135], dtype=float32)
    """
    _checks.beta("decay", decay)
    _checks.non_negative("eps", eps)
    _checks.flag("eps_in_sqrt", eps_in_sqrt)
    closing = ratio(eps=0.0, eps_root=eps) if eps_in_sqrt else ratio(eps=eps)
    return chain(second_moment(decay, initial_scale), closing)


@recorded
def scale_by_sum_of_squares(
    eps: float = 1e-7, *, initial_accumulator_value: float = 0.1, eps_in_sqrt: bool = True
) -> optax.GradientTransformationExtraArgs:
    r"""AdaGrad's scaling, :math:`u = g / \sqrt{\sum_{i \le t} g_i^2 + v_0 + \epsilon}` (optax)
    or :math:`g / (\sqrt{\sum g_i^2 + v_0} + \epsilon)` (torch, ``eps_in_sqrt=False``).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.scale_by_sum_of_squares(eps=0.0, initial_accumulator_value=0.0)
    >>> s = tx.init(jnp.zeros(1))
    >>> u, s = tx.update(jnp.array([3.0]), s)
    >>> u, _ = tx.update(jnp.array([4.0]), s)  # 4 / sqrt(9 + 16)
    >>> u
    Array([0.8], dtype=float32)
    """
    _checks.non_negative("eps", eps)
    _checks.flag("eps_in_sqrt", eps_in_sqrt)
    closing = ratio(eps=0.0, eps_root=eps) if eps_in_sqrt else ratio(eps=eps)
    return chain(accumulate_squares(initial_accumulator_value), closing)
