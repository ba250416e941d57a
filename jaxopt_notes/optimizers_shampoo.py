r"""Shampoo (Gupta, Koren & Singer 2018) with grafting (Agarwal et al. 2020).

A module beside :mod:`jaxopt_notes.modern` (at its ~400-line budget). optax has no Shampoo
(optax#1580), so the reference is the paper's Algorithm 1, written in NumPy in
tests/test_shampoo.py. The chain:

.. code-block:: text

    graft(magnitude: scale_by_sum_of_squares, direction: shampoo_preconditioner) -> lr

For a matrix gradient :math:`G_t` (:math:`m \times n`), :func:`shampoo_preconditioner` keeps
:math:`L_t = \epsilon I + \sum G G^\top` and :math:`R_t = \epsilon I + \sum G^\top G` and
steps along :math:`L_t^{-1/4} G_t R_t^{-1/4}`; :func:`graft` gives that direction the norm
of AdaGrad's step, per leaf, so the learning rate means what it means for AdaGrad. Leaves
that are not matrices pass through the preconditioner unchanged (their direction is the
gradient's, their size AdaGrad's). The inverse roots come from a symmetric eigensolver every
step: exact, :math:`O(m^3 + n^3)` per matrix, for small models and tests; large-scale Shampoo
refreshes them every few hundred steps.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import PartitionSpec as P

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.combine import chain
from jaxopt_notes.moments import abs_sq, scale_by_sum_of_squares
from jaxopt_notes.optimizers_muon import _spec, _whole_matrices
from jaxopt_notes.transforms import _plain, scale_by_learning_rate


def _inverse_root(a: jax.Array, p: int) -> jax.Array:
    """:math:`A^{-1/p}` of a symmetric positive definite matrix, by its eigendecomposition."""
    w, v = jnp.linalg.eigh(a)
    return (v * w ** (-1.0 / p)) @ v.T


def _real_only(link: str, g: jax.Array) -> None:
    """Refuses a complex matrix: the paper's statistics G G^T are real-matrix ones (a complex
    form needs G G^H and its own check against a reference, not written yet)."""
    if jnp.iscomplexobj(g):
        raise TypeError(f"`{link}` needs real matrices, got a {g.dtype} leaf of shape {g.shape}")


def _split(x: jax.Array, spec: tuple) -> jax.Array:
    return x if spec == _spec(x) else jax.sharding.reshard(x, P(*spec))


class ShampooState(NamedTuple):
    left: Any  # L_t per matrix leaf (a (1, 1) stub elsewhere)
    right: Any  # R_t


@recorded
def shampoo_preconditioner(eps: float = 1e-4) -> optax.GradientTransformation:
    r"""Shampoo's two-sided preconditioning of each matrix leaf (Gupta et al. 2018, Alg. 1):

    .. math:: L_t = L_{t-1} + G_t G_t^\top, \quad R_t = R_{t-1} + G_t^\top G_t, \quad
              u_t = L_t^{-1/4}\, G_t\, R_t^{-1/4}, \qquad L_0 = R_0 = \epsilon I

    The Kronecker product :math:`L^{1/4} \otimes R^{1/4}` approximates full-matrix AdaGrad's
    :math:`(\sum g g^\top)^{1/2}` at the cost of two small matrices. Other leaves pass through.
    """
    _checks.positive("eps", eps)

    def init_fn(params):
        def eye(p, side):
            n = p.shape[side] if jnp.ndim(p) == 2 else 1
            return eps * jnp.eye(n, dtype=p.dtype)

        return ShampooState(
            jax.tree.map(lambda p: eye(p, 0), params), jax.tree.map(lambda p: eye(p, 1), params)
        )

    def leaf(g, left, right):
        if jnp.ndim(g) != 2:
            return g, left, right
        _real_only("shampoo_preconditioner", g)
        # the products and the eigensolver need whole matrices (a split state, as under
        # jn.zero1, or a split gradient is gathered here, and split back alike after)
        (g, spec), (left, l_spec), (right, r_spec) = (
            _whole_matrices(x, "matrix") for x in (g, left, right)
        )
        left, right = left + g @ g.T, right + g.T @ g
        u = _inverse_root(left, 4) @ g @ _inverse_root(right, 4)
        return _split(u, spec), _split(left, l_spec), _split(right, r_spec)

    def update_fn(updates, state, params=None):
        del params
        _plain("shampoo_preconditioner", updates)
        out = jax.tree.map(leaf, updates, state.left, state.right)
        pick = lambda i: jax.tree.map(lambda _, o: o[i], updates, out)  # noqa: E731
        return pick(0), ShampooState(pick(1), pick(2))

    return optax.GradientTransformation(init_fn, update_fn)


class GraftState(NamedTuple):
    magnitude: Any
    direction: Any


@recorded
def graft(
    magnitude: optax.GradientTransformation, direction: optax.GradientTransformation
) -> optax.GradientTransformationExtraArgs:
    r"""Layer-wise grafting (Agarwal et al. 2020, "Disentangling adaptive gradient methods
    from learning rates"): both transforms see the same gradient; each leaf steps along
    ``direction``'s update with the norm of ``magnitude``'s,
    :math:`u = d \,\|m\|_F / \|d\|_F` (0 where :math:`d` is 0)."""
    _checks.transform("magnitude", magnitude)
    _checks.transform("direction", direction)
    mag, dirn = optax.with_extra_args_support(magnitude), optax.with_extra_args_support(direction)

    def init_fn(params):
        return GraftState(mag.init(params), dirn.init(params))

    def norm(x):
        return jnp.sqrt(jnp.sum(abs_sq(x)))

    def combine(m, d):
        nd = norm(d)
        return jnp.where(nd > 0, d * (norm(m) / jnp.where(nd > 0, nd, 1)).astype(d.dtype), 0)

    def update_fn(updates, state, params=None, **extra):
        m, m_state = mag.update(updates, state.magnitude, params, **extra)
        d, d_state = dirn.update(updates, state.direction, params, **extra)
        return jax.tree.map(combine, m, d), GraftState(m_state, d_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@recorded
def shampoo(
    learning_rate: LearningRate,
    eps: float = 1e-4,
    graft_eps: float = 1e-7,
    *,
    convention: str = "optax",
) -> GT:
    r"""Shampoo with AdaGrad grafting: the direction of :func:`shampoo_preconditioner`, the
    per-leaf size of AdaGrad's step (optax's AdaGrad, :math:`G_0 = 0.1`, :math:`\epsilon`
    under the root):

    .. math:: \theta_t = \theta_{t-1} - \eta\, \frac{\|A_t\|_F}{\|P_t\|_F} P_t, \quad
              P_t = L_t^{-1/4} G_t R_t^{-1/4}, \quad A_t = \frac{G_t}{\sqrt{0.1 + \sum g^2
              + \epsilon_g}}

    Args:
      learning_rate: :math:`\eta`, a float or a schedule: AdaGrad's (grafting makes it so).
      eps: :math:`\epsilon` of :math:`L_0 = R_0 = \epsilon I`.
      graft_eps: AdaGrad's :math:`\epsilon_g`.
      convention: neither optax nor torch.optim has Shampoo; both values give the same
        numbers (the paper's Algorithm 1, grafted).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx, p = jn.shampoo(0.1, eps=1e-12), jnp.zeros((2, 2))
    >>> u, _ = tx.update(jnp.diag(jnp.array([4.0, 1.0])), tx.init(p), p)
    >>> jnp.round(jnp.diag(u), 3)  # a 4:1 gradient, equal steps (L^-1/4 G R^-1/4 = I)
    Array([-0.098, -0.098], dtype=float32)
    """
    _checks.convention(convention)
    adagrad = scale_by_sum_of_squares(graft_eps, initial_accumulator_value=0.1)
    return chain(graft(adagrad, shampoo_preconditioner(eps)), scale_by_learning_rate(learning_rate))
