"""Flax NNX models of the notes: LeNet (classic and modern) and an MLP, plus a pure-function view.

Images are NHWC. Every hyperparameter is keyword-only and checked before any array is made.
Modules follow NNX's modes: as built they are in training mode (dropout on, BatchNorm on batch
statistics); ``model.eval()`` or ``nnx.view(model, deterministic=True, use_running_average=True)``
switches both off. :func:`functional` crosses into pure functions for the Hessian tools and the
gradient transforms: ``apply(params, x) -> logits`` over a params pytree; :func:`split` and
:meth:`Split.merge` are the one way to cut a model into parameters, BatchNorm statistics and the
rest, and to put it back.

>>> from flax import nnx
>>> model = LeNet(rngs=nnx.Rngs(0))
>>> count_params(model)
61706
>>> model(jnp.zeros((2, 28, 28, 1))).shape
(2, 10)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxopt_notes import _checks
from jaxopt_notes.models._split import Split as Split
from jaxopt_notes.models._split import split
from jaxopt_notes.models.conv import conv_nhwc

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}
VARIANTS = ("classic", "modern")
INITS = ("normal", "xavier", "he", "lecun")


def kernel_init(init: str, std: float = 0.01) -> nnx.initializers.Initializer:
    """The weight initializer named ``init``; ``std`` is used by ``"normal"`` only.

    ``"xavier"`` is Glorot normal (std sqrt(2 / (fan_in + fan_out))), ``"he"`` is He normal
    (std sqrt(2 / fan_in)), ``"lecun"`` is LeCun normal (std sqrt(1 / fan_in), Flax's default).
    """
    _checks.one_of("init", init, INITS)
    _checks.positive("init_std", std)
    return {
        "normal": lambda: nnx.initializers.normal(stddev=std),
        "xavier": nnx.initializers.xavier_normal,
        "he": nnx.initializers.he_normal,
        "lecun": nnx.initializers.lecun_normal,
    }[init]()


def _phases(x: jax.Array) -> tuple[jax.Array, ...]:
    """The four positions of every 2x2 window: top left, top right, bottom left, bottom right."""
    return x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]


@jax.custom_jvp
def _max_pool(x: jax.Array) -> jax.Array:
    a, b, c, d = _phases(x)
    return jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))


@_max_pool.defjvp
def _max_pool_jvp(primals, tangents):
    # the tangent (and, transposed, the gradient) goes to the first maximum of each window in
    # row order, as in XLA's select-and-scatter (and torch); a jvp rule rather than a vjp one
    # so forward-over-reverse Hessian-vector products work through the pooling too
    (x,), (t,) = primals, tangents
    out = _max_pool(x)
    n, h, w, c = x.shape
    taken = jnp.zeros(out.shape, bool)
    masks = []
    for phase in _phases(x):
        first = (phase == out) & ~taken
        taken = taken | first
        masks.append(first)
    mask = jnp.stack(masks).reshape(2, 2, n, h // 2, w // 2, c).transpose(2, 3, 0, 4, 1, 5)
    mask = jax.lax.stop_gradient(mask.reshape(n, h, w, c))
    t_out = jnp.where(mask, t, jnp.zeros_like(t)).reshape(n, h // 2, 2, w // 2, 2, c).sum((2, 4))
    return out, t_out


def pool_2x2(x: jax.Array, kind: str) -> jax.Array:
    """2x2 max or average pooling, stride 2, VALID (an odd last row or column is dropped).

    Same values and gradients as ``nnx.max_pool``/``nnx.avg_pool`` (a window's gradient goes
    to its first maximum), in elementwise XLA loops instead of a reduce-window and its
    select-and-scatter gradient, which XLA:CPU runs several times slower (``jaxopt-notes bench
    train`` times the LeNet it is part of)."""
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    if kind == "max":
        return _max_pool(x)
    # rows then columns as two halves of contiguous runs: XLA:CPU vectorises these adds, and
    # their gradient is two broadcasts (a mean over axes (2, 4) of a 6-D reshape: ~3x slower)
    rows = x.reshape(n, h // 2, 2, w // 2 * 2 * c)
    rows = (rows[:, :, 0] + rows[:, :, 1]).reshape(n, h // 2, w // 2, 2 * c)
    return 0.25 * (rows[..., :c] + rows[..., c:])


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
      init: weight init of every layer, ``"lecun"`` (default: Flax's own, LeCun normal),
        ``"normal"`` (std ``init_std``), ``"xavier"`` or ``"he"``; biases start at 0.
      init_std: the std of ``init="normal"``.
      rngs: random streams for the initial weights.

    >>> from flax import nnx
    >>> net = LeNet(init="normal", init_std=0.5, rngs=nnx.Rngs(0))
    >>> round(float(net.fc2.kernel[...].std()), 1)
    0.5
    """

    def __init__(
        self,
        *,
        in_shape: Sequence[int] = (28, 28, 1),
        num_classes: int = 10,
        variant: str = "classic",
        init: str = "lecun",
        init_std: float = 0.01,
        rngs: nnx.Rngs,
    ):
        height, width, channels = _image_shape(in_shape)
        _checks.integer("num_classes", num_classes, low=2)
        self.variant = _checks.one_of("variant", variant, VARIANTS)
        w_init = kernel_init(init, init_std)
        pad2 = 0 if min(height, width) // 2 >= 10 else 2
        conv = dict(
            kernel_size=(5, 5), conv_general_dilated=conv_nhwc, kernel_init=w_init, rngs=rngs
        )
        self.conv1 = nnx.Conv(channels, 6, padding=2, **conv)
        self.conv2 = nnx.Conv(6, 16, padding=pad2, **conv)
        h, w = (_after_conv_pool(s // 2, pad2) for s in (height, width))
        if h < 1 or w < 1:
            raise ValueError(f"`in_shape` must be at least 4x4 for LeNet, got {tuple(in_shape)}")
        self.fc1 = nnx.Linear(16 * h * w, 120, kernel_init=w_init, rngs=rngs)
        self.fc2 = nnx.Linear(120, 84, kernel_init=w_init, rngs=rngs)
        self.fc3 = nnx.Linear(84, num_classes, kernel_init=w_init, rngs=rngs)

    def __call__(self, x: jax.Array, *, rngs: jax.Array | None = None) -> jax.Array:
        """Logits of ``x``; ``rngs`` is accepted for a call signature shared with :class:`MLP`."""
        del rngs  # LeNet has no randomness
        act, pool = (jax.nn.sigmoid, "avg") if self.variant == "classic" else (jax.nn.relu, "max")
        for conv in (self.conv1, self.conv2):
            # max pooling commutes with a non-decreasing activation: pool first, on 4x fewer
            # values (the same values, and with ReLU the same gradients)
            x = act(pool_2x2(conv(x), pool)) if pool == "max" else pool_2x2(act(conv(x)), pool)
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
        self.activation = _checks.one_of("activation", activation, ACTIVATIONS)
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
    pure = split(model, train=False)

    def apply(params: Any, x: jax.Array) -> jax.Array:
        return pure.merge(params)(x)

    return apply, pure.params


def _image_shape(in_shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(in_shape)
    if len(shape) != 3 or not all(isinstance(s, int) and s > 0 for s in shape):
        raise ValueError(
            f"`in_shape` must be (height, width, channels) of positive integers, got {in_shape!r}"
        )
    return shape  # type: ignore[return-value]


def _after_conv_pool(size: int, pad: int) -> int:
    return (size + 2 * pad - 4) // 2
