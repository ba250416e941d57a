r"""Sophia (Liu et al. 2024, "Sophia: a scalable stochastic second-order optimizer"): momentum
divided by an EMA of the Hessian's diagonal, clipped.

A module beside :mod:`jaxopt_notes.modern` (at its ~400-line budget). The chain is a moment
run whose second moment is curvature rather than squared gradients:

.. code-block:: text

    first_moment -> bias_correction -> hessian_moment(hutchinson_diagonal) -> clipped_ratio
      -> add_decayed_weights -> learning rate

:func:`hutchinson_diagonal` estimates :math:`\operatorname{diag}(H)` as :math:`z \odot Hz`
with Rademacher :math:`z`, the product from :func:`jaxopt_notes.hessian.hvp` (the estimator
``hessian.diagonal`` averages over many probes on the host; here one probe per refresh, inside
the compiled step). Like the methods of :mod:`jaxopt_notes.second_order`, Sophia needs the loss:
``tx.update(grads, state, params, loss_fn=loss_fn)``. So it is not in ``jn.OPTIMIZERS``, whose
entries train from gradients alone.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks, hessian
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.combine import chain, increment, zero_count
from jaxopt_notes.moments import _needs, _open, bias_correction, first_moment
from jaxopt_notes.transforms import add_decayed_weights, scale_by_learning_rate


class HutchinsonState(NamedTuple):
    key: jax.Array


def _lowest_float(params: Any) -> Any:
    dtypes = [jnp.result_type(p) for p in jax.tree.leaves(params)]
    return min(dtypes, key=lambda d: jnp.finfo(d).bits) if dtypes else jnp.float32


@recorded
def hutchinson_diagonal(seed: int = 0) -> optax.GradientTransformationExtraArgs:
    r"""One Hutchinson probe of the Hessian's diagonal at the params: :math:`z \odot Hz`,
    :math:`z` Rademacher (one key per leaf, split from the state's key, as optax's
    ``hutchinson_estimator_diag_hessian`` draws them, so both see the same probes). Its
    updates ignore the incoming ones; needs ``loss_fn`` (the extra argument)."""
    _checks.integer("seed", seed)

    def init_fn(params):
        del params
        return HutchinsonState(jax.random.PRNGKey(seed))

    def update_fn(updates, state, params=None, *, loss_fn=None, **extra):
        del updates, extra
        if params is None or loss_fn is None:
            raise ValueError("`hutchinson_diagonal` needs `params` and `loss_fn` in `update`")
        key, sub = jax.random.split(state.key)
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(sub, len(leaves))
        low = _lowest_float(params)
        z = [
            jax.random.rademacher(k, p.shape, jnp.float32).astype(low)
            for k, p in zip(keys, leaves, strict=True)
        ]
        z = treedef.unflatten(z)
        hz = hessian.hvp(loss_fn, params, z)
        return jax.tree.map(lambda h, r: h * r, hz, z), HutchinsonState(key)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class HessianMomentState(NamedTuple):
    count: jax.Array  # steps taken, int32
    nu: Any  # the EMA of the diagonal estimates
    estimator_state: Any


@recorded
def hessian_moment(
    b2: float = 0.99, update_interval: int = 10, estimator: Any = None
) -> optax.GradientTransformationExtraArgs:
    r"""A moment link whose second moment is the Hessian's diagonal: every
    ``update_interval`` steps (from the first) :math:`h_t = b_2 h + (1-b_2)\hat D_t`, with
    :math:`\hat D_t` from ``estimator`` (default :func:`hutchinson_diagonal`). Sets ``nu`` to
    the EMA *before* this step's refresh (Sophia's order). Passes extra arguments (``loss_fn``)
    to the estimator."""
    _checks.beta("b2", b2)
    _checks.integer("update_interval", update_interval, low=1)
    estimator = optax.with_extra_args_support(estimator or hutchinson_diagonal())

    def init_fn(params):
        nu = jax.tree.map(jnp.zeros_like, params)
        return HessianMomentState(zero_count(), nu, estimator.init(params))

    def update_fn(updates, state, params=None, **extra):
        m = _open(updates)

        def refresh(est_state, nu):
            d, est_state = estimator.update(m.grad, est_state, params, **extra)
            return est_state, jax.tree.map(lambda x, h: (1 - b2) * x + b2 * h, d, nu)

        due = state.count % update_interval == 0
        args = (state.estimator_state, state.nu)
        est_state, nu = jax.lax.cond(due, refresh, lambda e, n: (e, n), *args)
        new = HessianMomentState(increment(state.count), nu, est_state)
        return m._replace(nu=state.nu), new

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@recorded
def clipped_ratio(
    gamma: float = 0.01, eps: float = 1e-8, clip_threshold: float | None = 1.0
) -> optax.GradientTransformation:
    r"""Closes Sophia's run: :math:`\operatorname{clip}(\hat m / \max(\gamma h, \epsilon),
    \pm\rho)` (``clip_threshold`` :math:`\rho`; None: no clipping). Where the curvature is
    small or negative the step is the clipped sign of the momentum, not a huge Newton step."""
    _checks.non_negative("gamma", gamma)
    _checks.non_negative("eps", eps)
    if clip_threshold is not None:
        _checks.positive("clip_threshold", clip_threshold)

    def step(m, h):
        u = m / jnp.maximum(gamma * h, eps)
        return u if clip_threshold is None else jnp.clip(u, -clip_threshold, clip_threshold)

    def update_fn(updates, state, params=None):
        del params
        m = _needs(updates, "clipped_ratio", "mu", "nu")
        return jax.tree.map(step, m.mu, m.nu), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


@recorded
def sophia(
    learning_rate: LearningRate,
    b1: float = 0.965,
    b2: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 1e-4,
    *,
    weight_decay_mask: Any = None,
    gamma: float = 0.01,
    clip_threshold: float | None = 1.0,
    update_interval: int = 10,
    hessian_diagonal_fn: Any = None,
    mu_dtype: Any = None,
    convention: str = "optax",
) -> GT:
    r"""Sophia (Liu et al. 2024): a clipped diagonal Newton step on the momentum, the
    curvature refreshed every ``update_interval`` steps.

    .. math:: \theta_t = \theta_{t-1} - \eta\Big(\operatorname{clip}\Big(\frac{\hat m_t}
              {\max(\gamma h_t, \epsilon)}, \pm\rho\Big) + \lambda\theta_{t-1}\Big)

    Args:
      learning_rate: :math:`\eta`, a float or a schedule.
      b1: the momentum's decay (0.965).
      b2: the curvature EMA's decay (0.99), per refresh.
      eps: the floor of :math:`\gamma h`.
      weight_decay, weight_decay_mask: decoupled decay (1e-4) and its leaves.
      gamma: :math:`\gamma` (0.01), the curvature's scale.
      clip_threshold: :math:`\rho` (1.0; None: no clipping).
      update_interval: steps between curvature refreshes (10).
      hessian_diagonal_fn: the diagonal estimator link (None: :func:`hutchinson_diagonal`).
      mu_dtype: the dtype :math:`m` is stored in.
      convention: torch.optim has no Sophia; both give ``optax.contrib.sophia``'s numbers
        (pass ``loss_fn=`` to ours where optax's takes ``obj_fn=``).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> loss_fn = lambda p: 2.0 * jnp.sum(p**2)  # H = 4 I
    >>> tx, p = jn.sophia(0.1, weight_decay=0.0), jnp.ones(2)
    >>> tx.update(4 * p, tx.init(p), p, loss_fn=loss_fn)[0]  # h = 0 yet: the clipped sign step
    Array([-0.1, -0.1], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        first_moment(b1, dtype=_checks.dtype("mu_dtype", mu_dtype)),
        bias_correction(b1),
        hessian_moment(b2, update_interval, hessian_diagonal_fn),
        clipped_ratio(gamma, eps, clip_threshold),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
