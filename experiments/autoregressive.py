"""An autoregressive model of a noisy sine (d2l 9.1): good one step ahead, worse the further out.

x_t = sin(0.01 t) + N(0, noise_std^2) for t = 1..1000. Features are the last tau = 4 values, the
label the next one; a 4-10-1 ReLU MLP (Xavier init) is trained with ``jn.adam`` (lr 0.01, batch
16, 5 epochs: d2l's settings) on the first 600 examples. One-step-ahead predictions use observed
values only; a k-step-ahead prediction feeds the model its own last k - 1 outputs, so its errors
compound. Each seed draws its own noise, initial weights and batch order; all seeds are one
vmapped, compiled call. Test MSEs are taken against the observed (noisy) values after the
training range.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jaxopt_notes.experiments import _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn

SUMMARY = "An AR model of a noisy sine predicts one step well; k-step predictions degrade with k"
DATA = "synthetic: d2l's x_t = sin(0.01 t) + N(0, 0.2^2), t = 1..1000, a new noise draw per seed"
QUICK_NOTE = (
    "quick runs 10 noise seeds instead of 20, with d2l's settings otherwise: wider intervals only"
)
D2L = "d2l (Dive into Deep Learning), sec. 9.1 Working with sequences"
AUTOREGRESSION = Source(
    note="000_07e945f9227ab975.txt",
    section="自回归",
    quote="用归过去预测为未来",
    english="use the past to predict the future",
    reference=D2L,
)


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 20
    length: int = 1000
    tau: int = 4
    num_train: int = 600
    hidden: int = 10
    learning_rate: float = 0.01
    batch_size: int = 16
    epochs: int = 5
    noise_std: float = param(0.2, low=0.0, help="0: a clean sine")
    horizons: tuple = param((1, 4, 16, 64), low=1, help="k of the k-step predictions; from 1")
    good_factor: float = param(1.5, low=1.0)
    degrade_factor: float = param(2.0, low=1.0)

    def validate(self) -> None:
        if self.horizons[0] != 1 or list(self.horizons) != sorted(set(self.horizons)):
            raise ValueError(f"`horizons` must start at 1 and increase, got {self.horizons}")
        if self.num_train + self.tau + self.horizons[-1] >= self.length:
            raise ValueError(
                f"`length` {self.length} must exceed num_train + tau + the largest horizon "
                f"({self.num_train + self.tau + self.horizons[-1]}), so a test range is left"
            )

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=10)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=5, epochs=3)


def series(key: jax.Array, cfg: Config) -> tuple[jax.Array, jax.Array]:
    t = jnp.arange(1, cfg.length + 1, dtype=jnp.float32)
    return t, jnp.sin(0.01 * t) + jax.random.normal(key, (cfg.length,)) * cfg.noise_std


def init(key: jax.Array, cfg: Config) -> dict:
    k1, k2 = jax.random.split(key)
    xavier = jax.nn.initializers.xavier_uniform()
    return {
        "w1": xavier(k1, (cfg.tau, cfg.hidden)),
        "b1": jnp.zeros(cfg.hidden),
        "w2": xavier(k2, (cfg.hidden, 1)),
        "b2": jnp.zeros(1),
    }


def net(p: dict, feats: jax.Array) -> jax.Array:
    return (jax.nn.relu(feats @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"])[..., 0]


def fit(key: jax.Array, feats: jax.Array, labels: jax.Array, cfg: Config) -> dict:
    """Minibatch Adam on the MSE, reshuffled every epoch; one scan (traceable, so vmappable)."""
    tx = jn.adam(cfg.learning_rate)
    k_init, k_shuffle = jax.random.split(key)
    params = init(k_init, cfg)
    per_epoch = labels.shape[0] // cfg.batch_size  # d2l keeps a short last batch; dropped here

    def loss(p, idx):
        return jnp.mean((net(p, feats[idx]) - labels[idx]) ** 2)

    def epoch(carry, k):
        order = jax.random.permutation(k, labels.shape[0])[: per_epoch * cfg.batch_size]

        def step(carry, idx):
            p, s = carry
            u, s = tx.update(jax.grad(loss)(p, idx), s, p)
            return (jn.apply_updates(p, u), s), None

        carry, _ = jax.lax.scan(step, carry, order.reshape(per_epoch, cfg.batch_size))
        return carry, loss(carry[0], jnp.arange(labels.shape[0]))

    keys = jax.random.split(k_shuffle, cfg.epochs)
    (params, _), losses = jax.lax.scan(epoch, (params, tx.init(params)), keys)
    return params, losses


def k_step(params: dict, x: jax.Array, cfg: Config, max_k: int) -> jax.Array:
    """d2l's table: column tau + k - 1 holds the k-step-ahead prediction of x[row + tau + k - 1]."""
    rows = cfg.length - cfg.tau - max_k + 1
    cols = [x[i : i + rows] for i in range(cfg.tau)]
    for _ in range(max_k):  # each new column is predicted from the tau columns before it
        cols.append(net(params, jnp.stack(cols[-cfg.tau :], axis=1)))
    return jnp.stack(cols, axis=1)


def one_seed(key: jax.Array, cfg: Config) -> dict:
    k_noise, k_fit = jax.random.split(key)
    t, x = series(k_noise, cfg)
    feats = jnp.stack([x[i : cfg.length - cfg.tau + i] for i in range(cfg.tau)], axis=1)
    labels = x[cfg.tau :]
    params, losses = fit(k_fit, feats[: cfg.num_train], labels[: cfg.num_train], cfg)
    table = k_step(params, x, cfg, cfg.horizons[-1])
    clean = jnp.sin(0.01 * t)
    test_from = cfg.num_train + cfg.tau  # time index of the first target outside training
    mse, mse_clean = [], []
    for k in cfg.horizons:
        col = cfg.tau + k - 1
        target = jnp.arange(table.shape[0]) + col  # the time index each row's column predicts
        keep = target >= test_from
        err = (table[:, col] - x[target]) ** 2
        err_clean = (table[:, col] - clean[target]) ** 2
        mse.append(jnp.sum(err * keep) / jnp.sum(keep))
        mse_clean.append(jnp.sum(err_clean * keep) / jnp.sum(keep))
    return {
        "mse": jnp.stack(mse),
        "mse_vs_clean_sine": jnp.stack(mse_clean),
        "train_loss_per_epoch": losses,
        "x": x,
        "table": table,
    }


def claims(metrics: dict, cfg: Config) -> list[dict]:
    mse = np.asarray(metrics["mse"], float)  # (seeds, horizons)
    n = mse.shape[0]
    noise_var = cfg.noise_std**2
    ks = list(cfg.horizons)
    if noise_var > 0:
        good = _stats.mean(mse[:, 0] / noise_var)
    else:
        good = _stats.exact(np.nan, "noise_std = 0: no noise variance to compare with")
    ratios = [_stats.paired_ratio(mse[:, -1], mse[:, 0])]
    tests = [
        Test(
            f"{ks[-1]}-step / 1-step test MSE",
            ">",
            cfg.degrade_factor,
            f"pre-stated effect size: at least x{cfg.degrade_factor:g}; d2l's figure shows the "
            "64-step predictions far off the data",
            n,
            paired=True,
        )
    ]
    for i in range(1, len(ks)):
        ratios.append(_stats.paired_ratio(mse[:, i], mse[:, i - 1]))
        tests.append(
            Test(
                f"{ks[i]}-step / {ks[i - 1]}-step test MSE",
                ">",
                1.0,
                "degrades with k: every longer horizon is worse (ratio 1 = no change)",
                n,
                paired=True,
            )
        )
    return [
        claim(
            "One-step-ahead predictions on the unseen part are good: test MSE below "
            f"{cfg.good_factor:g} x the noise variance",
            good,
            Test(
                "1-step test MSE / noise variance",
                "<",
                cfg.good_factor,
                "a bound: the noise variance is the floor of any predictor's MSE against noisy "
                f"targets, and averaging tau = {cfg.tau} noisy lags adds about 1/tau of it; "
                f"{cfg.good_factor:g} leaves room for model error of the same size",
                n,
            ),
            AUTOREGRESSION,
            evidence={
                "1-step test MSE": _stats.mean(mse[:, 0]),
                "noise variance": noise_var,
                "1-step MSE against the clean sine": _stats.mean(
                    np.asarray(metrics["mse_vs_clean_sine"], float)[:, 0]
                ),
            },
            note="" if noise_var > 0 else "with noise_std = 0 the claim has no scale",
            id="one_step_good",
            kind="beyond",
        ),
        claim(
            "k-step-ahead predictions (feeding the model its own outputs) degrade as k grows: "
            f"the {ks[-1]}-step test MSE is more than {cfg.degrade_factor:g} x the 1-step one, "
            f"and each horizon of {ks} is worse than the one before",
            ratios,
            tests,
            AUTOREGRESSION,
            evidence={f"{k}-step test MSE": _stats.mean(mse[:, i]) for i, k in enumerate(ks)},
            id="k_step_degrades",
            kind="beyond",
        ),
    ]


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.4), gridspec_kw={"width_ratios": [2, 1]})
    x, mse = metrics["drawn"]["x"], np.asarray(metrics["mse"], float)
    t = np.arange(1, cfg.length + 1)
    start = cfg.num_train + cfg.tau
    ax.plot(t, x, lw=0.6, color="lightgrey", label="data (seed 0)")
    for k, preds in zip(cfg.horizons, metrics["drawn"]["preds"], strict=True):
        col = cfg.tau + k - 1
        ax.plot(t[col : col + len(preds)], preds, lw=0.8, label=f"{k}-step preds")
    ax.axvline(t[start], color="k", ls=":", lw=0.8, label="end of training range")
    ax.set(
        xlabel="time t",
        title=f"trained on the first {cfg.num_train} examples (Adam, lr "
        f"{cfg.learning_rate:g}, {cfg.epochs} epochs)",
    )
    ax.legend(fontsize=8, ncol=2)
    est = [_stats.mean(mse[:, i]) for i in range(mse.shape[1])]
    bx.errorbar(
        cfg.horizons,
        [e.value for e in est],
        fmt="o-",
        yerr=[[e.value - e.low for e in est], [e.high - e.value for e in est]],
    )
    if cfg.noise_std > 0:
        bx.axhline(cfg.noise_std**2, color="grey", ls=":", label="noise variance (the floor)")
        bx.axhline(
            cfg.good_factor * cfg.noise_std**2,
            color="tab:green",
            ls="--",
            label=f"{cfg.good_factor:g} x noise variance",
        )
    bx.set(
        xscale="log",
        yscale="log",
        xlabel="horizon k",
        xticks=list(cfg.horizons),
        xticklabels=[str(k) for k in cfg.horizons],
        ylabel=f"test MSE (mean, 95% CI, {cfg.seeds} seeds)",
        title="error grows with k",
    )
    if cfg.noise_std > 0:
        bx.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "autoregressive")


def main(cfg: Config, out_dir: Path) -> dict:
    keys = jax.random.split(jax.random.key(0), cfg.seeds)
    out = jax.jit(jax.vmap(lambda k: one_seed(k, cfg)))(keys)
    out = {k: np.asarray(v) for k, v in out.items()}
    metrics = {
        "horizons": list(cfg.horizons),
        "mse": out["mse"],
        "mse_vs_clean_sine": out["mse_vs_clean_sine"],
        "train_loss_per_epoch": out["train_loss_per_epoch"].mean(0),
        "drawn": {  # seed 0's series and its k-step predictions, for the figure
            "x": _plot.compact(out["x"][0]),
            "preds": [_plot.compact(out["table"][0][:, cfg.tau + k - 1]) for k in cfg.horizons],
        },
    }
    figure = draw(_plot.stored(metrics), cfg, out_dir)
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": [figure]}
