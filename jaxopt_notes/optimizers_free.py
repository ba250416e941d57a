r"""Learning-rate-free methods: DoG and DoWG estimate the step size from the distance
travelled from the initial point (Prodigy and D-Adaptation AdamW, the same idea inside Adam,
are in :mod:`jaxopt_notes.optimizers_dadapt`).

A module beside :mod:`jaxopt_notes.modern` (at its ~400-line budget). Each keeps the initial
parameters :math:`x_0` and a distance estimate that only grows; the step is then about that
distance over a gradient scale:

.. code-block:: text

    dog           [add_decayed_weights] -> scale_by_dog -> learning rate
    dowg          [add_decayed_weights] -> scale_by_dowg -> learning rate
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.combine import chain
from jaxopt_notes.moments import abs_sq
from jaxopt_notes.transforms import add_decayed_weights, scale_by_learning_rate, with_params


def _lowest_float(params: Any) -> Any:
    dtypes = [jnp.result_type(p) for p in jax.tree.leaves(params)]
    return min(dtypes, key=lambda d: jnp.finfo(d).bits) if dtypes else jnp.float32


def _copy(tree: Any) -> Any:
    """Fresh buffers: a state field must not share an array with the params or another
    field, or donating them both to a jitted step (as training does) fails."""
    return jax.tree.map(jnp.copy, tree)


def _sq_norm(tree: Any) -> jax.Array:
    return sum(jnp.sum(abs_sq(x)) for x in jax.tree.leaves(tree))


def _dist(a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: x - y, a, b)


# -------------------------------------------------------------------------- DoG and DoWG
class DogState(NamedTuple):
    is_init_step: jax.Array
    init_params: Any
    max_dist: jax.Array  # r_t, the largest distance from x_0 so far
    sum_sq_norm_grads: jax.Array  # sum of |g_i|^2


INIT_STEPS = ("distance", "learning_rate", "heuristic")


@recorded
def scale_by_dog(
    init_step: tuple[str, float] = ("heuristic", 1e-6), eps: float = 1e-8
) -> optax.GradientTransformation:
    r"""DoG's step size (Ivgi et al. 2023, "DoG is SGD's best friend"), one for the whole
    tree: the largest distance from the start over the root of the summed squared gradients,

    .. math:: \eta_t = \frac{\bar r_t}{\sqrt{\sum_{i \le t} \|g_i\|^2 + \epsilon}}, \quad
              \bar r_t = \max(r_\epsilon, \max_{i \le t} \|x_i - x_0\|)

    ``init_step`` sets the first step: ``("distance", r)`` (:math:`r_\epsilon = r`),
    ``("heuristic", a)`` (:math:`r_\epsilon = a (1 + \|x_0\|)`), or ``("learning_rate",
    \eta_0)`` (:math:`r_\epsilon = 0` and a first step of :math:`\eta_0` exactly).
    """
    kind, value = _checks.one_of("init_step kind", init_step[0], INIT_STEPS), init_step[1]
    _checks.non_negative("init_step value", value)
    _checks.non_negative("eps", eps)

    def init_fn(params):
        dtype = _lowest_float(params)
        r0 = {"distance": value, "learning_rate": 0.0}.get(kind)
        if kind == "heuristic":
            r0 = value * (1 + jnp.sqrt(_sq_norm(params)))
        zero = jnp.asarray(0.0, dtype)
        return DogState(jnp.asarray(True), _copy(params), jnp.asarray(r0, dtype), zero)

    def update_fn(updates, state, params=None):
        with_params("scale_by_dog", updates, params)
        r = jnp.maximum(state.max_dist, jnp.sqrt(_sq_norm(_dist(state.init_params, params))))
        total = state.sum_sq_norm_grads + _sq_norm(updates)
        eta = r / jnp.sqrt(total + eps)
        if kind == "learning_rate":
            eta = jnp.where(state.is_init_step, value, eta)
        out = jax.tree.map(lambda g: (eta * g).astype(g.dtype), updates)
        r, total = r.astype(state.max_dist.dtype), total.astype(state.max_dist.dtype)  # mixed trees
        return out, DogState(jnp.asarray(False), state.init_params, r, total)

    return optax.GradientTransformation(init_fn, update_fn)


class DowgState(NamedTuple):
    init_params: Any
    weighted_sq_norm_grads: jax.Array  # sum of r_i^2 |g_i|^2
    estim_sq_dist: jax.Array  # r_t^2


@recorded
def scale_by_dowg(
    init_estim_sq_dist: float | None = None, eps: float = 1e-4
) -> optax.GradientTransformation:
    r"""DoWG's step size (Khaled et al. 2023, "DoWG unleashed"): the distance weighs the
    gradients it sums,

    .. math:: \eta_t = \frac{\bar r_t^2}{\sqrt{\sum_{i \le t} \bar r_i^2 \|g_i\|^2} +
              \epsilon}, \quad \bar r_t^2 = \max(\bar r_{t-1}^2, \|x_t - x_0\|^2)

    from :math:`\bar r_0^2` = ``init_estim_sq_dist`` (None: ``eps``)."""
    if init_estim_sq_dist is not None:
        _checks.non_negative("init_estim_sq_dist", init_estim_sq_dist)
    _checks.non_negative("eps", eps)

    def init_fn(params):
        dtype = _lowest_float(params)
        r0 = eps if init_estim_sq_dist is None else init_estim_sq_dist
        return DowgState(_copy(params), jnp.asarray(0.0, dtype), jnp.asarray(r0, dtype))

    def update_fn(updates, state, params=None):
        with_params("scale_by_dowg", updates, params)
        r2 = jnp.maximum(state.estim_sq_dist, _sq_norm(_dist(state.init_params, params)))
        weighted = r2 * _sq_norm(updates) + state.weighted_sq_norm_grads
        eta = r2 / (jnp.sqrt(weighted) + eps)
        out = jax.tree.map(lambda g: (eta * g).astype(g.dtype), updates)
        keep = state.estim_sq_dist.dtype  # a mixed tree's sums promote: keep the state's type
        return out, DowgState(state.init_params, weighted.astype(keep), r2.astype(keep))

    return optax.GradientTransformation(init_fn, update_fn)


def _decayed(weight_decay: float | None, mask: Any) -> list:
    return [] if weight_decay is None else [add_decayed_weights(weight_decay, mask)]


@recorded
def dog(
    learning_rate: LearningRate = 1.0,
    init_step: tuple[str, float] = ("heuristic", 1e-6),
    eps: float = 1e-8,
    weight_decay: float | None = None,
    mask: Any = None,
    *,
    convention: str = "optax",
) -> GT:
    r"""DoG, "Distance over Gradients" (Ivgi et al. 2023): SGD with the step size of
    :func:`scale_by_dog`, no rate to tune.

    .. math:: \theta_t = \theta_{t-1} - c_t\, \frac{\bar r_t}{\sqrt{\sum_{i \le t}
              \|g_i\|^2 + \epsilon}}\, (g_t + \lambda \theta_{t-1})

    Args:
      learning_rate: :math:`c_t`, a multiplier on DoG's step (1.0; a schedule decays it).
      init_step: the first step's rule, see :func:`scale_by_dog`.
      eps: under the root.
      weight_decay, mask: coupled decay (added to the gradient before DoG sees it).
      convention: torch.optim has no DoG; both give ``optax.contrib.dog``'s numbers.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx, p = jn.dog(init_step=("learning_rate", 0.1)), jnp.ones(2)
    >>> tx.update(jnp.array([3.0, 4.0]), tx.init(p), p)[0]  # a first step of 0.1 exactly
    Array([-0.3, -0.4], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        *_decayed(weight_decay, mask),
        scale_by_dog(init_step, eps),
        scale_by_learning_rate(learning_rate),
    )


@recorded
def dowg(
    learning_rate: LearningRate = 1.0,
    init_estim_sq_dist: float | None = None,
    eps: float = 1e-4,
    weight_decay: float | None = None,
    mask: Any = None,
    *,
    convention: str = "optax",
) -> GT:
    r"""DoWG, "Distance over Weighted Gradients" (Khaled et al. 2023): SGD with the step
    size of :func:`scale_by_dowg`, times ``learning_rate`` (1.0).

    Args:
      learning_rate: a multiplier on the step (a float or a schedule).
      init_estim_sq_dist: :math:`\bar r_0^2` (None: ``eps``).
      eps: beside the root (1e-4).
      weight_decay, mask: coupled decay.
      convention: torch.optim has no DoWG; both give ``optax.contrib.dowg``'s numbers.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx, p = jn.dowg(init_estim_sq_dist=1.0, eps=0.0), jnp.ones(2)
    >>> tx.update(jnp.array([3.0, 4.0]), tx.init(p), p)[0]  # 1 / sqrt(1 * 25) * g
    Array([-0.6, -0.8], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        *_decayed(weight_decay, mask),
        scale_by_dowg(init_estim_sq_dist, eps),
        scale_by_learning_rate(learning_rate),
    )
