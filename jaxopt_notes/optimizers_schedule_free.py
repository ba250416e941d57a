r"""Schedule-Free SGD and AdamW (Defazio et al. 2024, "The road less scheduled").

A module beside :mod:`jaxopt_notes.modern` (at its ~400-line budget): Schedule-Free is a
wrapper link around a base chain, with three sequences where other methods have one:

.. code-block:: text

    z_t = z_{t-1} + base(g_t)                        the base optimizer's own iterate
    x_t = (1 - c_t) x_{t-1} + c_t z_t                a running average of z (evaluate here)
    y_t = b1 x_t + (1 - b1) z_t                      the parameters: where gradients are taken

    schedule_free_sgd    schedule_free(sgd) ...
    schedule_free_adamw  schedule_free(second_moment -> bias_correction -> ratio
                                       -> add_decayed_weights -> learning rate)

The averaging weight :math:`c_t = w_t / \sum_{i \le t} w_i`, :math:`w_t = \max_{i \le t}
\eta_i^{p}` replaces a decaying schedule: no horizon to fix in advance. The parameters the
optimizer steps are :math:`y`; evaluate the model at :math:`x`, read with
:func:`schedule_free_eval_params`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.combine import chain, increment
from jaxopt_notes.moments import bias_correction, ratio, second_moment
from jaxopt_notes.transforms import add_decayed_weights, scale_by_learning_rate, with_params


class ScheduleFreeState(NamedTuple):
    b1: jax.Array  # the interpolation weight, kept to recover x from (y, z)
    weight_sum: jax.Array  # sum of w_i so far
    step_count: jax.Array  # steps taken + 1, int32 (the schedule is read here, from 1)
    max_lr: jax.Array  # the largest rate so far
    base_optimizer_state: Any
    z: Any  # the base optimizer's iterate


def _lowest_float(params: Any) -> Any:
    dtypes = [jnp.result_type(p) for p in jax.tree.leaves(params)]
    return min(dtypes, key=lambda d: jnp.finfo(d).bits) if dtypes else jnp.float32


@recorded
def schedule_free(
    base_optimizer: optax.GradientTransformation,
    learning_rate: LearningRate,
    b1: float = 0.9,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Turns ``base_optimizer`` (whose updates step :math:`z`) into its Schedule-Free form;
    the updates it returns move the parameters :math:`y_{t-1} \to y_t` (module docstring).

    :math:`x_{t-1}` is not stored: it is recovered as :math:`(y_{t-1} - (1-b_1) z_{t-1}) /
    b_1`, which also keeps :math:`x` right when something else moves :math:`y`.
    ``learning_rate`` (a float or a schedule read at steps 1, 2, ...) sets the weights
    :math:`w_t = \max_{i \le t}\eta_i^{p}` (:math:`p` = ``weight_lr_power``); give the
    base optimizer the same rate. ``state_dtype`` stores :math:`z` in that type.
    """
    _checks.transform("base_optimizer", base_optimizer)
    _checks.non_negative("learning_rate", learning_rate, schedule=True)
    _checks.real("b1", b1, low=0.0, high=1.0, low_open=True, high_open=True)
    _checks.real("weight_lr_power", weight_lr_power)
    state_dtype = _checks.dtype("state_dtype", state_dtype)
    base = optax.with_extra_args_support(base_optimizer)

    def init_fn(params):
        dtype = _lowest_float(params)
        z = jax.tree.map(lambda p: jnp.array(p, dtype=state_dtype or p.dtype), params)  # a copy
        zero = lambda: jnp.zeros([], dtype)  # noqa: E731  (a buffer per field: states are donated)
        return ScheduleFreeState(
            jnp.asarray(b1, dtype), zero(), jnp.ones([], jnp.int32), zero(), base.init(params), z
        )

    def update_fn(updates, state, params=None, **extra_args):
        with_params("schedule_free", updates, params)
        lr = learning_rate
        if callable(learning_rate):
            lr = jnp.asarray(learning_rate(state.step_count), state.max_lr.dtype)
        max_lr = jnp.maximum(state.max_lr, lr)
        weight = max_lr**weight_lr_power
        total = state.weight_sum + weight
        # c_t; 0/0 (every rate so far 0) is 0, a NaN weight stays NaN
        c = jnp.where(
            jnp.isnan(weight) | jnp.isnan(total),
            jnp.nan,
            jnp.nan_to_num(weight / total, nan=0.0, posinf=jnp.inf),
        )
        steps, base_state = base.update(updates, state.base_optimizer_state, params, **extra_args)
        z = jax.tree.map(lambda zi, s: (zi + s).astype(zi.dtype), state.z, steps)
        x_prev = jax.tree.map(lambda y, zi: (y - (1.0 - b1) * zi) / b1, params, state.z)
        x = jax.tree.map(lambda xi, zi: (1.0 - c) * xi + c * zi, x_prev, z)
        y = jax.tree.map(lambda xi, zi: b1 * xi + (1.0 - b1) * zi, x, z)
        out = jax.tree.map(lambda yi, p: (yi - p).astype(jnp.result_type(p)), y, params)
        new = ScheduleFreeState(state.b1, total, increment(state.step_count), max_lr, base_state, z)
        return out, new

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    r"""The evaluation parameters :math:`x = (y - (1-b_1) z) / b_1` of a Schedule-Free
    optimizer, from its state (wherever it sits in a chain) and the current parameters
    :math:`y`.

    Args:
      state: an optimizer state holding one :class:`ScheduleFreeState`.
      params: the parameters the optimizer steps (:math:`y`).
    """
    is_sf = lambda s: isinstance(s, ScheduleFreeState)  # noqa: E731
    found = [s for s in jax.tree.leaves(state, is_leaf=is_sf) if is_sf(s)]
    if len(found) != 1:
        raise ValueError(f"`state` must hold one Schedule-Free state, got {len(found)}")
    b1, z = found[0].b1, found[0].z
    return jax.tree.map(lambda y, zi: (y - (1.0 - b1) * zi) / b1, params, z)


def _warmed(learning_rate: float, warmup_steps: int | None) -> LearningRate:
    """A linear ramp from 0 to ``learning_rate`` over ``warmup_steps``, then constant, in
    optax's arithmetic (``peak - peak (1 - t/W)``, which rounds unlike ``peak t / W``; the
    trajectories are compared at 1e-9)."""
    if warmup_steps is None:
        return learning_rate
    _checks.integer("warmup_steps", warmup_steps, low=1)
    _checks.real("learning_rate", learning_rate)  # a warm-up ramps a number, as optax's

    def ramp(count):
        t = jnp.clip(count, 0, warmup_steps)
        return -learning_rate * (1 - t / warmup_steps) + learning_rate

    return ramp


@recorded
def schedule_free_sgd(
    learning_rate: LearningRate = 1.0,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    weight_decay: float | None = None,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
    *,
    convention: str = "optax",
) -> GT:
    r"""Schedule-Free SGD (Defazio et al. 2024): plain SGD steps :math:`z`, the parameters
    :math:`y` interpolate between :math:`z` and the average :math:`x` (see
    :func:`schedule_free`); a momentum-like effect without a momentum buffer.

    .. math:: z_t = z_{t-1} - \eta_t (g_t + \lambda y_{t-1}), \quad
              x_t = (1-c_t) x_{t-1} + c_t z_t, \quad y_t = b_1 x_t + (1-b_1) z_t

    Args:
      learning_rate: :math:`\eta`, a float or a schedule (1.0: the paper tunes it large).
      warmup_steps: a linear warm-up from 0 over that many steps (None: none).
      b1: the interpolation :math:`b_1` (0.9).
      weight_decay: :math:`\lambda`, coupled (added to the gradient at :math:`y`).
      weight_lr_power: :math:`p` of the averaging weights :math:`\max \eta^p`.
      state_dtype: the dtype :math:`z` is kept in.
      convention: torch.optim has no Schedule-Free; both give
        ``optax.contrib.schedule_free_sgd``'s numbers.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx, y = jn.schedule_free_sgd(0.5), jnp.zeros(1)
    >>> u, state = tx.update(jnp.ones(1), tx.init(y), y)  # z = -0.5, c_1 = 1: x = z
    >>> u, jn.schedule_free_eval_params(state, y + u)
    (Array([-0.5], dtype=float32), Array([-0.5], dtype=float32))
    """
    _checks.convention(convention)
    lr = _warmed(learning_rate, warmup_steps)
    links = [] if weight_decay is None else [add_decayed_weights(weight_decay)]
    base = chain(*links, scale_by_learning_rate(lr))
    return chain(schedule_free(base, lr, b1, weight_lr_power, state_dtype))


@recorded
def schedule_free_adamw(
    learning_rate: LearningRate = 0.0025,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
    *,
    convention: str = "optax",
) -> GT:
    r"""Schedule-Free AdamW (Defazio et al. 2024): :func:`schedule_free` around AdamW without
    its momentum (the interpolation plays that part): RMS-scaled steps of :math:`z`.

    .. math:: z_t = z_{t-1} - \eta_t \Big(\frac{g_t}{\sqrt{v_t/(1-b_2^t)} + \epsilon}
              + \lambda y_{t-1}\Big), \quad x_t, y_t \text{ as in } :func:`schedule_free_sgd`

    Args:
      learning_rate: :math:`\eta`, a float or a schedule (0.0025).
      warmup_steps: a linear warm-up from 0 (None: none; the paper warms up).
      b1: the interpolation :math:`b_1`.
      b2, eps: the second moment's decay and :math:`\epsilon` beside its root.
      weight_decay: :math:`\lambda`, decoupled from the scaling, at :math:`y`.
      weight_lr_power, state_dtype: as in :func:`schedule_free_sgd`.
      convention: torch.optim has no Schedule-Free; both give
        ``optax.contrib.schedule_free_adamw``'s numbers.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx, y = jn.schedule_free_adamw(0.1, eps=0.0), jnp.zeros(1)
    >>> tx.update(jnp.array([4.0]), tx.init(y), y)[0]  # z = -0.1 * 4 / 4; y = z on step 1
    Array([-0.1], dtype=float32)
    """
    _checks.convention(convention)
    lr = _warmed(learning_rate, warmup_steps)
    base = chain(
        second_moment(b2),
        bias_correction(None, b2),
        ratio(eps),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(lr),
    )
    return chain(schedule_free(base, lr, b1, weight_lr_power, state_dtype))
