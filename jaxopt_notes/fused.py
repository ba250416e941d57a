r"""Opt-in fused optimizer steps for XLA:CPU: the chain's arithmetic in one threaded pass.

XLA:CPU compiles a chain such as :func:`jaxopt_notes.adam` into one loop per array it writes:
the first moment, the second moment, then the parameters, which read both moments back. That
is 40 bytes of memory traffic per float32 parameter where one pass needs 28 (read
:math:`\theta, g, m, v`; write :math:`\theta, m, v`). A fused optimizer runs the same
operations in one C++ pass (``_native/csrc/fused_kernels.cc``, through ``jax.ffi``) that updates
the parameters and moments in place, over all leaves at once, split among helper threads of
the kernels' own (not XLA's pool; see :mod:`jaxopt_notes._native`).

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

The kernels are built by ``jaxopt-notes build-kernels``, or else on first use (with a notice),
with the system's C++ compiler (``$CXX``, else ``g++`` or ``c++``) into ``$JAXOPT_NOTES_CACHE``
(default ``~/.cache/jaxopt_notes``; see :mod:`jaxopt_notes._native` for the flags and the
checks before loading). Where no compiler is found, ``step`` runs the chain instead;
:func:`available` tells which. Where the default backend is not the CPU (GPU/TPU, whose XLA
compilers can merge the chain's loops themselves), ``step`` runs the chain without building
anything, also for arrays put on the CPU there. A step of 64K parameters or more (two chunks
of 32K) shares its chunks with the helper threads (``JAXOPT_NOTES_THREADS``, default one per
further core), which spin for ``JAXOPT_NOTES_SPIN_US`` (default 300 us) after a step, then sleep.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from jaxopt_notes import _checks, adam_family, optimizers
from jaxopt_notes._hyperparams import hyperparams
from jaxopt_notes.combine import increment
from jaxopt_notes.fused_step import (
    FusedOptimizer,
    Spec,
    available,
    build,
    chain_step,
    find,
    guard,
    learning_rate_of,
)
from jaxopt_notes.moments import (
    AmsgradMaxState,
    BiasCorrectionState,
    FirstMomentState,
    SecondMomentState,
)
from jaxopt_notes.transforms import AddDecayedWeightsState, TraceState

__all__ = ["OPTIMIZERS", "FusedOptimizer", "adagrad", "adam", "available", "rmsprop", "sgd"]


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
        t = increment(find(state, BiasCorrectionState).count)
        decay = find(state, AddDecayedWeightsState)
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
            learning_rate_of(learning_rate, state, dtype),
            lam,
        ]

    moments = [(FirstMomentState, "mu"), (SecondMomentState, "nu")]
    moments += [(AmsgradMaxState, "nu_max")] if amsgrad else []
    attributes = {
        "amsgrad": (2 if torch_max else 1) if amsgrad else 0,
        "decay": weight_decay is not None,
        "guard": guard(eps),
        "bf16_moments": moment_dtype is not None,
    }
    return build(tx, Spec("jn_fused_adam", attributes, moments, coef, moment_dtype), flat_state)


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
        return FusedOptimizer(tx.init, chain_step(tx), tx, lambda state, params: state)
    if not momentum:
        raise ValueError(f"`momentum` must be > 0 for a fused sgd, got {momentum!r}")
    hp = hyperparams(tx)

    def coef(state, dtype):
        return [hp["momentum"], learning_rate_of(learning_rate, state, dtype)]

    kind = 2 if hp["nesterov"] else 1
    spec = Spec("jn_fused_sgd", {"momentum": kind}, [(TraceState, "trace")], coef)
    return build(tx, spec, flat_state)


def _scaled(
    tx: Any,
    learning_rate: Any,
    *,
    c2: float,
    rho: float,
    eps: float,
    eps_in_sqrt: bool,
    momentum: float | None = None,
    nesterov: bool = False,
    flat_state: bool = False,
) -> FusedOptimizer:
    """RMSProp and AdaGrad: ``nu = c2 g^2 + rho nu``; the chain's ``ratio`` has eps inside the
    root (``eps_in_sqrt``) or after it."""
    eps_root, eps_out = (eps, 0.0) if eps_in_sqrt else (0.0, eps)

    # the chain carries a trace link whenever momentum is a number, 0 included (jn.rmsprop)
    traced = momentum is not None

    def coef(state, dtype):
        lr = learning_rate_of(learning_rate, state, dtype)
        return [c2, rho, eps_root, eps_out, lr, momentum if traced else 0.0]

    moments = [(SecondMomentState, "nu")] + ([(TraceState, "trace")] if traced else [])
    attributes = {"guard": guard(eps_out), "momentum": (2 if nesterov else 1) if traced else 0}
    return build(tx, Spec("jn_fused_scaled", attributes, moments, coef), flat_state)


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
        tx,
        learning_rate,
        c2=1 - decay,
        rho=decay,
        eps=eps,
        eps_in_sqrt=not pytorch,
        momentum=momentum,
        nesterov=nesterov,
        flat_state=flat_state,
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
        tx,
        learning_rate,
        c2=1.0,
        rho=1.0,
        eps=eps,
        eps_in_sqrt=convention != "pytorch",
        flat_state=flat_state,
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
