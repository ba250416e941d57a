"""More curvature: the Gauss-Newton matrix, the Hessian diagonal, per-layer spectra.

The generalised Gauss-Newton ``G = J^T H_out J`` (``J`` the Jacobian of the model's outputs,
``H_out`` the Hessian of the loss in the outputs) drops the second derivatives of the model.
With softmax cross-entropy or MSE ``H_out`` is PSD, so ``G`` is; ``H - G`` holds all the
negative curvature (for cross-entropy, ``G`` is also the Fisher matrix).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._types import PyTree
from jaxopt_notes.hessian import _core as core
from jaxopt_notes.hessian.spectrum import eigenvalues


class GaussNewton:
    """``output_loss(model_fn(params))`` whose curvature is the Gauss-Newton matrix.

    Pass it wherever a tool takes ``loss_fn``: :func:`~jaxopt_notes.hessian.eigenvalues`,
    ``trace``, ``spectral_density``, ``hvp`` then work on ``G``. Keep one object: its two
    functions key the compiled code.

    >>> ggn = GaussNewton(lambda w: jnp.tanh(w), lambda out: 0.5 * jnp.sum(out**2))
    >>> ggn_vp(ggn, jnp.zeros(2), jnp.ones(2))  # J = I at 0: G = H_out = I
    Array([1., 1.], dtype=float32)
    """

    def __init__(self, model_fn: Callable[[PyTree], Any], output_loss: Callable[[Any], jax.Array]):
        self.model_fn = _checks.function("model_fn", model_fn)
        self.output_loss = _checks.function("output_loss", output_loss)

    def _hessian_spec(self, mask: tuple[bool, ...]) -> tuple[core.Spec, Any]:
        return core.Spec(self.model_fn, mask, "ggn", self.output_loss), None

    def __call__(self, params: PyTree) -> jax.Array:
        return self.output_loss(self.model_fn(params))


def ggn_vp(ggn: GaussNewton, params: PyTree, v: PyTree) -> PyTree:
    """The Gauss-Newton product ``G v`` (pytree like params)."""
    spec, data = core.problem(ggn, params, None)
    flat_v = core.flat_view(v, spec.mask)[0]
    return core.embedder(params, spec.mask)(core.Operator(spec, params, data)(flat_v[None])[0])


class Diagonal(NamedTuple):
    """The Hessian diagonal as a pytree like params (zeros outside ``wrt``)."""

    diagonal: PyTree
    std_error: PyTree | None  # per entry, for the estimate; None when exact
    exact: bool
    num_hvps: int


def diagonal(
    loss_fn: core.LossFn,
    params: PyTree,
    key: jax.Array | None = None,
    *,
    num_samples: int | None = None,
    block_size: int = 64,
    wrt: core.Wrt = None,
    loop: str = "auto",
) -> Diagonal:
    """``diag(H)``: exact (products with unit vectors, ``n`` HVPs) when ``num_samples`` is None
    and ``n <= DENSE_MAX``; else Hutchinson's ``E[z * Hz]`` over ``num_samples`` (default 64)
    Rademacher probes (Bekas et al. 2007), with a standard error per entry.

    >>> diagonal(lambda p: p[0] ** 2 + 3 * p[0] * p[1] + 2 * p[1] ** 2, jnp.zeros(2)).diagonal
    Array([2., 4.], dtype=float32)
    """
    _checks.integer("block_size", block_size, low=1)
    spec, data = core.problem(loss_fn, params, wrt)
    core.check_finite_loss(spec, params, data, "a diagonal")
    op = core.Operator(spec, params, data, loop)
    embed = core.embedder(params, spec.mask)
    if num_samples is None and op.size <= core.DENSE_MAX:
        eye = jnp.eye(op.size, dtype=op.dtype)
        d = jnp.concatenate(
            [
                jnp.diagonal(op(eye[i : i + block_size]), offset=i)
                for i in range(0, op.size, block_size)
            ]
        )
        core.check_finite_values(d, "the diagonal")
        return Diagonal(embed(d), None, True, op.size)
    num_samples = 64 if num_samples is None else num_samples
    _checks.integer("num_samples", num_samples, low=2)
    keys = jax.random.split(jax.random.PRNGKey(0) if key is None else key, num_samples)
    parts = []
    for start in range(0, num_samples, block_size):
        z = jax.vmap(lambda k: jax.random.rademacher(k, (op.size,), op.dtype))(
            keys[start : start + block_size]
        )
        parts.append(z * op(z))
    samples = jnp.concatenate(parts)
    core.check_finite_values(samples, "the diagonal's probe values")
    se = jnp.std(samples, axis=0, ddof=1) / np.sqrt(num_samples)
    return Diagonal(embed(jnp.mean(samples, axis=0)), embed(se), False, num_samples)


class LayerSpectrum(NamedTuple):
    layer: str
    size: int
    largest: float
    smallest: float
    converged: bool
    num_hvps: int


def layers(params: PyTree) -> list[str]:
    """The layer names of ``params``: leaf paths without their last part (``conv1/kernel`` and
    an ``nnx.State``'s ``conv1/kernel/value`` -> ``conv1``), in order of first appearance."""
    paths = [p.removesuffix("/value") for p in core.leaf_paths(params)]  # nnx.State leaves
    names = [p.rsplit("/", 1)[0] if "/" in p else p for p in paths]
    return list(dict.fromkeys(names))


def layer_spectra(
    loss_fn: core.LossFn,
    params: PyTree,
    *,
    groups: Sequence[str] | None = None,
    key: jax.Array | None = None,
    **kwargs,
) -> list[LayerSpectrum]:
    """The extreme eigenvalues of each layer's diagonal block of the Hessian (``wrt=`` layer).

    ``groups`` are path prefixes (default: :func:`layers`); ``kwargs`` go to ``eigenvalues``.
    """
    rows = []
    for name in layers(params) if groups is None else groups:
        eig = eigenvalues(loss_fn, params, k=1, which="both", key=key, wrt=name, **kwargs)
        vals = np.asarray(eig.values, np.float64)
        rows.append(
            LayerSpectrum(
                name,
                eig.size,
                float(vals[0]),
                float(vals[-1]),
                bool(np.all(eig.converged)),
                eig.num_hvps,
            )
        )
    return rows


def layer_table(rows: Sequence[LayerSpectrum]) -> str:
    """A Markdown table of :func:`layer_spectra`'s rows."""
    lines = ["| layer | params | largest | smallest | converged | HVPs |", "|---" * 6 + "|"]
    lines += [
        f"| {r.layer} | {r.size} | {r.largest:.4g} | {r.smallest:.4g} | {r.converged} | "
        f"{r.num_hvps} |"
        for r in rows
    ]
    return "\n".join(lines)
