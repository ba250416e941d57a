"""Many trials as one compiled program: training ``vmap``ped over hyperparameters.

Every trial shares the model structure, the data, the batch order and (by default) the initial
weights, so the trials differ only by their hyperparameters: common random numbers, which make
the comparison between trials sharper than independent draws would. The hyperparameters enter
through ``optax.inject_hyperparams``: they live in the optimizer state as arrays with a leading
trial axis, so a stage of 16 trials is one program compiled once, and a second stage with other
values (same count) reuses it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxopt_notes as jn
from jaxopt_notes import data as data_lib
from jaxopt_notes import models
from jaxopt_notes.train import TrainConfig, build_model, make_schedule

# the run-config fields a trial may vary: they reach the optimizer as injected arrays
SEARCHABLE = ("learning_rate", "weight_decay", "momentum", "b1", "b2", "eps", "decay")
# the value an unset (None) field takes in the optimizer, when it is searched
_UNSET = {"momentum": 0.0, "b1": 0.9, "b2": 0.999, "eps": 1e-8, "decay": 0.9}


class TrialState(NamedTuple):
    params: Any
    batch_stats: Any
    opt_state: Any


def searchable(cfg: TrainConfig) -> tuple[str, ...]:
    """The hyperparameters a search of ``cfg`` may vary: ``learning_rate``, ``weight_decay`` and
    the optimizer's own numeric arguments among :data:`SEARCHABLE`."""
    takes = inspect.signature(jn.OPTIMIZERS[cfg.optimizer]).parameters
    return tuple(n for n in SEARCHABLE if n in ("learning_rate", "weight_decay") or n in takes)


def fixed(cfg: TrainConfig) -> tuple[str, ...]:
    """The run config's fields a stage cannot vary (the model's structure, the loop's shapes)."""
    return tuple(f.name for f in dataclasses.fields(cfg) if f.name not in searchable(cfg))


def defaults(cfg: TrainConfig, names: tuple[str, ...]) -> dict[str, float]:
    """The value each of ``names`` has in a run of ``cfg`` (an unset field: the optimizer's)."""
    return {n: float(_UNSET[n] if getattr(cfg, n) is None else getattr(cfg, n)) for n in names}


def _factory(cfg: TrainConfig, names: tuple[str, ...], average=None) -> Callable:
    """``f(**hyperparameters)`` with an explicit signature (``inject_hyperparams`` binds by name).

    The links mirror ``jaxopt_notes.train.make_optimizer``: clipping, coupled weight decay, the
    optimizer, decoupled weight decay (``lr_t * lambda * theta``; AdamW keeps its own). The
    injected ``learning_rate`` is already the scheduled rate of the step.
    """
    inner = jn.OPTIMIZERS[cfg.optimizer]
    decays = "weight_decay" in names or cfg.weight_decay != 0
    own = cfg.optimizer == "adamw"
    fixed = {**cfg.hyperparameters(), "convention": cfg.convention}

    def factory(**hp):
        wd = hp.pop("weight_decay", cfg.weight_decay)
        kwargs = {**fixed, **hp, **({"weight_decay": wd} if own else {})}
        links = [jn.clip(cfg.clip_value)] if cfg.clip_value else []
        links += [jn.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
        coupled = decays and not own and cfg.weight_decay_mode == "coupled"
        links += [jn.add_decayed_weights(wd)] if coupled else []
        links.append(inner(**kwargs))
        if decays and not own and cfg.weight_decay_mode == "decoupled":
            links.append(jn.add_decayed_weights(-wd * hp["learning_rate"]))
        links += [average] if average is not None else []
        return links[0] if len(links) == 1 else jn.chain(*links)

    kind = inspect.Parameter.KEYWORD_ONLY
    factory.__signature__ = inspect.Signature([inspect.Parameter(n, kind) for n in names])
    return factory


def make_optimizer(cfg: TrainConfig, hyperparameters: dict[str, Any], average=None):
    """The optimizer of ``cfg`` with ``hyperparameters`` injected (read back from its state);
    ``average`` (``jn.ema_params(...)``, ``jn.polyak_params()``) closes the chain."""
    hp = {"learning_rate": cfg.learning_rate, **hyperparameters}
    return optax.inject_hyperparams(_factory(cfg, tuple(hp), average))(**hp)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable:
    """``step -> multiplier`` of the peak learning rate under ``cfg``'s schedule."""
    unit = make_schedule(dataclasses.replace(cfg, learning_rate=1.0), steps_per_epoch)
    return unit if callable(unit) else (lambda step: jnp.ones([], jnp.float32))


def make_loss(model: nnx.Module, cfg: TrainConfig) -> Callable:
    """``loss(params, batch_stats, x, onehot, key) -> (mean loss, (accuracy, batch_stats))`` of
    ``model`` in training mode (dropout on, BatchNorm on batch statistics)."""
    pure = models.split(model, train=True)

    def loss_fn(params, stats, x, onehot, key):
        net = pure.merge(params, stats, copy=True)
        logits = net(x, rngs=key)
        acc = (logits.argmax(-1) == onehot.argmax(-1)).mean()
        if cfg.label_smoothing:
            onehot = optax.smooth_labels(onehot, cfg.label_smoothing)
        loss = optax.softmax_cross_entropy(logits, onehot).mean()
        return loss, (acc, nnx.state(net, nnx.BatchStat))

    return loss_fn


class Program(NamedTuple):
    """The compiled pieces of a stage; every function takes and returns a leading trial axis."""

    init: Callable  # (params (shared or [T]), hypers{name: [T]}) -> TrialState[T]
    epoch: Callable  # (state[T], hypers, active[T], x, y, key) -> state[T], {"loss", "accuracy"}
    evaluate: Callable  # (state[T], x, y) -> {"loss", "accuracy"}[T]
    logits: Callable  # (state[T], x) -> logits[T, N, C]
    model: nnx.Module


def build(
    cfg: TrainConfig,
    data: data_lib.Dataset,
    names: tuple[str, ...],
    chunk: int | None = None,
    average: optax.GradientTransformation | None = None,
) -> Program:
    """The stage program of ``cfg`` on ``data`` whose trials vary the hyperparameters ``names``.

    ``chunk`` trials run side by side (``vmap``), chunks one after another; ``None``: all.
    ``average`` (a weight-averaging link) is appended to every trial's optimizer.
    """
    model = build_model(cfg, data.describe(), init_key(cfg))
    base = defaults(cfg, names)
    factor = lr_factor(cfg, len(data.y_train) // cfg.batch_size)

    loss_fn = make_loss(model, cfg)
    eval_pure = models.split(model, train=False)
    stats0 = nnx.state(model, nnx.BatchStat)
    tx = make_optimizer(cfg, base, average)  # its update reads the state's hyperparameters

    def step_one(state: TrialState, hypers, x, onehot, key):
        (loss, (acc, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, state.batch_stats, x, onehot, key
        )
        opt = state.opt_state
        # the peak rate comes from the trial (or the config), never from the state, which holds
        # the last step's scheduled rate
        scaled = {**opt.hyperparams, "learning_rate": cfg.learning_rate, **hypers}
        scaled["learning_rate"] = scaled["learning_rate"] * factor(opt.count)
        opt = opt._replace(hyperparams=scaled)
        updates, opt = tx.update(grads, opt, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrialState(params, stats, opt), (loss, acc)

    def epoch_one(state, hypers, x_all, y_all, order, keys):
        def step(state, inputs):
            idx, k = inputs
            k_aug, k_drop = jax.random.split(k)
            onehot = jax.nn.one_hot(y_all[idx], data.num_classes)
            x, onehot = data_lib.augment(k_aug, data_lib.to_unit(x_all[idx]), onehot, cfg.augment)
            x = data_lib.normalize(x, data.mean, data.std)
            return step_one(state, hypers, x, onehot, k_drop)

        state, (loss, acc) = jax.lax.scan(step, state, (order, keys))
        return state, {"loss": loss.mean(), "accuracy": acc.mean()}

    def epoch(states, hypers, active, x_all, y_all, key):
        n_steps = x_all.shape[0] // cfg.batch_size
        k_perm, k_steps = jax.random.split(key)
        order = jax.random.permutation(k_perm, x_all.shape[0])[: n_steps * cfg.batch_size]
        order = order.reshape(n_steps, cfg.batch_size)
        keys = jax.random.split(k_steps, n_steps)

        def one(args):
            state, hp, on = args
            run = lambda s: epoch_one(s, hp, x_all, y_all, order, keys)  # noqa: E731
            nan = jnp.full((), jnp.nan, jnp.float32)
            skip = lambda s: (s, {"loss": nan, "accuracy": nan})  # noqa: E731
            # a trial cut by successive halving stops computing (when trials run one by one)
            return jax.lax.cond(on, run, skip, state)

        # batch_size = T is a plain vmap; smaller chunks loop over groups of trials, which
        # XLA:CPU runs faster than one wide batched matmul (accelerators prefer the vmap)
        if chunk is None:
            return jax.vmap(one)((states, hypers, active))
        return jax.lax.map(one, (states, hypers, active), batch_size=chunk)

    def logits_one(state: TrialState, x):
        net = eval_pure.merge(state.params, state.batch_stats)
        return net(data_lib.normalize(x, data.mean, data.std))

    def logits(states, x):
        return jax.vmap(logits_one, in_axes=(0, None))(states, x)

    def evaluate(states, x, y):
        out = jax.lax.map(lambda xb: logits(states, xb), _chunks(x))  # [chunks, T, B, C]
        out = jnp.moveaxis(out, 0, 1).reshape(out.shape[1], -1, out.shape[-1])[:, : y.shape[0]]
        onehot = jax.nn.one_hot(y, data.num_classes)
        loss = optax.softmax_cross_entropy(out, onehot[None]).mean(-1)
        return {"loss": loss, "accuracy": (out.argmax(-1) == y[None]).mean(-1)}

    def init(params, hypers):
        """Trial states from ``params`` and ``hypers``, both with a leading trial axis."""
        size = len(next(iter(hypers.values())))
        stats = broadcast(stats0, size)
        opt = jax.vmap(lambda p, h: make_optimizer(cfg, {**base, **h}, average).init(p))(
            params, hypers
        )
        return TrialState(params, stats, opt)

    return Program(
        init=jax.jit(init),
        epoch=jax.jit(epoch, donate_argnums=0),
        evaluate=jax.jit(evaluate),
        logits=jax.jit(logits),
        model=model,
    )


def init_key(cfg: TrainConfig, seed: int | None = None) -> jax.Array:
    """The init key of a run of ``cfg`` (with ``seed`` instead of ``cfg.seed`` when given)."""
    return jax.random.split(jax.random.key(cfg.seed if seed is None else seed))[0]


def initial_params(cfg: TrainConfig, data: data_lib.Dataset, seeds: list[int]) -> Any:
    """The initial parameters of ``cfg`` for each of ``seeds``, stacked on a leading axis."""
    info = data.describe()
    trees = [nnx.state(build_model(cfg, info, init_key(cfg, s)), nnx.Param) for s in seeds]
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def broadcast(tree: Any, n: int) -> Any:
    """``tree`` repeated ``n`` times along a new leading (trial) axis."""
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape)), tree)


def _chunks(x: jax.Array, size: int = 500) -> jax.Array:
    pad = -x.shape[0] % size
    x = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1))
    return x.reshape(-1, size, *x.shape[1:])


def take(tree: Any, index: np.ndarray) -> Any:
    """The trials ``index`` of a pytree with a leading trial axis (successive halving's cut)."""
    index = jnp.asarray(index)
    return jax.tree.map(lambda a: a[index] if getattr(a, "ndim", 0) else a, tree)


def stack(values: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
