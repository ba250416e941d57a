"""Gradient clipping on an exploding recurrence: it stabilises SGD; by value it turns the step.

The cliff of Pascanu, Mikolov & Bengio (2013): a one-unit linear recurrence h_t = w h_{t-1} + b
over T = 30 steps from h_0 = 1, loss (h_T - y)^2 / 2 with y made by w = 1.05. Near the solution
dh_T/dw ~ T w^(T-1) is large, the curvature is in the thousands and one plain SGD step can fly
off the cliff. From random starts (w in [0.5, 1], b in [-0.1, 0.1]; each start is a seed, shared
by every arm) we run plain SGD, SGD after ``jn.clip_by_global_norm`` and SGD after ``jn.clip``
(by value), and count the runs that diverge (loss not finite, or not below its start at the
end). The regime map: the divergence rates over a grid of learning rates.

Direction: along the value-clipped runs we record the cosine between each clipped gradient and
the raw one. Clipping by value shortens the large coordinate more than the small one, so it
turns the step; clipping by global norm rescales the whole vector (cosine 1, a check).

Sabotage: ``max_norm`` and ``max_delta`` at 1e9 (the config refuses infinity): no gradient is
ever clipped, so clipped SGD is plain SGD.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jaxopt_notes.experiments import _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, check, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn

SUMMARY = "clipping stops SGD from diverging on an exploding recurrence; by value it turns the step"
DATA = (
    "synthetic: the 30-step one-unit linear recurrence of Pascanu et al. (2013), target made "
    "by w = 1.05; random starts"
)
QUICK_NOTE = (
    "quick: 64 starts instead of 128 and 1,000 steps instead of 2,000; a run that would "
    "diverge later counts as stable, so quick can only understate plain SGD's divergence"
)
ARMS = ("SGD", "SGD + clip by global norm", "SGD + clip by value")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    starts: int = 128  # random starts: the seeds
    horizon: int = 30  # T of the recurrence
    target_w: float = 1.05
    max_norm: float = 1.0
    max_delta: float = 1.0
    learning_rate: float = 3e-3  # the claim's rate: the largest of lr_grid
    lr_grid: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    steps: int = 2000
    explodes: float = param(0.25, low=0.0, high=1.0, help="plain SGD must diverge more often")
    stable: float = param(0.1, low=0.0, high=1.0, help="clipped SGD must diverge less often")
    turned: float = param(0.99, low=0.0, high=1.0, help="by-value cosine must stay below")

    def validate(self) -> None:
        if self.learning_rate not in self.lr_grid:
            raise ValueError(
                f"`learning_rate` must be one of `lr_grid` {self.lr_grid}, got {self.learning_rate}"
            )

    @classmethod
    def quick(cls) -> Config:
        return cls(starts=64, steps=1000)

    @classmethod
    def tiny(cls) -> Config:
        return cls(starts=48, steps=400, lr_grid=(1e-3, 3e-3))


SOURCES = {
    "explode": Source(
        note="003_9f3980f7ef3a062d.txt",
        section="梯度截断",
        quote="梯度爆炸也是影响训练集不收敛的原因。包括按值截断和按模截断。",
        english="exploding gradients are another reason training does not converge; [the "
        "remedy,] clipping, is by value or by norm",
        reference="Pascanu, Mikolov & Bengio 2013, 'On the difficulty of training recurrent "
        "neural networks', sec. 3.2 and Fig. 6",
    ),
    "norm": Source(
        note="003_9f3980f7ef3a062d.txt",
        section="梯度截断",
        quote="一般选择按模截断。",
        english="clipping by norm is the usual choice [it keeps the gradient's direction]",
        reference="Goodfellow et al., Deep Learning, sec. 10.11.1",
    ),
}


def cliff_loss(cfg: Config):
    y = cfg.target_w**cfg.horizon  # h_T for w = target_w, b = 0, h_0 = 1

    def loss(p):
        h = jax.lax.fori_loop(0, cfg.horizon, lambda _, h: p[0] * h + p[1], 1.0)
        return 0.5 * (h - y) ** 2

    return loss


def clipper(name: str, cfg: Config):
    if name == ARMS[1]:
        return jn.clip_by_global_norm(cfg.max_norm)
    if name == ARMS[2]:
        return jn.clip(cfg.max_delta)
    return None


def descend(name: str, lr, p0: jax.Array, cfg: Config) -> dict:
    """Loss after every step; for a clipped arm also cos(clipped, raw gradient) at each step."""
    loss = cliff_loss(cfg)
    clip = clipper(name, cfg)

    def body(p, _):
        g = jax.grad(loss)(p)
        c = g if clip is None else clip.update(g, clip.init(g))[0]
        norm = jnp.linalg.norm(g)
        # a zero gradient (reached the minimum exactly) has no direction to turn: left out
        cos = jnp.where(norm > 0, jnp.dot(c, g) / (jnp.linalg.norm(c) * norm), jnp.nan)
        p = p - lr * c
        return p, (loss(p), cos)

    _, (losses, cos) = jax.lax.scan(body, p0, None, length=cfg.steps)
    return {"loss": jnp.concatenate([loss(p0)[None], losses]), "cos": cos}


def diverged(curves: np.ndarray) -> np.ndarray:
    """A run diverged if its loss became non-finite or ended no lower than it started."""
    return ~np.all(np.isfinite(curves), axis=-1) | ~(curves[..., -1] < curves[..., 0])


def measure(cfg: Config) -> dict:
    kw, kb = jax.random.split(jax.random.key(cfg.seed))
    starts = jnp.stack(
        [
            jax.random.uniform(kw, (cfg.starts,), minval=0.5, maxval=1.0),
            jax.random.uniform(kb, (cfg.starts,), minval=-0.1, maxval=0.1),
        ],
        1,
    )
    lrs = jnp.asarray(cfg.lr_grid)

    @jax.jit  # every arm, rate and start in one program
    def simulate(starts):
        return {
            name: jax.vmap(lambda lr, n=name: jax.vmap(lambda p: descend(n, lr, p, cfg))(starts))(
                lrs
            )
            for name in ARMS
        }

    runs = jax.tree.map(np.asarray, simulate(starts))  # (rates, starts, steps)
    i = cfg.lr_grid.index(cfg.learning_rate)
    value_div = diverged(runs[ARMS[2]]["loss"][i])
    cos = runs[ARMS[2]]["cos"][i][~value_div]  # the runs that trained, not ones thrown to inf
    return {
        "lr_grid": cfg.lr_grid,
        "diverged": {name: diverged(r["loss"]) for name, r in runs.items()},  # (rates, starts)
        "final_loss": {name: r["loss"][i, :, -1] for name, r in runs.items()},
        # per start that trained: mean cosine of the by-value clipped gradient over its run
        "value_cosine": np.nanmean(cos, axis=1),
        "norm_cosine_worst": float(np.nanmin(runs[ARMS[1]]["cos"][i])),
        "curves": {name: r["loss"][i, :, ::10] for name, r in runs.items()},
    }


def claims(m: dict, cfg: Config) -> list[dict]:
    i = list(m["lr_grid"]).index(cfg.learning_rate)
    div = {name: np.asarray(d[i], dtype=bool) for name, d in m["diverged"].items()}
    rate = {name: _stats.proportion(int(d.sum()), d.size) for name, d in div.items()}
    starts = div[ARMS[0]].size
    regime = {
        f"lr {lr:g}": {name: f"{int(d[j].sum())}/{d[j].size}" for name, d in m["diverged"].items()}
        for j, lr in enumerate(m["lr_grid"])
    }
    return [
        claim(
            f"Clipping stops exploding gradients from wrecking training: at lr "
            f"{cfg.learning_rate:g}, where plain SGD diverges from over {cfg.explodes:.0%} of "
            f"the starts (the explosion is real), SGD clipped by global norm diverges from under "
            f"{cfg.stable:.0%}",
            [rate[ARMS[0]], rate[ARMS[1]]],
            [
                Test(
                    "plain SGD's divergence rate",
                    ">",
                    cfg.explodes,
                    "positive control, pre-stated: the recurrence must explode for a quarter "
                    "of the starts at this rate",
                    starts,
                ),
                Test(
                    "global-norm-clipped SGD's divergence rate",
                    "<",
                    cfg.stable,
                    "pre-stated: 'stabilises' read as under one start in ten",
                    starts,
                    paired=True,
                ),
            ],
            SOURCES["explode"],
            evidence={
                "clip by value: divergence rate": rate[ARMS[2]],
                "plain minus clipped, per start (paired)": _stats.paired_difference(
                    div[ARMS[0]].astype(float), div[ARMS[1]].astype(float)
                ),
                "median final loss": {
                    name: float(np.median(np.where(np.isfinite(v), v, np.inf)))
                    for name, v in m["final_loss"].items()
                },
                "max_norm": cfg.max_norm,
                "steps": cfg.steps,
                "diverged by rate (regime map)": regime,
            },
            note="clipped runs settle at a higher loss than plain runs that survive: near the "
            "cliff |g| exceeds the threshold, so each clipped step has the fixed length "
            "lr * max_norm",
            id="clipping_stabilises",
        ),
        claim(
            "Clipping by value turns the step: along the value-clipped runs (those that "
            f"trained) the clipped gradient's cosine with the raw one averages below "
            f"{cfg.turned:g}",
            _stats.mean(m["value_cosine"]),
            Test(
                "mean cos(clipped by value, raw gradient)",
                "<",
                cfg.turned,
                "pre-stated: cos 0.99 is an 8-degree turn, the least worth calling one",
                starts,
            ),
            SOURCES["norm"],
            evidence={"max_delta": cfg.max_delta, "lr": cfg.learning_rate},
            id="value_clipping_turns",
            kind="beyond",
        ),
        check(
            "Clipping by global norm only rescales: every clipped gradient has cosine 1 "
            "(to 1e-5) with the raw one",
            m["norm_cosine_worst"] > 1 - 1e-5,
            {"smallest cosine, global norm": m["norm_cosine_worst"]},
            id="global_norm_keeps_direction",
        ),
    ]


def draw(m: dict, cfg: Config, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.6))
    w = np.linspace(0.5, 1.12, 400)
    loss = cliff_loss(cfg)
    axes[0].semilogy(w, np.asarray(jax.vmap(lambda v: loss(jnp.array([v, 0.0])))(w)) + 1e-12)
    axes[0].axvline(cfg.target_w, color="grey", ls=":", label=f"minimum w = {cfg.target_w:g}")
    axes[0].set(xlabel="w (b = 0)", ylabel="loss", title=f"the cliff: (h_{cfg.horizon} - y)^2 / 2")
    axes[0].legend(fontsize=8)
    colors = ("tab:red", "tab:blue", "tab:green")
    i = list(m["lr_grid"]).index(cfg.learning_rate)
    for (name, curves), color in zip(m["curves"].items(), colors, strict=True):
        curves = np.asarray(curves, float)
        shown = np.where(np.isfinite(curves), np.minimum(curves, 1e12), 1e12)
        axes[1].semilogy(np.arange(shown.shape[1]) * 10, shown.T, color=color, lw=0.5, alpha=0.3)
        n = int(np.sum(m["diverged"][name][i]))
        axes[1].plot([], [], color=color, label=f"{name}: {n}/{shown.shape[0]} diverged")
    axes[1].set(
        xlabel="step",
        ylabel="loss (capped at 1e12; inf/nan drawn there)",
        title=f"{cfg.starts} random starts, lr {cfg.learning_rate:g}",
    )
    axes[1].legend(fontsize=8)
    lrs = np.asarray(m["lr_grid"])
    for (name, d), color in zip(m["diverged"].items(), colors, strict=True):
        est = [_stats.proportion(int(row.sum()), row.size) for row in np.asarray(d, bool)]
        err = [[max(0.0, e.value - e.low) for e in est], [max(0.0, e.high - e.value) for e in est]]
        axes[2].errorbar(
            lrs, [e.value for e in est], yerr=err, fmt="o-", color=color, capsize=3, label=name
        )
    axes[2].axhline(cfg.explodes, color="tab:red", ls=":", lw=1, label="plain must exceed")
    axes[2].axhline(cfg.stable, color="tab:blue", ls=":", lw=1, label="clipped must stay under")
    axes[2].set(
        xscale="log",
        xlabel="learning rate",
        ylabel="divergence rate (Wilson 95% CI)",
        title="regime map: where plain SGD falls off the cliff",
    )
    axes[2].set_xticks(lrs, [f"{v:g}" for v in lrs])
    axes[2].minorticks_off()
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "clipping")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics = measure(cfg)
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
