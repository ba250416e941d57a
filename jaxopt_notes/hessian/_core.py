"""The machinery under :mod:`jaxopt_notes.hessian`: flattening, the curvature operator, checks.

A *problem* is a static, hashable :class:`Spec` (the loss function, the ``wrt`` selection and
what kind of curvature: the Hessian of a loss, of a mean loss over a data set, or a Gauss-Newton
matrix) plus traced operands (``params`` and, for a data set, its arrays). Kernels are jitted
with the spec static and the operands traced: new params of the same shapes reuse the compiled
code.

XLA:CPU runs an HVP several times slower as the body of a ``while``/``scan`` loop than as its
own jitted call (measured on a conv LeNet; bench_results/hessian/). So the solvers have two
loops: ``"host"`` drives a jitted step from Python (CPU), ``"device"`` runs one compiled
``while_loop`` without host round trips (GPU/TPU). ``loop="auto"`` picks by backend.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxopt_notes import _checks
from jaxopt_notes._types import PyTree

LossFn = Callable[[PyTree], jax.Array]
Wrt = str | Callable[[str, jax.Array], bool] | None
DENSE_MAX = 2048  # method="auto" takes a dense eigh up to this many parameters
LOOPS = ("auto", "host", "device")


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def leaf_paths(params: PyTree) -> list[str]:
    """The ``/``-joined path of every leaf, the names ``wrt`` matches against.

    >>> leaf_paths({"dense": {"w": 1.0, "b": 0.0}, "out": [2.0]})
    ['dense/b', 'dense/w', 'out/0']
    """
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return ["/".join(_key_name(k) for k in path) for path, _ in flat]


def selection(params: PyTree, wrt: Wrt) -> tuple[bool, ...]:
    leaves, paths = jax.tree.leaves(params), leaf_paths(params)
    if not leaves:
        raise ValueError("`params` must hold at least one array, got an empty pytree")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise TypeError(
                f"`params` leaves must be float arrays, got dtype {jnp.result_type(leaf)}"
            )
    if wrt is None:
        return (True,) * len(leaves)
    if isinstance(wrt, str):
        mask = tuple(p == wrt or p.startswith(wrt.rstrip("/") + "/") for p in paths)
    elif callable(wrt):
        mask = tuple(bool(wrt(p, leaf)) for p, leaf in zip(paths, leaves, strict=True))
    else:
        raise TypeError(f"`wrt` must be None, a path prefix or a predicate, got {wrt!r}")
    if not any(mask):
        raise ValueError(f"`wrt` must select at least one parameter, got {wrt!r}; paths: {paths}")
    return mask


def num_selected(params: PyTree, mask: tuple[bool, ...]) -> int:
    leaves = jax.tree.leaves(params)
    return int(sum(jnp.size(leaf) for leaf, m in zip(leaves, mask, strict=True) if m))


def flat_problem(loss_fn: LossFn, params: PyTree, mask: tuple[bool, ...]):
    """The selected leaves as one vector ``x``, ``f(x)`` the loss, ``embed`` back to a pytree."""
    x, rebuild = flat_view(params, mask)
    return x, lambda vec: loss_fn(rebuild(vec)), embedder(params, mask)


def flat_view(params: PyTree, mask: tuple[bool, ...]):
    """``x`` and ``rebuild(x) -> params`` with the unselected leaves as they are."""
    leaves, treedef = jax.tree.flatten(params)
    x, unravel = ravel_pytree([leaf for leaf, m in zip(leaves, mask, strict=True) if m])

    def rebuild(vec):
        it = iter(unravel(vec))
        return treedef.unflatten([next(it) if m else v for v, m in zip(leaves, mask, strict=True)])

    return x, rebuild


def embedder(params: PyTree, mask: tuple[bool, ...]) -> Callable[[jax.Array], PyTree]:
    """Flat vector over the selected leaves -> pytree like params, zeros elsewhere."""
    leaves, treedef = jax.tree.flatten(params)

    def embed(vec):  # the unravel is built on use: most results never embed a vector
        unravel = ravel_pytree([leaf for leaf, m in zip(leaves, mask, strict=True) if m])[1]
        it = iter(unravel(vec))
        out = [next(it) if m else jnp.zeros_like(v) for v, m in zip(leaves, mask, strict=True)]
        return treedef.unflatten(out)

    return embed


def _reverse_hvp(f: Callable, x: PyTree, v: PyTree) -> PyTree:
    def grad_dot_v(y):
        pairs = zip(jax.tree.leaves(jax.grad(f)(y)), jax.tree.leaves(v), strict=True)
        return sum(jnp.vdot(a, b) for a, b in pairs)

    return jax.grad(grad_dot_v)(x)


def hvp_flat(f: Callable, x: PyTree, v: PyTree, forward: bool = True) -> PyTree:
    """``H v`` by forward-over-reverse, or reverse-over-reverse (``forward=False``: where JAX
    cannot go forward, see :func:`forward_mode`)."""
    return jax.jvp(jax.grad(f), (x,), (v,))[1] if forward else _reverse_hvp(f, x, v)


def linear_hvp(f: Callable, x: jax.Array, forward: bool = True) -> Callable:
    """``v -> H v`` at ``x``, the forward pass linearised once (``jax.linearize``) so that
    several products at one point share it; reverse-over-reverse when not ``forward``."""
    if forward:
        return jax.linearize(jax.grad(f), x)[1]
    return lambda v: _reverse_hvp(f, x, v)


def hessian_flat(f: Callable, x: jax.Array, forward: bool = True) -> jax.Array:
    """The dense Hessian by ``jacfwd(grad)``, or ``jacrev(grad)`` when not ``forward``."""
    return (jax.jacfwd if forward else jax.jacrev)(jax.grad(f))(x)


_FORWARD: collections.OrderedDict = collections.OrderedDict()
_FORWARD_MAX = 256  # problems remembered: each entry keeps its loss function (and data) alive


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), tree)


def forward_mode(key: Any, fn: Callable, *args: Any) -> bool:
    """Whether ``fn(*args)``, built with forward mode, lowers on the default backend; cached
    under ``key``. An op without a forward rule (the ``custom_vjp`` CPU kernels of
    ``conv.conv_nhwc``) fails only when lowered for its platform, so tracing cannot tell;
    one lowering (no XLA compile) per problem and shape does."""
    key = (key, jax.default_backend(), jax.tree.structure(args), *jax.tree.leaves(_abstract(args)))
    if key not in _FORWARD:
        try:
            jax.jit(fn).lower(*_abstract(args))
            _FORWARD[key] = True
        except TypeError:  # "can't apply forward-mode autodiff (jvp) to a custom_vjp function"
            _FORWARD[key] = False
        if len(_FORWARD) > _FORWARD_MAX:
            _FORWARD.popitem(last=False)
    _FORWARD.move_to_end(key)
    return _FORWARD[key]


def eps(dtype: Any) -> float:
    return float(jnp.finfo(dtype).eps)


# ---------------------------------------------------------------------- the curvature operator
@dataclasses.dataclass(frozen=True)
class Spec:
    """What to differentiate; static (hashable) so kernels compile once per problem."""

    fn: Callable  # loss_fn(params); batch_loss_fn(params, batch); or model_fn(params) for "ggn"
    mask: tuple[bool, ...]
    kind: str = "loss"  # "loss" | "dataset" | "ggn"
    output_loss: Callable | None = None  # "ggn": the loss of the model's outputs
    forward: bool = True  # products forward-over-reverse (False: reverse-over-reverse)


def value_fn(spec: Spec, params: PyTree, data: Any) -> Callable[[jax.Array], jax.Array]:
    """``f(x)``: the (mean) loss as a function of the flat selected params."""
    rebuild = flat_view(params, spec.mask)[1]
    if spec.kind == "ggn":
        return lambda x: spec.output_loss(spec.fn(rebuild(x)))
    if spec.kind == "dataset":
        return lambda x: _dataset_sum(lambda b: spec.fn(rebuild(x), b), data)
    return lambda x: spec.fn(rebuild(x))


def matvec_fn(spec: Spec, params: PyTree, data: Any) -> Callable[[jax.Array], jax.Array]:
    """``v -> C v`` for the curvature ``C`` of the problem (traceable: one compiled call)."""
    x, rebuild = flat_view(params, spec.mask)
    if spec.kind == "ggn":
        return lambda v: ggn_flat(lambda y: spec.fn(rebuild(y)), spec.output_loss, x, v)
    if spec.kind == "dataset":
        return lambda v: _dataset_sum(
            lambda b: hvp_flat(lambda y: spec.fn(rebuild(y), b), x, v, spec.forward), data
        )
    return linear_hvp(lambda y: spec.fn(rebuild(y)), x, spec.forward)


def ggn_flat(model_fn: Callable, output_loss: Callable, x: jax.Array, v: jax.Array) -> jax.Array:
    """``J^T H_out J v``: the Gauss-Newton product (PSD where the output loss is convex)."""
    out, jv = jax.jvp(model_fn, (x,), (v,))
    hjv = jax.jvp(jax.grad(output_loss), (out,), (jv,))[1]
    return jax.vjp(model_fn, x)[1](hjv)[0]


def _dataset_sum(per_batch: Callable[[Any], Any], data: Any) -> Any:
    """The example-weighted mean of ``per_batch(batch)`` over ``data = (stacked, tail, total)``.

    ``stacked`` holds equal batches along a leading axis (one compiled ``scan``); ``tail`` the
    remainder (or None). Each batch's value is a mean over its examples, so it weighs its size.
    """
    stacked, tail, total = data
    size = jax.tree.leaves(stacked)[0].shape[1]
    first = jax.tree.map(lambda a: a[0], stacked)
    zero = jax.tree.map(lambda z: jnp.zeros(z.shape, z.dtype), jax.eval_shape(per_batch, first))

    def body(acc, batch):
        return jax.tree.map(lambda a, b: a + size * b, acc, per_batch(batch)), None

    acc = jax.lax.scan(body, zero, stacked)[0]
    if tail is not None:
        n_tail = jax.tree.leaves(tail)[0].shape[0]
        acc = jax.tree.map(lambda a, b: a + n_tail * b, acc, per_batch(tail))
    return jax.tree.map(lambda a: a / total, acc)


def _matvec(spec, params, data, linearization):
    """:func:`matvec_fn`, its arrays taken from ``linearization`` when given (the leaves
    :func:`_linearization_jit` returned at this point): the same function traced at the same
    shapes lists its arrays in the same order, and XLA drops the ones traced here."""
    matvec = matvec_fn(spec, params, data)
    if linearization is None:
        return matvec
    return jax.tree.unflatten(jax.tree.structure(matvec), linearization)


@jax.jit(static_argnames="spec")
def matvec_jit(params, data, v, linearization=None, *, spec):
    return _matvec(spec, params, data, linearization)(v)


@jax.jit(static_argnames="spec")
def block_matvec_jit(params, data, vs, linearization=None, *, spec):
    return jax.vmap(_matvec(spec, params, data, linearization))(vs)


@jax.jit(static_argnames="spec")
def batch_matvec_jit(params, batch, vs, *, spec):
    """``sum over the batch's examples`` of ``H_batch v`` for a block ``vs`` (a data set's part)."""
    x, rebuild = flat_view(params, spec.mask)
    n = jax.tree.leaves(batch)[0].shape[0]
    hv = linear_hvp(lambda y: spec.fn(rebuild(y), batch), x, spec.forward)
    return n * (hv(vs[0])[None] if vs.shape[0] == 1 else jax.vmap(hv)(vs))


@jax.jit(static_argnames="spec")
def value_and_grad_jit(params, data, *, spec):
    """The loss, the flat gradient and its count of non-finite entries, in one call."""
    x = flat_view(params, spec.mask)[0]
    loss, grad = jax.value_and_grad(value_fn(spec, params, data))(x)
    return loss, grad, jnp.sum(~jnp.isfinite(grad))


def problem(loss_fn: Any, params: PyTree, wrt: Wrt) -> tuple[Spec, Any]:
    """``(spec, data)`` for a plain ``loss_fn(params)`` or an object that describes its own
    curvature (a data set's mean loss, a Gauss-Newton matrix) through ``_hessian_spec(mask)``."""
    if not callable(loss_fn):
        raise TypeError(f"`loss_fn` must be callable, got {type(loss_fn).__name__}")
    mask = selection(params, wrt)
    spec, data = (
        loss_fn._hessian_spec(mask)
        if hasattr(loss_fn, "_hessian_spec")
        else (
            Spec(loss_fn, mask),
            None,
        )
    )
    if spec.kind == "ggn":  # its J v is forward mode either way
        return spec, data
    chosen = [leaf for leaf, m in zip(jax.tree.leaves(params), mask, strict=True) if m]
    x = jax.ShapeDtypeStruct((num_selected(params, mask),), jnp.result_type(*chosen))
    probe = lambda p, d, v: matvec_fn(spec, p, d)(v)  # noqa: E731
    forward = forward_mode(spec, probe, params, data, x)
    return dataclasses.replace(spec, forward=forward), data


def _reuses_linearization(spec: Spec) -> bool:
    return spec.kind == "loss" and spec.forward


@jax.jit(static_argnames="spec")
def _linearization_jit(params, data, *, spec):
    """The arrays of the point's linearisation (its forward and backward pass), computed once
    so that each jitted call of products does not redo them; see :func:`_matvec`."""
    return jax.tree.leaves(matvec_fn(spec, params, data))


@jax.jit(static_argnames=("spec", "steps", "rows"), donate_argnames="state")  # in place
def _lanczos_chunk_jit(params, data, state, v, key, linearization, *, spec, steps, rows):
    """``steps`` Lanczos steps, products included, unrolled in one call (no loop body).

    With a ``linearization`` the products reuse it (see :func:`_matvec`).
    """
    from jaxopt_notes.hessian import krylov

    matvec = _matvec(spec, params, data, linearization)
    for _ in range(steps):
        state, v = krylov.step(state, matvec(v), key, rows)
    return state, v


def resolve_loop(loop: str) -> str:
    _checks.one_of("loop", loop, LOOPS)
    if loop == "auto":
        return "host" if jax.default_backend() == "cpu" else "device"
    return loop


class Operator:
    """Host-side block matvec ``(b, n) -> (b, n)`` over the problem, one jitted call per piece.

    On the host loop a data set's batches are summed from Python, so no HVP sits in a loop body
    (see the module docstring); on the device loop use :func:`matvec_fn` inside the kernel.
    """

    def __init__(self, spec: Spec, params: PyTree, data: Any, loop: str = "auto"):
        self.spec, self.params, self.data = spec, params, data
        self._linearization = None  # made by the first product, reused by all the others
        self.loop = resolve_loop(loop)
        self.size = num_selected(params, spec.mask)
        self.dtype = jnp.result_type(
            *[leaf for leaf, m in zip(jax.tree.leaves(params), spec.mask, strict=True) if m]
        )

    @property
    def per_batch(self) -> bool:
        """Whether products are summed over a data set's batches from the host."""
        return self.spec.kind == "dataset" and self.loop == "host"

    def lanczos_advance(self, state: Any, v: jax.Array, key: jax.Array, steps: int, rows: int):
        """``steps`` Lanczos steps, products included, against the first ``rows`` basis rows:
        one jitted call (a data set on the host loop: one call per batch and step)."""
        from jaxopt_notes.hessian import krylov

        if self.per_batch:
            for _ in range(steps):
                state, v = krylov.step_jit(state, self(v[None])[0], key, rows)
            return state, v
        return _lanczos_chunk_jit(
            self.params,
            self.data,
            state,
            v,
            key,
            self.linearization(),
            spec=self.spec,
            steps=steps,
            rows=rows,
        )

    def linearization(self) -> list | None:
        """The point's linearisation (forward and backward pass), made on first use and
        shared by every later product; None where products are not linearised once."""
        if self._linearization is None and _reuses_linearization(self.spec):
            self._linearization = _linearization_jit(self.params, self.data, spec=self.spec)
        return self._linearization

    def __call__(self, vs: jax.Array) -> jax.Array:
        if self.spec.kind != "dataset" or self.loop == "device":
            args = (self.params, self.data, vs[0] if vs.shape[0] == 1 else vs, self.linearization())
            if vs.shape[0] == 1:  # unbatched: vmap of one gives XLA a batched conv to plan
                return matvec_jit(*args, spec=self.spec)[None]
            return block_matvec_jit(*args, spec=self.spec)
        stacked, tail, total = self.data
        acc = None
        for i in range(jax.tree.leaves(stacked)[0].shape[0]):
            batch = jax.tree.map(lambda a, i=i: a[i], stacked)
            part = batch_matvec_jit(self.params, batch, vs, spec=self.spec)
            acc = part if acc is None else acc + part
        if tail is not None:
            acc = acc + batch_matvec_jit(self.params, tail, vs, spec=self.spec)
        return acc / total


# ------------------------------------------------------------------------------ finiteness
def check_finite_loss(spec: Spec, params: PyTree, data: Any, what: str, *, with_loss: bool = False):
    """The flat gradient (and the loss); a one-sentence ValueError if either is not finite."""
    loss, grad, bad = value_and_grad_jit(params, data, spec=spec)
    loss, bad = jax.device_get((loss, bad))
    if not np.isfinite(loss):
        raise ValueError(
            f"`loss_fn` at `params` must be finite for {what}, got {float(loss)}: "
            "the curvature of a non-finite loss means nothing"
        )
    if bad:
        raise ValueError(
            f"the gradient of `loss_fn` at `params` must be finite for {what}, got {bad} "
            "non-finite entries"
        )
    return (float(loss), grad) if with_loss else grad


def check_finite_values(values: Any, what: str) -> None:
    bad = int(np.sum(~np.isfinite(np.asarray(values))))
    if bad:
        raise ValueError(
            f"{what} must be finite, got {bad} non-finite values: the Hessian-vector products "
            "overflowed or hit a NaN (check the loss in float64, or the data)"
        )


# -------------------------------------------------------------------------------- Flax NNX
def check_eval_mode(module: Any) -> None:
    """Raises if dropout is active or BatchNorm normalizes with batch statistics.

    The Hessian of a stochastic or batch-coupled loss is not the Hessian of the model: call
    ``module.eval()`` first (or build the loss with ``deterministic=True``).
    """
    from flax import nnx

    for path, sub in nnx.iter_modules(module):
        where = "/".join(map(str, path)) or "the module"
        if isinstance(sub, nnx.Dropout) and sub.rate > 0 and not sub.deterministic:
            raise ValueError(f"`module` must be in eval mode, got active Dropout at {where}")
        if isinstance(sub, nnx.BatchNorm) and not sub.use_running_average:
            raise ValueError(
                f"`module` must be in eval mode, got BatchNorm using batch statistics at {where}"
            )


def from_nnx(module: Any, loss: Callable[[Any], jax.Array]) -> tuple[LossFn, Any]:
    """``(loss_fn, params)`` for an NNX module: params its ``nnx.Param`` state, the rest fixed.

    ``loss(module) -> scalar`` evaluates the (eval-mode) module on fixed data. Keep the returned
    ``loss_fn`` and pass new params to it: a new ``loss_fn`` means a new compilation.
    """
    from jaxopt_notes import models

    check_eval_mode(module)
    pure = models.split(module)

    def loss_fn(p):
        return loss(pure.merge(p))

    return loss_fn, pure.params
