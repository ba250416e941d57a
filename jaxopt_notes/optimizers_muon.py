r"""Muon (Jordan et al. 2024): momentum, orthogonalised by a Newton-Schulz iteration.

A module of its own, beside :mod:`jaxopt_notes.modern`, because that home of the aliases is
at its ~400-line budget and Muon brings three links and a router of its own:

.. code-block:: text

    matrices:    muon_momentum -> newton_schulz -> scale_by_shape -> add_decayed_weights --.
    the others:  adam_direction(nesterov) -> add_decayed_weights ------------------------+-> lr

:func:`muon_momentum` is the momentum (optax's bias-corrected EMA or torch's buffer),
:func:`newton_schulz` replaces each matrix :math:`M = U S V^\top` by about :math:`U V^\top`,
:func:`scale_by_shape` evens out the step's RMS across shapes. Leaves that are not matrices
(biases, norms; conv kernels unless asked) go to Adam through ``optax.partition``, as in
``optax.contrib.muon``, and one learning-rate link closes both branches.

Which leaves are matrices: those of rank 2; with ``conv_as_matrix=True`` also rank-4 conv
kernels, Flax's ``(H, W, C_in, C_out)``, orthogonalised as the ``(H W C_in, C_out)`` matrix
(optax's ``MuonDimensionNumbers((0, 1, 2), 3)``: optax#1271); with ``stacked=True`` also rank-3
leaves, a stack of same-shape matrices along axis 0 (scanned layers), each orthogonalised
alone by one batched iteration (optax's ``MuonDimensionNumbers(1, 2)``). Batched matrix
products keep the stack axis free of collectives when it is sharded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded, resolved
from jaxopt_notes._types import GT, LearningRate
from jaxopt_notes.adam_family import adam_direction
from jaxopt_notes.combine import chain, increment, zero_count
from jaxopt_notes.moments import abs_sq
from jaxopt_notes.transforms import _plain, add_decayed_weights, scale_by_learning_rate

NS_COEFFS = (3.4445, -4.7750, 2.0315)  # Jordan's quintic: steepest slope at 0, S' in ~(0.7, 1.2)


# ------------------------------------------------------------------- matrices in a tree
def _matrix_kind(x: Any, conv_as_matrix: bool, stacked: bool) -> str | None:
    """How a leaf is seen as matrices: "matrix", "conv", "stack", or None (not a matrix)."""
    ndim = jnp.ndim(x)
    if ndim == 2:
        return "matrix"
    if ndim == 4 and conv_as_matrix:
        return "conv"
    if ndim == 3 and stacked:
        return "stack"
    return None


def _stack_shape(shape: tuple[int, ...], kind: str) -> tuple[int, int, int]:
    """A leaf's shape as a (batch, rows, cols) stack of matrices; rows: the reduction axis."""
    if kind == "matrix":
        return (1, *shape)
    if kind == "conv":
        return (1, math.prod(shape[:-1]), shape[-1])
    return tuple(shape)


def _spec(x: jax.Array) -> tuple:
    """The explicit sharding spec of ``x``, one entry per axis (all None when unsharded)."""
    spec = tuple(getattr(jax.typeof(x).sharding, "spec", ()))
    return spec + (None,) * (x.ndim - len(spec))


def _whole_matrices(x: jax.Array, kind: str) -> tuple[jax.Array, tuple]:
    """``x`` with its matrix axes gathered (the iteration needs each matrix whole; a stack
    keeps its axis 0 split), and its spec before, to split the result back alike."""
    spec = _spec(x)
    keep = spec[:1] if kind == "stack" else ()
    whole = keep + (None,) * (x.ndim - len(keep))
    if spec == whole:
        return x, spec
    return jax.sharding.reshard(x, jax.sharding.PartitionSpec(*whole)), spec


def _check_kind(link: str, x: Any, kind: str | None) -> str:
    if kind is None:
        raise ValueError(
            f"`{link}` needs matrices (rank 2; rank 4 with conv_as_matrix, rank 3 with "
            f"stacked), got a leaf of shape {jnp.shape(x)}: route it elsewhere (jn.muon does)"
        )
    return kind


def _coeffs(ns_coeffs: Any) -> tuple[float, float, float]:
    if isinstance(ns_coeffs, str) or len(tuple(ns_coeffs)) != 3:
        raise ValueError(f"`ns_coeffs` must be three numbers (a, b, c), got {ns_coeffs!r}")
    for name, c in zip(("a", "b", "c"), ns_coeffs, strict=True):
        _checks.real(f"ns_coeffs {name}", c)
    return tuple(ns_coeffs)


# ------------------------------------------------------------------------------ the links
class MuonMomentumState(NamedTuple):
    count: jax.Array  # steps taken, int32
    mu: Any


@recorded
def muon_momentum(
    beta: float = 0.95,
    nesterov: bool = True,
    *,
    dtype: Any = None,
    convention: str = "optax",
) -> optax.GradientTransformation:
    r"""Muon's momentum, an EMA :math:`m_t = \beta m_{t-1} + (1-\beta) g_t`, and the matrix
    handed to the orthogonalisation:

    .. math:: \text{optax: } \frac{\beta m_t}{1-\beta^{t+1}} + \frac{(1-\beta) g_t}
              {1-\beta^t} \;\text{(nesterov)}, \;\; \frac{m_t}{1-\beta^t}; \qquad
              \text{pytorch: } g_t + \beta (m_t - g_t), \;\; m_t

    optax bias-corrects (Nadam's look-ahead with ``nesterov``); torch.optim.Muon does not and
    writes its EMA as ``lerp`` (:math:`m + (1-\beta)(g - m)`, the same sum rounded its way).
    The orthogonalisation divides by a norm, so the two differ only through its ``eps``.
    ``dtype`` stores :math:`m` in that type.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.muon_momentum(0.5, nesterov=False)
    >>> tx.update(jnp.ones((1, 2)), tx.init(jnp.zeros((1, 2))))[0]  # 0.5 g / (1 - 0.5)
    Array([[1., 1.]], dtype=float32)
    """
    _checks.beta("beta", beta)
    _checks.flag("nesterov", nesterov)
    pytorch = _checks.convention(convention) == "pytorch"
    dtype = _checks.dtype("dtype", dtype)

    def init_fn(params):
        return MuonMomentumState(
            zero_count(), jax.tree.map(lambda p: jnp.zeros_like(p, dtype), params)
        )

    def ema(g, m):
        m = m.astype(g.dtype)
        return m + (1 - beta) * (g - m) if pytorch else (1 - beta) * g + beta * m

    def look(g, m, t):
        if pytorch:
            return g + beta * (m - g) if nesterov else m
        if nesterov:
            return beta * (m / (1 - beta ** increment(t))) + (1 - beta) * (g / (1 - beta**t))
        return m / (1 - beta**t)

    def update_fn(updates, state, params=None):
        del params
        _plain("muon_momentum", updates)
        t = increment(state.count)
        mu = jax.tree.map(ema, updates, state.mu)
        out = jax.tree.map(lambda g, m: look(g, m, t).astype(g.dtype), updates, mu)
        stored = mu if dtype is None else jax.tree.map(lambda m: m.astype(dtype), mu)
        return out, MuonMomentumState(t, stored)

    return optax.GradientTransformation(init_fn, update_fn)


def orthogonalize(
    x: jax.Array, ns_steps: Any, coeffs: Sequence[float], eps: Any, *, pytorch: bool = False
) -> jax.Array:
    r"""``ns_steps`` Newton-Schulz steps on each matrix of a (batch, rows, cols) stack:
    :math:`X \leftarrow aX + (bA + cA^2)X`, :math:`A = XX^H`, from :math:`X/\|X\|_F` (wide
    side first: a tall matrix is transposed, iterated, transposed back). The norm guard is
    :math:`\|X\|_F + \epsilon` (optax) or :math:`\max(\|X\|_F, \epsilon)` (torch)."""
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = jnp.swapaxes(x, -1, -2)
    norm = jnp.sqrt(jnp.sum(abs_sq(x), axis=(-2, -1), keepdims=True)).astype(x.dtype)
    x = x / (jnp.maximum(norm, eps) if pytorch else norm + eps)
    a, b, c = (jnp.asarray(k, x.dtype) for k in coeffs)

    def step(_, x):
        gram = x @ jnp.swapaxes(x, -1, -2).conj()
        poly = b * gram + c * (gram @ gram) if pytorch else b * gram + c * gram @ gram
        return a * x + poly @ x

    x = jax.lax.fori_loop(0, ns_steps, step, x)
    return jnp.swapaxes(x, -1, -2) if tall else x


@recorded
def newton_schulz(
    ns_steps: int = 5,
    ns_coeffs: Sequence[float] = NS_COEFFS,
    eps: float = 1e-8,
    *,
    conv_as_matrix: bool = False,
    stacked: bool = False,
    ns_dtype: Any = None,
    convention: str = "optax",
) -> optax.GradientTransformation:
    r"""Orthogonalises every matrix of the updates: :math:`M = USV^\top \mapsto US'V^\top`,
    :math:`S'` near 1 (see :func:`orthogonalize`; Jordan's coefficients push small singular
    values up fast and leave :math:`S'` in about (0.7, 1.2), which trains as well as
    :math:`UV^\top`).

    Every leaf must be a matrix as the module docstring says (``conv_as_matrix``,
    ``stacked``). ``ns_dtype`` runs the iteration in that type (torch.optim.Muon runs it in
    bfloat16; None: the update's own dtype). ``convention`` picks the norm guard.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.newton_schulz(ns_steps=30, ns_coeffs=(1.5, -0.5, 0.0))  # the cubic converges
    >>> u, _ = tx.update(jnp.array([[3.0, 0.0], [0.0, 0.5]]), ())
    >>> jnp.round(u, 4)
    Array([[1., 0.],
           [0., 1.]], dtype=float32)
    """
    _checks.integer("ns_steps", ns_steps)
    coeffs = _coeffs(ns_coeffs)
    _checks.non_negative("eps", eps)
    _checks.flag("conv_as_matrix", conv_as_matrix)
    _checks.flag("stacked", stacked)
    ns_dtype = _checks.dtype("ns_dtype", ns_dtype)
    pytorch = _checks.convention(convention) == "pytorch"

    def leaf(u):
        kind = _check_kind("newton_schulz", u, _matrix_kind(u, conv_as_matrix, stacked))
        whole, spec = _whole_matrices(u, kind)
        x = whole.reshape(_stack_shape(u.shape, kind)).astype(ns_dtype or u.dtype)
        out = orthogonalize(x, ns_steps, coeffs, eps, pytorch=pytorch)
        out = out.reshape(u.shape).astype(u.dtype)
        return (
            out
            if spec == _spec(out)
            else jax.sharding.reshard(out, jax.sharding.PartitionSpec(*spec))
        )

    def update_fn(updates, state, params=None):
        del params
        _plain("newton_schulz", updates)
        return jax.tree.map(leaf, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


@recorded
def scale_by_shape(
    consistent_rms: float | None = None,
    *,
    conv_as_matrix: bool = False,
    stacked: bool = False,
    convention: str = "optax",
) -> optax.GradientTransformation:
    r"""Multiplies each orthogonalised matrix (``rows x cols`` as :func:`newton_schulz` sees
    it) by a factor of its shape, so steps of different shapes have a like RMS:

    .. math:: \text{optax: } \sqrt{\max(1, \tfrac{cols}{rows})}, \qquad
              \text{pytorch: } \sqrt{\max(1, \tfrac{rows}{cols})}

    Both are "fan-out over fan-in": JAX's dense kernels are (in, out), torch's weights (out,
    in). With ``consistent_rms`` :math:`r` (Liu et al. 2025; torch's ``"match_rms_adamw"`` is
    :math:`r = 0.2`) the factor is :math:`r\sqrt{\max(rows, cols)}` under both conventions.
    """
    if consistent_rms is not None:
        _checks.positive("consistent_rms", consistent_rms)
    pytorch = _checks.convention(convention) == "pytorch"

    def factor(u) -> float:
        kind = _check_kind("scale_by_shape", u, _matrix_kind(u, conv_as_matrix, stacked))
        rows, cols = _stack_shape(u.shape, kind)[1:]
        if consistent_rms is not None:
            return consistent_rms * math.sqrt(max(rows, cols))
        return math.sqrt(max(1.0, rows / cols if pytorch else cols / rows))

    def update_fn(updates, state, params=None):
        del params
        _plain("scale_by_shape", updates)
        return jax.tree.map(lambda u: jnp.asarray(factor(u), u.dtype) * u, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


# ------------------------------------------------------------------------- the optimizer
def matrix_labels(conv_as_matrix: bool = False, stacked: bool = False) -> Callable[[Any], Any]:
    """``params -> tree of "muon" / "adam"``: which leaves :func:`muon` orthogonalises."""

    def labels(params):
        kind = lambda x: _matrix_kind(x, conv_as_matrix, stacked)  # noqa: E731
        return jax.tree.map(lambda x: "adam" if kind(x) is None else "muon", params)

    return labels


@recorded
def muon(
    learning_rate: LearningRate,
    ns_coeffs: Sequence[float] = NS_COEFFS,
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float | None = None,
    weight_decay: float | None = None,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: float = 0.0,
    adam_learning_rate: LearningRate | None = None,
    consistent_rms: float | None = None,
    conv_as_matrix: bool = False,
    stacked: bool = False,
    ns_dtype: Any = None,
    convention: str = "optax",
) -> GT:
    r"""Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers"): steepest descent
    under the spectral norm, approximately: each weight matrix steps along the orthogonalised
    momentum, every singular direction at about the same rate.

    .. math:: O_t = \mathrm{NS}_k(\tilde m_t) \approx U V^\top \;(\tilde m_t = USV^\top), \quad
              \theta_t = \theta_{t-1} - \eta\,\big(s\, O_t + \lambda\, \theta_{t-1}\big)

    with :math:`\tilde m_t` from :func:`muon_momentum`, :math:`\mathrm{NS}_k` from
    :func:`newton_schulz`, :math:`s` from :func:`scale_by_shape`. Leaves that are not matrices
    (see the module docstring) take AdamW steps (Nadam's with ``nesterov``, as optax does).

    Args:
      learning_rate: :math:`\eta`, a float or a schedule (both branches).
      ns_coeffs: the quintic's :math:`(a, b, c)`.
      ns_steps: :math:`k`, the Newton-Schulz steps (5).
      beta: the momentum's decay (0.95).
      eps: the norm guard before the iteration, also Adam's :math:`\epsilon` (None: 1e-8
        under optax, torch's 1e-7 under pytorch).
      weight_decay: :math:`\lambda` of the matrices, decoupled (None: 0 under optax, torch's
        0.1 under pytorch).
      weight_decay_mask: the matrices that decay, as in :func:`~jaxopt_notes.add_decayed_weights`.
      mu_dtype: the dtype both momenta are stored in.
      nesterov: the look-ahead momentum (both branches under optax; the matrices only under
        pytorch).
      adam_b1, adam_b2, adam_eps_root, adam_weight_decay: the Adam branch's.
      adam_learning_rate: its own rate (None: ``learning_rate``, one rate link for both; when
        given each branch has its own, and ``current_learning_rate`` asks for a branch).
      consistent_rms: see :func:`scale_by_shape`.
      conv_as_matrix, stacked: which leaves of rank 4 / rank 3 are matrices (module docstring).
      ns_dtype: the dtype the iteration runs in (torch's is bfloat16; None: the update's).
      convention: ``"optax"`` (``optax.contrib.muon``) or ``"pytorch"``
        (``torch.optim.Muon`` on the matrices, ``torch.optim.AdamW`` on the rest). They
        differ in: the momentum (torch: no bias correction, see :func:`muon_momentum`), the
        norm guard (:math:`\max(\|X\|, \epsilon)` vs :math:`\|X\| + \epsilon`), the shape
        factor (rows/cols vs cols/rows, see :func:`scale_by_shape`), the defaults of ``eps``
        and ``weight_decay``, and the Adam branch (torch leaves it to the user: here AdamW
        without look-ahead). torch also casts to bfloat16 for the iteration; ours runs in the
        update's dtype unless ``ns_dtype`` says otherwise (``jnp.bfloat16`` rounds in kind,
        not bit for bit: torch's fused ``addmm`` rounds other intermediates than XLA; on a
        6x4 step float32 here was 1-2% from torch's bfloat16, bfloat16 here 5-13%).

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.muon(0.1)
    >>> params = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(2)}
    >>> g = {"w": jnp.diag(jnp.array([4.0, 1.0])), "b": jnp.ones(2)}
    >>> u, _ = tx.update(g, tx.init(params), params)
    >>> jnp.round(jnp.diag(u["w"]), 3)  # a 4:1 gradient, two like steps
    Array([-0.074, -0.074], dtype=float32)
    """
    pytorch = _checks.convention(convention) == "pytorch"
    eps = _checks.by_convention(eps, convention, optax=1e-8, pytorch=1e-7)
    weight_decay = _checks.by_convention(weight_decay, convention, optax=0.0, pytorch=0.1)
    own_rates = adam_learning_rate is not None
    shape = dict(conv_as_matrix=conv_as_matrix, stacked=stacked, convention=convention)
    matrices = [
        muon_momentum(
            beta, nesterov, dtype=_checks.dtype("mu_dtype", mu_dtype), convention=convention
        ),
        newton_schulz(ns_steps, ns_coeffs, eps, ns_dtype=ns_dtype, **shape),
        scale_by_shape(consistent_rms, **shape),
        add_decayed_weights(weight_decay, weight_decay_mask),
    ]
    others = [
        *adam_direction(
            adam_b1,
            adam_b2,
            eps,
            adam_eps_root,
            nesterov=nesterov and not pytorch,
            mu_dtype=mu_dtype,
        ),
        add_decayed_weights(adam_weight_decay),
    ]
    if own_rates:
        matrices.append(scale_by_learning_rate(learning_rate))
        others.append(scale_by_learning_rate(adam_learning_rate))
    routed = optax.partition(
        {"muon": chain(*matrices), "adam": chain(*others)},
        matrix_labels(conv_as_matrix, stacked),
    )
    tx = routed if own_rates else chain(routed, scale_by_learning_rate(learning_rate))
    return resolved(tx, eps=eps, weight_decay=weight_decay)
