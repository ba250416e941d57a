"""An autoregressive model of a noisy sine (d2l 9.1): good one step ahead, worse the further out.

x_t = sin(0.01 t) + N(0, 0.2^2) for t = 1..1000. Features are the last tau = 4 values, the label
the next one; a 4-10-1 ReLU MLP (Xavier init) is trained with ``jn.adam`` (lr 0.01, batch 16,
5 epochs: d2l's settings) on the first 600 examples. One-step-ahead predictions use observed
values only; a k-step-ahead prediction feeds the model its own last k - 1 outputs, so its errors
compound; the "multistep" forecast predicts everything after the training range from the model's
own outputs alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxopt_notes as jn
from experiments._common import claim, save_figure

SUMMARY = "An AR model of a noisy sine predicts one step well; k-step predictions degrade with k"
DATA = "synthetic: d2l's x_t = sin(0.01 t) + N(0, 0.2^2), t = 1..1000 (fixed seed)"
HORIZONS = (1, 4, 16, 64)


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    length: int = 1000
    tau: int = 4
    num_train: int = 600
    hidden: int = 10
    learning_rate: float = 0.01
    batch_size: int = 16
    epochs: int = 5
    noise_std: float = 0.2
    good_factor: float = 1.5  # "good" one-step MSE: at most this x the noise variance

    @classmethod
    def quick(cls) -> Config:
        return cls()  # d2l's own settings take seconds

    @classmethod
    def tiny(cls) -> Config:
        return cls(epochs=2)


def series(cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(1, cfg.length + 1, dtype=np.float32)
    noise = jax.random.normal(jax.random.key(cfg.seed), (cfg.length,)) * cfg.noise_std
    return t, np.sin(0.01 * t) + np.asarray(noise)


def init(key: jax.Array, cfg: Config) -> dict:
    k1, k2 = jax.random.split(key)
    xavier = jax.nn.initializers.xavier_uniform()
    return {"w1": xavier(k1, (cfg.tau, cfg.hidden)), "b1": jnp.zeros(cfg.hidden),
            "w2": xavier(k2, (cfg.hidden, 1)), "b2": jnp.zeros(1)}  # fmt: skip


def net(p: dict, feats: jax.Array) -> jax.Array:
    return (jax.nn.relu(feats @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"])[..., 0]


def fit(feats: jax.Array, labels: jax.Array, cfg: Config) -> dict:
    """Minibatch Adam on the MSE, reshuffled every epoch with a fixed key; one jitted scan."""
    tx = jn.adam(cfg.learning_rate)
    k_init, k_shuffle = jax.random.split(jax.random.key(cfg.seed + 1))
    params = init(k_init, cfg)
    per_epoch = len(labels) // cfg.batch_size  # d2l drops no examples; the last few here

    def loss(p, idx):
        return jnp.mean((net(p, feats[idx]) - labels[idx]) ** 2)

    def epoch(carry, key):
        order = jax.random.permutation(key, len(labels))[: per_epoch * cfg.batch_size]

        def step(carry, idx):
            p, s = carry
            u, s = tx.update(jax.grad(loss)(p, idx), s, p)
            return (jn.apply_updates(p, u), s), None

        carry, _ = jax.lax.scan(step, carry, order.reshape(per_epoch, cfg.batch_size))
        return carry, loss(carry[0], jnp.arange(len(labels)))

    keys = jax.random.split(k_shuffle, cfg.epochs)
    (params, _), losses = jax.jit(lambda c: jax.lax.scan(epoch, c, keys))((params, tx.init(params)))
    return {"params": params, "train_loss": np.asarray(losses)}


def k_step(params: dict, x: np.ndarray, cfg: Config, max_k: int) -> np.ndarray:
    """d2l's table: column tau + k - 1 holds the k-step-ahead prediction of x[row + tau + k - 1]."""
    rows = len(x) - cfg.tau - max_k + 1
    cols = [jnp.asarray(x[i : i + rows]) for i in range(cfg.tau)]
    for _ in range(max_k):  # each new column is predicted from the tau columns before it
        cols.append(net(params, jnp.stack(cols[-cfg.tau :], axis=1)))
    return np.asarray(jnp.stack(cols, axis=1))


def multistep(params: dict, x: np.ndarray, cfg: Config) -> np.ndarray:
    """Observed values up to num_train + tau, then only the model's own predictions."""
    start = cfg.num_train + cfg.tau
    window = jnp.asarray(x[start - cfg.tau : start])

    def step(w, _):
        nxt = net(params, w[None])[0]
        return jnp.concatenate([w[1:], nxt[None]]), nxt

    preds = jax.lax.scan(step, window, None, length=len(x) - start)[1]
    return np.concatenate([x[:start], np.asarray(preds)])


def draw(t, x, onestep, multi, table, cfg: Config, out_dir: Path) -> str:
    fig, (ax, bx) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    start = cfg.num_train + cfg.tau
    ax.plot(t, x, lw=0.6, color="lightgrey", label="data")
    ax.plot(t[cfg.tau :], onestep, lw=0.8, label="1-step preds")
    ax.plot(t[start:], multi[start:], lw=1.2, label="multistep preds (own outputs only)")
    ax.axvline(t[start], color="k", ls=":", lw=0.8)
    ax.legend(fontsize=8)
    ax.set_title(f"trained on the first {cfg.num_train} examples (left of the dotted line)")
    for k in HORIZONS:
        col = cfg.tau + k - 1
        bx.plot(t[col : col + len(table)], table[:, col], lw=0.8, label=f"{k}-step preds")
    bx.set_xlabel("time t")
    bx.legend(fontsize=8)
    bx.set_title("k-step-ahead predictions")
    return save_figure(fig, out_dir, "autoregressive")


def main(cfg: Config, out_dir: Path) -> dict:
    t, x = series(cfg)
    feats = np.stack([x[i : cfg.length - cfg.tau + i] for i in range(cfg.tau)], axis=1)
    labels = x[cfg.tau :]
    fitted = fit(jnp.asarray(feats[: cfg.num_train]), jnp.asarray(labels[: cfg.num_train]), cfg)
    params = fitted["params"]
    onestep = np.asarray(net(params, jnp.asarray(feats)))
    table = k_step(params, x, cfg, max(HORIZONS))
    multi = multistep(params, x, cfg)
    clean = np.sin(0.01 * t)
    test_from = cfg.num_train + cfg.tau  # time index of the first target outside training
    mse, mse_clean = {}, {}
    for k in HORIZONS:
        col = cfg.tau + k - 1
        target = np.arange(len(table)) + col  # time index each row of this column predicts
        keep = target >= test_from
        mse[k] = float(np.mean((table[keep, col] - x[target[keep]]) ** 2))
        mse_clean[k] = float(np.mean((table[keep, col] - clean[target[keep]]) ** 2))
    multi_mse = float(np.mean((multi[test_from:] - x[test_from:]) ** 2))
    noise_var = cfg.noise_std**2
    ks = list(HORIZONS)
    claims = [
        claim(
            "One-step-ahead predictions on the unseen part are good: test MSE at most "
            f"{cfg.good_factor:g} x the noise variance {noise_var:g}",
            mse[1] <= cfg.good_factor * noise_var,
            {"mse_1_step": mse[1], "noise_variance": noise_var, "mse_vs_clean_sine": mse_clean[1]},
        ),
        claim(
            "k-step-ahead predictions (feeding the model its own outputs) degrade as k grows: "
            "test MSE increases over k = 1, 4, 16, 64",
            all(mse[a] < mse[b] for a, b in zip(ks, ks[1:], strict=False)),
            {"mse": mse, "mse_vs_clean_sine": mse_clean, "multistep_mse": multi_mse},
            reason="test MSE was not increasing in k: "
            + ", ".join(f"{k}: {mse[k]:.4f}" for k in ks),
        ),
    ]
    metrics = {"mse": mse, "mse_vs_clean_sine": mse_clean, "multistep_mse": multi_mse,
               "train_loss_per_epoch": fitted["train_loss"]}  # fmt: skip
    figure = draw(t, x, onestep, multi, table, cfg, out_dir)
    return {"metrics": metrics, "claims": claims, "figures": [figure]}
