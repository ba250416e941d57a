"""Batch size at equal epochs (Li Hongyi), the sharpness of the minima found, snapshot ensembles.

1. The same He-initialised 4x100 ReLU MLP trained by SGD with momentum 0.9 at one learning rate
   for the same number of epochs with small, medium and very large batches: the noise of the
   minibatch loss (std of its deviation from a moving average over the second half), the test
   accuracy, the measured wall time per epoch (compiled loop, compilation excluded), and the
   sharpness at the end: the top eigenvalue of the Hessian of the training loss on the first
   ``hessian_examples`` training images (``hessian.eigenvalues``, Lanczos).
2. Snapshot ensemble (Huang et al. 2017): SGD with ``jn.schedules.cyclic`` (cosine restarts),
   a snapshot at the end of each cycle; the average of the snapshots' softmax outputs against
   the last snapshot alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import jaxopt_notes as jn
from experiments import _mnist
from experiments._common import claim, save_figure
from jaxopt_notes import hessian

SUMMARY = "Small batches: noisier, better test accuracy, flatter minima; big: faster per epoch"
DATA = _mnist.data_note("mnist5k")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    dataset: str = "mnist5k"  # tiny: "digits"
    depth: int = 4
    width: int = 100
    batch_sizes: str = "10,100,1000"
    epochs: int = 20
    learning_rate: float = 0.01
    hessian_examples: int = 1000
    lanczos_iter: int = 30
    cycles: int = 5  # snapshot ensemble
    cycle_epochs: int = 4
    cycle_lr: float = 0.05
    cycle_batch: int = 128

    @classmethod
    def quick(cls) -> Config:
        return cls(epochs=8, cycles=4, cycle_epochs=3, lanczos_iter=20)

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            dataset="digits",
            depth=1,
            width=16,
            batch_sizes="16,256",
            epochs=1,
            hessian_examples=128,
            lanczos_iter=5,
            cycles=2,
            cycle_epochs=1,
            cycle_batch=128,
        )


def noise(loss: np.ndarray) -> float:
    """Std of the minibatch loss around its moving average, over the second half of training."""
    tail = loss[len(loss) // 2 :]
    window = max(2, len(tail) // 10)
    trend = _mnist.smooth(tail, window)
    return float(np.std(tail[window - 1 :] - trend))


def sharpness(cfg: Config, arrays: _mnist.Arrays, apply, params_list: list) -> list[float]:
    x, y = arrays.x_train[: cfg.hessian_examples], arrays.y_train[: cfg.hessian_examples]
    stats = {}

    def loss_fn(p):  # built once, so eigenvalues compiles once for every batch size
        return optax.softmax_cross_entropy_with_integer_labels(apply(p, stats, x), y).mean()

    return [
        float(
            hessian.eigenvalues(
                loss_fn,
                p,
                k=1,
                method="lanczos",
                num_iter=cfg.lanczos_iter,
                key=jax.random.key(cfg.seed),
            ).values[0]
        )
        for p in params_list
    ]


def batch_runs(cfg: Config, arrays: _mnist.Arrays) -> dict[int, _mnist.Run]:
    key = jax.random.key(cfg.seed)
    runs = {}
    for bs in (int(b) for b in cfg.batch_sizes.split(",")):
        net = _mnist.mlp(key, arrays, depth=cfg.depth, width=cfg.width, init="he")
        steps = cfg.epochs * (arrays.x_train.shape[0] // bs)
        tx = jn.sgd(cfg.learning_rate, momentum=0.9)
        runs[bs] = _mnist.fit(
            net, tx, arrays, steps=steps, batch_size=bs, key=jax.random.fold_in(key, 1)
        )
    return runs


def snapshot_ensemble(cfg: Config, arrays: _mnist.Arrays):
    key = jax.random.key(cfg.seed)
    net = _mnist.mlp(key, arrays, depth=cfg.depth, width=cfg.width, init="he")
    period = cfg.cycle_epochs * (arrays.x_train.shape[0] // cfg.cycle_batch)
    tx = jn.sgd(jn.schedules.cyclic(cfg.cycle_lr, period=period), momentum=0.9)
    run = _mnist.fit(
        net,
        tx,
        arrays,
        steps=cfg.cycles * period,
        batch_size=cfg.cycle_batch,
        key=jax.random.fold_in(key, 1),
        eval_every=period,
        snapshots=True,
    )
    apply = _mnist.eval_apply(net)
    probs = jnp.stack(
        [
            jax.nn.softmax(apply(_mnist.pick(_mnist.pick(run.snapshots, 0), i), {}, arrays.x_test))
            for i in range(cfg.cycles)
        ]
    )
    hits = probs.argmax(-1) == arrays.y_test  # (cycles, test images)
    ensemble = [
        float(jnp.mean(probs[: i + 1].mean(0).argmax(-1) == arrays.y_test))
        for i in range(cfg.cycles)
    ]
    return np.asarray(hits.mean(-1)), np.asarray(ensemble), run


def draw(runs, table, single, ensemble, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for bs, run in runs.items():
        epochs = np.arange(1, run.loss.shape[1] + 1) / (run.loss.shape[1] / table["epochs"])
        axes[0].plot(epochs, run.loss[0], lw=0.5, alpha=0.8, label=f"batch {bs}")
    axes[0].set(
        yscale="log",
        xlabel="epoch",
        ylabel="minibatch loss",
        title="equal epochs, one learning rate",
    )
    axes[0].legend()
    names = [str(b) for b in runs]
    ax = axes[1]
    ax.bar(names, table["test_accuracy"], color="tab:blue")
    ax.set(
        xlabel="batch size",
        ylabel="test accuracy",
        ylim=(max(0.0, min(table["test_accuracy"]) - 0.1), 1.0),
    )
    for i in range(len(names)):
        ax.text(
            i,
            table["test_accuracy"][i],
            f"{table['test_accuracy'][i]:.3f}\n"
            f"sharpness {table['sharpness'][i]:.3g}\n{table['seconds_per_epoch'][i]:.3f} s/epoch",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    cycles = np.arange(1, len(single) + 1)
    axes[2].plot(cycles, single, "o-", label="snapshot i alone")
    axes[2].plot(cycles, ensemble, "s-", label="ensemble of snapshots 1..i")
    axes[2].set(xlabel="cycle", ylabel="test accuracy", title="cyclic lr: snapshot ensemble")
    axes[2].legend()
    fig.tight_layout()
    return save_figure(fig, out_dir, "batch_size")


def main(cfg: Config, out_dir: Path) -> dict:
    arrays = _mnist.load(cfg.dataset)
    runs = batch_runs(cfg, arrays)
    sizes = list(runs)
    apply = _mnist.eval_apply(
        _mnist.mlp(jax.random.key(0), arrays, depth=cfg.depth, width=cfg.width)
    )
    sharp = sharpness(cfg, arrays, apply, [_mnist.pick(r.params, 0) for r in runs.values()])
    table = {
        "batch_size": sizes,
        "epochs": cfg.epochs,
        "test_accuracy": [float(r.evals["test_accuracy"][0, -1]) for r in runs.values()],
        "train_accuracy": [float(r.evals["train_accuracy"][0, -1]) for r in runs.values()],
        "loss_noise": [noise(r.loss[0]) for r in runs.values()],
        "seconds_per_epoch": [r.seconds / cfg.epochs for r in runs.values()],
        "sharpness": sharp,
    }
    single, ensemble, _ = snapshot_ensemble(cfg, arrays)
    figures = [draw(runs, table, single, ensemble, out_dir)]
    acc, noisy, secs = table["test_accuracy"], table["loss_noise"], table["seconds_per_epoch"]
    claims = [
        claim(
            f"Smaller batches give a noisier loss but better test accuracy than very large "
            f"batches at equal epochs ({cfg.epochs})",
            noisy[0] > noisy[-1] and acc[0] > acc[-1],
            {k: table[k] for k in ("batch_size", "loss_noise", "test_accuracy")},
            reason=f"noise {noisy[0]:.3g} vs {noisy[-1]:.3g}, test {acc[0]:.3f} vs {acc[-1]:.3f}",
        ),
        claim(
            "Larger batches are faster per epoch (measured wall time decreases with batch size)",
            all(a > b for a, b in zip(secs, secs[1:], strict=False)),
            {k: table[k] for k in ("batch_size", "seconds_per_epoch")},
            reason=f"seconds per epoch {[round(t, 4) for t in secs]} for batches {sizes}: "
            "it did not fall with every larger batch on this machine",
        ),
        claim(
            "Large-batch minima are sharper: the top Hessian eigenvalue of the training loss "
            "at the end is larger for the largest batch than for the smallest",
            sharp[-1] > sharp[0],
            {k: table[k] for k in ("batch_size", "sharpness")},
            reason=f"top eigenvalue {sharp[-1]:.3g} (largest batch) vs {sharp[0]:.3g}",
        ),
        claim(
            f"A snapshot ensemble of {cfg.cycles} cyclic-lr restarts beats a single snapshot "
            "(the last) on test accuracy",
            ensemble[-1] > single[-1],
            {"ensemble_accuracy": ensemble, "snapshot_accuracy": single},
            reason=f"ensemble {ensemble[-1]:.3f} vs last snapshot {single[-1]:.3f}",
        ),
    ]
    metrics = {**table, "snapshot_accuracy": single, "ensemble_accuracy": ensemble}
    return {"metrics": metrics, "claims": claims, "figures": figures}
