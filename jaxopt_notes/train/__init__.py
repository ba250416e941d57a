"""Training: a whole epoch is one jitted ``lax.scan`` over device-resident batches.

The data set lives on the device(s) as uint8; each epoch is a single compiled call that shuffles,
gathers, augments, normalises and takes every step without a host sync, then the validation
split is evaluated in a second call. The host touches the numbers once per epoch: to stream a
JSONL line, update the progress bar, save a checksummed orbax checkpoint and decide on early
stopping. The test split is evaluated once, at the end, on the selected parameters.

The state is a pytree ``TrainState(params, batch_stats, opt_state, ema)``; the optimizer is any
``optax.GradientTransformation`` and keeps its own step count. Randomness is explicit: the
epoch ``e`` key is ``fold_in(key(seed), e)``, so a run resumed from the checkpoint of epoch ``e``
takes exactly the steps of the uninterrupted run (bit-identical parameters). With several
devices the batch is sharded over a ``("data",)`` mesh and the state replicated; XLA inserts the
gradient all-reduce, so the same code runs on one CPU or a pod slice.

Modules: :mod:`~jaxopt_notes.train.config` (the run config, TOML), :mod:`~.steps` (model,
state, scanned epoch, evaluation), :mod:`~.loop` (:func:`train`), :mod:`~.runs` (run
directories, verified checkpoints), :mod:`~.load` (:func:`load_run`).

Reading a run back (what ``jaxopt-notes hessian --run`` and ``landscape --run`` build on)::

    run = load_run("runs/lenet")       # writes nothing into the run directory
    run.model, run.params              # nnx module (eval mode) and its selected nnx.State
    run.data.x_train, run.data.x_val   # the run's own split, uint8 NHWC; x_test too
    loss = run.loss_fn("train", 1000)  # params -> mean cross-entropy on 1,000 training images
    run.batch_loss(params, x, y)       # the same loss on any uint8 batch
    run.apply(params, x)               # logits
    run.init_params, run.history, run.config, run.summary

Building another loop on train's step (what ``tune``'s range test and sanity checks do)::

    step = make_step(model, tx, loss=functools.partial(example_loss, cfg.loss))
    state, (loss, accuracy, probed) = step(state, x, onehot, key)

>>> import jax.numpy as jnp
>>> make_step.__module__
'jaxopt_notes.train.steps'
>>> float(example_loss("mse", jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]]))[0][0])
1.0
>>> cfg = TrainConfig(model="mlp", width=16, depth=1, dataset="digits", epochs=1, batch_size=64)
>>> result = train(cfg, progress=False)
>>> result["summary"]["dataset"]["name"], result["summary"]["dataset"]["val_size"]
('digits', 144)
"""

from __future__ import annotations

from jaxopt_notes.optimizers import OPTIMIZERS
from jaxopt_notes.train.config import (
    SCHEDULES,
    TrainConfig,
    from_dict,
    from_toml,
    make_optimizer,
    make_schedule,
    read_toml,
    to_toml,
)
from jaxopt_notes.train.distributed import join as join_processes
from jaxopt_notes.train.load import Run, load_run
from jaxopt_notes.train.loop import train, with_validation
from jaxopt_notes.train.runs import clean_json
from jaxopt_notes.train.steps import (
    TrainState,
    build_model,
    check_fit,
    cross_entropy,
    eval_params,
    example_loss,
    init_state,
    make_chunk_fns,
    make_epoch_fn,
    make_eval_fn,
    make_mesh,
    make_step,
)

OPTIMIZER_NAMES = ("sgd", "adagrad", "rmsprop", "adam", "adamw", "amsgrad", "nadam", "adamax")

__all__ = [
    "OPTIMIZER_NAMES",
    "SCHEDULES",
    "Run",
    "TrainConfig",
    "TrainState",
    "available_optimizers",
    "build_model",
    "check_fit",
    "clean_json",
    "cross_entropy",
    "eval_params",
    "example_loss",
    "from_dict",
    "from_toml",
    "init_state",
    "join_processes",
    "load_run",
    "make_chunk_fns",
    "make_epoch_fn",
    "make_eval_fn",
    "make_mesh",
    "make_optimizer",
    "make_schedule",
    "make_step",
    "read_toml",
    "to_toml",
    "train",
    "with_validation",
]


def available_optimizers() -> tuple[str, ...]:
    """The optimizer names ``TrainConfig.optimizer`` accepts: every key of ``jn.OPTIMIZERS``."""
    return tuple(OPTIMIZERS)
