"""The compiled pieces of training: the model, the state, a scanned epoch, an evaluation.

An epoch is ``plan`` (a shuffled order and a key per step, from the epoch's key) then ``steps``
(a ``lax.scan`` over them); :func:`make_epoch_fn` jits both as one call, and
:func:`make_chunk_fns` exposes them apart so a loop can stop every N steps (curvature tracking)
and still take exactly the same steps.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxopt_notes import _checks, models
from jaxopt_notes import data as data_lib
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


def example_loss(kind: str, logits: jax.Array, onehot: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-example loss ``kind`` (``TrainConfig.loss``) and correctness: ``"cross_entropy"``
    (:func:`cross_entropy`) or ``"mse"``, half the squared error of the logits against the
    targets summed over classes (the square loss of Cohen et al. 2021).

    >>> float(example_loss("mse", jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]))[0][0])
    1.0
    """
    if _checks.one_of("loss", kind, ("cross_entropy", "mse")) == "mse":
        loss = 0.5 * jnp.sum((logits - onehot) ** 2, axis=-1)
        return loss, (logits.argmax(-1) == onehot.argmax(-1)).astype(jnp.float32)
    return cross_entropy(logits, onehot)


def label_loss(cfg: TrainConfig, logits: jax.Array, labels: jax.Array, classes: int) -> jax.Array:
    """The mean loss ``cfg`` trains on (``cfg.loss``, ``cfg.label_smoothing``) against integer
    ``labels``, without augmentation: what evaluations of the training objective use."""
    onehot = jax.nn.one_hot(labels, classes)
    if cfg.label_smoothing:
        onehot = optax.smooth_labels(onehot, cfg.label_smoothing)
    return example_loss(cfg.loss, logits, onehot)[0].mean()


def _plan(
    key: jax.Array, n: int, steps: int, bs: int, shards: int = 1
) -> tuple[jax.Array, jax.Array]:
    """(steps, shards, bs / shards) positions within each shard of ``n // shards`` examples,
    each shard shuffled alone, and a key per step; one shard is one shuffle of all ``n``."""
    k_perm, k_steps = jax.random.split(key)
    per, rows = n // shards, bs // shards
    perms = (
        [jax.random.permutation(k_perm, n)]
        if shards == 1
        else [jax.random.permutation(jax.random.fold_in(k_perm, s), per) for s in range(shards)]
    )
    order = jnp.stack([p[: steps * rows].reshape(steps, rows) for p in perms], axis=1)
    return order, jax.random.split(k_steps, steps)


def as_shards(a: jax.Array, shards: int) -> jax.Array:
    """(N, ...) as (shards, N // shards, ...), example i in shard i mod shards (the last
    N mod shards examples left out)."""
    per = a.shape[0] // shards
    return jnp.swapaxes(a[: per * shards].reshape(per, shards, *a.shape[1:]), 0, 1)


def make_step(
    model: nnx.Module,
    tx: optax.GradientTransformation,
    *,
    loss: Callable = cross_entropy,
    ema: float = 0.0,
    probe: Callable | None = None,
) -> Callable:
    """``step(state, x, targets, key) -> (state, (loss, accuracy, probed))``: one step of ``tx``
    on a prepared batch, ``model`` in training mode (dropout from ``key``, BatchNorm on batch
    statistics).

    ``state`` is a :class:`TrainState` (or any NamedTuple with its first three fields);
    ``loss(logits, targets) -> (per-example loss, correct)`` is averaged over the batch (the
    targets are what ``loss`` takes: one-hot rows for :func:`cross_entropy`); a state
    holding a moving average moves it by ``ema``; ``probe(params, new_params, grads)`` gives
    ``probed`` (``()`` without one), a pytree to record at every step.
    """
    pure = models.split(model, train=True)

    def loss_fn(params, stats, x, targets, key):
        net = pure.merge(params, stats, copy=True)
        values, correct = loss(net(x, rngs=key), targets)
        return values.mean(), (correct.mean(), nnx.state(net, nnx.BatchStat))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, x: jax.Array, targets: jax.Array, key: jax.Array):
        (value, (acc, stats)), grads = grad_fn(state.params, state.batch_stats, x, targets, key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = state._replace(params=params, batch_stats=stats, opt_state=opt_state)
        if getattr(state, "ema", None) is not None:
            new = new._replace(
                ema=jax.tree.map(lambda e, p: ema * e + (1 - ema) * p, state.ema, params)
            )
        probed = probe(state.params, params, grads) if probe is not None else ()
        return new, (value, acc, probed)

    return step


def make_chunk_fns(model, tx, data: data_lib.Dataset, cfg: TrainConfig, mesh: Mesh):
    """``(plan, steps)``: ``plan(key) -> (order, keys)`` for an epoch, and
    ``steps(state, x, y, order, keys[, valid]) -> (state, (losses, accuracies))`` over any
    slice of it; rows whose ``valid`` is False are padding and take no step."""
    loss = functools.partial(example_loss, cfg.loss)
    train_step = make_step(model, tx, loss=loss, ema=cfg.ema)
    bs, n_steps = cfg.batch_size, len(data.y_train) // cfg.batch_size
    batch = NamedSharding(mesh, P("data"))

    def step(x_all, y_all, state: TrainState, inputs):
        idx, key = inputs  # idx (shards, bs / shards): positions within each shard
        k_aug, k_drop = jax.random.split(key)
        take = jax.vmap(lambda a, i: a[i])  # per shard, so a sharded set is gathered in place
        x = jax.lax.with_sharding_constraint(take(x_all, idx).reshape(bs, *x_all.shape[2:]), batch)
        onehot = jax.nn.one_hot(take(y_all, idx).reshape(bs), data.num_classes)
        if cfg.label_smoothing:
            onehot = optax.smooth_labels(onehot, cfg.label_smoothing)
        x, onehot = data_lib.augment(k_aug, data_lib.to_unit(x), onehot, cfg.augment)
        x = data_lib.normalize(x, data.mean, data.std)
        state, (loss, acc, _) = train_step(state, x, onehot, k_drop)
        return state, (loss, acc)

    def steps(state, x_all, y_all, order, keys, valid=None):
        if y_all.ndim == 1:  # the whole set, (N, ...): its shards, example i in shard i mod S
            x_all, y_all = (as_shards(a, cfg.data_shards) for a in (x_all, y_all))
        if valid is None:
            return jax.lax.scan(lambda s, i: step(x_all, y_all, s, i), state, (order, keys))

        def masked(s, inputs):  # a padded step (valid False) leaves the state as it is
            *i, ok = inputs
            skip = lambda s: (s, (jnp.zeros(()), jnp.zeros(())))  # noqa: E731
            return jax.lax.cond(ok, lambda s: step(x_all, y_all, s, i), skip, s)

        return jax.lax.scan(masked, state, (order, keys, valid))

    return (lambda key: _plan(key, len(data.y_train), n_steps, bs, cfg.data_shards)), steps


def make_epoch_fn(model, tx, data: data_lib.Dataset, cfg: TrainConfig, mesh: Mesh) -> Callable:
    """``epoch(state, x, y, key) -> (state, {"loss", "accuracy"})``, jitted, one ``lax.scan``.

    ``x``, ``y`` are the whole training set on the device, (N, ...) and (N,), or its
    ``cfg.data_shards`` shards stacked, (S, N // S, ...) and (S, N // S) (see
    :func:`jaxopt_notes.train.distributed.shard_training`); the last partial batch is dropped.
    """
    plan, steps = make_chunk_fns(model, tx, data, cfg, mesh)

    def epoch(state: TrainState, x_all: jax.Array, y_all: jax.Array, key: jax.Array):
        state, (loss, acc) = steps(state, x_all, y_all, *plan(key))
        return state, {"loss": loss.mean(), "accuracy": acc.mean()}

    return jax.jit(epoch, donate_argnums=0)


def eval_params(state: TrainState) -> Any:
    """The parameters a run evaluates: the moving average when kept, else the parameters."""
    return state.params if state.ema is None else state.ema


def shift_image(x: jax.Array, dy: int, dx: int) -> jax.Array:
    """Images ``(N, H, W, C)`` moved ``dy`` pixels down and ``dx`` right, the uncovered
    border filled with zeros (the background of uint8 digits).

    >>> shift_image(jnp.arange(1, 5).reshape(1, 2, 2, 1), 1, 0)[0, :, :, 0].tolist()
    [[0, 0], [1, 2]]
    """
    s = max(abs(dy), abs(dx))
    padded = jnp.pad(x, ((0, 0), (s, s), (s, s), (0, 0)))
    h, w = x.shape[1:3]
    return padded[:, s - dy : s - dy + h, s - dx : s - dx + w]


def make_eval_fn(
    model,
    data: data_lib.Dataset,
    mesh: Mesh,
    batch_size: int = 500,
    loss: str = "cross_entropy",
    tta_shift: int = 0,
) -> Callable:
    """``evaluate(state, x_uint8, y) -> {"loss", "accuracy"}`` over the whole set, jitted;
    ``loss`` is the :func:`example_loss` it reports, on the images as they are. With
    ``tta_shift`` the accuracy is that of the softmax averaged over each image and its four
    shifts by ``tta_shift`` pixels (test-time augmentation, like training's random shifts).

    ``state`` is a :class:`TrainState` (its :func:`eval_params` are used) or a pair
    ``(params, batch_stats)``. An empty set gives NaN, which callers must not write as JSON.
    """
    kind = loss  # the name `loss` is the running sum below
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
            onehot = jax.nn.one_hot(yb, data.num_classes)
            logits = net(data_lib.normalize(xb, data.mean, data.std))
            loss, correct = example_loss(kind, logits, onehot)
            if tta_shift:
                probs = jax.nn.softmax(logits)
                for dy, dx in ((tta_shift, 0), (-tta_shift, 0), (0, tta_shift), (0, -tta_shift)):
                    moved = data_lib.normalize(shift_image(xb, dy, dx), data.mean, data.std)
                    probs = probs + jax.nn.softmax(net(moved))
                correct = (jnp.argmax(probs, -1) == yb).astype(loss.dtype)
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
    if cfg.data_shards > 1 and cfg.data_shards % mesh.size:
        raise ValueError(
            f"`data_shards` must be a multiple of the {mesh.size} devices, got {cfg.data_shards}"
        )
