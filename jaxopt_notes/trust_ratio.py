r"""Layer-wise trust ratios: the link of LARS and LAMB, and the two optimizers.

A trust ratio rescales each layer's update (each leaf of the tree) to a fixed fraction of
that layer's weight norm, so that no layer moves much faster than its size, whatever the
scale of its gradients (You et al. 2017). The chains:

.. code-block:: text

    lars  add_decayed_weights -> trust_ratio(0.001) -> learning rate -> trace (momentum)
    lamb  adam_direction -> add_decayed_weights -> trust_ratio -> learning rate

:func:`trust_ratio` is a plain link (trees in, trees out): it stands after the moment run is
closed, and may follow any direction (Adam's, SGD's, Lion's...).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.adam_family import adam_direction
from jaxopt_notes.combine import chain
from jaxopt_notes.moments import abs_sq
from jaxopt_notes.transforms import (
    add_decayed_weights,
    scale_by_learning_rate,
    trace,
    with_params,
)


def _norm(x: jax.Array, min_norm: float) -> jax.Array:
    """:math:`\\max(\\|x\\|, n_{min})`, real for complex ``x``."""
    return jnp.maximum(jnp.sqrt(jnp.sum(abs_sq(x))), min_norm)


@recorded
def trust_ratio(
    trust_coefficient: float = 1.0, eps: float = 0.0, *, min_norm: float = 0.0, mask: Any = None
) -> optax.GradientTransformation:
    r"""Rescales each leaf's update by its layer's trust ratio.

    .. math:: u_\ell \leftarrow u_\ell \cdot \frac{c\,\|\theta_\ell\|}{\|u_\ell\| + \epsilon}

    for each leaf :math:`\ell` (a layer's weight or bias), with :math:`c` =
    ``trust_coefficient``; where :math:`\|\theta_\ell\|` or :math:`\|u_\ell\|` is 0 the ratio
    is 1 (a zero-initialised layer still moves). Norms below ``min_norm`` count as
    ``min_norm``. The step of a layer then has norm about :math:`c\,\eta\,\|\theta_\ell\|`
    under a learning rate :math:`\eta`, whatever its gradient's scale.

    Args:
      trust_coefficient: :math:`c` (1 in LAMB; LARS takes 0.001).
      eps: added to the update's norm (0).
      min_norm: the smallest norm either side counts as (0).
      mask: the leaves that are rescaled (a tree of bools like the params, or a function of
        the params giving one); the others pass unchanged. ``None``: all.

    Convention: optax's ``scale_by_trust_ratio`` (torch.optim has none).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.trust_ratio()
    >>> tx.update(jnp.array([30.0, 40.0]), tx.init(None), jnp.array([0.6, 0.8]))[0]  # |u| = |p|
    Array([0.6, 0.8], dtype=float32)
    """
    _checks.non_negative("trust_coefficient", trust_coefficient)
    _checks.non_negative("eps", eps)
    _checks.non_negative("min_norm", min_norm)

    def rescale(u, p, keep):
        if not keep:
            return u
        p_norm, u_norm = _norm(p, min_norm), _norm(u, min_norm)
        r = trust_coefficient * p_norm / (u_norm + eps)
        r = jnp.where((p_norm == 0) | (u_norm == 0), 1.0, r)
        return u * r.astype(u.dtype)

    def update_fn(updates, state, params=None):
        keep = with_params("trust_ratio", updates, params, mask)
        return jax.tree.map(rescale, updates, params, keep), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _mask(mask: Any) -> Any:
    """optax's ``True`` (every leaf) as our ``None``."""
    return None if mask is True else mask


@recorded
def lars(
    learning_rate: LearningRate,
    weight_decay: float = 0.0,
    weight_decay_mask: Any = True,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    trust_ratio_mask: Any = True,
    momentum: float = 0.9,
    nesterov: bool = False,
    *,
    convention: str = "optax",
) -> GT:
    r"""LARS (You et al. 2017, "Large batch training of convolutional networks"): SGD with
    momentum whose step is rescaled layer by layer by a trust ratio.

    .. math:: d_\ell = g_\ell + \lambda \theta_\ell, \quad
              v_t = \mu v_{t-1} + \eta\, \frac{c\,\|\theta_\ell\|}{\|d_\ell\| + \epsilon}
              d_\ell, \quad \theta_t = \theta_{t-1} - v_t

    The learning rate acts before the momentum buffer (optax's order), so a schedule's change
    of :math:`\eta` reaches the step through the buffer.

    Args:
      learning_rate: :math:`\eta`, a float or a schedule.
      weight_decay: :math:`\lambda`, coupled (added to the gradient before the ratio) (0).
      weight_decay_mask: the leaves that decay (``True``: all; a tree of bools or a function).
      trust_coefficient: :math:`c` (0.001).
      eps: added to :math:`\|d_\ell\|` (0).
      trust_ratio_mask: the leaves rescaled by their ratio (``True``: all); biases and
        normalisation scales are often left out.
      momentum: :math:`\mu` (0.9).
      nesterov: Nesterov's form of the momentum.
      convention: torch.optim has no LARS; both values give optax's numbers.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.lars(1.0, trust_coefficient=0.1)  # |step| = 0.1 * |theta| = 0.1
    >>> tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)), jnp.array([0.6, 0.8]))[0]
    Array([-0.06, -0.08], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        add_decayed_weights(weight_decay, _mask(weight_decay_mask)),
        trust_ratio(trust_coefficient, eps, mask=_mask(trust_ratio_mask)),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov),
    )


@recorded
def lamb(
    learning_rate: LearningRate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: float = 0.0,
    mask: Any = None,
    *,
    mu_dtype: Any = None,
    convention: str = "optax",
) -> GT:
    r"""LAMB (You et al. 2020, "Large batch optimization for deep learning: training BERT in
    76 minutes"): AdamW's direction, rescaled layer by layer by a trust ratio.

    .. math:: r_\ell = \frac{\hat m_\ell}{\sqrt{\hat v_\ell + \epsilon_{root}} + \epsilon}
              + \lambda \theta_\ell, \qquad
              \theta_t = \theta_{t-1} - \eta\, \frac{\|\theta_\ell\|}{\|r_\ell\|}\, r_\ell

    Args:
      learning_rate: :math:`\eta`, a float or a schedule.
      b1: the decay of :math:`m`.
      b2: the decay of :math:`v`.
      eps: added to the root (1e-6, the paper's and optax's).
      eps_root: added under the root (0).
      weight_decay: :math:`\lambda`, decoupled (added after the Adam ratio) (0).
      mask: the leaves that decay, as in :func:`~jaxopt_notes.add_decayed_weights`.
      mu_dtype: the dtype :math:`m` is stored in.
      convention: torch.optim has no LAMB; both values give optax's numbers.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.lamb(0.1)  # Adam's first step is sign(g); its norm becomes |theta| = 1
    >>> u, _ = tx.update(jnp.array([5.0, -1.0]), tx.init(jnp.zeros(2)), jnp.array([0.6, 0.8]))
    >>> jnp.round(u, 4)  # -0.1 * (1, -1) / sqrt(2)
    Array([-0.0707,  0.0707], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        *adam_direction(b1, b2, eps, eps_root, mu_dtype=mu_dtype),
        add_decayed_weights(weight_decay, mask),
        trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )
