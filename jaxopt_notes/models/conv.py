"""2-D convolution (NHWC input, HWIO kernel, stride 1) with fast CPU kernels and gradients.

:func:`conv_nhwc` is a drop-in ``conv_general_dilated`` for Flax's ``nnx.Conv``. On the CPU
backend it writes a convolution as two bilinear operations, each differentiable through the
other, so values, gradients and higher derivatives all run on the same two kernels:

- ``correlate(x, w)[n, oh, ow, co] = sum_{i, j, ci} x[n, oh + i, ow + j, ci] * w[i, j, ci, co]``
  (a VALID correlation; padding is a ``jnp.pad`` before it);
- ``kernel_grad(x, g)[i, j, ci, co] = sum_{n, oh, ow} x[n, oh + i, ow + j, ci] * g[n, oh, ow, co]``,
  the kernel's gradient for an output gradient ``g``.

The input's gradient is ``correlate(pad(g, k - 1), w flipped and transposed)``, and the
derivatives of ``kernel_grad`` are again the two operations. For float32 and float64 both are
C++ kernels (``_native/csrc/conv_kernels.cc`` through ``jax.ffi``), because XLA:CPU runs a
LeNet's few-channel convolutions and their gradients slowly (timings: ``jaxopt-notes bench
train``); without a compiler, or for other dtypes, they are XLA's own operations in the layouts
XLA:CPU runs fastest.

Both are ``jax.custom_vjp`` functions, which JAX differentiates in reverse mode only, so this
path is taken on the CPU backend alone, where it pays: on every other backend
:func:`conv_nhwc` is plain ``lax.conv_general_dilated`` and forward mode works.
:func:`forward_mode_safe` says which one a backend gets.

>>> import jax.numpy as jnp
>>> x, w = jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 2))
>>> conv_nhwc(x, w, (1, 1), ((0, 0), (0, 0)), dimension_numbers=("NHWC", "HWIO", "NHWC")).shape
(1, 2, 2, 2)
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import jax
import jax.numpy as jnp

from jaxopt_notes import _native

NHWC = ("NHWC", "HWIO", "NHWC")
_KERNEL_DTYPES = (jnp.float32, jnp.float64)


def forward_mode_safe(backend: str | None = None) -> bool:
    """Whether :func:`conv_nhwc` can be differentiated forward (``jax.jvp``, ``jax.jacfwd``)
    on ``backend`` (default: ``jax.default_backend()``).

    False on ``"cpu"``, where it is the kernels' ``custom_vjp`` (take Hessian-vector products
    reverse over reverse there); True elsewhere, where it is ``lax.conv_general_dilated``.

    >>> forward_mode_safe("gpu"), forward_mode_safe("cpu")
    (True, False)
    """
    return (backend or jax.default_backend()) != "cpu"


def kernels_available() -> bool:
    """Whether the CPU convolution kernels are built and registered (compiling them if needed)."""
    return _native.registered("conv") is None


def _use_kernels(*arrays: jax.Array) -> bool:
    """Kernel dtypes, and a CPU default backend (elsewhere nothing is built: a machine whose
    default is a GPU runs XLA's convolutions, also in a computation put on its CPU)."""
    dtype = arrays[0].dtype
    return (
        dtype in _KERNEL_DTYPES
        and all(a.dtype == dtype for a in arrays)
        and jax.default_backend() == "cpu"
        and _native.registered("conv") is None
    )


# --- XLA's versions ---------------------------------------------------------------------------


def _xla_correlate(x: jax.Array, w: jax.Array) -> jax.Array:
    """With one to three input channels, a sum over taps of shifted slices times a kernel row,
    which XLA:CPU fuses into one loop, faster than its convolution at so few channels; with more
    channels XLA's convolution."""
    kh, kw, ci, _ = w.shape
    if ci > 3:
        return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=NHWC)
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    taps = itertools.product(range(kh), range(kw), range(ci))
    return sum(x[:, i : i + oh, j : j + ow, c : c + 1] * w[i, j, c] for i, j, c in taps)


def _xla_kernel_grad(x: jax.Array, g: jax.Array) -> jax.Array:
    """Input channels as the batch, examples as the contracted features: the layout XLA:CPU
    rewrites the kernel gradient into at the top level but not inside a ``while`` loop (such as
    a ``lax.scan`` over training steps), so it is spelled out here."""
    x_t, g_t = x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3)
    dw = jax.lax.conv_general_dilated(x_t, g_t, (1, 1), "VALID", dimension_numbers=NHWC)
    return dw.transpose(1, 2, 0, 3)


# --- the kernels ------------------------------------------------------------------------------


def _ffi_correlate(x: jax.Array, w: jax.Array) -> jax.Array:
    n, h, width, _ = x.shape
    kh, kw, _, co = w.shape
    out = jax.ShapeDtypeStruct((n, h - kh + 1, width - kw + 1, co), x.dtype)
    return jax.ffi.ffi_call("jn_conv_forward", out, vmap_method="sequential")(x, w)


def _ffi_kernel_grad(x: jax.Array, g: jax.Array) -> jax.Array:
    kh, kw = x.shape[1] - g.shape[1] + 1, x.shape[2] - g.shape[2] + 1
    out = jax.ShapeDtypeStruct((kh, kw, x.shape[3], g.shape[3]), x.dtype)
    return jax.ffi.ffi_call("jn_conv_kernel_grad", out, vmap_method="sequential")(x, g)


@functools.partial(jax.jit, static_argnums=(0, 1))  # eager calls (reverse over reverse) too
def _dispatch(ffi_fn, xla_fn, a: jax.Array, b: jax.Array) -> jax.Array:
    if not _use_kernels(a, b):
        return xla_fn(a, b)
    return jax.lax.platform_dependent(a, b, cpu=ffi_fn, default=xla_fn)


# --- the two bilinear operations and their derivatives ----------------------------------------


def _input_grad(g: jax.Array, w: jax.Array) -> jax.Array:
    """The gradient of ``sum(correlate(x, w) * g)`` in ``x``: a full correlation of ``g`` with
    the kernel flipped and its channels swapped."""
    kh, kw = w.shape[:2]
    g = jnp.pad(g, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    return correlate(g, jnp.flip(w, (0, 1)).swapaxes(2, 3))


def _bilinear(cotangents: Any) -> Any:
    """Makes ``op(a, b)``, bilinear in ``a`` and ``b``, a ``jax.custom_vjp`` whose backward pass
    is ``cotangents(a, b, c)``: the gradients in ``a`` and ``b`` for an output gradient ``c``."""

    def wrap(op):
        name, op = op.__name__, jax.custom_vjp(op)

        def fwd(a, b):
            return op(a, b), (a, b)

        def bwd(ab, c):
            return cotangents(*ab, c)

        fwd.__name__, bwd.__name__ = f"_{name}_fwd", f"_{name}_bwd"  # named so in jaxprs
        op.defvjp(fwd, bwd)
        return op

    return wrap


@_bilinear(lambda x, w, g: (_input_grad(g, w), kernel_grad(x, g)))
def correlate(x: jax.Array, w: jax.Array) -> jax.Array:
    """VALID correlation of ``x`` (NHWC) with ``w`` (HWIO), stride 1."""
    return _dispatch(_ffi_correlate, _xla_correlate, x, w)


# <kernel_grad(x, g), c> = <correlate(x, c), g>: the derivatives are correlate's
@_bilinear(lambda x, g, c: (_input_grad(g, c), correlate(x, c)))
def kernel_grad(x: jax.Array, g: jax.Array) -> jax.Array:
    """The gradient of ``sum(correlate(x, w) * g)`` in ``w``."""
    return _dispatch(_ffi_kernel_grad, _xla_kernel_grad, x, g)


def conv_nhwc(x, w, window_strides, padding, *args, dimension_numbers=None, **kwargs):
    """``lax.conv_general_dilated``, for ``nnx.Conv(conv_general_dilated=conv_nhwc)``.

    On the CPU backend, stride 1, no dilation, one group, explicit padding and the NHWC/HWIO
    layout run as ``correlate(pad(x), w)`` (see the module's docstring); anything else, and
    every other backend, goes to ``lax`` unchanged. Values and gradients are XLA's
    convolution's up to float rounding (the sums run in another order).
    """
    plain = (
        not forward_mode_safe()  # the custom path is the CPU's alone
        and tuple(window_strides) == (1, 1)
        and not args
        and not isinstance(padding, str)
        and min(itertools.chain(*padding)) >= 0  # negative padding crops: lax's business
        and _is_nhwc(dimension_numbers, x, w)
        and all(kwargs.get(k) in (None, 1, (1, 1)) for k in ("lhs_dilation", "rhs_dilation"))
        and kwargs.get("feature_group_count", 1) == 1
        and kwargs.get("out_sharding") is None
        and kwargs.get("preferred_element_type") is None
    )
    if not plain:
        return jax.lax.conv_general_dilated(
            x, w, window_strides, padding, *args, dimension_numbers=dimension_numbers, **kwargs
        )
    pads = tuple(tuple(int(p) for p in pair) for pair in padding)
    return correlate(jnp.pad(x, ((0, 0), *pads, (0, 0))), w)


def _is_nhwc(dimension_numbers: Any, x: jax.Array, w: jax.Array) -> bool:
    if dimension_numbers is None:  # lax's default is NCHW
        return False
    if all(isinstance(spec, str) for spec in dimension_numbers):
        return tuple(dimension_numbers) == NHWC
    return dimension_numbers == jax.lax.conv_dimension_numbers(x.shape, w.shape, NHWC)
