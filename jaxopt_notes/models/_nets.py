"""The networks of the notes: LeNet (classic and modern), an MLP, and their pure-function view."""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
from flax import nnx

from jaxopt_notes import _checks
from jaxopt_notes.models._layers import ACTIVATIONS, kernel_init, pool_2x2
from jaxopt_notes.models._split import split
from jaxopt_notes.models.conv import conv_nhwc

VARIANTS = ("classic", "modern")


class _InitSignature:
    """What ``inspect.signature(LeNet)`` shows: ``__init__``'s keyword arguments. NNX's
    metaclass defines ``__call__(cls, *args, **kwargs)``, which ``inspect`` would show instead;
    an instance still shows its own ``__call__``."""

    def __get__(self, obj: Any, owner: type) -> inspect.Signature:
        if obj is not None:
            raise AttributeError("__signature__")  # an instance: inspect reads its __call__
        init = inspect.signature(owner.__init__)
        return init.replace(parameters=list(init.parameters.values())[1:])


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

    __signature__ = _InitSignature()

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

    __signature__ = _InitSignature()

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

    >>> import jax.numpy as jnp
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
