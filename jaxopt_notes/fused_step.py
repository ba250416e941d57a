"""The fused step shared by every :mod:`jaxopt_notes.fused` optimizer: one FFI call over all
leaves that writes the params and moments in place, with the chain's own update kept for its
counts and scalars.

A factory in :mod:`jaxopt_notes.fused` describes its kernel with a :class:`Spec` (target,
attributes, where the chain keeps the moments, the step's scalars) and hands it to
:func:`build` with the chain it reproduces.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks, _native
from jaxopt_notes.combine import apply_updates
from jaxopt_notes.transforms import ScheduleState


class FusedOptimizer(NamedTuple):
    """``init(params) -> state``; ``step(params, state, grads) -> (params, state)``; ``tx``,
    the chain; ``chain_state(state, params)``, the state as ``tx`` keeps it (the same state,
    unless the optimizer was made with ``flat_state=True``)."""

    init: Callable[[Any], Any]
    step: Callable[[Any, Any, Any], tuple[Any, Any]]
    tx: optax.GradientTransformation
    chain_state: Callable[[Any, Any], Any]


def registered() -> str | None:
    """Builds and registers the kernels (once); returns why not, or None."""
    return _native.registered("fused")


def available() -> bool:
    """Whether the fused kernels are built and registered (compiling them if needed)."""
    return registered() is None


# --- the shared step --------------------------------------------------------------------------


def find(state: Any, cls: type) -> Any:
    """The first link state of type ``cls`` in a chain's (nested) state, or None."""
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, cls))
        if isinstance(s, cls)
    ]
    return found[0] if found else None


def swap(state: Any, cls: type, **fields: Any) -> Any:
    """``state`` with the fields of its ``cls`` link replaced."""
    is_link = lambda s: isinstance(s, cls)  # noqa: E731
    return jax.tree.map(lambda s: s._replace(**fields) if is_link(s) else s, state, is_leaf=is_link)


def learning_rate_of(learning_rate: Any, state: Any, dtype: Any) -> jax.Array:
    """:math:`-\\eta` as ``scale_by_learning_rate`` multiplies it (a float or a schedule)."""
    if callable(learning_rate):
        return -jnp.asarray(learning_rate(find(state, ScheduleState).count), dtype)
    return jnp.asarray(-learning_rate, dtype)


class Spec(NamedTuple):
    """What a kernel needs: its target and attributes, where the chain keeps the moments it
    updates (``(link state type, field)``), the step's scalars, and the moments' storage."""

    target: str
    attributes: dict
    moments: list[tuple[type, str]]
    coef: Callable[[Any, Any], list]  # (state, dtype) -> scalars
    moment_dtype: Any = None


def _check_dtypes(leaves: list, grads: list, moments: list[list], moment_dtype: Any) -> None:
    for p, g, *ms in zip(leaves, grads, *moments, strict=True):
        kept = p.dtype if moment_dtype is None else moment_dtype
        if (
            p.dtype not in (jnp.float32, jnp.float64)
            or g.dtype != p.dtype
            or any(m.dtype != kept for m in ms)
            or (moment_dtype is not None and p.dtype != jnp.float32)
        ):
            raise ValueError(
                "fused optimizers need float32 or float64 params with grads of the same dtype "
                "and moments of that dtype (or bfloat16 with float32 params and "
                f"`moment_dtype=jnp.bfloat16`), got params {p.dtype}, grads {g.dtype}, moments "
                f"{[str(m.dtype) for m in ms]}"
            )


def _kernel(target: str, attributes: dict, coef: jax.Array, leaves: list[list]) -> list[list]:
    """One ffi call over ``leaves`` (each [param, grad, moments...]); returns per leaf
    [param, moments...], each aliased to its input so that a donated step runs in place."""
    per = len(leaves[0])
    written = [0, *range(2, per)]  # the grad is only read
    outs = [leaf[a] for leaf in leaves for a in written]
    aliases = {
        1 + per * j + a: len(written) * j + r
        for j in range(len(leaves))
        for r, a in enumerate(written)
    }
    shapes = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in outs]
    call = jax.ffi.ffi_call(target, shapes, input_output_aliases=aliases)
    results = call(coef, *[x for leaf in leaves for x in leaf], **attributes, flat_state=False)
    return [results[len(written) * j : len(written) * (j + 1)] for j in range(len(leaves))]


def _flat_kernel(
    target: str, attributes: dict, coef: jax.Array, leaves: list, grads: list, flats: list
) -> tuple[list, list]:
    """One ffi call with the moments as flat buffers (the leaves' elements in order); returns
    the params and the flat moments, each aliased to its input."""
    count = len(leaves)
    aliases = {1 + 2 * j: j for j in range(count)}
    aliases |= {1 + 2 * count + k: count + k for k in range(len(flats))}
    shapes = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in [*leaves, *flats]]
    call = jax.ffi.ffi_call(target, shapes, input_output_aliases=aliases)
    pairs = [x for p, g in zip(leaves, grads, strict=True) for x in (p, g)]
    results = call(coef, *pairs, *flats, **attributes, flat_state=True)
    return results[:count], results[count:]


def _check_shapes(leaves: list, grads: list, moments: list[list]) -> None:
    """Refuses a gradient or moment whose shape differs from its parameter's, before the
    kernel runs: the kernel walks the parameter's elements, so a smaller buffer would be read
    (and written) past its end."""
    for i, (p, g, *ms) in enumerate(zip(leaves, grads, *moments, strict=True)):
        for name, a in (("grads", g), *((f"state moment {k}", m) for k, m in enumerate(ms))):
            if a.shape != p.shape:
                raise ValueError(
                    f"`{name}` must have each parameter's shape, got {a.shape} for leaf {i} "
                    f"of shape {p.shape}"
                )


def _call(tx: Any, spec: Spec, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
    target, attributes, moments, coef, moment_dtype = spec
    leaves, treedef = jax.tree.flatten(params)
    flat_grads = treedef.flatten_up_to(grads)
    flat_moments = [treedef.flatten_up_to(getattr(find(state, c), f)) for c, f in moments]
    _check_shapes(leaves, flat_grads, flat_moments)
    _check_dtypes(leaves, flat_grads, flat_moments, moment_dtype)
    new = [None] * len(leaves)  # per leaf: [param, moments...]
    for dtype in sorted({p.dtype for p in leaves}, key=str):  # the kernel takes one type
        index = [i for i, p in enumerate(leaves) if p.dtype == dtype]
        arrays = [[leaves[i], flat_grads[i], *(m[i] for m in flat_moments)] for i in index]
        k = jnp.stack([jnp.asarray(c, dtype) for c in coef(state, dtype)])
        for i, out in zip(index, _kernel(target, attributes, k, arrays), strict=True):
            new[i] = out
    # Counts and other scalars come from the chain's own update: its array outputs are unused,
    # so they are dropped from the compiled step, and only the bookkeeping remains.
    _, new_state = tx.update(grads, state, params)
    for k, (cls, field) in enumerate(moments):
        new_state = swap(new_state, cls, **{field: treedef.unflatten([n[1 + k] for n in new])})
    return treedef.unflatten([n[0] for n in new]), new_state


def _flatten(state: Any, moments: list[tuple[type, str]]) -> Any:
    """The chain's ``state`` with each moment tree as one flat buffer (its leaves in order)."""
    for cls, field in moments:
        leaves = jax.tree.leaves(getattr(find(state, cls), field))
        flat = jnp.concatenate([x.ravel() for x in leaves]) if leaves else jnp.zeros(0)
        state = swap(state, cls, **{field: flat})
    return state


def _unflatten(state: Any, moments: list[tuple[type, str]], params: Any) -> Any:
    """The inverse of :func:`_flatten`: each flat moment cut into the shapes of ``params``."""
    leaves, treedef = jax.tree.flatten(params)
    ends = list(itertools.accumulate(x.size for x in leaves))
    for cls, field in moments:
        flat = getattr(find(state, cls), field)
        parts = [flat[e - x.size : e].reshape(x.shape) for x, e in zip(leaves, ends, strict=True)]
        state = swap(state, cls, **{field: treedef.unflatten(parts)})
    return state


def _flat_call(tx: Any, spec: Spec, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
    target, attributes, moments, coef, moment_dtype = spec
    leaves, treedef = jax.tree.flatten(params)
    flat_grads = treedef.flatten_up_to(grads)
    flats = [getattr(find(state, c), f) for c, f in moments]
    kept = jnp.dtype(moment_dtype or (leaves[0].dtype if leaves else jnp.float32))
    if len({p.dtype for p in leaves}) > 1 or any(m.dtype != kept for m in flats):
        raise ValueError(
            "`flat_state=True` needs params of one dtype and moments of the kept dtype, got "
            f"params {sorted({str(p.dtype) for p in leaves})}, moments "
            f"{[str(m.dtype) for m in flats]}"
        )
    _check_shapes(leaves, flat_grads, [])
    total = sum(p.size for p in leaves)
    for k, m in enumerate(flats):
        if m.shape != (total,):
            raise ValueError(
                f"`state` flat moment {k} must hold the params' {total} elements, got shape "
                f"{m.shape}"
            )
    _check_dtypes(leaves, flat_grads, [[m] * len(leaves) for m in flats], moment_dtype)
    # bookkeeping from the chain, on the moments cut to shape (unused slices: dropped)
    _, new_state = tx.update(grads, _unflatten(state, moments, params), params)
    if not leaves:
        return params, _flatten(new_state, moments)
    k = jnp.stack([jnp.asarray(c, leaves[0].dtype) for c in coef(state, leaves[0].dtype)])
    new_leaves, new_flats = _flat_kernel(target, attributes, k, leaves, flat_grads, flats)
    for (cls, field), flat in zip(moments, new_flats, strict=True):
        new_state = swap(new_state, cls, **{field: flat})
    return treedef.unflatten(new_leaves), new_state


def chain_step(tx: optax.GradientTransformation) -> Callable:
    def chain_step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), state

    return chain_step


def build(tx: optax.GradientTransformation, spec: Spec, flat_state: bool) -> FusedOptimizer:
    """The fused optimizer of chain ``tx`` whose kernel ``spec`` describes; its step runs the
    chain off the CPU or where the kernels are unavailable."""
    _checks.flag("flat_state", flat_state)
    plain = chain_step(tx)
    if flat_state:
        moments = spec.moments

        def init(params):
            return _flatten(tx.init(params), moments)

        def chain_state(state, params):
            return _unflatten(state, moments, params)

        def fallback(params, state, grads):
            params, state = plain(params, chain_state(state, params), grads)
            return params, _flatten(state, moments)

        call = _flat_call
    else:
        init, chain_state, fallback, call = tx.init, lambda state, params: state, plain, _call

    made: dict = {}  # params' structure -> the state structure init makes for it (traced once)

    def step(params, state, grads):
        tree = jax.tree.structure(params)
        if tree not in made:
            made[tree] = jax.tree.structure(jax.eval_shape(init, params))
        _check_state(state, made[tree])
        if jax.default_backend() != "cpu":  # the chain, as intended there; nothing is built
            return fallback(params, state, grads)
        if registered() is not None:
            warnings.warn(
                f"fused kernels unavailable ({registered()}): running the chain", stacklevel=2
            )
            return fallback(params, state, grads)
        kernel = lambda p, s, g: call(tx, spec, g, s, p)  # noqa: E731
        return jax.lax.platform_dependent(params, state, grads, cpu=kernel, default=fallback)

    return FusedOptimizer(init, step, tx, chain_state)


def _check_state(state: Any, want: Any) -> None:
    """Refuses a state of another structure than this optimizer's ``init`` makes (another
    optimizer's state read as this one's: a traceback from inside the step before)."""
    got = jax.tree.structure(state)
    if got != want:
        raise ValueError(
            "`state` must be the state this optimizer's init makes for `params`, got one of "
            f"another structure (another optimizer's?): {got} where {want} was expected"
        )


def guard(eps: Any) -> bool:
    """Whether the chain's ``ratio(eps)`` guards a zero denominator (see ``moments.ratio``)."""
    return not (isinstance(eps, int | float) and eps > 0)
