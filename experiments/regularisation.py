"""Saito 6.4: overfitting a deep net on 300 images, and four remedies.

Saito's setting: 300 training images, a seven-layer net (six hidden layers of 100 ReLU units,
He init), SGD with learning rate 0.01, minibatches of 100, 200 epochs; weight decay
lambda = 0.1 (the gradient of 0.5 * lambda * ||W||^2, here ``jn.add_decayed_weights`` on every
parameter, biases too), dropout 0.2 (inverted here: kept units are scaled by 1/(1 - p) while
training, where Saito scales at test time). Added: random shifts of up to two pixels, and early
stopping on the accuracy of a validation set (the next n_val training images, never trained
on), judged on the 1,000 test images. All runs see the same batches.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxopt_notes as jn
from experiments import _mnist
from experiments._common import claim, save_figure

SUMMARY = "Dropout, weight decay, early stopping and augmentation against overfitting 300 images"
DATA = (
    _mnist.data_note("mnist5k")
    + "; the first n_train training images, the next n_val for validation, all test images"
)
RUNS = ("baseline", "weight decay", "dropout", "shift augmentation")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    dataset: str = "mnist5k"  # tiny: "digits"
    n_train: int = 300
    depth: int = 6
    width: int = 100
    learning_rate: float = 0.01
    batch_size: int = 100
    epochs: int = 300  # Saito: 200 for weight decay, 300 for dropout
    eval_epochs: int = 5  # evaluate every this many epochs
    weight_decay: float = 0.1
    dropout: float = 0.2
    shift: int = 2
    n_val: int = 1000  # validation images for early stopping, after the training images
    patience: int = 30  # epochs without a better validation accuracy before stopping

    @classmethod
    def quick(cls) -> Config:
        return cls(epochs=150)

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            dataset="digits",
            n_train=64,
            depth=2,
            width=16,
            batch_size=32,
            epochs=4,
            eval_epochs=2,
            shift=1,
        )


def weight_norm(params) -> np.ndarray:
    """sqrt(sum of squared kernel entries) of each stacked run: the size of the weights."""
    hidden = [layer["kernel"][...] for layer in params["hidden"].values()]
    kernels = [*hidden, params["out"]["kernel"][...]]
    return np.sqrt(sum(np.sum(np.asarray(k) ** 2, axis=(1, 2)) for k in kernels))


def train_runs(cfg: Config, arrays: _mnist.Arrays, val) -> dict[str, tuple[_mnist.Run, int]]:
    """Baseline and weight decay share one vmapped run (decay 0 vs lambda); dropout and the
    augmented run each need their own compiled loop (dropout rate and shift are static)."""
    key = jax.random.key(cfg.seed)
    per_epoch = arrays.x_train.shape[0] // cfg.batch_size
    common = dict(
        steps=cfg.epochs * per_epoch,
        batch_size=cfg.batch_size,
        key=jax.random.fold_in(key, 1),
        eval_every=cfg.eval_epochs * per_epoch,
        extra_eval={"val": val},
    )

    def net(**kw):
        return _mnist.mlp(key, arrays, depth=cfg.depth, width=cfg.width, init="he", **kw)

    def sgd_decay(wd):
        return jn.chain(jn.add_decayed_weights(wd), jn.sgd(cfg.learning_rate))

    pair = _mnist.fit(
        [net(), net()], sgd_decay, arrays, hparams=jnp.array([0.0, cfg.weight_decay]), **common
    )
    sgd = jn.sgd(cfg.learning_rate)
    dropout = _mnist.fit(net(dropout=cfg.dropout), sgd, arrays, **common)
    shifted = _mnist.fit(net(), sgd, arrays, shift=cfg.shift, **common)
    return dict(zip(RUNS, [(pair, 0), (pair, 1), (dropout, 0), (shifted, 0)], strict=True))


def early_stopping(curve: dict, epochs: np.ndarray, patience: int) -> dict:
    """Stops ``patience`` epochs after the best validation accuracy; keeps that best epoch."""
    val, test = curve["val_accuracy"], curve["test_accuracy"]
    best, stop = 0, len(val) - 1
    for i in range(len(val)):
        best = i if val[i] > val[best] else best
        if epochs[i] - epochs[best] >= patience:
            stop = i
            break
    return {
        "kept_epoch": int(epochs[best]),
        "stop_epoch": int(epochs[stop]),
        "last_epoch": int(epochs[-1]),
        "test_accuracy_kept": float(test[best]),
        "test_accuracy_last": float(test[-1]),
        "best_test_accuracy": float(test.max()),
        "epoch_best_test_accuracy": int(epochs[np.argmax(test)]),
        "epoch_min_val_loss": int(epochs[np.argmin(curve["val_loss"])]),
        "val_loss_min_over_last": float(curve["val_loss"].min() / curve["val_loss"][-1]),
    }


def draw(curves: dict, epochs: np.ndarray, stop: dict, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, len(curves) + 1, figsize=(4 * (len(curves) + 1), 3.6), sharey=False)
    for ax, (name, c) in zip(axes, curves.items(), strict=False):
        ax.plot(epochs, c["train_accuracy"], label="train")
        ax.plot(epochs, c["test_accuracy"], label="test")
        gap = c["train_accuracy"][-1] - c["test_accuracy"][-1]
        ax.set(title=f"{name}: final gap {gap:.2f}", xlabel="epoch", ylim=(0, 1.02))
        ax.legend(loc="lower right")
    axes[0].set_ylabel("accuracy")
    base = curves["baseline"]
    axes[-1].plot(epochs, base["val_accuracy"], color="tab:green", label="validation")
    axes[-1].plot(epochs, base["test_accuracy"], color="tab:orange", label="test")
    for key, ls in (("kept_epoch", "--"), ("stop_epoch", ":")):
        axes[-1].axvline(stop[key], color="grey", ls=ls, label=f"{key}: {stop[key]}")
    axes[-1].set(title="baseline: early stopping", xlabel="epoch")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "regularisation")


def main(cfg: Config, out_dir: Path) -> dict:
    full = _mnist.load(cfg.dataset)
    n, m = cfg.n_train, cfg.n_train + cfg.n_val
    arrays = full._replace(x_train=full.x_train[:n], y_train=full.y_train[:n])
    runs = train_runs(cfg, arrays, val=(full.x_train[n:m], full.y_train[n:m]))
    curves = {name: {k: v[i] for k, v in run.evals.items()} for name, (run, i) in runs.items()}
    epochs = runs["baseline"][0].eval_steps // (arrays.x_train.shape[0] // cfg.batch_size)
    gap = {k: float(c["train_accuracy"][-1] - c["test_accuracy"][-1]) for k, c in curves.items()}
    test_acc = {k: float(c["test_accuracy"][-1]) for k, c in curves.items()}
    train_acc = {k: float(c["train_accuracy"][-1]) for k, c in curves.items()}
    pair = runs["baseline"][0]
    norms = dict(zip(("baseline", "weight decay"), weight_norm(pair.params).tolist(), strict=True))
    stop = early_stopping(curves["baseline"], epochs, cfg.patience)
    figures = [draw(curves, epochs, stop, out_dir)]
    evidence = {"train_test_gap": gap, "train_accuracy": train_acc, "test_accuracy": test_acc}

    def smaller_gap(name):
        return claim(
            f"{name.capitalize()} shrinks the train/test accuracy gap on {cfg.n_train} "
            f"training images (after {cfg.epochs} epochs)",
            gap[name] < gap["baseline"],
            evidence,
            reason=f"gap {gap[name]:.3f} vs the baseline's {gap['baseline']:.3f}",
        )

    claims = [
        smaller_gap("dropout"),
        claim(
            "Weight decay shrinks the weights and the gap",
            norms["weight decay"] < norms["baseline"] and gap["weight decay"] < gap["baseline"],
            {"weight_norm": norms, **evidence},
            reason=f"weight norm {norms['weight decay']:.3g} vs {norms['baseline']:.3g}, gap "
            f"{gap['weight decay']:.3f} vs {gap['baseline']:.3f}",
        ),
        claim(
            f"Early stopping picks the best epoch: stopping {cfg.patience} epochs after the "
            "best validation accuracy, the epoch it keeps has a test accuracy within 1 point "
            "of the best test accuracy of the whole run, at fewer epochs than the last",
            stop["stop_epoch"] < epochs[-1]
            and stop["test_accuracy_kept"] >= stop["best_test_accuracy"] - 0.01,
            stop,
            reason=f"stopped at epoch {stop['stop_epoch']} of {stop['last_epoch']}, kept epoch "
            f"{stop['kept_epoch']} (test {stop['test_accuracy_kept']:.3f}; best test "
            f"{stop['best_test_accuracy']:.3f} at epoch {stop['epoch_best_test_accuracy']})"
            + (
                f": the validation accuracy still improved in the last {cfg.patience} epochs"
                if stop["stop_epoch"] == stop["last_epoch"]
                else ""
            ),
        ),
        smaller_gap("shift augmentation"),
    ]
    metrics = {
        "train_test_gap": gap,
        "train_accuracy": train_acc,
        "test_accuracy": test_acc,
        "weight_norm": norms,
        "early_stopping": stop,
        "epochs": epochs,
        "curves": curves,
    }
    return {"metrics": metrics, "claims": claims, "figures": figures}
