"""Saito 6.3.2: a deep ReLU net with and without Batch Normalization, over init scales.

Saito's ``batch_norm_test.py``: 1,000 training images, five hidden layers of 100 ReLU units,
SGD with learning rate 0.01, minibatches of 100, 20 epochs, weight std in
``logspace(0, -4, 16)``; the training accuracy after every epoch, BN (solid) against no BN
(dashed). BN here is ``MLP(batch_norm=True)``: Linear -> BatchNorm -> ReLU, with Saito's
BatchNorm constants set on Flax's layers: running-average momentum 0.9 (Flax's 0.99 would still
remember its initial variance of 1 after 200 steps and skew the evaluation) and eps 1e-6 in
sqrt(var + eps) (Flax's 1e-5 exceeds the pre-BN variance of the std-1e-4 nets, ~8e-6, so BN
would not normalise them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np

import jaxopt_notes as jn
from experiments import _mnist
from experiments._common import claim, save_figure

SUMMARY = "BatchNorm learns faster and over a wide range of initial weight scales"
DATA = _mnist.data_note("mnist5k") + "; the first n_train training images"


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    dataset: str = "mnist5k"  # tiny: "digits"
    n_train: int = 1000
    depth: int = 5
    width: int = 100
    learning_rate: float = 0.01
    batch_size: int = 100
    epochs: int = 20
    num_stds: int = 16  # init stds logspace(0, -4, num_stds)
    bn_momentum: float = 0.9  # Saito's BatchNormalization constants
    bn_epsilon: float = 1e-6
    learned: float = 0.8  # "learns": training accuracy at least this after `epochs`

    @classmethod
    def quick(cls) -> Config:
        return cls(num_stds=8)

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            dataset="digits", n_train=200, width=16, depth=2, batch_size=50, epochs=2, num_stds=3
        )


def train_all(cfg: Config, arrays: _mnist.Arrays, stds: np.ndarray, batch_norm: bool):
    """Every init std in one vmapped run, with or without BN; evaluated after every epoch."""
    key = jax.random.key(cfg.seed)
    nets = []
    for std in stds:
        net = _mnist.mlp(
            key,
            arrays,
            depth=cfg.depth,
            width=cfg.width,
            init="normal",
            init_std=float(std),
            batch_norm=batch_norm,
        )
        for norm in net.norms:
            norm.momentum, norm.epsilon = cfg.bn_momentum, cfg.bn_epsilon
        nets.append(net)
    per_epoch = arrays.x_train.shape[0] // cfg.batch_size
    return _mnist.fit(
        nets,
        jn.sgd(cfg.learning_rate),
        arrays,
        steps=cfg.epochs * per_epoch,
        batch_size=cfg.batch_size,
        key=jax.random.fold_in(key, 1),
        eval_every=per_epoch,
    )


def draw_curves(stds, bn, plain, out_dir: Path) -> str:
    cols = 4
    rows = -(-len(stds) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True, sharey=True
    )
    epochs = np.arange(1, bn.shape[1] + 1)
    for i, ax in enumerate(axes.flat):
        if i >= len(stds):
            ax.axis("off")
            continue
        ax.plot(epochs, bn[i], "-", color="tab:blue", label="Batch Norm")
        ax.plot(epochs, plain[i], "--", color="tab:orange", label="no BN")
        ax.set_title(f"init std {stds[i]:.2g}", fontsize=9)
        ax.set_ylim(0, 1.05)
    axes.flat[0].legend(fontsize=8)
    fig.supxlabel("epoch")
    fig.supylabel("training accuracy")
    fig.tight_layout()
    return save_figure(fig, out_dir, "bn_curves")


def draw_summary(stds, bn, plain, cfg: Config, out_dir: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogx(stds, bn[:, -1], "o-", label="Batch Norm")
    ax.semilogx(stds, plain[:, -1], "s--", label="no BN")
    ax.axhline(cfg.learned, color="grey", lw=0.8, ls=":")
    ax.set(
        xlabel="initial weight std",
        ylabel=f"training accuracy after {cfg.epochs} epochs",
        title=f"{cfg.depth} hidden ReLU layers, SGD lr {cfg.learning_rate}",
        ylim=(0, 1.05),
    )
    ax.legend()
    return save_figure(fig, out_dir, "bn_vs_init_std")


def main(cfg: Config, out_dir: Path) -> dict:
    arrays = _mnist.load(cfg.dataset, n_train=cfg.n_train)
    stds = np.logspace(0, -4, cfg.num_stds)
    with_bn = train_all(cfg, arrays, stds, batch_norm=True)
    without = train_all(cfg, arrays, stds, batch_norm=False)
    bn, plain = with_bn.evals["train_accuracy"], without.evals["train_accuracy"]
    plain = np.nan_to_num(plain, nan=0.0)  # a diverged net scores what it predicts: NaN -> 0
    final_bn, final_plain = bn[:, -1], plain[:, -1]
    quarter = max(1, cfg.epochs // 4) - 1
    ahead_final = float(np.mean(final_bn > final_plain))
    ahead_early = float(np.mean(bn[:, quarter] > plain[:, quarter]))
    behind = [
        float(f"{s:.2g}")
        for s, b, p in zip(stds, bn, plain, strict=True)
        if not (b[quarter] > p[quarter] and b[-1] > p[-1])
    ]
    learned_bn, learned_plain = stds[final_bn >= cfg.learned], stds[final_plain >= cfg.learned]

    def decades(s):
        return float(np.log10(s.max() / s.min())) if len(s) else 0.0

    figures = [draw_summary(stds, bn, plain, cfg, out_dir), draw_curves(stds, bn, plain, out_dir)]
    claims = [
        claim(
            f"BatchNorm learns faster: for at least 80% of the init stds its training accuracy "
            f"is higher after {quarter + 1} and after {cfg.epochs} epochs",
            ahead_early >= 0.8 and ahead_final >= 0.8,
            {
                "fraction_of_stds_bn_ahead": {"early": ahead_early, "final": ahead_final},
                "train_accuracy_bn": final_bn,
                "train_accuracy_no_bn": final_plain,
                "stds": stds,
            },
            reason=f"BN ahead for only {ahead_early:.0%} (early) / {ahead_final:.0%} (final) "
            f"of the stds; behind at std {behind}",
        ),
        claim(
            f"... over a wide range of init scales: BN reaches {cfg.learned:.0%} training "
            "accuracy for more init stds, spanning more decades, than the net without BN",
            len(learned_bn) > len(learned_plain) and decades(learned_bn) > decades(learned_plain),
            {
                "stds_learned_bn": learned_bn,
                "stds_learned_no_bn": learned_plain,
                "decades_bn": decades(learned_bn),
                "decades_no_bn": decades(learned_plain),
            },
            reason="BN did not learn over more init stds than the plain net",
        ),
    ]
    metrics = {
        "stds": stds,
        "train_accuracy_bn": bn,
        "train_accuracy_no_bn": plain,
        "test_accuracy_bn": with_bn.evals["test_accuracy"][:, -1],
        "test_accuracy_no_bn": without.evals["test_accuracy"][:, -1],
        "train_seconds": {"bn": with_bn.seconds, "no_bn": without.seconds},
    }
    return {"metrics": metrics, "claims": claims, "figures": figures}
