"""A loss cut after the network's first layer, which is linear in its parameters."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
from flax import nnx

from jaxopt_notes import models
from jaxopt_notes._types import PyTree


@dataclasses.dataclass(frozen=True)
class FirstLayerSplit:
    """A loss cut after the network's first layer, which is linear in the parameters:
    ``batch_loss(p, x, y) == rest(p, first(p, x), y)`` with ``first(p, x)`` linear in ``p``
    (a convolution or dense layer with its bias, on a fixed ``x``).

    The grid then computes ``first`` three times (at the centre and the two directions) and
    each point's features as ``h0 + a h1 + b h2``: the same values up to float rounding, without
    the first layer's cost per point. :func:`first_layer_split` builds one for an ``nnx`` model.
    """

    first: Callable[[PyTree, jax.Array], jax.Array]
    rest: Callable[[PyTree, jax.Array, jax.Array], jax.Array]


def first_layer_split(
    model: nnx.Module,
    layer: str,
    loss: Callable[[jax.Array, jax.Array], jax.Array],
    *,
    prepare: Callable[[jax.Array], jax.Array] = lambda x: x,
) -> FirstLayerSplit:
    """The :class:`FirstLayerSplit` of ``loss(model(prepare(x)), y)`` after ``model.<layer>``,
    over the ``nnx.Param`` state of ``model`` (its other state, e.g. BatchNorm averages, as it
    is now).

    ``model.__call__`` must apply ``model.<layer>`` to its input first (LeNet's ``conv1``); the
    rest runs ``model`` with that layer replaced by the identity on the features.

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> from jaxopt_notes import models
    >>> net = models.LeNet(in_shape=(8, 8, 1), rngs=nnx.Rngs(0))
    >>> ce = lambda logits, y: -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])
    >>> split = first_layer_split(net, "conv1", ce)
    >>> params = nnx.state(net, nnx.Param)
    >>> x, y = jnp.ones((3, 8, 8, 1)), jnp.array([0, 1, 2])
    >>> bool(jnp.allclose(split.rest(params, split.first(params, x), y), ce(net(x), y)))
    True
    """
    pure = models.split(model)
    if not isinstance(getattr(model, layer, None), nnx.Module):
        raise ValueError(f"`layer` must name a sub-module of `model`, got {layer!r}")

    def first(params, x):
        return getattr(pure.merge(params), layer)(prepare(x))

    def rest(params, h, y):
        net = pure.merge(params)
        setattr(net, layer, _Identity())
        return loss(net(h), y)

    return FirstLayerSplit(first, rest)


class _Identity(nnx.Module):
    def __call__(self, h: jax.Array) -> jax.Array:
        return h
