r"""Opt-in fused optimizer steps for XLA:CPU: the chain's arithmetic in one threaded pass.

XLA:CPU compiles a chain such as :func:`jaxopt_notes.adam` into one loop per array it writes:
the first moment, the second moment, then the parameters, which read both moments back. That
is 40 bytes of memory traffic per float32 parameter where one pass needs 28 (read
:math:`\theta, g, m, v`; write :math:`\theta, m, v`). A fused optimizer runs the same
operations in one C++ pass (``_native/csrc/fused_kernels.cc``, through ``jax.ffi``) that updates
the parameters and moments in place, over all leaves at once, on XLA's intra-op threads.

>>> import jax, jax.numpy as jnp
>>> from jaxopt_notes import fused
>>> opt = fused.adam(1e-3)
>>> params = {"w": jnp.ones(4)}
>>> state = opt.init(params)  # the state of the chain `jn.adam(1e-3)`
>>> step = jax.jit(opt.step, donate_argnums=(0, 1))  # donate: update in place
>>> params, state = step(params, state, {"w": jnp.full(4, 0.5)})
>>> params["w"]
Array([0.999, 0.999, 0.999, 0.999], dtype=float32)

``step(params, state, grads) -> (params, state)`` applies the update itself (that is how it
saves the traffic), so a fused optimizer is not a ``GradientTransformation``; ``opt.tx`` is
the chain it reproduces, and ``opt.init`` is the chain's ``init``: states move freely between
the two. The donated arguments come first and in the order of the outputs, because ``jit``
pairs donated buffers with outputs of the same shape in order: donating ``(state, params)`` for
outputs ``(params, state)`` would pair each parameter with a moment's buffer, and XLA would
copy every array twice around the in-place kernel.

``flat_state=True`` (opt-in, every factory): each moment is kept as one flat buffer, the
leaves' elements in order, instead of a tree like the params. The arithmetic is the same, bit
for bit, but a step passes a third of the arrays: JAX pays a few microseconds per array it
hands to and takes back from a compiled step, about 0.5 ms per step for Adam on 100 leaves
(``bench step``). Such a state is not the chain's: ``opt.chain_state(state, params)`` cuts it
back into the chain's state.

>>> flat = fused.adam(1e-3, flat_state=True)
>>> s = flat.init({"w": jnp.ones((2, 3)), "b": jnp.ones(3)})
>>> s[0].mu.shape  # the first moment of both leaves, in one buffer
(9,)

Numbers: the kernels do the chain's operations in its order and type, dividing by the bias
corrections as multiplications by their reciprocals (as XLA rewrites those divisions) and
without fused multiply-adds (which XLA uses for some of the chain's). In float32 they agree
with the compiled chain to rounding (1e-5 after 50 steps) and bit for bit with a NumPy
transcription; in float64 with optax, torch and the papers to 1e-9 (``tests/test_fused.py``).
float32 and float64 leaves only (and, opt-in, float32 params with bfloat16 Adam moments).

The kernels are compiled on first use with the system's C++ compiler (``$CXX``, else ``g++``
or ``c++``) into ``$JAXOPT_NOTES_CACHE`` (default ``~/.cache/jaxopt_notes``). Where no
compiler is found, ``step`` runs the chain instead; :func:`available` tells which. Where the
default backend is not the CPU (GPU/TPU, whose XLA compilers can merge the chain's loops
themselves), ``step`` runs the chain without building anything, also for arrays put on the
CPU there. A step over 64K params or more shares its chunks with helper threads of the
kernels' own (one per further core), which spin for 300 us after each step before they sleep.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks, _native, adam_family, optimizers
from jaxopt_notes._hyperparams import hyperparams
from jaxopt_notes.combine import apply_updates, increment
from jaxopt_notes.moments import (
    AmsgradMaxState,
    BiasCorrectionState,
    FirstMomentState,
    SecondMomentState,
)
from jaxopt_notes.transforms import AddDecayedWeightsState, ScheduleState, TraceState


class FusedOptimizer(NamedTuple):
    """``init(params) -> state``; ``step(params, state, grads) -> (params, state)``; ``tx``,
    the chain; ``chain_state(state, params)``, the state as ``tx`` keeps it (the same state,
    unless the optimizer was made with ``flat_state=True``)."""

    init: Callable[[Any], Any]
    step: Callable[[Any, Any, Any], tuple[Any, Any]]
    tx: optax.GradientTransformation
    chain_state: Callable[[Any, Any], Any]


def _registered() -> str | None:
    """Builds and registers the kernels (once); returns why not, or None."""
    return _native.registered("fused")


def available() -> bool:
    """Whether the fused kernels are built and registered (compiling them if needed)."""
    return _registered() is None


# --- the shared step --------------------------------------------------------------------------


def _find(state: Any, cls: type) -> Any:
    """The first link state of type ``cls`` in a chain's (nested) state, or None."""
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, cls))
        if isinstance(s, cls)
    ]
    return found[0] if found else None


def _swap(state: Any, cls: type, **fields: Any) -> Any:
    """``state`` with the fields of its ``cls`` link replaced."""
    is_link = lambda s: isinstance(s, cls)  # noqa: E731
    return jax.tree.map(lambda s: s._replace(**fields) if is_link(s) else s, state, is_leaf=is_link)


def _learning_rate(learning_rate: Any, state: Any, dtype: Any) -> jax.Array:
    """:math:`-\\eta` as ``scale_by_learning_rate`` multiplies it (a float or a schedule)."""
    if callable(learning_rate):
        return -jnp.asarray(learning_rate(_find(state, ScheduleState).count), dtype)
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


def _call(tx: Any, spec: Spec, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
    target, attributes, moments, coef, moment_dtype = spec
    leaves, treedef = jax.tree.flatten(params)
    flat_grads = treedef.flatten_up_to(grads)
    flat_moments = [treedef.flatten_up_to(getattr(_find(state, c), f)) for c, f in moments]
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
        new_state = _swap(new_state, cls, **{field: treedef.unflatten([n[1 + k] for n in new])})
    return treedef.unflatten([n[0] for n in new]), new_state


def _flatten(state: Any, moments: list[tuple[type, str]]) -> Any:
    """The chain's ``state`` with each moment tree as one flat buffer (its leaves in order)."""
    for cls, field in moments:
        leaves = jax.tree.leaves(getattr(_find(state, cls), field))
        flat = jnp.concatenate([x.ravel() for x in leaves]) if leaves else jnp.zeros(0)
        state = _swap(state, cls, **{field: flat})
    return state


def _unflatten(state: Any, moments: list[tuple[type, str]], params: Any) -> Any:
    """The inverse of :func:`_flatten`: each flat moment cut into the shapes of ``params``."""
    leaves, treedef = jax.tree.flatten(params)
    ends = list(itertools.accumulate(x.size for x in leaves))
    for cls, field in moments:
        flat = getattr(_find(state, cls), field)
        parts = [flat[e - x.size : e].reshape(x.shape) for x, e in zip(leaves, ends, strict=True)]
        state = _swap(state, cls, **{field: treedef.unflatten(parts)})
    return state


def _flat_call(tx: Any, spec: Spec, grads: Any, state: Any, params: Any) -> tuple[Any, Any]:
    target, attributes, moments, coef, moment_dtype = spec
    leaves, treedef = jax.tree.flatten(params)
    flat_grads = treedef.flatten_up_to(grads)
    flats = [getattr(_find(state, c), f) for c, f in moments]
    kept = jnp.dtype(moment_dtype or (leaves[0].dtype if leaves else jnp.float32))
    if len({p.dtype for p in leaves}) > 1 or any(m.dtype != kept for m in flats):
        raise ValueError(
            "`flat_state=True` needs params of one dtype and moments of the kept dtype, got "
            f"params {sorted({str(p.dtype) for p in leaves})}, moments "
            f"{[str(m.dtype) for m in flats]}"
        )
    _check_dtypes(leaves, flat_grads, [[m] * len(leaves) for m in flats], moment_dtype)
    # bookkeeping from the chain, on the moments cut to shape (unused slices: dropped)
    _, new_state = tx.update(grads, _unflatten(state, moments, params), params)
    if not leaves:
        return params, _flatten(new_state, moments)
    k = jnp.stack([jnp.asarray(c, leaves[0].dtype) for c in coef(state, leaves[0].dtype)])
    new_leaves, new_flats = _flat_kernel(target, attributes, k, leaves, flat_grads, flats)
    for (cls, field), flat in zip(moments, new_flats, strict=True):
        new_state = _swap(new_state, cls, **{field: flat})
    return treedef.unflatten(new_leaves), new_state


def _chain_step(tx: optax.GradientTransformation) -> Callable:
    def chain_step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return apply_updates(params, updates), state

    return chain_step


def _fused(tx: optax.GradientTransformation, spec: Spec, flat_state: bool) -> FusedOptimizer:
    _checks.flag("flat_state", flat_state)
    chain_step = _chain_step(tx)
    if flat_state:
        moments = spec.moments

        def init(params):
            return _flatten(tx.init(params), moments)

        def chain_state(state, params):
            return _unflatten(state, moments, params)

        def fallback(params, state, grads):
            params, state = chain_step(params, chain_state(state, params), grads)
            return params, _flatten(state, moments)

        call = _flat_call
    else:
        init, chain_state, fallback, call = tx.init, lambda state, params: state, chain_step, _call

    def step(params, state, grads):
        if jax.default_backend() != "cpu":  # the chain, as intended there; nothing is built
            return fallback(params, state, grads)
        if _registered() is not None:
            warnings.warn(
                f"fused kernels unavailable ({_registered()}): running the chain", stacklevel=2
            )
            return fallback(params, state, grads)
        kernel = lambda p, s, g: call(tx, spec, g, s, p)  # noqa: E731
        return jax.lax.platform_dependent(params, state, grads, cpu=kernel, default=fallback)

    return FusedOptimizer(init, step, tx, chain_state)


def _guard(eps: Any) -> bool:
    """Whether the chain's ``ratio(eps)`` guards a zero denominator (see ``moments.ratio``)."""
    return not (isinstance(eps, int | float) and eps > 0)


# --- the optimizers ---------------------------------------------------------------------------


def adam(
    learning_rate: Any,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    eps_root: float = 0.0,
    weight_decay: Any = None,
    amsgrad: bool = False,
    moment_dtype: Any = None,
    flat_state: bool = False,
    convention: str = "optax",
) -> FusedOptimizer:
    r"""Fused :func:`jaxopt_notes.adam`; with ``weight_decay`` fused :func:`~jaxopt_notes.adamw`
    (a float or a schedule), with ``amsgrad=True`` fused :func:`~jaxopt_notes.amsgrad`
    (``convention`` says which maximum: of corrected moments, optax, or raw ones, torch).

    ``moment_dtype=jnp.bfloat16`` (opt-in, plain Adam on float32 params): the moments are
    stored in bfloat16, as by ``jn.adam(..., moment_dtype=jnp.bfloat16)``, which cuts a step's
    memory traffic from 28 to 20 bytes per parameter; each step still computes in float32."""
    if weight_decay is not None and amsgrad:
        raise ValueError("`weight_decay` and `amsgrad` cannot both be set, got both")
    if moment_dtype is not None and jnp.dtype(moment_dtype) != jnp.bfloat16:
        raise ValueError(f"`moment_dtype` must be None or bfloat16, got {moment_dtype!r}")
    if moment_dtype is not None and (weight_decay is not None or amsgrad):
        raise ValueError("`moment_dtype` is for plain Adam: `weight_decay` and `amsgrad` unset")
    if weight_decay is not None:
        tx = adam_family.adamw(learning_rate, b1, b2, eps, weight_decay, convention=convention)
    elif amsgrad:
        tx = adam_family.amsgrad(learning_rate, b1, b2, eps, convention=convention)
    else:
        tx = adam_family.adam(
            learning_rate,
            b1,
            b2,
            eps,
            eps_root=eps_root,
            moment_dtype=moment_dtype,
            convention=convention,
        )
    torch_max = convention == "pytorch"

    def coef(state, dtype):
        t = increment(_find(state, BiasCorrectionState).count)
        decay = _find(state, AddDecayedWeightsState)
        lam = weight_decay(decay.count) if callable(weight_decay) else (weight_decay or 0.0)
        return [
            1 - b1,
            b1,
            1 - b2,
            b2,
            1 / (1 - b1**t).astype(dtype),
            1 / (1 - b2**t).astype(dtype),
            eps,
            eps_root,
            _learning_rate(learning_rate, state, dtype),
            lam,
        ]

    moments = [(FirstMomentState, "mu"), (SecondMomentState, "nu")]
    moments += [(AmsgradMaxState, "nu_max")] if amsgrad else []
    attributes = {
        "amsgrad": (2 if torch_max else 1) if amsgrad else 0,
        "decay": weight_decay is not None,
        "guard": _guard(eps),
        "bf16_moments": moment_dtype is not None,
    }
    return _fused(tx, Spec("jn_fused_adam", attributes, moments, coef, moment_dtype), flat_state)


def sgd(
    learning_rate: Any,
    momentum: float | None = None,
    nesterov: bool = False,
    *,
    flat_state: bool = False,
    convention: str = "optax",
) -> FusedOptimizer:
    r"""Fused :func:`jaxopt_notes.sgd` with heavy-ball or Nesterov momentum. Its defaults are
    :func:`jaxopt_notes.sgd`'s: with ``momentum=None`` it is plain SGD, which is one pass in
    XLA already, so ``step`` runs the chain (no kernel)."""
    tx = optimizers.sgd(learning_rate, momentum, nesterov, convention=convention)
    if momentum is None:
        _checks.flag("flat_state", flat_state)
        return FusedOptimizer(tx.init, _chain_step(tx), tx, lambda state, params: state)
    if not momentum:
        raise ValueError(f"`momentum` must be > 0 for a fused sgd, got {momentum!r}")
    hp = hyperparams(tx)

    def coef(state, dtype):
        return [hp["momentum"], _learning_rate(learning_rate, state, dtype)]

    kind = 2 if hp["nesterov"] else 1
    spec = Spec("jn_fused_sgd", {"momentum": kind}, [(TraceState, "trace")], coef)
    return _fused(tx, spec, flat_state)


def _scaled(
    tx, learning_rate, c2, rho, eps, eps_in_sqrt, momentum, nesterov, flat_state
) -> FusedOptimizer:
    """RMSProp and AdaGrad: the chain's ``ratio`` has eps inside the root or after it."""
    eps_root, eps_out = (eps, 0.0) if eps_in_sqrt else (0.0, eps)

    # the chain carries a trace link whenever momentum is a number, 0 included (jn.rmsprop)
    traced = momentum is not None

    def coef(state, dtype):
        lr = _learning_rate(learning_rate, state, dtype)
        return [c2, rho, eps_root, eps_out, lr, momentum if traced else 0.0]

    moments = [(SecondMomentState, "nu")] + ([(TraceState, "trace")] if traced else [])
    attributes = {"guard": _guard(eps_out), "momentum": (2 if nesterov else 1) if traced else 0}
    return _fused(tx, Spec("jn_fused_scaled", attributes, moments, coef), flat_state)


def rmsprop(
    learning_rate: Any,
    decay: float | None = None,
    eps: float = 1e-8,
    *,
    momentum: float | None = None,
    nesterov: bool = False,
    flat_state: bool = False,
    convention: str = "optax",
) -> FusedOptimizer:
    r"""Fused :func:`jaxopt_notes.rmsprop` (either convention, with or without momentum)."""
    tx = optimizers.rmsprop(
        learning_rate, decay, eps, momentum=momentum, nesterov=nesterov, convention=convention
    )
    decay = hyperparams(tx)["decay"]  # the chain's resolved default, not a copy of it
    pytorch = convention == "pytorch"
    return _scaled(
        tx, learning_rate, 1 - decay, decay, eps, not pytorch, momentum, nesterov, flat_state
    )


def adagrad(
    learning_rate: Any,
    eps: float | None = None,
    *,
    initial_accumulator_value: float | None = None,
    flat_state: bool = False,
    convention: str = "optax",
) -> FusedOptimizer:
    r"""Fused :func:`jaxopt_notes.adagrad`: the sum of squares is ``1 * g^2 + 1 * v``, exact."""
    tx = optimizers.adagrad(
        learning_rate,
        eps,
        initial_accumulator_value=initial_accumulator_value,
        convention=convention,
    )
    eps = hyperparams(tx)["eps"]
    return _scaled(
        tx, learning_rate, 1.0, 1.0, eps, convention != "pytorch", None, False, flat_state
    )


OPTIMIZERS: dict[str, Callable[..., FusedOptimizer]] = {
    "adam": adam,
    "adamw": lambda learning_rate, *a, weight_decay=None, convention="optax", **kw: adam(
        learning_rate,
        *a,
        convention=convention,
        **kw,
        weight_decay=hyperparams(
            adam_family.adamw(learning_rate, weight_decay=weight_decay, convention=convention)
        )["weight_decay"],
    ),
    "amsgrad": lambda learning_rate, *a, **kw: adam(learning_rate, *a, amsgrad=True, **kw),
    "momentum": lambda learning_rate, momentum=0.9, **kw: sgd(learning_rate, momentum, **kw),
    "nesterov": lambda learning_rate, momentum=0.9, **kw: sgd(learning_rate, momentum, True, **kw),
    "rmsprop": rmsprop,
    "adagrad": adagrad,
}
