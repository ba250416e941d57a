"""The compiled pieces of training: the model, the state, a scanned epoch, an evaluation.

An epoch is ``plan`` (a shuffled order and a key per step, from the epoch's key) then ``steps``
(a ``lax.scan`` over them); :func:`make_epoch_fn` jits both as one call, and
:func:`make_chunk_fns` exposes them apart so a loop can stop every N steps (curvature tracking)
and still take exactly the same steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxopt_notes import data as data_lib
from jaxopt_notes import models
from jaxopt_notes.train.config import TrainConfig


class TrainState(NamedTuple):
    """What a step changes; ``ema`` is the parameters' moving average (``None`` when off)."""

    params: Any
    batch_stats: Any
    opt_state: Any
    ema: Any = None


def build_model(cfg: TrainConfig, info: dict[str, Any], key: jax.Array) -> nnx.Module:
    """The network of ``cfg`` for images of ``info["image_shape"]``, initialised from ``key``."""
    shape, classes = tuple(info["image_shape"]), info["num_classes"]
    rngs = nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1))
    init = cfg.resolved().init
    if cfg.model == "lenet":
        return models.LeNet(
            in_shape=shape,
            num_classes=classes,
            variant=cfg.variant,
            init=init,
            init_std=cfg.init_std,
            rngs=rngs,
        )
    mlp_fields = ("depth", "width", "activation", "dropout", "batch_norm", "init_std")
    kwargs = {name: getattr(cfg, name) for name in mlp_fields}
    return models.MLP(
        in_features=int(np.prod(shape)), num_classes=classes, init=init, **kwargs, rngs=rngs
    )


def cross_entropy(logits: jax.Array, onehot: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-example softmax cross-entropy and correctness (against the labels' argmax)."""
    loss = optax.softmax_cross_entropy(logits, onehot)
    return loss, (logits.argmax(-1) == onehot.argmax(-1)).astype(jnp.float32)


def _plan(key: jax.Array, n: int, steps: int, bs: int) -> tuple[jax.Array, jax.Array]:
    k_perm, k_steps = jax.random.split(key)
    order = jax.random.permutation(k_perm, n)[: steps * bs].reshape(steps, bs)
    return order, jax.random.split(k_steps, steps)


def make_chunk_fns(model, tx, data: data_lib.Dataset, cfg: TrainConfig, mesh: Mesh):
    """``(plan, steps)``: ``plan(key) -> (order, keys)`` for an epoch, and
    ``steps(state, x, y, order, keys[, valid]) -> (state, (losses, accuracies))`` over any
    slice of it; rows whose ``valid`` is False are padding and take no step."""
    pure = models.split(model, train=True)
    bs, n_steps = cfg.batch_size, len(data.y_train) // cfg.batch_size
    batch = NamedSharding(mesh, P("data"))

    def loss_fn(params, stats, x, onehot, key):
        net = pure.merge(params, stats, copy=True)
        loss, correct = cross_entropy(net(x, rngs=key), onehot)
        return loss.mean(), (correct.mean(), nnx.state(net, nnx.BatchStat))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(x_all, y_all, state: TrainState, inputs):
        idx, key = inputs
        k_aug, k_drop = jax.random.split(key)
        x = jax.lax.with_sharding_constraint(x_all[idx], batch)
        onehot = jax.nn.one_hot(y_all[idx], data.num_classes)
        if cfg.label_smoothing:
            onehot = optax.smooth_labels(onehot, cfg.label_smoothing)
        x, onehot = data_lib.augment(k_aug, data_lib.to_unit(x), onehot, cfg.augment)
        x = data_lib.normalize(x, data.mean, data.std)
        (loss, (acc, stats)), grads = grad_fn(state.params, state.batch_stats, x, onehot, k_drop)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema
        if ema is not None:
            ema = jax.tree.map(lambda e, p: cfg.ema * e + (1 - cfg.ema) * p, ema, params)
        return TrainState(params, stats, opt_state, ema), (loss, acc)

    def steps(state, x_all, y_all, order, keys, valid=None):
        if valid is None:
            return jax.lax.scan(lambda s, i: step(x_all, y_all, s, i), state, (order, keys))

        def masked(s, inputs):  # a padded step (valid False) leaves the state as it is
            *i, ok = inputs
            skip = lambda s: (s, (jnp.zeros(()), jnp.zeros(())))  # noqa: E731
            return jax.lax.cond(ok, lambda s: step(x_all, y_all, s, i), skip, s)

        return jax.lax.scan(masked, state, (order, keys, valid))

    return (lambda key: _plan(key, len(data.y_train), n_steps, bs)), steps


def make_epoch_fn(model, tx, data: data_lib.Dataset, cfg: TrainConfig, mesh: Mesh) -> Callable:
    """``epoch(state, x, y, key) -> (state, {"loss", "accuracy"})``, jitted, one ``lax.scan``.

    ``x``, ``y`` are the whole training set on the device; the last partial batch is dropped.
    """
    plan, steps = make_chunk_fns(model, tx, data, cfg, mesh)

    def epoch(state: TrainState, x_all: jax.Array, y_all: jax.Array, key: jax.Array):
        state, (loss, acc) = steps(state, x_all, y_all, *plan(key))
        return state, {"loss": loss.mean(), "accuracy": acc.mean()}

    return jax.jit(epoch, donate_argnums=0)


def eval_params(state: TrainState) -> Any:
    """The parameters a run evaluates: the moving average when kept, else the parameters."""
    return state.params if state.ema is None else state.ema


def make_eval_fn(model, data: data_lib.Dataset, mesh: Mesh, batch_size: int = 500) -> Callable:
    """``evaluate(state, x_uint8, y) -> {"loss", "accuracy"}`` over the whole set, jitted.

    ``state`` is a :class:`TrainState` (its :func:`eval_params` are used) or a pair
    ``(params, batch_stats)``. An empty set gives NaN, which callers must not write as JSON.
    """
    pure = models.split(model, train=False)
    batch_size = -(-batch_size // mesh.size) * mesh.size
    batch = NamedSharding(mesh, P(None, "data"))

    @jax.jit
    def evaluate(state, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
        params, stats = (eval_params(state), state.batch_stats) if len(state) > 2 else state
        n = x.shape[0]
        pad = -n % batch_size or (batch_size if n == 0 else 0)
        x = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1))
        mask = jnp.arange(n + pad) < n
        y = jnp.pad(y, (0, pad))
        chunks = [a.reshape(-1, batch_size, *a.shape[1:]) for a in (x, y, mask)]
        chunks[0] = jax.lax.with_sharding_constraint(chunks[0], batch)
        net = pure.merge(params, stats)

        def body(totals, inputs):
            xb, yb, mb = inputs
            xb = data_lib.normalize(xb, data.mean, data.std)
            loss, correct = cross_entropy(net(xb), jax.nn.one_hot(yb, data.num_classes))
            return (totals[0] + (loss * mb).sum(), totals[1] + (correct * mb).sum()), None

        (loss, correct), _ = jax.lax.scan(body, (0.0, 0.0), tuple(chunks))
        return {"loss": loss / n, "accuracy": correct / n}

    return evaluate


def make_mesh(devices: int = 1) -> Mesh:
    """A one-axis ``("data",)`` mesh over the first ``devices`` devices (0: all of them).

    Across several processes (``jax.distributed``) it always spans every device of all."""
    available = jax.devices()
    if jax.process_count() > 1:
        devices = 0
    if not 0 <= devices <= len(available):
        raise ValueError(f"`devices` must be in 0..{len(available)}, got {devices}")
    return Mesh(np.array(available[: devices or len(available)]), ("data",))


def init_state(cfg: TrainConfig, data: data_lib.Dataset, tx, mesh: Mesh):
    """The model (for its structure) and the replicated initial ``TrainState``."""
    model = build_model(cfg, data.describe(), jax.random.split(jax.random.key(cfg.seed))[0])
    _, params, stats, _ = models.split(model)
    ema = jax.tree.map(jnp.copy, params) if cfg.ema else None
    state = TrainState(params, stats, tx.init(params), ema)
    from jaxopt_notes.train.distributed import place

    return model, place(state, NamedSharding(mesh, P()))


def check_fit(cfg: TrainConfig, data: data_lib.Dataset, mesh: Mesh) -> None:
    """Raises before training when the batches cannot be formed or sharded."""
    if cfg.batch_size > len(data.y_train):
        raise ValueError(
            f"`batch_size` must be <= the {len(data.y_train)} training examples of "
            f"{data.name!r}, got {cfg.batch_size}"
        )
    if cfg.batch_size % mesh.size:
        raise ValueError(
            f"`batch_size` must be divisible by the {mesh.size} devices, got {cfg.batch_size}"
        )
