"""Gradient clipping: by global norm keeps the direction, by value does not; both tame a cliff.

Direction: many random heavy-tailed gradients (Student-t, 2 degrees of freedom, 100 coordinates)
clipped by ``jn.clip_by_global_norm`` and by ``jn.clip`` (value); cosine similarity to the raw one.

Divergence: the cliff of Pascanu et al. (2013): a one-unit linear recurrence h_t = w h_{t-1} + b
over T = 30 steps, loss (h_T - y)^2 / 2 with y made by w = 1.05. Near the solution dh_T/dw ~ T
w^(T-1) is large, the curvature is in the thousands and one plain SGD step flies off the cliff.
We start SGD from many random (w, b) with and without clipping, and count the runs that diverge.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxopt_notes as jn
from experiments._common import claim, save_figure, trajectory

SUMMARY = (
    "clipping by global norm keeps the gradient's direction, by value not; clipping tames cliffs"
)
DATA = "synthetic: Student-t random gradients, and a 30-step linear recurrence (Pascanu et al.)"


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    gradients: int = 2000
    dim: int = 100
    max_norm: float = 1.0
    max_delta: float = 1.0
    horizon: int = 30  # T of the recurrence
    target_w: float = 1.05
    starts: int = 64
    learning_rate: float = 1e-3
    steps: int = 2000

    @classmethod
    def quick(cls) -> Config:
        return cls(steps=1000)

    @classmethod
    def tiny(cls) -> Config:
        return cls(gradients=200, starts=16, steps=300)


def cosines(cfg: Config, key: jax.Array) -> dict:
    gs = jax.random.t(key, 2.0, (cfg.gradients, cfg.dim))
    clippers = {
        "global norm": jn.clip_by_global_norm(cfg.max_norm),
        "value": jn.clip(cfg.max_delta),
    }
    out = {}
    for name, tx in clippers.items():
        clipped = jax.vmap(lambda g, t=tx: t.update(g, t.init(g))[0])(gs)
        cos = jnp.sum(clipped * gs, 1) / (
            jnp.linalg.norm(clipped, axis=1) * jnp.linalg.norm(gs, axis=1)
        )
        out[name] = np.asarray(cos)
    return out


def cliff_loss(cfg: Config):
    y = cfg.target_w**cfg.horizon  # h_T for w = target_w, b = 0, h_0 = 1

    def loss(p):
        h = jax.lax.fori_loop(0, cfg.horizon, lambda _, h: p[0] * h + p[1], 1.0)
        return 0.5 * (h - y) ** 2

    return loss


def descend(tx, loss, starts: jax.Array, steps: int) -> np.ndarray:
    """Loss curves (starts x steps+1) of ``tx`` from every start at once."""
    curve = lambda p0: trajectory(tx, loss, p0, steps, record=loss)  # noqa: E731
    return np.asarray(jax.jit(jax.vmap(curve))(starts))


def cliff_runs(cfg: Config, key: jax.Array) -> dict:
    kw, kb = jax.random.split(key)
    starts = jnp.stack([jax.random.uniform(kw, (cfg.starts,), minval=0.5, maxval=1.0),
                        jax.random.uniform(kb, (cfg.starts,), minval=-0.1, maxval=0.1)],
                       1)  # fmt: skip
    lr = cfg.learning_rate
    txs = {
        "SGD": jn.sgd(lr),
        "SGD + clip by global norm": jn.chain(jn.clip_by_global_norm(cfg.max_norm), jn.sgd(lr)),
        "SGD + clip by value": jn.chain(jn.clip(cfg.max_delta), jn.sgd(lr)),
    }
    return {name: descend(tx, cliff_loss(cfg), starts, cfg.steps) for name, tx in txs.items()}


def diverged(curves: np.ndarray) -> np.ndarray:
    """A run diverged if its loss became non-finite or ended above where it started."""
    return ~np.all(np.isfinite(curves), axis=1) | ~(curves[:, -1] < curves[:, 0])


def draw(cos: dict, runs: dict, cfg: Config, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.4))
    bins = np.linspace(min(c.min() for c in cos.values()) - 0.01, 1.001, 60)
    for name, c in cos.items():
        axes[0].hist(c, bins=bins, alpha=0.6, label=f"clip by {name}")
    axes[0].set(xlabel="cosine(clipped, raw gradient)", ylabel="gradients",
                title=f"{cfg.gradients} Student-t gradients in {cfg.dim} dims")  # fmt: skip
    axes[0].legend()
    w = np.linspace(0.5, 1.12, 400)
    loss = cliff_loss(cfg)
    axes[1].semilogy(w, np.asarray(jax.vmap(lambda v: loss(jnp.array([v, 0.0])))(w)) + 1e-12)
    axes[1].set(xlabel="w (b = 0)", ylabel="loss", title="the cliff: (h_30 - y)^2 / 2")
    for (name, curves), color in zip(
        runs.items(), ("tab:red", "tab:blue", "tab:green"), strict=True
    ):
        shown = np.where(np.isfinite(curves), np.minimum(curves, 1e12), 1e12)
        axes[2].semilogy(shown.T, color=color, lw=0.5, alpha=0.4)
        axes[2].plot([], [], color=color, label=f"{name}: {diverged(curves).sum()} diverged")
    axes[2].set(xlabel="step", ylabel="loss (capped at 1e12; inf/nan drawn there)",
                title=f"{cfg.starts} random starts, lr {cfg.learning_rate}")  # fmt: skip
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "clipping")


def main(cfg: Config, out_dir: Path) -> dict:
    k_grad, k_start = jax.random.split(jax.random.key(cfg.seed))
    cos = cosines(cfg, k_grad)
    runs = cliff_runs(cfg, k_start)
    figures = [draw(cos, runs, cfg, out_dir)]
    cos_stats = {k: {"min": c.min(), "mean": c.mean()} for k, c in cos.items()}
    div = {k: int(diverged(c).sum()) for k, c in runs.items()}
    final = {k: float(np.median(np.where(np.isfinite(c[:, -1]), c[:, -1], np.inf)))
             for k, c in runs.items()}  # fmt: skip
    clipped = [k for k in runs if "clip" in k]
    claims = [
        claim(
            "Clipping by global norm keeps the gradient's direction (cosine >= 0.9999 for every "
            "gradient); clipping by value turns it (mean cosine below 0.99)",
            cos_stats["global norm"]["min"] >= 0.9999 and cos_stats["value"]["mean"] < 0.99,
            {"cosine": cos_stats, "gradients": cfg.gradients, "dim": cfg.dim},
            reason="the cosines do not split that way",
        ),
        claim(
            f"Clipping prevents divergence under exploding gradients: on the cliff plain SGD "
            f"diverges from some of the {cfg.starts} starts, clipped SGD (by norm or by value) "
            "from none",
            div["SGD"] > 0 and all(div[k] == 0 for k in clipped),
            {"diverged_runs": div, "median_final_loss": final, "starts": cfg.starts,
             "steps": cfg.steps},
            reason="plain SGD never diverged, or a clipped run did",
        ),
    ]  # fmt: skip
    return {"metrics": {"cosine": cos_stats, "diverged_runs": div, "median_final_loss": final},
            "claims": claims, "figures": figures}  # fmt: skip
