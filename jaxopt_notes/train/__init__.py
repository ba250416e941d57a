"""Training: a whole epoch is one jitted ``lax.scan`` over device-resident batches.

The data set lives on the device(s) as uint8; each epoch is a single compiled call that shuffles,
gathers, augments, normalises and takes every step without a host sync, then the held-out split
is evaluated in a second call. The host touches the numbers once per epoch: to stream a JSONL
line, update the progress bar, save an orbax checkpoint and decide on early stopping.

The state is a pytree ``TrainState(params, batch_stats, opt_state)``; the optimizer is any
``optax.GradientTransformation`` and keeps its own step count. Randomness is explicit: the
epoch ``e`` key is ``fold_in(key(seed), e)``, so a run resumed from the checkpoint of epoch ``e``
takes exactly the steps of the uninterrupted run (bit-identical parameters). With several
devices the batch is sharded over a ``("data",)`` mesh and the state replicated; XLA inserts the
gradient all-reduce, so the same code runs on one CPU or a pod slice.

>>> cfg = TrainConfig(model="mlp", width=16, depth=1, dataset="digits", epochs=1, batch_size=64)
>>> result = train(cfg, progress=False)
>>> result["summary"]["dataset"]["name"], len(result["history"])
('digits', 1)
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from jaxopt_notes import data as data_lib
from jaxopt_notes import models, schedules
from jaxopt_notes.optimizers import OPTIMIZERS
from jaxopt_notes.train._io import (
    checkpoint_manager,
    plot_curves,
    restore_checkpoint,
    save_checkpoint,
    write_jsonl,
)

OPTIMIZER_NAMES = ("sgd", "adagrad", "rmsprop", "adam", "adamw", "amsgrad", "nadam", "adamax")
SCHEDULES = ("constant", "cosine", "warmup_cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; written beside its results. Each field is a CLI option."""

    model: str = "lenet"  # lenet | mlp
    variant: str = "modern"  # LeNet: classic (sigmoid, avg-pool) | modern (ReLU, max-pool)
    depth: int = 2  # MLP hidden layers
    width: int = 256  # MLP hidden units
    activation: str = "relu"  # MLP: sigmoid | tanh | relu
    dropout: float = 0.0  # MLP inverted dropout
    batch_norm: bool = False  # MLP BatchNorm
    dataset: str = "mnist5k"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    schedule: str = "cosine"  # constant | cosine | warmup_cosine (over all steps)
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    shift: int = 1  # augmentation: random shift in pixels
    flip: bool = False  # augmentation: horizontal flips
    cutout: int = 0  # augmentation: cutout square side
    mixup: float = 0.0  # augmentation: mixup Beta parameter
    patience: int = 0  # early stopping after this many epochs without a better test accuracy

    def __post_init__(self):
        _one_of("model", self.model, ("lenet", "mlp"))
        _one_of("dataset", self.dataset, data_lib.DATASETS)
        _one_of("optimizer", self.optimizer, available_optimizers())
        _one_of("schedule", self.schedule, SCHEDULES)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"`learning_rate` must be > 0, got {self.learning_rate}")
        data_lib.Augment(self.shift, self.flip, self.cutout, self.mixup)  # checks them

    @property
    def augment(self) -> data_lib.Augment:
        return data_lib.Augment(self.shift, self.flip, self.cutout, self.mixup)


class TrainState(NamedTuple):
    params: Any
    batch_stats: Any
    opt_state: Any


def _one_of(name: str, value: Any, options: tuple) -> None:
    if value not in options:
        raise ValueError(f"`{name}` must be one of {options}, got {value!r}")


def available_optimizers() -> tuple[str, ...]:
    return tuple(OPTIMIZERS)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimizer ``cfg.optimizer`` with the learning rate or schedule of ``cfg``."""
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, total // 10)
    lr: Any = {
        "constant": lambda: cfg.learning_rate,
        "cosine": lambda: schedules.cosine_decay(cfg.learning_rate, decay_steps=total),
        "warmup_cosine": lambda: schedules.linear_warmup(
            schedules.cosine_decay(cfg.learning_rate, decay_steps=max(1, total - warmup)),
            warmup_steps=warmup,
        ),
    }[cfg.schedule]()
    return OPTIMIZERS[cfg.optimizer](learning_rate=lr)


def build_model(cfg: TrainConfig, info: dict[str, Any], key: jax.Array) -> nnx.Module:
    shape, classes = tuple(info["image_shape"]), info["num_classes"]
    rngs = nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1))
    if cfg.model == "lenet":
        return models.LeNet(in_shape=shape, num_classes=classes, variant=cfg.variant, rngs=rngs)
    mlp_fields = ("depth", "width", "activation", "dropout", "batch_norm")
    kwargs = {name: getattr(cfg, name) for name in mlp_fields}
    return models.MLP(in_features=int(np.prod(shape)), num_classes=classes, **kwargs, rngs=rngs)


def _loss(logits: jax.Array, onehot: jax.Array) -> tuple[jax.Array, jax.Array]:
    loss = optax.softmax_cross_entropy(logits, onehot)
    return loss, (logits.argmax(-1) == onehot.argmax(-1)).astype(jnp.float32)


def make_epoch_fn(model, tx, data: data_lib.Dataset, cfg: TrainConfig, mesh: Mesh) -> Callable:
    """``epoch(state, x, y, key) -> (state, {"loss", "accuracy"})``, jitted, one ``lax.scan``.

    ``x``, ``y`` are the whole training set on the device; the last partial batch is dropped.
    """
    view = nnx.view(model, deterministic=False, use_running_average=False, raise_if_not_found=False)
    graphdef, _, _, other = nnx.split(view, nnx.Param, nnx.BatchStat, ...)
    bs, steps = cfg.batch_size, len(data.y_train) // cfg.batch_size
    batch = NamedSharding(mesh, P("data"))

    def loss_fn(params, stats, x, onehot, key):
        net = nnx.merge(graphdef, params, stats, other, copy=True)
        loss, correct = _loss(net(x, rngs=key), onehot)
        return loss.mean(), (correct.mean(), nnx.state(net, nnx.BatchStat))

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def epoch(state: TrainState, x_all: jax.Array, y_all: jax.Array, key: jax.Array):
        def step(state: TrainState, inputs):
            idx, key = inputs
            k_aug, k_drop = jax.random.split(key)
            x = jax.lax.with_sharding_constraint(x_all[idx], batch)
            onehot = jax.nn.one_hot(y_all[idx], data.num_classes)
            x, onehot = data_lib.augment(k_aug, data_lib.to_unit(x), onehot, cfg.augment)
            x = data_lib.normalize(x, data.mean, data.std)
            (loss, (acc, stats)), grads = grad_fn(
                state.params, state.batch_stats, x, onehot, k_drop
            )
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
            params = optax.apply_updates(state.params, updates)
            return TrainState(params, stats, opt_state), (loss, acc)

        k_perm, k_steps = jax.random.split(key)
        order = jax.random.permutation(k_perm, x_all.shape[0])[: steps * bs].reshape(steps, bs)
        state, (loss, acc) = jax.lax.scan(step, state, (order, jax.random.split(k_steps, steps)))
        return state, {"loss": loss.mean(), "accuracy": acc.mean()}

    return jax.jit(epoch, donate_argnums=0)


def make_eval_fn(model, data: data_lib.Dataset, mesh: Mesh, batch_size: int = 500) -> Callable:
    """``evaluate(state, x_uint8, y) -> {"loss", "accuracy"}`` over the whole set, jitted."""
    view = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    graphdef, _, _, other = nnx.split(view, nnx.Param, nnx.BatchStat, ...)
    batch_size = -(-batch_size // mesh.size) * mesh.size
    batch = NamedSharding(mesh, P(None, "data"))

    @jax.jit
    def evaluate(state: TrainState, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
        n = x.shape[0]
        pad = -n % batch_size
        x = jnp.pad(x, ((0, pad),) + ((0, 0),) * (x.ndim - 1))
        mask = jnp.arange(n + pad) < n
        y = jnp.pad(y, (0, pad))
        chunks = [a.reshape(-1, batch_size, *a.shape[1:]) for a in (x, y, mask)]
        chunks[0] = jax.lax.with_sharding_constraint(chunks[0], batch)
        net = nnx.merge(graphdef, state.params, state.batch_stats, other)

        def body(totals, inputs):
            xb, yb, mb = inputs
            xb = data_lib.normalize(xb, data.mean, data.std)
            loss, correct = _loss(net(xb), jax.nn.one_hot(yb, data.num_classes))
            return (totals[0] + (loss * mb).sum(), totals[1] + (correct * mb).sum()), None

        (loss, correct), _ = jax.lax.scan(body, (0.0, 0.0), tuple(chunks))
        return {"loss": loss / n, "accuracy": correct / n}

    return evaluate


def make_mesh(devices: int = 1) -> Mesh:
    """A one-axis ``("data",)`` mesh over the first ``devices`` devices (0: all of them)."""
    available = jax.devices()
    if not 0 <= devices <= len(available):
        raise ValueError(f"`devices` must be in 0..{len(available)}, got {devices}")
    return Mesh(np.array(available[: devices or len(available)]), ("data",))


def init_state(cfg: TrainConfig, data: data_lib.Dataset, tx, mesh: Mesh):
    """The model (for its structure) and the replicated initial ``TrainState``."""
    model = build_model(cfg, data.describe(), jax.random.split(jax.random.key(cfg.seed))[0])
    _, params, stats, _ = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    state = TrainState(params, stats, tx.init(params))
    return model, jax.device_put(state, NamedSharding(mesh, P()))


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


# ----- the loop -----


def train(
    cfg: TrainConfig,
    data: data_lib.Dataset | None = None,
    *,
    tx: optax.GradientTransformation | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    devices: int = 1,
    test_data: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> dict[str, Any]:
    """Trains ``cfg`` on ``data`` (default: ``cfg.dataset``); returns state, history and summary.

    ``tx`` replaces the optimizer named in ``cfg``. With ``out_dir`` the run streams
    ``metrics.jsonl``, checkpoints every epoch, and writes ``summary.json`` and curve PNGs;
    ``resume=True`` continues from its latest checkpoint. ``test_data`` (uint8 images N x H x W x C,
    labels) is an outside test set evaluated at the end. ``on_epoch_end(epoch, record)`` is called
    after each epoch's checkpoint.
    """
    start = time.perf_counter()
    data = data if data is not None else data_lib.load(cfg.dataset)
    mesh = make_mesh(devices)
    check_fit(cfg, data, mesh)
    tx = tx if tx is not None else make_optimizer(cfg, len(data.y_train) // cfg.batch_size)
    model, state = init_state(cfg, data, tx, mesh)
    arrays = (data.x_train, data.y_train, data.x_test, data.y_test)
    arrays = jax.device_put(arrays, NamedSharding(mesh, P()))
    out = Path(out_dir) if out_dir is not None else None
    manager = checkpoint_manager(out) if out is not None else None
    run: dict[str, Any] = {"config": dataclasses.asdict(cfg), "history": [], "stopped": False}
    restored = restore_checkpoint(manager, state, run["config"]) if resume and manager else None
    state, run = restored or (state, run)
    resumed_from = len(run["history"])
    t = time.perf_counter()
    epoch_fn = make_epoch_fn(model, tx, data, cfg, mesh)
    epoch_fn = epoch_fn.lower(state, *arrays[:2], jax.random.key(0)).compile()
    eval_fn = make_eval_fn(model, data, mesh)
    eval_fn(state, *arrays[2:])  # compiles, so epoch times are compute only
    compile_time = time.perf_counter() - t
    loop = dict(progress=progress, on_epoch_end=on_epoch_end, out=out, manager=manager)
    state, run = _loop(cfg, state, run, epoch_fn, eval_fn, arrays, **loop)
    summary = _summary(cfg, data, model, run, mesh, start, compile_time, resumed_from)
    if test_data is not None:
        outside = eval_fn(state, *jax.device_put(test_data, NamedSharding(mesh, P())))
        summary["outside_test_accuracy"] = float(outside["accuracy"])
        summary["outside_test_size"] = len(test_data[1])
    if out is not None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        plot_curves(run["history"], out)
    return {"state": state, "model": model, "history": run["history"], "summary": summary}


def _loop(cfg, state, run, epoch_fn, eval_fn, arrays, *, progress, on_epoch_end, out, manager):
    """The epochs: one compiled call each, then one host sync for the metrics."""
    x_tr, y_tr, x_te, y_te = arrays
    k_data = jax.random.split(jax.random.key(cfg.seed))[1]
    done = len(run["history"])
    if out is not None:
        write_jsonl(out / "metrics.jsonl", run["history"])  # drops lines past the checkpoint
    bar = tqdm(total=cfg.epochs, initial=done, disable=not progress, unit="epoch")
    for epoch in range(done, done if run["stopped"] else cfg.epochs):
        t = time.perf_counter()
        state, metrics = epoch_fn(state, x_tr, y_tr, jax.random.fold_in(k_data, epoch))
        metrics = jax.device_get(metrics)
        t_train = time.perf_counter() - t
        evaluated = jax.device_get(eval_fn(state, x_te, y_te))
        record = {
            "epoch": epoch + 1,
            **{f"train_{k}": float(v) for k, v in metrics.items()},
            **{f"test_{k}": float(v) for k, v in evaluated.items()},
            "train_time_s": t_train,
            "epoch_time_s": time.perf_counter() - t,
            "train_samples_per_s": (len(y_tr) // cfg.batch_size) * cfg.batch_size / t_train,
        }
        run = _update_run(run, record, cfg.patience)
        if out is not None:
            write_jsonl(out / "metrics.jsonl", [record], mode="a")
            save_checkpoint(manager, epoch + 1, state, run)
        bar.update(1)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", acc=f"{record['test_accuracy']:.4f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)
        if run["stopped"]:
            break
    bar.close()
    return state, run


def _update_run(run: dict, record: dict, patience: int) -> dict:
    """Appends ``record``; early stopping on the held-out accuracy when ``patience`` > 0."""
    history = run["history"] + [record]
    best = max(history, key=lambda r: r["test_accuracy"])
    stale = record["epoch"] - best["epoch"]
    return {**run, "history": history, "stopped": bool(patience and stale >= patience)}


def _summary(cfg, data, model, run, mesh, start, compile_time, resumed_from) -> dict[str, Any]:
    history = run["history"]
    last = history[-1] if history else {}
    best = max(history, key=lambda r: r["test_accuracy"]) if history else {}
    return {
        "dataset": data.describe(),
        "config": dataclasses.asdict(cfg),
        "num_params": models.count_params(model),
        "test_accuracy": last.get("test_accuracy"),
        "test_loss": last.get("test_loss"),
        "train_accuracy": last.get("train_accuracy"),
        "best_test_accuracy": best.get("test_accuracy"),
        "best_epoch": best.get("epoch"),
        "epochs_run": len(history),
        "stopped_early": run["stopped"],
        "resumed_from_epoch": resumed_from,
        "wall_time_s": time.perf_counter() - start,
        "compile_time_s": compile_time,
        "train_time_s": sum(r["train_time_s"] for r in history),
        "epoch_times_s": [r["epoch_time_s"] for r in history],
        "devices": mesh.size,
        "backend": jax.default_backend(),
    }
