"""Flax NNX models of the notes: LeNet (classic and modern) and an MLP, plus a pure-function view.

Images are NHWC. Every hyperparameter is keyword-only and checked before any array is made.
Modules follow NNX's modes: as built they are in training mode (dropout on, BatchNorm on batch
statistics); ``model.eval()`` or ``nnx.view(model, deterministic=True, use_running_average=True)``
switches both off. :func:`functional` crosses into pure functions for the Hessian tools and the
gradient transforms: ``apply(params, x) -> logits`` over a params pytree.

>>> from flax import nnx
>>> model = LeNet(rngs=nnx.Rngs(0))
>>> count_params(model)
61706
>>> model(jnp.zeros((2, 28, 28, 1))).shape
(2, 10)
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxopt_notes import _checks

_NHWC = ("NHWC", "HWIO", "NHWC")

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}
VARIANTS = ("classic", "modern")
INITS = ("normal", "xavier", "he", "lecun")


def _choice(name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"`{name}` must be one of {tuple(options)}, got {value!r}")
    return value


def kernel_init(init: str, std: float = 0.01) -> nnx.initializers.Initializer:
    """The weight initializer named ``init``; ``std`` is used by ``"normal"`` only.

    ``"xavier"`` is Glorot normal (std sqrt(2 / (fan_in + fan_out))), ``"he"`` is He normal
    (std sqrt(2 / fan_in)), ``"lecun"`` is LeCun normal (std sqrt(1 / fan_in), Flax's default).
    """
    _choice("init", init, INITS)
    _checks.positive("init_std", std)
    return {
        "normal": lambda: nnx.initializers.normal(stddev=std),
        "xavier": nnx.initializers.xavier_normal,
        "he": nnx.initializers.he_normal,
        "lecun": nnx.initializers.lecun_normal,
    }[init]()


def _shifted_sum_conv(x: jax.Array, w: jax.Array, padding: tuple) -> jax.Array:
    """The convolution as a sum over kernel taps and input channels of shifted input slices
    times a kernel row. For one to three input channels XLA:CPU runs this as one fused loop,
    about 10x faster than its own convolution there (LeNet's first layer: 38 ms -> 3.6 ms for
    256 MNIST images); with more channels its convolution wins."""
    kh, kw, ci, _ = w.shape
    x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    taps = itertools.product(range(kh), range(kw), range(ci))
    return sum(x[:, i : i + oh, j : j + ow, c : c + 1] * w[i, j, c] for i, j, c in taps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv(x: jax.Array, w: jax.Array, padding: tuple) -> jax.Array:
    if w.shape[2] <= 3:
        return _shifted_sum_conv(x, w, padding)
    return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_NHWC)


def _conv_fwd(x, w, padding):
    return _conv(x, w, padding), (x, w)


def _conv_bwd(padding, residuals, g):
    x, w = residuals
    # input gradient: full correlation of g with the flipped kernel, channels swapped
    pad_dx = [(k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(w.shape[:2], padding, strict=True)]
    w_t = jnp.flip(w, (0, 1)).swapaxes(2, 3)
    dx = jax.lax.conv_general_dilated(g, w_t, (1, 1), pad_dx, dimension_numbers=_NHWC)
    # kernel gradient: input channels as the batch, examples as the contracted features
    x_t, g_t = x.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3)
    dw = jax.lax.conv_general_dilated(x_t, g_t, (1, 1), padding, dimension_numbers=_NHWC)
    return dx, dw.transpose(1, 2, 0, 3)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_nhwc(x, w, window_strides, padding, *args, dimension_numbers=None, **kwargs):
    """``lax.conv_general_dilated`` whose gradients are convolutions in the NHWC/HWIO layout.

    The values and gradients are XLA's convolution's up to float rounding: the forward pass of
    a layer with one to three input channels is a sum of shifted slices (see
    ``_shifted_sum_conv``), and the backward convolutions have another form. XLA:CPU rewrites
    the kernel-gradient convolution into this fast layout at the top level but not inside a
    ``while`` loop, so without this a ``lax.scan``
    over training steps ran LeNet about 2.5x slower than one jitted call per step. Used for
    stride 1, no dilation, one group, explicit padding; anything else goes to ``lax`` unchanged.
    """
    plain = (
        tuple(window_strides) == (1, 1)
        and not args
        and not isinstance(padding, str)
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
    return _conv(x, w, tuple(tuple(int(p) for p in pair) for pair in padding))


def _is_nhwc(dimension_numbers: Any, x: jax.Array, w: jax.Array) -> bool:
    if dimension_numbers is None:  # lax's default is NCHW
        return False
    if all(isinstance(spec, str) for spec in dimension_numbers):
        return tuple(dimension_numbers) == _NHWC
    return dimension_numbers == jax.lax.conv_dimension_numbers(x.shape, w.shape, _NHWC)


def pool_2x2(x: jax.Array, kind: str) -> jax.Array:
    """2x2 max or average pooling, stride 2, VALID (an odd last row or column is dropped), as
    a reshape and a reduction. Same values as ``nnx.max_pool``/``nnx.avg_pool``; the gradient
    is elementwise instead of XLA's select-and-scatter, which made a LeNet step on the CPU
    1.4x slower. (Where a 2x2 window has tied maxima the gradient is shared among them, not
    given to the first; after a ReLU, ties are zeros whose gradient the ReLU stops anyway.)"""
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
    return x.max(axis=(2, 4)) if kind == "max" else x.mean(axis=(2, 4))


class LeNet(nnx.Module):
    """LeNet-5: two 5x5 convolutions (6 and 16 filters), then dense layers of 120, 84 and classes.

    ``variant="classic"`` is LeCun's and d2l's network: sigmoid activations and 2x2 average
    pooling. ``variant="modern"`` uses ReLU and 2x2 max pooling, which trains much faster.
    The first convolution pads by 2 (so 28x28 MNIST keeps the 32x32 geometry of the paper); the
    second pads only when the image is too small for a valid 5x5 window (8x8 digits).

    Args:
      in_shape: (height, width, channels) of one image, e.g. (28, 28, 1) or (32, 32, 3).
      num_classes: number of output logits.
      variant: ``"classic"`` or ``"modern"``.
      rngs: random streams for the initial weights.
    """

    def __init__(
        self,
        *,
        in_shape: Sequence[int] = (28, 28, 1),
        num_classes: int = 10,
        variant: str = "classic",
        rngs: nnx.Rngs,
    ):
        height, width, channels = _image_shape(in_shape)
        _checks.integer("num_classes", num_classes, low=2)
        self.variant = _choice("variant", variant, VARIANTS)
        pad2 = 0 if min(height, width) // 2 >= 10 else 2
        conv = dict(kernel_size=(5, 5), conv_general_dilated=conv_nhwc, rngs=rngs)
        self.conv1 = nnx.Conv(channels, 6, padding=2, **conv)
        self.conv2 = nnx.Conv(6, 16, padding=pad2, **conv)
        h, w = (_after_conv_pool(s // 2, pad2) for s in (height, width))
        if h < 1 or w < 1:
            raise ValueError(f"`in_shape` must be at least 4x4 for LeNet, got {tuple(in_shape)}")
        self.fc1 = nnx.Linear(16 * h * w, 120, rngs=rngs)
        self.fc2 = nnx.Linear(120, 84, rngs=rngs)
        self.fc3 = nnx.Linear(84, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array, *, rngs: jax.Array | None = None) -> jax.Array:
        """Logits of ``x``; ``rngs`` is accepted for a call signature shared with :class:`MLP`."""
        del rngs  # LeNet has no randomness
        act, pool = (jax.nn.sigmoid, "avg") if self.variant == "classic" else (jax.nn.relu, "max")
        for conv in (self.conv1, self.conv2):
            x = pool_2x2(act(conv(x)), pool)
        x = x.reshape(x.shape[0], -1)
        x = act(self.fc1(x))
        x = act(self.fc2(x))
        return self.fc3(x)


class MLP(nnx.Module):
    """A multilayer perceptron: ``depth`` hidden layers of ``width`` units, then the classes.

    Each hidden layer is Linear -> [BatchNorm] -> activation -> [inverted dropout]. Inverted
    dropout scales kept units by 1 / (1 - p) while training, so evaluation needs no rescaling.
    Inputs of any shape (batch, ...) are flattened.

    Args:
      in_features: size of one flattened input (784 for 28x28 images).
      num_classes: number of output logits.
      depth: number of hidden layers (0 gives softmax regression).
      width: units per hidden layer.
      activation: ``"sigmoid"``, ``"tanh"`` or ``"relu"``.
      init: ``"normal"`` (std ``init_std``), ``"xavier"``, ``"he"`` or ``"lecun"``.
      init_std: the std of ``init="normal"``; the notes use 1 and 0.01.
      dropout: drop probability after each hidden activation, in [0, 1).
      batch_norm: whether to put BatchNorm after each hidden Linear.
      rngs: random streams for the initial weights and the dropout masks.

    >>> from flax import nnx
    >>> mlp = MLP(in_features=4, depth=1, width=3, num_classes=2, rngs=nnx.Rngs(0))
    >>> count_params(mlp)  # (4 * 3 + 3) + (3 * 2 + 2)
    23
    """

    def __init__(
        self,
        *,
        in_features: int = 784,
        num_classes: int = 10,
        depth: int = 2,
        width: int = 256,
        activation: str = "relu",
        init: str = "he",
        init_std: float = 0.01,
        dropout: float = 0.0,
        batch_norm: bool = False,
        rngs: nnx.Rngs,
    ):
        for name, value, low in (("in_features", in_features, 1), ("num_classes", num_classes, 2)):
            _checks.integer(name, value, low=low)
        _checks.integer("depth", depth, low=0)
        _checks.integer("width", width, low=1)
        _checks.real("dropout", dropout, low=0.0, high=1.0, high_open=True)
        _checks.flag("batch_norm", batch_norm)
        self.activation = _choice("activation", activation, tuple(ACTIVATIONS))
        w_init = kernel_init(init, init_std)
        sizes = [in_features] + [width] * depth
        self.hidden = nnx.List(
            [nnx.Linear(a, b, kernel_init=w_init, rngs=rngs) for a, b in itertools.pairwise(sizes)]
        )
        self.norms = nnx.List(
            [nnx.BatchNorm(width, rngs=rngs) for _ in range(depth)] if batch_norm else []
        )
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(sizes[-1], num_classes, kernel_init=w_init, rngs=rngs)

    def __call__(self, x: jax.Array, *, rngs: jax.Array | None = None) -> jax.Array:
        """Logits of ``x``; ``rngs`` (a key) overrides the module's own dropout stream."""
        act = ACTIVATIONS[self.activation]
        x = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.hidden):
            x = layer(x)
            if len(self.norms):
                x = self.norms[i](x)
            keys = None if rngs is None else jax.random.fold_in(rngs, i)
            x = self.dropout(act(x), rngs=keys)
        return self.out(x)


def count_params(model: nnx.Module) -> int:
    """The number of trainable scalars (``nnx.Param``) of ``model``."""
    params = nnx.state(model, nnx.Param)
    return sum(math.prod(p.shape) for p in jax.tree.leaves(params))


def functional(model: nnx.Module) -> tuple[Callable[[Any, jax.Array], jax.Array], nnx.State]:
    """A pure view of ``model`` in evaluation mode: ``(apply, params)``.

    ``apply(params, x)`` returns the logits; ``params`` is the ``nnx.State`` of the parameters,
    a pytree the Hessian tools and gradient transforms take as is. The other state (BatchNorm
    averages, RNG streams) is frozen into ``apply``; dropout is off and BatchNorm uses its
    running averages, so ``apply`` is a deterministic function of ``params``.

    >>> from flax import nnx
    >>> apply, params = functional(MLP(in_features=4, depth=1, width=3, rngs=nnx.Rngs(0)))
    >>> apply(params, jnp.ones((5, 4))).shape
    (5, 10)
    """
    view = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    graphdef, params, rest = nnx.split(view, nnx.Param, ...)

    def apply(params: Any, x: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, params, rest)(x)

    return apply, params


def _image_shape(in_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(in_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(
            f"`in_shape` must be (height, width, channels) of positive integers, got {in_shape!r}"
        )
    return shape  # type: ignore[return-value]


def _after_conv_pool(size: int, pad: int) -> int:
    return (size + 2 * pad - 4) // 2
