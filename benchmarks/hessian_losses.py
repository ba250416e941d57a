"""The losses of ``bench hessian`` (mean softmax cross-entropy, float32 unless asked).

* the classic LeNet-5 written by hand with ``lax.conv_general_dilated`` and the weights of
  ``models.LeNet(rngs=nnx.Rngs(seed))``, on the first mnist5k training images;
* a tanh MLP 64-35-10 (2,635 parameters) on the 1,797 scikit-learn digits.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxopt_notes import data, models


def lenet_weights(seed: int = 0) -> dict:
    """``models.LeNet(rngs=nnx.Rngs(seed))``'s weights as a plain dict of arrays."""
    params = models.functional(models.LeNet(rngs=nnx.Rngs(seed)))[1]
    return jax.tree.map(jnp.asarray, nnx.to_pure_dict(params))


def classic_lenet_apply(p: dict, x: jax.Array) -> jax.Array:
    """LeNet-5 by hand: 5x5 convs (pad 2, then valid), sigmoid, 2x2 mean pooling, 120-84-10."""

    def conv(h, layer, pad):
        out = jax.lax.conv_general_dilated(
            h, layer["kernel"], (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return out + layer["bias"]

    def pool(h):
        n, hh, ww, c = h.shape
        return h.reshape(n, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))

    h = pool(jax.nn.sigmoid(conv(x, p["conv1"], ((2, 2), (2, 2)))))
    h = pool(jax.nn.sigmoid(conv(h, p["conv2"], "VALID"))).reshape(x.shape[0], -1)
    h = jax.nn.sigmoid(h @ p["fc1"]["kernel"] + p["fc1"]["bias"])
    h = jax.nn.sigmoid(h @ p["fc2"]["kernel"] + p["fc2"]["bias"])
    return h @ p["fc3"]["kernel"] + p["fc3"]["bias"]


def mnist_batch(num_examples: int) -> tuple[jax.Array, jax.Array]:
    mnist = data.load("mnist5k")
    return data.to_unit(jnp.asarray(mnist.x_train[:num_examples])), jnp.asarray(
        mnist.y_train[:num_examples]
    )


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def mlp_problem(num_examples: int, seed: int = 0):
    """``(loss_fn, params)`` of the 64-35-10 tanh MLP on the digits (pixels / 16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = jnp.asarray(digits.data[:num_examples] / 16.0, jnp.float32)
    y = jnp.asarray(digits.target[:num_examples])
    keys = jax.random.split(jax.random.PRNGKey(seed), 2)
    params = {
        "w0": jax.random.normal(keys[0], (64, 35)) / 8.0,
        "b0": jnp.zeros(35),
        "w1": jax.random.normal(keys[1], (35, 10)) / np.sqrt(35.0),
        "b1": jnp.zeros(10),
    }

    def loss_fn(p):
        return cross_entropy(jnp.tanh(x @ p["w0"] + p["b0"]) @ p["w1"] + p["b1"], y)

    return loss_fn, params


def digits(n: int, dtype=jnp.float32):
    from sklearn.datasets import load_digits

    digits = load_digits()
    return jnp.asarray(digits.data[:n] / 16.0, dtype), jnp.asarray(digits.target[:n])


def mlp_batch_loss(p, batch):
    x, y = batch
    return cross_entropy(jnp.tanh(x @ p["w0"] + p["b0"]) @ p["w1"] + p["b1"], y)


def mlp_loss_in(dtype, n: int) -> Callable:
    batch = digits(n, dtype)
    return lambda p: mlp_batch_loss(p, batch)
