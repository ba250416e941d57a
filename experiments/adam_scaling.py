"""Adam on badly scaled features: per-coordinate steps pulled into one range (d2l 11.10).

Linear regression with ``features`` inputs x_i = s_i z_i, z ~ N(0, 1), the scales s_i
log-spaced over ``scale_range`` (1e-2 .. 1e2), not normalised; the target y = sum_i u_i z_i + noise
with random signs u_i, so every feature carries the same share of y and w*_i = u_i / s_i. Each
step draws a fresh minibatch. The loss's curvature along w_i is s_i^2 (1e-4 .. 1e4), and so is
the scale of its gradient: the setting of the note's paragraph on unnormalised features.

SGD and Adam each run at their own rate, chosen from ``lr_grid`` by the final population loss on
separate tuning problems (their own signs and noise), then run on fresh problems. Measured per
coordinate: the mean |step| over the run and the mean |gradient|, the relative error
|w_i - w*_i| / |w*_i| at the end. Sabotage: ``standardise=True`` (unit scales: the problem the
note says normalisation gives) and ``adam_eps=1e6`` (Adam's denominator drowned: it becomes
momentum SGD with a tiny rate).
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

SUMMARY = "Unnormalised feature scales 1e-2..1e2: Adam's steps stay within one range, SGD's do not"
DATA = "synthetic linear regression, feature scales 1e-2..1e2, fresh minibatches (no data set)"
NOTE = "000_07e945f9227ab975.txt"
SECTION = "优化算法 / Adam"
REF = "Kingma & Ba, ICLR 2015; Zhang et al., Dive into Deep Learning, sec. 11.10"
TROUBLE = Source(
    NOTE,
    SECTION,
    "所以就会导致在取学习率的时候会比较麻烦",
    "so choosing the learning rate becomes troublesome [when feature scales differ]",
    REF,
)
NORMALISE = Source(
    NOTE,
    SECTION,
    "所以这里对于梯度的调整就有点类似于对梯度做归一化，将值比较大或者比较小的梯度拉到一个合适的"
    "范围之中（进行维度上的调整）",
    "so this adjustment is somewhat like normalising the gradient, pulling very large or very "
    "small gradients into a suitable range (per dimension)",
    REF,
)
EVEN = Source(
    NOTE,
    SECTION,
    "因为在 Adam 中做了很多的平滑，所以最终得出的 gt 的值都是比较均匀的",
    "because Adam smooths a lot, the final g_t values are fairly even",
    REF,
)
OPTIMIZERS = ("SGD", "Adam")


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 64
    tune_seeds: int = 64  # separate problems on which each optimizer's rate is chosen
    features: int = 5
    scale_range: tuple = (1e-2, 1e2)
    standardise: bool = param(False, help="True: sabotage, unit scales")
    adam_eps: float = param(1e-8, help="1e6: sabotage, the denominator drowned")
    noise: float = 0.1
    batch: int = 32
    steps: int = 2000
    lr_grid: tuple = tuple(float(10**e) for e in np.arange(-6.0, 0.01, 0.5))
    # stated tests
    sgd_spread_min: float = 1e3
    adam_spread_max: float = 10.0
    keep_min: float = 0.5
    seed: int = 0

    def validate(self) -> None:
        lo, hi = self.scale_range
        if not lo <= hi:
            raise ValueError(f"`scale_range` must be (low, high) with low <= high, got {lo, hi}")
        if self.features < 2:
            raise ValueError(f"`features` must be >= 2 to compare coordinates, got {self.features}")

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=32, tune_seeds=32)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=12, tune_seeds=12, steps=1500)


def scales(cfg: Config) -> np.ndarray:
    if cfg.standardise:
        return np.ones(cfg.features, np.float32)
    return np.geomspace(*cfg.scale_range, cfg.features).astype(np.float32)


def make_tx(name: str, lr: jax.Array, cfg: Config):
    return jn.sgd(lr) if name == "SGD" else jn.adam(lr, eps=cfg.adam_eps)


def run(name: str, cfg: Config, key: jax.Array, seeds: int) -> dict[str, np.ndarray]:
    """Every rate of the grid x ``seeds`` problems: mean |step| and |gradient| per coordinate,
    the first step, the final relative error per coordinate and the final population loss."""
    s = jnp.asarray(scales(cfg))
    keys = jax.random.split(key, seeds)

    def one(lr, k):
        k_sign, k_data = jax.random.split(k)
        u = jnp.where(jax.random.bernoulli(k_sign, shape=s.shape), 1.0, -1.0)
        w_star = u / s
        tx = make_tx(name, lr, cfg)

        def loss(w, z, eps):
            return 0.5 * jnp.mean(((z * s) @ w - (z @ u + cfg.noise * eps)) ** 2)

        def step(carry, t):
            w, state, steps, grads = carry
            kz, ke = jax.random.split(jax.random.fold_in(k_data, t))
            z = jax.random.normal(kz, (cfg.batch, cfg.features))
            g = jax.grad(loss)(w, z, jax.random.normal(ke, (cfg.batch,)))
            upd, state = tx.update(g, state, w)
            return (w + upd, state, steps + jnp.abs(upd), grads + jnp.abs(g)), (upd, g)

        w0 = jnp.zeros_like(s)
        zero = jnp.zeros_like(s)
        carry, (upd, g) = jax.lax.scan(step, (w0, tx.init(w0), zero, zero), jnp.arange(cfg.steps))
        w, _, steps, grads = carry
        return {
            "mean_step": steps / cfg.steps,
            "mean_grad": grads / cfg.steps,
            "first_step": jnp.abs(upd[0]),
            "first_grad": jnp.abs(g[0]),
            "rel_error": jnp.abs(w - w_star) / jnp.abs(w_star),
            "loss": 0.5 * jnp.sum((s * (w - w_star)) ** 2),  # population excess loss
        }

    lrs = jnp.asarray(cfg.lr_grid, jnp.float32)
    out = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))(lrs, keys)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def measure(cfg: Config) -> dict:
    out = {"scales": scales(cfg), "lr_grid": list(cfg.lr_grid)}
    key = jax.random.key(cfg.seed)
    for name in OPTIMIZERS:
        # one compiled call: the first tune_seeds problems choose the rate, the rest are scored
        every = run(name, cfg, key, cfg.tune_seeds + cfg.seeds)
        tune = every["loss"][:, : cfg.tune_seeds]
        mean = np.where(np.isfinite(tune).all(1), np.nan_to_num(tune).mean(1), np.inf)
        best = int(np.argmin(mean))  # never a diverged rate
        scored = {k: v[:, cfg.tune_seeds :] for k, v in every.items()}
        out[name] = {
            "lr": cfg.lr_grid[best],
            "tune_loss": mean,
            "loss_by_lr": scored["loss"],
            "mean_step_by_lr": scored["mean_step"],  # (rates, seeds, features)
            **{k: v[best] for k, v in scored.items()},  # (seeds, features) at the chosen rate
        }
    return out


def spread(a: np.ndarray) -> np.ndarray:
    """Per seed, the largest over the smallest coordinate (1: all equal)."""
    a = np.asarray(a, np.float64)
    return a.max(-1) / np.maximum(a.min(-1), 1e-300)


def stated_tests(cfg: Config, smin: float, smax: float) -> dict[str, Test]:
    """The tests, fixed before the run: what is compared, against what, and why."""
    n, stable = cfg.seeds, 2 * cfg.steps * smin**2 / smax**2
    sgd_wide = Test(
        "SGD: largest / smallest mean |step| over coordinates",
        ">",
        cfg.sgd_spread_min,
        f"SGD's step is lr x gradient, and the gradient of coordinate i scales as s_i (noise) "
        f"to s_i^2 (curvature): {smax / smin:g} to {(smax / smin) ** 2:g} here",
        n,
    )
    return {
        "sgd_keeps": Test(
            f"SGD: final |w_1 - w*_1| / |w*_1| (scale {smin:g})",
            ">",
            cfg.keep_min,
            f"stability caps SGD's rate near 2/s_max^2; then coordinate 1 moves at most "
            f"2 T s_min^2 / s_max^2 = {stable:.1e} of its error",
            n,
        ),
        "adam_reaches": Test(
            f"Adam: final |w_1 - w*_1| / |w*_1| (scale {smin:g})",
            "<",
            cfg.keep_min,
            "pre-stated: more than halfway; Adam covers about lr per step in every coordinate",
            n,
        ),
        "sgd_wide": sgd_wide,
        "raw_wide": dataclasses.replace(sgd_wide, quantity="Adam: spread of mean |gradient|"),
        "adam_even": Test(
            "Adam: largest / smallest mean |step| over coordinates",
            "<",
            cfg.adam_spread_max,
            "Adam's step is lr m/sqrt(v) of one coordinate's own moments, free of its scale: "
            "about lr travelling, about lr/4 in noise; one decade allows for both",
            n,
        ),
    }


def geo(a: np.ndarray) -> _stats.Estimate:
    """Geometric mean of a positive per-seed quantity, with a t-interval on its log."""
    a = np.maximum(np.asarray(a, np.float64), 1e-300)
    return _stats.paired_ratio(a, np.ones_like(a))


def claims(metrics: dict, cfg: Config) -> list[dict]:
    sgd, adam = metrics["SGD"], metrics["Adam"]
    smin, smax = float(min(metrics["scales"])), float(max(metrics["scales"]))
    t = stated_tests(cfg, smin, smax)
    j = list(cfg.lr_grid).index(adam["lr"])
    neighbours = {  # how much the verdict hangs on the grid point tuning picked
        f"Adam at the neighbouring rate {cfg.lr_grid[i]:.2g}": (
            geo(spread(adam["mean_step_by_lr"][i])),
            t["adam_even"],
        )
        for i in (j - 1, j + 1)
        if 0 <= i < len(cfg.lr_grid)
    }
    closed = adam["lr"] * adam["first_grad"] / (adam["first_grad"] + cfg.adam_eps)
    first = float(np.max(np.abs(adam["first_step"] - closed)))
    per_coordinate = {
        f"{k}: mean |step| per coordinate, scales {smin:g} to {smax:g} (geometric mean)": [
            float(v) for v in np.exp(np.log(np.maximum(m["mean_step"], 1e-300)).mean(0))
        ]
        for k, m in (("SGD", sgd), ("Adam", adam))
    }
    return [
        claim(
            "At its own best rate, SGD leaves the smallest-scale coordinate almost where it "
            "started; Adam at its own best rate gets it more than halfway",
            [geo(sgd["rel_error"][:, 0]), geo(adam["rel_error"][:, 0])],
            [t["sgd_keeps"], t["adam_reaches"]],
            TROUBLE,
            {
                "SGD's chosen rate": sgd["lr"],
                "Adam's chosen rate": adam["lr"],
                "final population loss, SGD": _stats.positive_mean(sgd["loss"]),
                "final population loss, Adam": _stats.positive_mean(adam["loss"]),
            },
            id="sgd_rate_troublesome",
        ),
        claim(
            "Adam pulls the per-coordinate steps into one range where SGD's span the scales",
            [geo(spread(sgd["mean_step"])), geo(spread(adam["mean_step"]))],
            [t["sgd_wide"], t["adam_even"]],
            NORMALISE,
            per_coordinate,
            note="seen after the run: Adam's largest mean step is the smallest-scale "
            "coordinate's, which travels to |w*| = 1/s_min at about lr per step for much of the "
            "run, while the others have arrived and move in the noise (the figure's left panel)",
            also=neighbours,
            id="adam_normalises_steps",
        ),
        claim(
            "Adam's steps are even across coordinates although its own gradients are not",
            [geo(spread(adam["mean_grad"])), geo(spread(adam["mean_step"]))],
            [t["raw_wide"], t["adam_even"]],
            EVEN,
            also=neighbours,
            id="adam_steps_even",
        ),
        check(
            "Adam's first step is lr g / (|g| + eps) per coordinate (bias-corrected moments of "
            "one gradient: m = g, v = g^2)",
            first <= 1e-4 * adam["lr"],
            {"largest |measured - closed form|": first, "lr": adam["lr"]},
            id="adam_first_step",
        ),
    ]


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    s = np.asarray(metrics["scales"])
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(16, 4.2), layout="constrained")
    for name, color in zip(OPTIMIZERS, ("k", "tab:red"), strict=True):
        m = metrics[name]
        lbl = f"{name} (lr {m['lr']:.1e})"
        ax1.loglog(s, np.exp(np.log(m["mean_step"]).mean(0)), "o-", color=color, label=lbl)
        ax1.loglog(
            s,
            np.exp(np.log(m["mean_grad"]).mean(0)),
            "x:",
            color=color,
            label=f"{name}: |gradient|",
        )
        ax2.semilogx(s, np.asarray(m["rel_error"]).mean(0), "o-", color=color, label=lbl)
        loss = np.asarray(m["loss_by_lr"])
        ax3.loglog(
            cfg.lr_grid,
            np.where(np.isfinite(loss), loss, np.nan).mean(1),
            "o-",
            color=color,
            label=name,
        )
        ax3.axvline(m["lr"], color=color, ls=":", lw=0.8)
    ax1.set(
        xlabel="feature scale s_i",
        ylabel="mean |step| (solid), mean |gradient| (dotted)",
        title="per coordinate, geometric mean over problems",
    )
    ax2.axhline(cfg.keep_min, color="grey", ls="--", lw=0.8)
    ax2.set(
        xlabel="feature scale s_i",
        ylabel="final |w_i - w*_i| / |w*_i|",
        title=f"after {cfg.steps} steps, batch {cfg.batch}",
    )
    ax3.set(
        xlabel="learning rate",
        ylabel="final population loss (mean)",
        title="the rate grid (dotted: chosen on tuning problems)",
    )
    for ax in (ax1, ax2, ax3):
        ax.legend(fontsize=8)
    return save_figure(fig, out_dir, "adam_scaling")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics = measure(cfg)
    return {
        "metrics": metrics,
        "claims": claims(metrics, cfg),
        "figures": [draw(_plot.stored(metrics), cfg, out_dir)],
    }
