r"""Adafactor (Shazeer & Stern 2018): a second moment in :math:`O(n+m)` memory per matrix.

A module of its own, beside :mod:`jaxopt_notes.modern` (at its ~400-line budget), because
the factored moment keeps per-leaf state of other shapes than the params. The chain:

.. code-block:: text

    factored_rms -> clip_by_block_rms -> learning rate -> scale_by_param_block_rms
      -> [ema] -> decoupled decay

For a matrix the second moment is kept as its row and column means :math:`r, c` and read as
the rank-1 :math:`V \approx r c^\top / \operatorname{mean}(r)`; other leaves keep it whole.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded, resolved
from jaxopt_notes._types import GT, LearningRate, Schedule
from jaxopt_notes.combine import chain, increment, zero_count
from jaxopt_notes.moments import _real, abs_sq
from jaxopt_notes.transforms import _plain, add_decayed_weights, scale, scale_by_learning_rate


# ----------------------------------------------------------------- the factored moment
def _factored_axes(shape: tuple, factored: bool, min_dim: int, pytorch: bool) -> tuple | None:
    """(row axis, col axis) of a leaf whose moment is factored, else None: torch factors
    the last two axes of any leaf of rank >= 2; optax the two largest, if the smaller of
    them has at least ``min_dim`` entries."""
    if not factored or len(shape) < 2:
        return None
    if pytorch:
        return len(shape) - 2, len(shape) - 1
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim:
        return None
    return int(order[-2]), int(order[-1])


class FactoredRmsState(NamedTuple):
    count: jax.Array  # steps taken, int32
    v_row: Any  # mean of g^2 over the col axis, for factored leaves (else a (1,) stub)
    v_col: Any  # mean of g^2 over the row axis
    v: Any  # the whole second moment, for leaves not factored


def _lerp(a: jax.Array, b: jax.Array, w: Any) -> jax.Array:
    """torch's ``lerp`` as torch rounds it: from ``a`` for small weights, from ``b`` else."""
    return jnp.where(w < 0.5, a + w * (b - a), b - (b - a) * (1 - w))


@recorded
def factored_rms(
    decay_rate: float = 0.8,
    eps: float | None = None,
    *,
    factored: bool = True,
    min_dim_size_to_factor: int = 128,
    decay_offset: int = 0,
    convention: str = "optax",
) -> optax.GradientTransformation:
    r"""Adafactor's scaling, :math:`u = g / \sqrt{\hat V_t}`, with the decay
    :math:`\beta_t = 1 - t^{-0.8}` (``decay_rate`` is the exponent) and

    .. math:: \hat V_t = \frac{r_t c_t^\top}{\operatorname{mean}(r_t)}, \quad
              r_t = \beta_t r_{t-1} + (1-\beta_t)\operatorname{mean}_{cols}(g^2), \;
              c_t = \beta_t c_{t-1} + (1-\beta_t)\operatorname{mean}_{rows}(g^2)

    for a factored leaf (the other leaves: the plain EMA of :math:`g^2`). optax: ``eps``
    (1e-30) is added to :math:`g^2`, :math:`\beta_t` is computed in float32, and a leaf is
    factored over its two largest axes when both have ``min_dim_size_to_factor`` entries;
    pytorch (torch.optim.Adafactor): ``eps`` (None: the dtype's machine epsilon) floors
    :math:`\operatorname{mean}(r)` and :math:`\sqrt{\hat V}`, :math:`\beta_t` is exact, and
    every leaf of rank >= 2 is factored over its last two axes.
    """
    _checks.real("decay_rate", decay_rate, low=0.0)
    if eps is not None:
        _checks.non_negative("eps", eps)
    _checks.flag("factored", factored)
    if not _checks.concrete(min_dim_size_to_factor):
        raise TypeError(
            "`min_dim_size_to_factor` decides the shapes of the state and must be a Python int, "
            "got a traced value: name it in optax.inject_hyperparams(..., static_args="
            "('min_dim_size_to_factor',)) (jn.optimizers.STATIC_ARGS lists such arguments)"
        )
    _checks.integer("min_dim_size_to_factor", min_dim_size_to_factor)
    pytorch = _checks.convention(convention) == "pytorch"
    eps = _checks.by_convention(eps, convention, optax=1e-30, pytorch=None)
    axes_of = lambda p: _factored_axes(p.shape, factored, min_dim_size_to_factor, pytorch)  # noqa: E731

    def init_leaf(p):
        stub, axes = jnp.zeros((1,), _real(p)), axes_of(p)
        if axes is None:
            # zeros_like keeps p's sharding; every field its own buffer (states are donated)
            return stub, jnp.zeros((1,), _real(p)), jnp.zeros_like(p, _real(p))
        row, col = axes
        mean_over = lambda a: jax.eval_shape(lambda x: jnp.mean(abs_sq(x), axis=a), p)  # noqa: E731
        return jnp.zeros_like(mean_over(col)), jnp.zeros_like(mean_over(row)), stub

    def init_fn(params):
        parts = jax.tree.map(init_leaf, params)
        pick = lambda i: jax.tree.map(lambda _, o: o[i], params, parts)  # noqa: E731
        return FactoredRmsState(zero_count(), pick(0), pick(1), pick(2))

    def update_fn(updates, state, params=None):
        del params
        _plain("factored_rms", updates)
        t = state.count + 1 - decay_offset
        if pytorch:  # torch's lerp weight 1 - beta_t, in the float type's own precision
            w = jnp.asarray(t, jnp.result_type(float)) ** -decay_rate
        else:  # optax computes beta_t itself in float32, whatever the params' dtype
            w = 1.0 - jnp.asarray(t, jnp.float32) ** jnp.asarray(-decay_rate, jnp.float32)
        step = _torch_leaf if pytorch else _optax_leaf
        parts = jax.tree.map(
            lambda g, r, c, v: step(g, r, c, v, w, eps, axes_of(g)),
            updates, state.v_row, state.v_col, state.v,
        )  # fmt: skip
        pick = lambda i: jax.tree.map(lambda _, o: o[i], updates, parts)  # noqa: E731
        return pick(0), FactoredRmsState(increment(state.count), pick(1), pick(2), pick(3))

    return resolved(optax.GradientTransformation(init_fn, update_fn), eps=eps)


def _optax_leaf(g, r, c, v, beta, eps, axes):
    """optax's arithmetic, operation for operation (``beta`` is its float32 beta_t)."""
    sq = abs_sq(g) + eps
    if axes is None:
        v = (beta * v + (1.0 - beta) * sq).astype(v.dtype)
        return g * v**-0.5, r, c, v
    row, col = axes
    r = (beta * r + (1.0 - beta) * jnp.mean(sq, axis=col)).astype(r.dtype)
    c = (beta * c + (1.0 - beta) * jnp.mean(sq, axis=row)).astype(c.dtype)
    in_r = row - 1 if row > col else row
    row_factor = (r / jnp.mean(r, axis=in_r, keepdims=True)) ** -0.5
    u = g * jnp.expand_dims(row_factor, col) * jnp.expand_dims(c**-0.5, row)
    return u, r, c, v


def _torch_leaf(g, r, c, v, w, eps, axes):
    """torch.optim.Adafactor's arithmetic: ``lerp`` EMAs, floors instead of an added eps."""
    eps = jnp.finfo(_real(g)).eps if eps is None else eps
    sq = abs_sq(g)
    if axes is None:
        v = _lerp(v, sq, w)
        return g * jax.lax.rsqrt(jnp.maximum(v, eps * eps)), r, c, v
    r = _lerp(r, jnp.mean(sq, axis=-1), w)
    c = _lerp(c, jnp.mean(sq, axis=-2), w)
    den = jnp.maximum(jnp.mean(r, axis=-1, keepdims=True), eps)
    estimate = r[..., :, None] * c[..., None, :] / den[..., None]
    return g * jax.lax.rsqrt(jnp.maximum(estimate, eps * eps)), r, c, v


# ------------------------------------------------------------------- the other links
@recorded
def clip_by_block_rms(threshold: float = 1.0) -> optax.GradientTransformation:
    r"""Rescales each leaf whose RMS exceeds ``threshold`` :math:`d` down to it:
    :math:`u / \max(1, \operatorname{RMS}(u)/d)` (Adafactor's update clipping; torch's
    ``d``). Bounds the step where :math:`\hat V` lags behind a sudden large gradient."""
    _checks.positive("threshold", threshold)

    def clip(u):
        return u / jnp.maximum(1.0, jnp.sqrt(jnp.mean(abs_sq(u))) / threshold).astype(u.dtype)

    def update_fn(updates, state, params=None):
        del params
        _plain("clip_by_block_rms", updates)
        return jax.tree.map(clip, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


@recorded
def scale_by_param_block_rms(min_scale: float = 1e-3) -> optax.GradientTransformation:
    r"""Multiplies each leaf's update by its parameter's RMS, floored at ``min_scale``:
    :math:`u \cdot \max(\operatorname{RMS}(\theta), \epsilon_2)`, so the learning rate is
    relative to the scale of the weights (Adafactor's parameter-scale step)."""
    _checks.non_negative("min_scale", min_scale)

    def rms(p):
        r = jnp.sqrt(jnp.mean(abs_sq(p)))
        return jnp.where(r <= min_scale, min_scale, r)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("`scale_by_param_block_rms` needs `params` in `update`, got None")
        _plain("scale_by_param_block_rms", updates)
        return jax.tree.map(lambda u, p: u * rms(p).astype(u.dtype), updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


class EmaState(NamedTuple):
    ema: Any


@recorded
def ema(decay: float, *, dtype: Any = None) -> optax.GradientTransformation:
    r"""An EMA of the updates, not bias-corrected: :math:`m_t = \beta m_{t-1} + (1-\beta) u_t`
    (:math:`m_0 = 0`), on plain trees (``first_moment`` is the moment-run form). ``dtype``
    stores :math:`m` (Adafactor's default: float32)."""
    _checks.beta("decay", decay)
    dtype = _checks.dtype("dtype", dtype)

    def init_fn(params):
        return EmaState(jax.tree.map(lambda p: jnp.zeros_like(p, dtype), params))

    def update_fn(updates, state, params=None):
        del params
        _plain("ema", updates)
        # decay * e in the stored dtype, then promoted: optax's order (with a float32 store
        # under float64 params the product rounds to float32 first, as there)
        m = jax.tree.map(lambda u, e: (1 - decay) * u + decay * e, updates, state.ema)
        stored = m if dtype is None else jax.tree.map(lambda x: x.astype(dtype), m)
        out = jax.tree.map(lambda x, u: x.astype(u.dtype), m, updates)  # bfloat16 stays so
        return out, EmaState(stored)

    return optax.GradientTransformation(init_fn, update_fn)


# ------------------------------------------------------------------------- the optimizer
def _negated(value: float | Schedule) -> Schedule:
    """``-value`` as a schedule: a decay added after the (negative) learning-rate link."""
    return lambda count: -(value(count) if callable(value) else value)


def _relative_step(learning_rate: LearningRate) -> Schedule:
    """torch's step size :math:`\\min(\\eta_t, 1/\\sqrt{t})`, as a schedule of the count."""
    return lambda count: jnp.minimum(
        learning_rate(count) if callable(learning_rate) else learning_rate,
        (count + 1.0) ** -0.5,
    )


def _torch_decay(weight_decay: float | Schedule, learning_rate: LearningRate) -> Schedule:
    """torch's decoupled decay :math:`\\eta_t \\lambda` (the raw rate, not the relative step)."""
    at = lambda v, c: v(c) if callable(v) else v  # noqa: E731
    return lambda count: at(learning_rate, count) * at(weight_decay, count)


@recorded
def adafactor(
    learning_rate: LearningRate | None = None,
    *,
    min_dim_size_to_factor: int = 128,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate: float | Schedule | None = None,
    eps: float | None = None,
    factored: bool = True,
    weight_decay_mask: Any = None,
    min_scale: float = 1e-3,
    convention: str = "optax",
) -> GT:
    r"""Adafactor (Shazeer & Stern 2018, "Adafactor: adaptive learning rates with sublinear
    memory cost"): RMS scaling by a factored second moment, update clipping, and steps
    relative to the parameters' scale.

    .. math:: \theta_t = \theta_{t-1} - \eta_t \max(\operatorname{RMS}(\theta_{t-1}),
              \epsilon_2)\, \operatorname{clip}_d\big(g_t / \sqrt{\hat V_t}\big)
              - \lambda \theta_{t-1}

    with :math:`\hat V_t` from :func:`factored_rms` and :math:`\operatorname{clip}_d` from
    :func:`clip_by_block_rms`.

    Args:
      learning_rate: :math:`\eta`, a float, a schedule or None (optax: no rate link). Under
        pytorch the rate is torch's relative step :math:`\eta_t = \min(\eta, 1/\sqrt t)`.
      min_dim_size_to_factor, decay_rate, decay_offset, factored, eps: see
        :func:`factored_rms` (``eps`` None: 1e-30 under optax, the dtype's epsilon under
        pytorch).
      multiply_by_parameter_scale: the :math:`\max(\operatorname{RMS}(\theta), \epsilon_2)`
        factor, :math:`\epsilon_2` = ``min_scale`` (1e-3; torch's ``eps[1]``).
      clipping_threshold: :math:`d` (None: no clipping).
      momentum, dtype_momentum: an EMA of the steps (optax's option), stored in that dtype.
      weight_decay_rate: :math:`\lambda` (optax: added as is, not times the rate; pytorch:
        torch's ``weight_decay``, times :math:`\eta`), a float or a schedule.
      weight_decay_mask: the leaves that decay.
      convention: ``"optax"`` (optax.adafactor) or ``"pytorch"`` (torch.optim.Adafactor: its
        relative step, factoring and floors; see :func:`factored_rms`; no momentum, the
        parameter scale always on).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.adafactor(0.1, multiply_by_parameter_scale=False)
    >>> p = jnp.zeros(2)
    >>> tx.update(jnp.array([3.0, -3.0]), tx.init(p), p)[0]  # -0.1 g / |g| on the first step
    Array([-0.1,  0.1], dtype=float32)
    """
    pytorch = _checks.convention(convention) == "pytorch"
    learning_rate = _checks.by_convention(learning_rate, convention, optax=None, pytorch=1e-2)
    if pytorch and (momentum is not None or not multiply_by_parameter_scale):
        raise ValueError(
            "`convention='pytorch'` follows torch.optim.Adafactor, which has no momentum and "
            f"always scales by the parameters: got momentum={momentum!r}, "
            f"multiply_by_parameter_scale={multiply_by_parameter_scale!r}"
        )
    links = [
        factored_rms(
            decay_rate,
            eps,
            factored=factored,
            min_dim_size_to_factor=min_dim_size_to_factor,
            decay_offset=decay_offset,
            convention=convention,
        )
    ]
    if clipping_threshold is not None:
        links.append(clip_by_block_rms(clipping_threshold))
    if learning_rate is not None:  # negates; the decay below is added negated to match
        rate = _relative_step(learning_rate) if pytorch else learning_rate
        links.append(scale_by_learning_rate(rate))
    if multiply_by_parameter_scale:
        links.append(scale_by_param_block_rms(min_scale))
    if momentum is not None:
        links.append(ema(momentum, dtype=dtype_momentum))
    if weight_decay_rate is not None:
        decay = _torch_decay(weight_decay_rate, learning_rate) if pytorch else weight_decay_rate
        links.append(
            add_decayed_weights(
                _negated(decay) if learning_rate is not None else decay, weight_decay_mask
            )
        )
    if learning_rate is None:
        links.append(scale(-1.0))
    eps = links[0].hyperparams["eps"]
    return resolved(chain(*links), eps=eps, learning_rate=learning_rate)
