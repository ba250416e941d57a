r"""SOAP (Vyas et al. 2024, "SOAP: improving and stabilizing Shampoo using Adam"): Adam run in
the eigenbasis of Shampoo's preconditioner.

A module beside :mod:`jaxopt_notes.modern` (at its ~400-line budget). optax has no SOAP
(optax#1580); the reference is the paper's Algorithm 3 in NumPy, in tests/test_soap.py.

.. code-block:: text

    soap  scale_by_soap -> add_decayed_weights -> learning rate

For a matrix leaf, :math:`Q_L, Q_R` are the eigenvectors of Shampoo's EMAs :math:`L = \mathrm{EMA}
(GG^\top)`, :math:`R = \mathrm{EMA}(G^\top G)`, refreshed every ``precondition_frequency``
steps. Adam's first moment is kept in the parameters' coordinates and rotated when used; its
second moment lives in the rotated coordinates, where the gradient's covariance is nearly
diagonal, which is what a diagonal second moment assumes. Other leaves take plain Adam steps.
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
from jaxopt_notes.optimizers_muon import _whole_matrices
from jaxopt_notes.optimizers_shampoo import _real_only, _split
from jaxopt_notes.transforms import _plain, add_decayed_weights, scale_by_learning_rate


class SoapState(NamedTuple):
    count: jax.Array  # steps taken, int32
    mu: Any  # Adam's first moment, in the parameters' coordinates
    nu: Any  # Adam's second moment, in the rotated coordinates
    left: Any  # L per matrix leaf (a (1, 1) stub elsewhere)
    right: Any  # R
    q_left: Any  # Q_L, eigenvectors of L (identity before the first refresh)
    q_right: Any  # Q_R


class _LeafStep(NamedTuple):
    """What every leaf's step shares: the decays, eps, this step's bias corrections
    ``c1 = 1 - b1**t``, ``c2 = 1 - b2**t``, and whether the eigenbases refresh now."""

    b1: float
    b2: float
    beta_s: float
    eps: float
    c1: jax.Array
    c2: jax.Array
    refresh: jax.Array


def _eigenvectors(a: jax.Array) -> jax.Array:
    return jnp.linalg.eigh(a)[1]


@recorded
def scale_by_soap(
    b1: float = 0.95,
    b2: float = 0.95,
    shampoo_beta: float | None = None,
    eps: float = 1e-8,
    precondition_frequency: int = 10,
) -> optax.GradientTransformation:
    r"""SOAP's direction (Vyas et al. 2024, Algorithm 3), per matrix leaf :math:`G_t`:

    .. math:: G' = Q_L^\top G Q_R, \quad M_t = \mathrm{EMA}_{b_1}(G), \quad
              V_t = \mathrm{EMA}_{b_2}(G' \odot G'), \quad
              u_t = Q_L \frac{\hat{M'}_t}{\sqrt{\hat V_t} + \epsilon} Q_R^\top

    with :math:`M' = Q_L^\top M Q_R` and Adam's bias corrections; then
    :math:`L \leftarrow \beta_s L + (1-\beta_s) GG^\top`, :math:`R` alike (:math:`\beta_s` =
    ``shampoo_beta``, None: :math:`b_2`), and on steps :math:`1, 1+f, 1+2f, \dots`
    (:math:`f` = ``precondition_frequency``) :math:`Q_L, Q_R` become their eigenvectors (by
    ``eigh``: the box's exact eigenbasis, where the authors' code takes one QR step). The
    first step, with :math:`Q = I`, is Adam's.
    """
    _checks.beta("b1", b1)
    _checks.beta("b2", b2)
    beta_s = b2 if shampoo_beta is None else shampoo_beta
    _checks.beta("shampoo_beta", beta_s)
    _checks.non_negative("eps", eps)
    _checks.integer("precondition_frequency", precondition_frequency, low=1)

    def init_fn(params):
        def eye(p, side):
            return jnp.eye(p.shape[side] if jnp.ndim(p) == 2 else 1, dtype=p.dtype)

        zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731  (a buffer per field)
        side = lambda f, s: jax.tree.map(lambda p: f(eye(p, s)), params)  # noqa: E731
        return SoapState(
            zero_count(),
            zeros(),
            zeros(),
            side(jnp.zeros_like, 0),
            side(jnp.zeros_like, 1),
            side(lambda e: e, 0),
            side(lambda e: e, 1),
        )

    def update_fn(updates, state, params=None):
        del params
        _plain("scale_by_soap", updates)
        t = increment(state.count)
        refresh = (t - 1) % precondition_frequency == 0
        k = _LeafStep(b1, b2, beta_s, eps, 1 - b1**t, 1 - b2**t, refresh)
        fields = (updates, state.mu, state.nu, state.left, state.right, state.q_left, state.q_right)
        out = jax.tree.map(lambda *a: _soap_leaf(*a, k=k), *fields)
        pick = lambda i: jax.tree.map(lambda _, o: o[i], updates, out)  # noqa: E731
        return pick(0), SoapState(t, *(pick(i) for i in range(1, 7)))

    return optax.GradientTransformation(init_fn, update_fn)


def _soap_leaf(g, m, v, left, right, ql, qr, *, k: _LeafStep):
    """One leaf's SOAP step: Adam in the (Q_L, Q_R) basis for a matrix, plain Adam else."""
    b1, b2, beta_s, eps, c1, c2, refresh = k
    m = b1 * m + (1 - b1) * g
    if jnp.ndim(g) != 2:
        v = b2 * v + (1 - b2) * g * g
        return (m / c1) / (jnp.sqrt(v / c2) + eps), m, v, left, right, ql, qr
    _real_only("scale_by_soap", g)
    parts = [_whole_matrices(x, "matrix") for x in (g, m, v, left, right, ql, qr)]
    (g, m, v, left, right, ql, qr), specs = zip(*parts, strict=True)
    rotated = ql.T @ g @ qr
    v = b2 * v + (1 - b2) * rotated * rotated
    u = ql @ (((ql.T @ m @ qr) / c1) / (jnp.sqrt(v / c2) + eps)) @ qr.T
    left = beta_s * left + (1 - beta_s) * g @ g.T
    right = beta_s * right + (1 - beta_s) * g.T @ g
    ql, qr = (
        jax.lax.cond(refresh, _eigenvectors, lambda a, q=q: q, a)
        for a, q in ((left, ql), (right, qr))
    )
    return tuple(_split(x, s) for x, s in zip((u, m, v, left, right, ql, qr), specs, strict=True))


@recorded
def soap(
    learning_rate: LearningRate = 3e-3,
    b1: float = 0.95,
    b2: float = 0.95,
    shampoo_beta: float | None = None,
    eps: float = 1e-8,
    weight_decay: float = 0.01,
    precondition_frequency: int = 10,
    *,
    convention: str = "optax",
) -> GT:
    r"""SOAP (Vyas et al. 2024): AdamW in the eigenbasis of Shampoo's preconditioner, which
    it refreshes every ``precondition_frequency`` steps (see :func:`scale_by_soap`).

    .. math:: \theta_t = \theta_{t-1} - \eta\,\big(Q_L \tfrac{\hat{M'}_t}{\sqrt{\hat V_t}
              + \epsilon} Q_R^\top + \lambda \theta_{t-1}\big)

    Args:
      learning_rate: :math:`\eta`, a float or a schedule (3e-3, the authors' default).
      b1, b2: Adam's decays (0.95, 0.95).
      shampoo_beta: the decay of :math:`L, R` (None: :math:`b_2`).
      eps: beside the root.
      weight_decay: :math:`\lambda`, decoupled (0.01).
      precondition_frequency: :math:`f`, steps between eigenbasis refreshes (10).
      convention: neither optax nor torch.optim has SOAP; both values give the same
        numbers (the paper's Algorithm 3 with exact eigenvectors).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx, p = jn.soap(0.1, weight_decay=0.0), jnp.zeros((2, 2))
    >>> u, _ = tx.update(jnp.diag(jnp.array([4.0, -1.0])), tx.init(p), p)  # Q = I: Adam's step
    >>> jnp.round(jnp.diag(u), 4)
    Array([-0.1,  0.1], dtype=float32)
    """
    _checks.convention(convention)
    return chain(
        scale_by_soap(b1, b2, shampoo_beta, eps, precondition_frequency),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(learning_rate),
    )
