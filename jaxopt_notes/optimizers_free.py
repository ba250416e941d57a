r"""Learning-rate-free methods: DoG, DoWG, Prodigy and D-Adaptation AdamW estimate the step
size from the distance travelled from the initial point.

A module beside :mod:`jaxopt_notes.modern` (at its ~400-line budget). Each keeps the initial
parameters :math:`x_0` (or sums that stand for them) and a distance estimate :math:`d_t` that
only grows; the step is then about :math:`d_t` over a gradient scale:

.. code-block:: text

    dog           [add_decayed_weights] -> scale_by_dog -> learning rate
    dowg          [add_decayed_weights] -> scale_by_dowg -> learning rate
    prodigy       scale_by_prodigy (distance, Adam moments of d g, decay)
    dadapt_adamw  scale_by_dadapt_adamw (distance, Adam moments, decay)

In Prodigy and D-Adaptation the learning rate multiplies :math:`d_t` *inside* the moments'
EMAs (each past step kept its own rate), so the rate cannot stand as a last link: one link
holds the estimate and makes the step, and ``learning_rate`` is a multiplier on :math:`d_t`
(1 by default; a schedule gives the warm-up or decay).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.combine import chain, increment, zero_count
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


def _vdot(a: Any, b: Any) -> jax.Array:
    r""":math:`\sum \bar a b` over the leaves (real parts: the methods' inner products); a
    product and a sum, not ``jnp.vdot``: a dot over sharded axes needs an output sharding
    named, a sum reduces to a replicated scalar by itself."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return sum(jnp.sum(x.conj() * y).real for x, y in pairs)


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


# ------------------------------------------------------------------------------- Prodigy
def _at(value: Any, count: jax.Array) -> Any:
    return value(count) if callable(value) else value


def _ema_sq(decay: Any, v: jax.Array, x: jax.Array) -> jax.Array:
    r""":math:`\beta v + (1-\beta)|x|^2`, rounded as optax rounds ``b v + (1 - b) x x``."""
    return decay * v + ((1 - decay) * x * x.conj()).real.astype(v.dtype)


def _checked_betas(betas: tuple[float, float]) -> tuple[float, float]:
    if len(tuple(betas)) != 2:
        raise ValueError(f"`betas` must be a pair (b1, b2), got {betas!r}")
    _checks.beta("betas[0]", betas[0])
    _checks.beta("betas[1]", betas[1])
    return tuple(betas)


class ProdigyState(NamedTuple):
    exp_avg: Any  # EMA of d g
    exp_avg_sq: Any  # EMA of (d g)^2
    grad_sum: Any  # s_t, the weighted sum of d g
    params0: Any  # x_0
    estim_lr: jax.Array  # d_t
    numerator_weighted: jax.Array
    count: jax.Array  # steps taken, int32


@recorded
def scale_by_prodigy(
    learning_rate: LearningRate = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float = 0.0,
    safeguard_warmup: bool = False,
) -> optax.GradientTransformation:
    r"""Prodigy's distance estimate and the step it sets (Mishchenko & Defazio 2024,
    Algorithm 4): Adam on :math:`d_{t-1} g_t`, stepped by :math:`\eta_t d_{t-1}`, with

    .. math:: d_t = \max\Big(d_{t-1}, \frac{r_t}{\|s_t\|_1}\Big), \quad
              r_t = \beta_3 r_{t-1} + \eta_t \tfrac{d_{t-1}^2}{d_0}\langle g_t, x_0 - x_t
              \rangle, \quad s_t = \beta_3 s_{t-1} + \eta_t \tfrac{d_{t-1}^2}{d_0} g_t

    (with Adam's bias correction folded into :math:`\eta_t`; ``safeguard_warmup`` drops
    :math:`\eta_t` from :math:`s_t`). :math:`d_t` only grows: the step size rises from
    :math:`d_0` = ``estim_lr0`` until the iterates stop moving away from :math:`x_0`. The
    update includes decoupled decay :math:`-\eta_t d_{t-1}\lambda x` and the sign.
    """
    b1, b2 = _checked_betas(betas)
    b3 = b2**0.5 if beta3 is None else beta3
    _checks.beta("beta3", b3)
    for name, v in (("eps", eps), ("weight_decay", weight_decay)):
        _checks.non_negative(name, v)
    _checks.positive("estim_lr0", estim_lr0)
    _checks.positive("estim_lr_coef", estim_lr_coef)
    _checks.flag("safeguard_warmup", safeguard_warmup)

    def init_fn(params):
        dtype, zeros = _lowest_float(params), jax.tree.map(jnp.zeros_like, params)
        real = jax.tree.map(lambda p: jnp.zeros_like(p, jnp.finfo(p.dtype).dtype), params)
        zero = jnp.zeros((), dtype)
        return ProdigyState(
            zeros,
            real,
            _copy(zeros),
            _copy(params),
            jnp.asarray(estim_lr0, dtype),
            zero,
            zero_count(),
        )

    def update_fn(updates, state, params=None):
        with_params("scale_by_prodigy", updates, params)
        t, d = increment(state.count), state.estim_lr
        dlr = jnp.asarray(
            d * _at(learning_rate, state.count) * ((1 - b2**t) ** 0.5) / (1 - b1**t), d.dtype
        )
        dg = jax.tree.map(lambda g: d * g, updates)
        ea = jax.tree.map(lambda m, x: b1 * m + (1 - b1) * x, state.exp_avg, dg)
        eas = jax.tree.map(lambda v, x: _ema_sq(b2, v, x), state.exp_avg_sq, dg)
        into_s = d if safeguard_warmup else dlr
        s = jax.tree.map(lambda sk, x: b3 * sk + into_s * x / estim_lr0, state.grad_sum, dg)
        moved = _vdot(updates, _dist(state.params0, params))
        num = b3 * state.numerator_weighted + (d / estim_lr0) * dlr * moved
        s_l1 = sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(s))
        d_new = jnp.maximum(d, estim_lr_coef * num / s_l1)

        def step(m, v, p):
            return (-weight_decay * dlr * p - dlr * m / (jnp.sqrt(v) + d_new * eps)).astype(p.dtype)

        out = jax.tree.map(step, ea, eas, params)
        keep = lambda x, like: x.astype(like.dtype)  # noqa: E731  (a mixed tree promotes)
        d_new, num = keep(d_new, d), keep(num, state.numerator_weighted)
        return out, ProdigyState(ea, eas, s, state.params0, d_new, num, t)

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def prodigy(
    learning_rate: LearningRate = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    estim_lr_coef: float = 1.0,
    weight_decay: float = 0.0,
    safeguard_warmup: bool = False,
    *,
    convention: str = "optax",
) -> GT:
    r"""Prodigy (Mishchenko & Defazio 2024, "Prodigy: an expeditiously adaptive
    parameter-free learner"): AdamW whose step size is its own running estimate of the
    distance to the solution (see :func:`scale_by_prodigy`).

    .. math:: \theta_t = \theta_{t-1} - \eta_t d_{t-1}\Big(\frac{m_t}{\sqrt{v_t} + d_t
              \epsilon} + \lambda\theta_{t-1}\Big), \quad m, v \text{ the EMAs of } d\,g

    Args:
      learning_rate: :math:`\eta_t`, a multiplier on :math:`d` (1.0; schedules warm up or
        decay it).
      betas: Adam's :math:`(b_1, b_2)`.
      beta3: the decay of the estimate's sums (None: :math:`\sqrt{b_2}`).
      eps: beside the root, scaled by :math:`d_t`.
      estim_lr0: :math:`d_0` (1e-6), the first step size.
      estim_lr_coef: a factor on the estimate (1.0).
      weight_decay: :math:`\lambda`, decoupled.
      safeguard_warmup: leave :math:`\eta_t` out of :math:`s_t` (for warm-up schedules).
      convention: torch.optim has no Prodigy; both give ``optax.contrib.prodigy``'s numbers.

    The learning rate is inside the moments (module docstring), so there is no rate link:
    ``current_learning_rate`` reads it only from an ``optax.inject_hyperparams`` state; the
    distance estimate :math:`d_t` is the state's ``estim_lr``.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx, p = jn.prodigy(estim_lr0=1e-3, eps=0.0), jnp.ones(2)
    >>> tx.update(jnp.array([3.0, -4.0]), tx.init(p), p)[0]  # d_0 sign(g): Adam's first step
    Array([-0.001,  0.001], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        scale_by_prodigy(
            learning_rate,
            betas,
            beta3,
            eps,
            estim_lr0,
            estim_lr_coef,
            weight_decay,
            safeguard_warmup,
        )  # fmt: skip
    )


# ---------------------------------------------------------------- D-Adaptation AdamW
class DAdaptAdamWState(NamedTuple):
    exp_avg: Any  # EMA of d eta g
    exp_avg_sq: Any  # EMA of g^2
    grad_sum: Any  # s_t
    estim_lr: jax.Array  # d_t
    numerator_weighted: jax.Array
    count: jax.Array  # steps taken, int32


@recorded
def scale_by_dadapt_adamw(
    learning_rate: LearningRate = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    weight_decay: float = 0.0,
) -> optax.GradientTransformation:
    r"""D-Adaptation's distance estimate for Adam and the step it sets (Defazio & Mishchenko
    2023, Algorithm 4), with :math:`\gamma_t = \eta_t d_{t-1}` (bias correction folded in)
    and :math:`\beta = \sqrt{b_2}`:

    .. math:: s_t = \beta s_{t-1} + (1-\beta)\gamma_t g_t, \quad
              r_t = \beta r_{t-1} + (1-\beta)\gamma_t \Big\langle g_t,
              \frac{s_{t-1}}{\sqrt{v_{t-1}} + \epsilon}\Big\rangle, \quad
              d_t = \max\Big(d_{t-1}, \frac{r_t}{(1-\beta)\|s_t\|_1}\Big)

    and the step :math:`-m_t/(\sqrt{v_t}+\epsilon) - \gamma_t\lambda x`, :math:`m` the EMA
    of :math:`\gamma g`, :math:`v` of :math:`g^2`.
    """
    b1, b2 = _checked_betas(betas)
    sb2 = b2**0.5
    for name, v in (("eps", eps), ("weight_decay", weight_decay)):
        _checks.non_negative(name, v)
    _checks.positive("estim_lr0", estim_lr0)

    def init_fn(params):
        dtype, zeros = _lowest_float(params), jax.tree.map(jnp.zeros_like, params)
        real = jax.tree.map(lambda p: jnp.zeros_like(p, jnp.finfo(p.dtype).dtype), params)
        zero = jnp.zeros((), dtype)
        return DAdaptAdamWState(
            zeros, real, _copy(zeros), jnp.asarray(estim_lr0, dtype), zero, zero_count()
        )

    def update_fn(updates, state, params=None):
        with_params("scale_by_dadapt_adamw", updates, params)
        t = increment(state.count)
        bc = ((1 - b2**t) ** 0.5) / (1 - b1**t)
        dlr = (state.estim_lr * _at(learning_rate, state.count) * bc).astype(state.estim_lr.dtype)
        weighted = jax.tree.map(
            lambda sk, v: sk / (jnp.sqrt(v) + eps), state.grad_sum, state.exp_avg_sq
        )
        along = _vdot(updates, weighted)
        ea = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * dlr * g, state.exp_avg, updates)
        eas = jax.tree.map(lambda v, g: _ema_sq(b2, v, g), state.exp_avg_sq, updates)
        s = jax.tree.map(lambda sk, g: sb2 * sk + (1 - sb2) * dlr * g, state.grad_sum, updates)
        s_l1 = sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(s))
        num = sb2 * state.numerator_weighted + (1 - sb2) * dlr * along
        d_new = jnp.maximum(state.estim_lr, num / ((1 - sb2) * s_l1))

        def step(m, v, p):
            return (-weight_decay * dlr * p - m / (jnp.sqrt(v) + eps)).astype(p.dtype)

        out = jax.tree.map(step, ea, eas, params)
        keep = lambda x, like: x.astype(like.dtype)  # noqa: E731  (a mixed tree promotes)
        d_new, num = keep(d_new, state.estim_lr), keep(num, state.numerator_weighted)
        return out, DAdaptAdamWState(ea, eas, s, d_new, num, t)

    return optax.GradientTransformation(init_fn, update_fn)


@recorded
def dadapt_adamw(
    learning_rate: LearningRate = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    estim_lr0: float = 1e-6,
    weight_decay: float = 0.0,
    *,
    convention: str = "optax",
) -> GT:
    r"""D-Adaptation AdamW (Defazio & Mishchenko 2023, "Learning-rate-free learning by
    D-Adaptation"): AdamW whose step size is its lower bound :math:`d_t` on the distance to
    the solution, grown as the iterates show it is larger (see :func:`scale_by_dadapt_adamw`).

    Args:
      learning_rate: :math:`\eta_t`, a multiplier on :math:`d` (1.0; a schedule decays it).
      betas: Adam's :math:`(b_1, b_2)`.
      eps: beside the root.
      estim_lr0: :math:`d_0` (1e-6).
      weight_decay: :math:`\lambda`, decoupled, times :math:`\gamma_t`.
      convention: torch.optim has no D-Adaptation; both give
        ``optax.contrib.dadapt_adamw``'s numbers.

    As for :func:`prodigy`, the rate is inside the moments: no rate link; the estimate
    :math:`d_t` is the state's ``estim_lr``.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx, p = jn.dadapt_adamw(estim_lr0=1e-3, eps=0.0), jnp.ones(2)
    >>> tx.update(jnp.array([3.0, -4.0]), tx.init(p), p)[0]  # d_0 sign(g) on the first step
    Array([-0.001,  0.001], dtype=float32)
    """
    _checks.convention(convention)
    return chain(scale_by_dadapt_adamw(learning_rate, betas, eps, estim_lr0, weight_decay))
