"""Basins of f(x) = x cos(pi x) (d2l's example): noise lets gradient descent leave a local minimum.

On [-1, 2] f has a shallow local minimum at x = -0.274 (f = -0.179; walls 0.36 and 1.23 high)
and a deeper one at x = 1.090 (f = -1.047; walls 1.23 and 3.07 high), split by the maximum at
x = 0.274. Without noise, GD from any start ends at the minimum of its own basin (a check: the
gradient is zero there, "whatever the learning rate"). With Gaussian noise on every gradient
(a stand-in for the minibatch noise the notes credit), runs started *at* a minimum can hop its
walls: claimed, over independent noise seeds, is that they leave the shallow minimum and that
they leave it far more often than the deep one. Both arms share each seed's noise (paired).
A regime map sweeps the noise level: too little noise never leaves, too much leaves both.
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

SUMMARY = (
    "Without noise GD stays in its basin; gradient noise leaves the shallow minimum, not the deep"
)
DATA = "synthetic function f(x) = x cos(pi x) with Gaussian gradient noise (no data set)"
QUICK_NOTE = (
    "Quick halves the noise seeds (runs per start); the step budget and noise level are the "
    "defaults', so a miss is not down to the budget, only to wider intervals."
)

MAXIMA = (-1.0904, 0.2739, 2.0491)  # basin walls: the local maxima, roots of f'
SHALLOW, DEEP = -0.2739, 1.0904  # the two minima on [-1, 2]
HOME = {"shallow": 1, "deep": 2}  # their basin indices under `basin`

NOTE = "000_07e945f9227ab975.txt"
SECTION = "优化算法"
D2L = "Zhang et al., Dive into Deep Learning, sec. 12.1.2.1 (Optimization challenges: local minima)"
SRC_NOISE = Source(
    NOTE,
    SECTION,
    "只有**一定程度的噪声**可能会使参数跳出局部最小值（小批量随机梯度下降的有利特性之一，"
    "小批量上梯度的自然变化能够将参数从局部极小值中跳出）",
    "Only some amount of noise can make the parameters jump out of a local minimum (one of the "
    "good properties of minibatch SGD: the natural variation of minibatch gradients can push "
    "the parameters out of local minima)",
    D2L,
)
SRC_STUCK = Source(
    NOTE,
    SECTION,
    "因为使用的是梯度下降，到了局部最小的地方，梯度就变成零了，此时不管学习率取多大都不会再动了",
    "With gradient descent, at a local minimum the gradient becomes zero, and then it no longer "
    "moves, however large the learning rate",
    D2L,
)


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    learning_rate: float = 0.05
    steps: int = 1000
    seeds: int = 400  # noisy runs per starting minimum, each with its own noise key
    noise_std: float = param(2.0, low=0.0, help="std of the Gaussian added to each gradient")
    noise_map: tuple = param((0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0), low=0.0)
    clean_starts: int = 200  # random starts in [-1, 2] for the noiseless check
    escape_share: float = param(0.5, low=0.0, high=1.0)
    asymmetry: float = param(0.5, low=0.0, high=1.0)

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=200)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=40, clean_starts=31, noise_map=(0.0, 2.0))


HIST_RANGE, HIST_BINS = (-1.3, 2.3), 60


def f(x):
    return x * jnp.cos(jnp.pi * x)


def basin(x):
    """0: left of -1.09, 1: the shallow minimum's basin, 2: the deep one's, 3: right of 2.05."""
    return jnp.searchsorted(jnp.asarray(MAXIMA), x)


def run(cfg: Config, x0: jax.Array, noise_std: jax.Array, key: jax.Array) -> dict:
    """One run of SGD on f with N(0, noise_std^2) on each gradient: final x, whether it left."""
    tx = jn.sgd(cfg.learning_rate)
    home = basin(x0)

    def body(carry, k):
        x, s, left = carry
        g = jax.grad(f)(x) + noise_std * jax.random.normal(k)
        u, s = tx.update(g, s, x)
        x = jn.apply_updates(x, u)
        return (x, s, left | (basin(x) != home)), None

    init = (x0, tx.init(x0), jnp.asarray(False))
    (x, _, left), _ = jax.lax.scan(body, init, jax.random.split(key, cfg.steps))
    return {"final": x, "left": left, "ended_elsewhere": basin(x) != home}


def noisy_runs(cfg: Config, noise_stds: tuple) -> dict:
    """For each noise level, ``cfg.seeds`` runs from each minimum; seed i's noise is shared."""
    keys = jax.random.split(jax.random.key(cfg.seed + 1), cfg.seeds)
    starts = jnp.asarray([SHALLOW, DEEP])
    one = jax.vmap(lambda s, x0: jax.vmap(lambda k: run(cfg, x0, s, k))(keys), (None, 0))
    out = jax.jit(jax.vmap(one, (0, None)))(jnp.asarray(noise_stds, jnp.float32), starts)
    return jax.tree.map(np.asarray, out)  # each: (noise levels, 2 starts, seeds)


def clean_runs(cfg: Config) -> dict:
    """Noiseless GD from random starts in [-1, 2]: where each ends, and its own basin's minimum."""
    x0 = jax.random.uniform(jax.random.key(cfg.seed), (cfg.clean_starts,), minval=-1.0, maxval=2.0)
    ends = jax.jit(jax.vmap(lambda x: run(cfg, x, 0.0, jax.random.key(0))["final"]))(x0)
    own = np.where(np.asarray(basin(x0)) == HOME["shallow"], SHALLOW, DEEP)
    return {"starts": np.asarray(x0), "ends": np.asarray(ends), "own_minimum": own}


def claims(metrics: dict, cfg: Config) -> list[dict]:
    clean = metrics["clean"]
    miss = np.abs(np.asarray(clean["ends"]) - np.asarray(clean["own_minimum"]))
    left = np.asarray(metrics["noisy"]["shallow_left"], dtype=float)
    out_shallow = np.asarray(metrics["noisy"]["shallow_ended_elsewhere"], dtype=float)
    out_deep = np.asarray(metrics["noisy"]["deep_ended_elsewhere"], dtype=float)
    noise = f"gradient noise of std {cfg.noise_std:g} at lr {cfg.learning_rate:g}"
    return [
        check(
            f"Noiseless GD (lr {cfg.learning_rate:g}, {cfg.steps} steps) from "
            f"{len(miss)} random starts in [-1, 2] ends within 1e-3 of its own basin's minimum",
            bool(np.all(miss < 1e-3)),
            {
                "starts": len(miss),
                "largest_miss": float(miss.max()),
                "ended_at_own_minimum": int(np.sum(miss < 1e-3)),
            },
            SRC_STUCK,
            id="gd_stays",
        ),
        claim(
            f"With {noise}, GD started at the shallow local minimum jumps out of its basin "
            f"within {cfg.steps} steps in more than {cfg.escape_share:.0%} of the runs",
            _stats.proportion(int(left.sum()), left.size),
            Test(
                "share of runs from the shallow minimum that leave its basin",
                ">",
                cfg.escape_share,
                "pre-stated: a majority of runs, for 'can jump out'",
                left.size,
            ),
            SRC_NOISE,
            {"runs": left.size, "steps": cfg.steps, "noise_std": cfg.noise_std},
            id="noise_escapes",
        ),
        claim(
            f"The same noise leaves the shallow minimum far more often than the deep one: the "
            f"share of runs ending outside their starting basin is larger from the shallow "
            f"minimum, by more than {cfg.asymmetry:g}",
            _stats.paired_difference(out_shallow, out_deep),
            Test(
                "share ending elsewhere: from the shallow minimum minus from the deep",
                ">",
                cfg.asymmetry,
                "pre-stated: half of all runs, for 'far more often'",
                out_shallow.size,
                paired=True,
            ),
            SRC_NOISE,
            {
                "from_shallow": _stats.proportion(int(out_shallow.sum()), out_shallow.size),
                "from_deep": _stats.proportion(int(out_deep.sum()), out_deep.size),
            },
            id="noise_prefers_deep",
            kind="beyond",
        ),
    ]


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 4.6))
    clean, noise_map = metrics["clean"], metrics["noise_map"]
    grid = np.linspace(-1.3, 2.3, 400)
    for ax in (a, b):
        ax.plot(grid, np.asarray(f(grid)), "k", lw=1, label="f(x) = x cos(pi x)")
        ax.plot(
            [SHALLOW, DEEP],
            np.asarray(f(jnp.asarray([SHALLOW, DEEP]))),
            "v",
            color="red",
            ms=9,
            label="minima (shallow, deep)",
            zorder=4,
        )
        for m in MAXIMA:
            ax.axvline(m, color="grey", ls=":", lw=0.8)
    starts, ends = np.asarray(clean["starts"]), np.asarray(clean["ends"])
    a.scatter(
        starts,
        np.asarray(f(starts)),
        c=ends > MAXIMA[1],
        cmap="coolwarm",
        s=12,
        zorder=3,
        label="starts (colour: minimum GD ends at)",
    )
    a.set(xlabel="x", ylabel="f(x)", title=f"noiseless GD, lr {cfg.learning_rate:g}: own basin")
    a.legend(fontsize=8, loc="upper left")
    twin = b.twinx()
    edges = np.linspace(*HIST_RANGE, HIST_BINS + 1)
    for name, color in (("shallow", "tab:orange"), ("deep", "tab:blue")):
        twin.hist(  # the stored counts, drawn as the histogram of the final x they count
            edges[:-1],
            bins=edges,
            weights=metrics["drawn"]["final_x_counts"][name],
            alpha=0.5,
            color=color,
            label=f"final x of runs started at the {name} minimum",
        )
    twin.set_ylabel("runs")
    twin.legend(fontsize=8, loc="upper center")
    title = f"noise std {cfg.noise_std:g}, lr {cfg.learning_rate:g}, {cfg.steps} steps"
    b.set(xlabel="x", ylabel="f(x)", title=title)
    stds = noise_map["noise_std"]
    c.plot(
        stds, noise_map["shallow_left"], "o-", color="tab:orange", label="left the shallow basin"
    )
    c.plot(stds, noise_map["deep_left"], "s-", color="tab:blue", label="left the deep basin")
    c.axhline(cfg.escape_share, color="tab:orange", ls="--", lw=0.8, label="claimed share")
    c.axvline(cfg.noise_std, color="k", ls=":", lw=0.8, label=f"claims' noise ({cfg.noise_std:g})")
    c.set(
        xlabel="noise std",
        ylabel=f"share of {cfg.seeds} runs",
        ylim=(-0.03, 1.03),
        title=f"regime map: escapes vs noise (lr {cfg.learning_rate:g})",
    )
    c.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "basins")


def main(cfg: Config, out_dir: Path) -> dict:
    clean = clean_runs(cfg)
    levels = tuple(sorted(set(cfg.noise_map) | {cfg.noise_std}))
    runs = noisy_runs(cfg, levels)
    i = levels.index(cfg.noise_std)
    noisy = {
        "shallow_left": runs["left"][i, 0].astype(int),
        "shallow_ended_elsewhere": runs["ended_elsewhere"][i, 0].astype(int),
        "deep_ended_elsewhere": runs["ended_elsewhere"][i, 1].astype(int),
    }
    noise_map = {
        "noise_std": list(levels),
        "shallow_left": runs["left"][:, 0].mean(axis=1),
        "deep_left": runs["left"][:, 1].mean(axis=1),
        "shallow_ended_elsewhere": runs["ended_elsewhere"][:, 0].mean(axis=1),
        "deep_ended_elsewhere": runs["ended_elsewhere"][:, 1].mean(axis=1),
    }
    counts = {  # the figure's histograms of where the noisy runs end
        name: np.histogram(runs["final"][i, j], bins=HIST_BINS, range=HIST_RANGE)[0]
        for j, name in enumerate(("shallow", "deep"))
    }
    metrics = {
        "clean": clean,
        "noisy": noisy,
        "noise_map": noise_map,
        "drawn": {"final_x_counts": counts},
    }
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
