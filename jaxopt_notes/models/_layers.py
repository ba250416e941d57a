"""The layers' pieces the networks share: activations, weight initializers, 2x2 pooling."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from jaxopt_notes import _checks

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}
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
