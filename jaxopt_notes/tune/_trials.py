"""Many trials as one compiled program: ``train``'s epoch ``vmap``ped over hyperparameters.

A trial is a run of ``train``, built from train's own pieces: the optimizer is
``train.make_optimizer``'s, the steps are ``train.make_chunk_fns``' (its batches, augmentation,
loss and update), the scores are ``train.make_eval_fn``'s. Every trial shares the model
structure, the data, the batch order and (by default) the initial weights, so the trials differ
only by their hyperparameters: common random numbers, which make the comparison between trials
sharper than independent draws would. The hyperparameters enter through
``optax.inject_hyperparams``: they live in the optimizer state as arrays with a leading trial
axis, so a stage of 16 trials is one program compiled once, and a second stage with other values
(same count) reuses it.
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
from jaxopt_notes import train as train_lib
from jaxopt_notes.train import TrainConfig, TrainState, build_model, eval_params

# the run-config fields a trial may vary: they reach the optimizer as injected arrays
SEARCHABLE = ("learning_rate", "weight_decay", "momentum", "b1", "b2", "eps", "decay")


def searchable(cfg: TrainConfig) -> tuple[str, ...]:
    """The hyperparameters a search of ``cfg`` may vary: ``learning_rate``, ``weight_decay`` and
    the optimizer's own numeric arguments among :data:`SEARCHABLE`."""
    takes = inspect.signature(jn.OPTIMIZERS[cfg.optimizer]).parameters
    return tuple(n for n in SEARCHABLE if n in ("learning_rate", "weight_decay") or n in takes)


def fixed(cfg: TrainConfig) -> tuple[str, ...]:
    """The run config's fields a stage cannot vary (the model's structure, the loop's shapes)."""
    return tuple(f.name for f in dataclasses.fields(cfg) if f.name not in searchable(cfg))


def defaults(cfg: TrainConfig, names: tuple[str, ...]) -> dict[str, float]:
    """The value each of ``names`` has in a run of ``cfg``: the config's, or for a field left
    unset the optimizer's own default under ``cfg.convention``, read back from the optimizer
    (``jn.hyperparams``). A link the optimizer leaves off (``momentum=None``) reads 0, which
    gives the same update."""
    factory = jn.OPTIMIZERS[cfg.optimizer]
    built = jn.hyperparams(
        factory(learning_rate=cfg.learning_rate, **cfg.hyperparameters(), convention=cfg.convention)
    )
    # train.make_optimizer hands the config's weight decay to every optimizer (adamw's own too)
    built |= {"learning_rate": cfg.learning_rate, "weight_decay": cfg.weight_decay}
    return {n: float(0.0 if built[n] is None else built[n]) for n in names}


def make_optimizer(
    cfg: TrainConfig,
    steps_per_epoch: int,
    hyperparameters: dict[str, Any],
    average: optax.GradientTransformation | None = None,
) -> optax.GradientTransformation:
    """``train.make_optimizer(cfg, steps_per_epoch)`` with ``hyperparameters`` injected: they
    live in the state (``optax.inject_hyperparams``), so each trial of a ``vmap`` has its own.
    ``learning_rate`` is the peak rate, scheduled as the run schedules it; ``average``
    (``jn.ema_params(...)``, ``jn.polyak_params()``) closes the chain."""

    def factory(**values):
        tx = train_lib.make_optimizer(cfg, steps_per_epoch, **values)
        return tx if average is None else jn.chain(tx, average)

    kind = inspect.Parameter.KEYWORD_ONLY  # inject_hyperparams binds the arguments by name
    factory.__signature__ = inspect.Signature([inspect.Parameter(n, kind) for n in hyperparameters])
    return optax.inject_hyperparams(factory)(**hyperparameters)


def with_values(state: TrainState, hypers: dict[str, jax.Array]) -> TrainState:
    """``state`` with the injected hyperparameters ``hypers`` (a trial's, or a range test's rate
    of the step) in its optimizer state."""
    opt = state.opt_state
    return state._replace(opt_state=opt._replace(hyperparams={**opt.hyperparams, **hypers}))


class Program(NamedTuple):
    """The compiled pieces of a stage; every function takes and returns a leading trial axis."""

    init: Callable  # (params (shared or [T]), hypers{name: [T]}) -> TrainState[T]
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
    steps_per_epoch = len(data.y_train) // cfg.batch_size
    base = defaults(cfg, names)
    tx = make_optimizer(cfg, steps_per_epoch, base, average)  # its update reads the state's values
    mesh = train_lib.make_mesh(1)
    plan, steps = train_lib.make_chunk_fns(model, tx, data, cfg, mesh)
    evaluate_one = train_lib.make_eval_fn(model, data, mesh, loss=cfg.loss, tta_shift=cfg.tta_shift)
    eval_pure = models.split(model, train=False)
    stats0 = nnx.state(model, nnx.BatchStat)

    def epoch(states, hypers, active, x_all, y_all, key):
        order, keys = plan(key)  # one batch order and one key per step for every trial

        def run(state):
            state, (loss, acc) = steps(state, x_all, y_all, order, keys)
            return state, {"loss": loss.mean(), "accuracy": acc.mean()}

        def skip(state):
            nan = jnp.full((), jnp.nan, jnp.float32)
            return state, {"loss": nan, "accuracy": nan}

        def one(args):
            state, hp, on = args
            # a trial cut by successive halving stops computing (when trials run one by one)
            return jax.lax.cond(on, run, skip, with_values(state, hp))

        # batch_size = T is a plain vmap; smaller chunks loop over groups of trials, which
        # XLA:CPU runs faster than one wide batched matmul (accelerators prefer the vmap)
        if chunk is None:
            return jax.vmap(one)((states, hypers, active))
        return jax.lax.map(one, (states, hypers, active), batch_size=chunk)

    def evaluate(states, x, y):
        return jax.vmap(evaluate_one, in_axes=(0, None, None))(states, x, y)

    def logits_one(state: TrainState, x):
        net = eval_pure.merge(eval_params(state), state.batch_stats)
        return net(data_lib.normalize(x, data.mean, data.std))

    def logits(states, x):
        return jax.vmap(logits_one, in_axes=(0, None))(states, x)

    def init(params, hypers):
        """Trial states from ``params`` and ``hypers``, both with a leading trial axis."""
        size = len(next(iter(hypers.values())))
        opt = jax.vmap(
            lambda p, h: make_optimizer(cfg, steps_per_epoch, {**base, **h}, average).init(p)
        )(params, hypers)
        ema = jax.tree.map(jnp.copy, params) if cfg.ema else None
        return TrainState(params, broadcast(stats0, size), opt, ema)

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


def take(tree: Any, index: np.ndarray) -> Any:
    """The trials ``index`` of a pytree with a leading trial axis (successive halving's cut)."""
    index = jnp.asarray(index)
    return jax.tree.map(lambda a: a[index] if getattr(a, "ndim", 0) else a, tree)


def stack(values: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    return {k: jnp.asarray(v, jnp.float32) for k, v in values.items()}
