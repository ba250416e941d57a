"""Saito 6.1.8: SGD, Momentum, AdaGrad and Adam training a 5-layer ReLU MLP on MNIST, and how
sensitive SGD+momentum and Adam are to their learning rate.

The net is Saito's ``MultiLayerNet``: four hidden layers of 100 ReLU units and the output layer
(five weight layers), He initialisation, minibatches of 128, 2,000 iterations, Saito's learning
rates (SGD 0.01, Momentum 0.01 with 0.9, AdaGrad 0.01 in his own form = ``convention="pytorch"``,
Adam 0.001). Saito trains on all 60,000 MNIST images scaled to [0, 1]; here the embedded 4,000,
standardised. The learning-rate sweep multiplies each method's default by 10^e over
e in [-1.5, 1.5] (three decades) and compares the spread of the final test accuracies.
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

SUMMARY = "On MNIST SGD learns slowest; Adam is less sensitive to its learning rate than momentum"
DATA = _mnist.data_note("mnist5k")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    dataset: str = "mnist5k"  # tiny: "digits"
    n_train: int = 4000
    n_test: int = 1000
    depth: int = 4  # hidden layers: with the output layer, Saito's five-layer net
    width: int = 100
    batch_size: int = 128
    steps: int = 2000
    sgd_lr: float = 0.01
    momentum_lr: float = 0.01
    adagrad_lr: float = 0.01
    adam_lr: float = 0.001
    sweep: str = "-1.5,-1,-0.5,0,0.5,1,1.5"  # log10 multipliers of the default rates; holds 0
    window: int = 100  # iterations averaged for the final training loss

    @classmethod
    def quick(cls) -> Config:
        return cls(steps=500, sweep="-1.5,-0.75,0,0.75,1.5", window=50)

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            dataset="digits",
            n_train=256,
            n_test=64,
            depth=2,
            width=16,
            batch_size=32,
            steps=20,
            sweep="-1.5,0,1.5",
            window=5,
        )


def run_sweep(cfg: Config, arrays, make_tx, default_lr: float, exponents: np.ndarray):
    """One vmapped call: the same He-initialised net trained at default_lr * 10^exponents."""
    key = jax.random.key(cfg.seed)
    nets = [
        _mnist.mlp(key, arrays, depth=cfg.depth, width=cfg.width, init="he") for _ in exponents
    ]  # identical initial weights, so only the learning rate differs
    lrs = jnp.asarray(default_lr * 10.0**exponents, jnp.float32)
    return _mnist.fit(
        nets,
        lambda lr: make_tx(lambda _: lr),
        arrays,
        hparams=lrs,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        key=jax.random.fold_in(key, 1),
    )


def run_single(cfg: Config, arrays, tx):
    key = jax.random.key(cfg.seed)
    net = _mnist.mlp(key, arrays, depth=cfg.depth, width=cfg.width, init="he")
    return _mnist.fit(
        net, tx, arrays, steps=cfg.steps, batch_size=cfg.batch_size, key=jax.random.fold_in(key, 1)
    )


def draw(curves: dict, sweeps: dict, exponents, cfg: Config, out_dir: Path) -> str:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for (name, loss), color in zip(curves.items(), plt.cm.tab10.colors, strict=False):
        ax1.plot(loss, color=color, alpha=0.2, lw=0.6)
        trend = _mnist.smooth(loss, cfg.window)
        ax1.plot(np.arange(len(trend)) + cfg.window - 1, trend, color=color, label=name)
    ax1.set(
        yscale="log",
        xlabel="iteration",
        ylabel="training loss (minibatch)",
        title=f"{cfg.depth + 1}-layer ReLU MLP, batch {cfg.batch_size}",
    )
    ax1.legend()
    for name, acc in sweeps.items():
        ax2.plot(10.0**exponents, acc, "o-", label=name)
    ax2.set(
        xscale="log",
        xlabel="learning rate / default rate",
        ylabel="final test accuracy",
        title="learning-rate sweep over three decades",
    )
    ax2.legend()
    return save_figure(fig, out_dir, "mnist_optimizers")


def main(cfg: Config, out_dir: Path) -> dict:
    arrays = _mnist.load(cfg.dataset, n_train=cfg.n_train, n_test=cfg.n_test)
    exponents = np.asarray([float(e) for e in cfg.sweep.split(",")])
    centre = int(np.argmin(np.abs(exponents)))  # the default rate's run (exponent 0)
    momentum = run_sweep(
        cfg, arrays, lambda lr: jn.sgd(lr, momentum=0.9), cfg.momentum_lr, exponents
    )
    adam = run_sweep(cfg, arrays, jn.adam, cfg.adam_lr, exponents)
    sgd = run_single(cfg, arrays, jn.sgd(cfg.sgd_lr))
    adagrad = run_single(cfg, arrays, jn.adagrad(cfg.adagrad_lr, convention="pytorch"))
    curves = {
        "SGD": sgd.loss[0],
        "Momentum": momentum.loss[centre],
        "AdaGrad": adagrad.loss[0],
        "Adam": adam.loss[centre],
    }
    final = {k: _mnist.final_loss(v, cfg.window) for k, v in curves.items()}
    runs = {
        "SGD": (sgd, 0),
        "Momentum": (momentum, centre),
        "AdaGrad": (adagrad, 0),
        "Adam": (adam, centre),
    }
    test_acc = {k: float(r.evals["test_accuracy"][i, -1]) for k, (r, i) in runs.items()}
    sweeps = {
        "SGD+momentum 0.9": momentum.evals["test_accuracy"][:, -1],
        "Adam": adam.evals["test_accuracy"][:, -1],
    }
    spread = {k: float(np.nanmax(v) - np.nanmin(v)) for k, v in sweeps.items()}
    sweep_loss = {
        "SGD+momentum 0.9": [_mnist.final_loss(v, cfg.window) for v in momentum.loss],
        "Adam": [_mnist.final_loss(v, cfg.window) for v in adam.loss],
    }
    figures = [draw(curves, sweeps, exponents, cfg, out_dir)]
    slower = [k for k in ("Momentum", "AdaGrad", "Adam") if not final[k] < final["SGD"]]
    claims = [
        claim(
            f"SGD learns slowest: after {cfg.steps} iterations Momentum, AdaGrad and Adam all "
            f"end with a lower training loss (mean of the last {cfg.window}) than SGD",
            not slower,
            {"final_train_loss": final, "final_test_accuracy": test_acc},
            reason=f"not below SGD's final training loss: {slower}",
        ),
        claim(
            "Adam is less sensitive to the learning rate than SGD+momentum: over a sweep of "
            "three decades around each default, its final test accuracies spread less",
            spread["Adam"] < spread["SGD+momentum 0.9"],
            {
                "accuracy_spread": spread,
                "lr_multipliers": 10.0**exponents,
                "final_test_accuracy": sweeps,
                "final_train_loss": sweep_loss,
            },
            reason="Adam's accuracies spread at least as much as momentum's",
        ),
    ]
    metrics = {
        "final_train_loss": final,
        "final_test_accuracy": test_acc,
        "sweep": {
            "lr_multipliers": 10.0**exponents,
            "final_test_accuracy": sweeps,
            "final_train_loss": sweep_loss,
            "accuracy_spread": spread,
        },
        "train_seconds": {
            "sweeps": momentum.seconds + adam.seconds,
            "singles": sgd.seconds + adagrad.seconds,
        },
    }
    return {"metrics": metrics, "claims": claims, "figures": figures}
