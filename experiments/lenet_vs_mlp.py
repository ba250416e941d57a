"""d2l 7.6 and cs231n's rule of thumb: LeNet against an MLP of about the same size, and the
update/weight ratio as a learning-rate diagnostic.

Weight sharing lets a convolutional net spend its parameters on local filters; with the same
budget an MLP must spread them over every pixel pair. The second part logs, at every step,
||theta_{t+1} - theta_t|| / ||theta_t|| per layer for plain SGD at learning rates three decades
apart: the notes say about 1e-3 is healthy, far below crawls, far above thrashes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import jaxopt_notes as jn
from experiments import _mnist
from experiments._common import claim, save_figure
from jaxopt_notes import models

SUMMARY = "LeNet beats an MLP of similar size; an update/weight ratio near 1e-3 is healthy"
DATA = _mnist.data_note("mnist5k")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    dataset: str = "mnist5k"  # tiny: "digits"
    n_train: int | None = None  # all 4,000
    steps: int = 2000
    batch_size: int = 128
    learning_rate: float = 1e-3  # Adam, for the LeNet vs MLP comparison
    ratio_steps: int = 1000
    ratio_lrs: tuple = (1e-4, 1e-2, 1.0)  # SGD learning rates for the update/weight ratio
    healthy: tuple = (1e-4, 1e-2)  # "about 1e-3": within a decade either side

    @classmethod
    def quick(cls) -> Config:
        return cls(steps=600, ratio_steps=300)

    @classmethod
    def tiny(cls) -> Config:
        return cls(dataset="digits", n_train=256, steps=20, ratio_steps=20, batch_size=32)


def matched_mlp(key: jax.Array, arrays: _mnist.Arrays, budget: int) -> models.MLP:
    """A one-hidden-layer ReLU MLP whose width gives the parameter count closest to ``budget``."""
    d = int(np.prod(arrays.x_train.shape[1:]))
    width = max(1, round((budget - 10) / (d + 11)))  # d*w + w + 10*w + 10 parameters
    return _mnist.mlp(key, arrays, depth=1, width=width, activation="relu", init="he")


def compare(cfg: Config, arrays: _mnist.Arrays) -> dict:
    key = jax.random.key(cfg.seed)
    shape = tuple(arrays.x_train.shape[1:])
    lenet = models.LeNet(in_shape=shape, num_classes=10, variant="modern", rngs=nnx.Rngs(key))
    mlp = matched_mlp(key, arrays, models.count_params(lenet))
    out = {}
    for name, net in (("LeNet", lenet), ("MLP", mlp)):
        run = _mnist.fit(net, jn.adam(cfg.learning_rate), arrays, steps=cfg.steps,
                         batch_size=cfg.batch_size, key=jax.random.fold_in(key, 7))  # fmt: skip
        out[name] = {
            "params": models.count_params(net),
            "test_accuracy": float(run.evals["test_accuracy"][0, -1]),
            "train_loss": _mnist.final_loss(run.loss[0], 50),
            "loss": run.loss[0],
        }
    return out


def update_ratios(params, new, grads):
    """Per layer kernel: ||new - old|| / ||old||, recorded at every step."""
    del grads
    leaves = jax.tree_util.tree_leaves_with_path(params)
    new_leaves = jax.tree.leaves(new)
    return jnp.stack([jnp.linalg.norm(n - p) / jnp.linalg.norm(p)
                      for (path, p), n in zip(leaves, new_leaves, strict=True)
                      if "kernel" in jax.tree_util.keystr(path)])  # fmt: skip


def ratio_sweep(cfg: Config, arrays: _mnist.Arrays) -> dict:
    key = jax.random.key(cfg.seed + 1)
    nets = [_mnist.mlp(key, arrays, depth=2, width=100, activation="relu", init="he")
            for _ in cfg.ratio_lrs]  # fmt: skip
    run = _mnist.fit(nets, lambda lr: jn.sgd(lr), arrays, steps=cfg.ratio_steps,
                     batch_size=cfg.batch_size, key=jax.random.fold_in(key, 7),
                     hparams=jnp.asarray(cfg.ratio_lrs), probe=update_ratios)  # fmt: skip
    ratios = np.asarray(run.probes)  # (runs, steps, layers)
    names = [str(lr) for lr in cfg.ratio_lrs]
    accuracy = run.evals["test_accuracy"][:, -1]
    return {
        "median_ratio": {n: float(np.median(r)) for n, r in zip(names, ratios, strict=True)},
        "final_train_loss": {
            n: _mnist.final_loss(loss, 50) for n, loss in zip(names, run.loss, strict=True)
        },
        "test_accuracy": {n: float(a) for n, a in zip(names, accuracy, strict=True)},
        "ratio_curves": ratios.mean(-1),
    }


def draw(cmp: dict, sweep: dict, cfg: Config, out_dir: Path) -> str:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in cmp.items():
        a.plot(_mnist.smooth(r["loss"], 20), label=f"{name} ({r['params']:,} params): "
               f"test {r['test_accuracy']:.3f}")  # fmt: skip
    a.set(xlabel="iteration", ylabel="training loss (moving average)", yscale="log")
    a.legend()
    for lr, curve in zip(cfg.ratio_lrs, sweep["ratio_curves"], strict=True):
        b.plot(curve, label=f"SGD lr={lr:g}: loss {sweep['final_train_loss'][str(lr)]:.3f}")
    b.axhspan(*cfg.healthy, color="tab:green", alpha=0.12, label="about 1e-3")
    b.set(xlabel="iteration", ylabel="||update|| / ||weights|| (mean over layers)", yscale="log")
    b.legend(fontsize=8)
    return save_figure(fig, out_dir, "lenet_vs_mlp")


def main(cfg: Config, out_dir: Path) -> dict:
    arrays = _mnist.load(cfg.dataset, n_train=cfg.n_train)
    cmp = compare(cfg, arrays)
    sweep = ratio_sweep(cfg, arrays)
    figures = [draw(cmp, sweep, cfg, out_dir)]
    size_gap = abs(cmp["LeNet"]["params"] - cmp["MLP"]["params"]) / cmp["LeNet"]["params"]
    lo, hi = cfg.healthy
    med = sweep["median_ratio"]
    # a diverged run (NaN loss) counts as the worst loss
    loss = {lr: float(np.nan_to_num(v, nan=np.inf)) for lr, v in sweep["final_train_loss"].items()}
    healthy = [lr for lr in med if lo <= med[lr] <= hi]
    best = min(loss, key=loss.get)
    claims = [
        claim("LeNet reaches a higher test accuracy than an MLP with about as many parameters",
              cmp["LeNet"]["test_accuracy"] > cmp["MLP"]["test_accuracy"] and size_gap < 0.05,
              {k: {"params": v["params"], "test_accuracy": v["test_accuracy"]}
               for k, v in cmp.items()} | {"relative_size_gap": size_gap}),
        claim("The learning rate whose update/weight ratio is about 1e-3 trains best; ratios far "
              "below or above it go with a worse loss",
              healthy == [best] and all(loss[lr] > loss[best] for lr in loss if lr != best),
              {"median_ratio": med, "final_train_loss": loss, "healthy_band": cfg.healthy},
              reason=f"rates in the band: {healthy}; best final loss at lr={best}"),
    ]  # fmt: skip
    metrics = {"comparison": {k: {kk: vv for kk, vv in v.items() if kk != "loss"}
                              for k, v in cmp.items()},
               "ratio_sweep": {k: v for k, v in sweep.items() if k != "ratio_curves"}}  # fmt: skip
    return {"metrics": metrics, "claims": claims, "figures": figures}
