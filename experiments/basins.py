"""Basins of f(x) = x cos(pi x) (d2l's example): where GD ends depends on where it starts.

On [-1, 2] f has a shallow local minimum at x = -0.274 (f = -0.179, walls 0.36 and 1.23 high)
and a deeper one at x = 1.090 (f = -1.047, walls 1.23 and 3.07 high), separated by the maximum
at x = 0.274. Plain GD from many starting points ends at the minimum of the basin it starts in.
Minibatch-like noise (Gaussian noise on every gradient, a fixed PRNG key) lets it hop walls:
we count the noisy runs from each minimum that leave its basin. The noise level is set from the
temperature lr sigma^2 / 2 = 0.1, about a third of the shallow minimum's lower wall.
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

SUMMARY = (
    "GD ends in the basin it starts in; gradient noise leaves a shallow minimum, not a deep one"
)
DATA = "synthetic function f(x) = x cos(pi x) with Gaussian gradient noise (no data set)"

MAXIMA = (-1.0904, 0.2739, 2.0491)  # basin walls, from the roots of f'
SHALLOW, DEEP = -0.2739, 1.0904


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    learning_rate: float = 0.05
    steps: int = 1000
    starts: int = 121  # evenly in [-1, 2]
    noise_std: float = 2.0  # temperature lr * sigma^2 / 2 = 0.1
    noisy_runs: int = 400  # per minimum

    @classmethod
    def quick(cls) -> Config:
        return cls(noisy_runs=200)

    @classmethod
    def tiny(cls) -> Config:
        return cls(steps=200, starts=31, noisy_runs=32)


def f(x):
    return x * jnp.cos(jnp.pi * x)


def basin(x: np.ndarray) -> np.ndarray:
    """0: left of -1.09, 1: the shallow minimum's basin, 2: the deep one's, 3: right of 2.05."""
    return np.searchsorted(np.asarray(MAXIMA), x)


def runs(cfg: Config, x0: jax.Array, noise_std: float, key: jax.Array) -> np.ndarray:
    """Paths (runs x steps+1) of SGD on f with N(0, noise_std^2) added to each gradient."""
    tx = jn.sgd(cfg.learning_rate)

    def one(x, k):
        def body(carry, kk):
            x, s = carry
            g = jax.grad(f)(x) + noise_std * jax.random.normal(kk)
            u, s = tx.update(g, s, x)
            x = jn.apply_updates(x, u)
            return (x, s), x

        _, xs = jax.lax.scan(body, (x, tx.init(x)), jax.random.split(k, cfg.steps))
        return jnp.concatenate([x[None], xs])

    keys = jax.random.split(key, len(x0))
    return np.asarray(jax.jit(jax.vmap(one))(x0, keys))


def draw(starts, clean, noisy: dict, cfg: Config, out_dir: Path) -> str:
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(17, 4.4))
    grid = np.linspace(-1.3, 2.3, 400)
    for ax in (a, c):
        ax.plot(grid, np.asarray(f(grid)), "k", lw=1)
        for m in MAXIMA:
            ax.axvline(m, color="grey", ls=":", lw=0.8)
    ends = clean[:, -1]
    a.scatter(starts, np.asarray(f(starts)), c=basin(ends), cmap="coolwarm", s=12, zorder=3)
    a.set(xlabel="x", ylabel="f(x)", title="starts coloured by the minimum GD ends in")
    b.plot(starts, ends, "o", ms=3)
    b.set(xlabel="start x0", ylabel=f"x after {cfg.steps} steps", title="GD: end against start")
    for m in MAXIMA:
        b.axvline(m, color="grey", ls=":", lw=0.8)
    for (name, xs), color in zip(noisy.items(), ("tab:orange", "tab:blue"), strict=True):
        c.hist(xs[:, -1], bins=60, range=(-1.3, 2.3), alpha=0.6, color=color, density=True,
               label=f"noisy runs started at the {name} minimum: final x")  # fmt: skip
    title = f"with gradient noise (sigma {cfg.noise_std:g}, lr {cfg.learning_rate})"
    c.set(xlabel="x", title=title,
          ylim=(-1.5, 4))  # fmt: skip
    c.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return save_figure(fig, out_dir, "basins")


def main(cfg: Config, out_dir: Path) -> dict:
    k_clean, k_shallow, k_deep = jax.random.split(jax.random.key(cfg.seed), 3)
    starts = jnp.linspace(-1.0, 2.0, cfg.starts)
    clean = runs(cfg, starts, 0.0, k_clean)
    ends = clean[:, -1]
    minima = np.array([np.nan, SHALLOW, DEEP, np.nan])[basin(np.asarray(starts))]
    at_own = np.abs(ends - minima) < 1e-3
    noisy = {
        "shallow": runs(cfg, jnp.full(cfg.noisy_runs, SHALLOW), cfg.noise_std, k_shallow),
        "deep": runs(cfg, jnp.full(cfg.noisy_runs, DEEP), cfg.noise_std, k_deep),
    }
    home = {"shallow": 1, "deep": 2}
    left = {k: float(np.mean(np.any(basin(xs) != home[k], axis=1))) for k, xs in noisy.items()}
    ended = {k: float(np.mean(basin(xs[:, -1]) != home[k])) for k, xs in noisy.items()}
    figures = [draw(np.asarray(starts), clean, noisy, cfg, out_dir)]
    claims = [
        claim(
            "f(x) = x cos(pi x) has a shallow local and a deeper minimum, and GD ends in "
            f"whichever basin it starts in: all {cfg.starts} starts in [-1, 2] end within 1e-3 "
            "of their own basin's minimum, and the final x takes both values",
            bool(at_own.all()) and len(np.unique(np.round(ends, 2))) >= 2,
            {
                "ending_at_own_minimum": float(at_own.mean()),
                "final_x_values": np.unique(np.round(ends, 3)),
                "f_at_minima": {"shallow": float(f(SHALLOW)), "deep": float(f(DEEP))},
            },
            reason="some starts ended outside their own basin's minimum",
        ),  # fmt: skip
        claim(
            "Minibatch-like gradient noise leaves the shallow minimum but not the deep one: at "
            "least half of the noisy runs started in the shallow minimum leave its basin, at "
            "most a tenth of those started in the deep one do",
            left["shallow"] >= 0.5 and left["deep"] <= 0.1,
            {
                "fraction_that_left_basin": left,
                "fraction_ending_elsewhere": ended,
                "runs": cfg.noisy_runs,
                "noise_std": cfg.noise_std,
                "steps": cfg.steps,
            },
            reason="the escape fractions do not split that way",
        ),  # fmt: skip
    ]
    metrics = {"clean_final_x": ends, "left_basin": left, "ended_elsewhere": ended}
    return {"metrics": metrics, "claims": claims, "figures": figures}
