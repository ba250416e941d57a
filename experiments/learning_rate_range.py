"""The learning rate of gradient descent: too small crawls, too large oscillates or diverges.

On a quadratic with curvatures between mu and L, GD multiplies the error along an eigenvector of
curvature h by (1 - lr h) each step: it crawls when lr h << 1, flips sign every step (oscillates)
when 1 < lr h < 2, and grows when lr h > 2. So the rates are read against 2/L. We sweep the rate
in multiples of 2/L on two problems: a 20-d diagonal quadratic (mu = 0.1, L = 10) and least
squares on synthetic data, where L is the top eigenvalue of X^T X / N (computed, not assumed).
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

SUMMARY = "too small a learning rate crawls; above 1/L GD oscillates, above 2/L it diverges"
DATA = "synthetic: a 20-d quadratic (curvatures 0.1..10) and least squares on 200 Gaussian points"

# learning rates as multiples of the stability threshold 2/L
FACTORS = (0.003, 0.03, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98, 1.02, 1.1, 1.5)


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    steps: int = 200
    dim: int = 20  # quadratic
    samples: int = 200  # regression
    features: int = 10
    noise_std: float = 0.1
    crawl_ratio: float = 10.0  # "crawls": the smallest rate ends this many times above the best

    @classmethod
    def quick(cls) -> Config:
        return cls()

    @classmethod
    def tiny(cls) -> Config:
        return cls(steps=60)


def quadratic(dim: int):
    h = jnp.logspace(-1, 1, dim)  # curvatures mu = 0.1 .. L = 10
    return (lambda x: 0.5 * jnp.sum(h * x**2)), jnp.ones(dim), np.eye(dim)[-1], 10.0


def regression(cfg: Config, key: jax.Array):
    kx, kw, kn = jax.random.split(key, 3)
    scales = jnp.linspace(0.5, 2.0, cfg.features)  # unequal feature scales: some conditioning
    x = jax.random.normal(kx, (cfg.samples, cfg.features)) * scales
    y = x @ jax.random.normal(kw, (cfg.features,)) + cfg.noise_std * jax.random.normal(
        kn, (cfg.samples,)
    )
    evals, evecs = np.linalg.eigh(np.asarray(x.T @ x, np.float64) / cfg.samples)
    w_opt = np.linalg.lstsq(np.asarray(x), np.asarray(y), rcond=None)[0]
    loss = lambda w: 0.5 * jnp.mean((x @ w - y) ** 2)  # noqa: E731
    return loss, jnp.zeros(cfg.features), evecs[:, -1], float(evals[-1]), w_opt


def sweep(loss, x0, top, lrs, steps: int, x_opt=None) -> tuple[np.ndarray, np.ndarray]:
    """Loss curves (lrs x steps+1) and the error along the top eigenvector, all rates at once."""
    x_opt = jnp.zeros_like(x0) if x_opt is None else jnp.asarray(x_opt, x0.dtype)

    def one(lr):
        tx = jn.sgd(lambda step: lr)  # a constant schedule, so the rate may be a traced value

        def body(carry, _):
            x, s = carry
            u, s = tx.update(jax.grad(loss)(x), s, x)
            x = jn.apply_updates(x, u)
            return (x, s), (loss(x), jnp.dot(x - x_opt, top))

        _, (ls, err) = jax.lax.scan(body, (x0, tx.init(x0)), None, length=steps)
        return jnp.concatenate([loss(x0)[None], ls]), err

    losses, errs = jax.jit(jax.vmap(one))(jnp.asarray(lrs, jnp.float32))
    return np.asarray(losses, np.float64), np.asarray(errs)


def summarize(losses: np.ndarray, errs: np.ndarray, loss_star: float) -> dict:
    excess = np.maximum(losses - loss_star, 0.0)  # distance to the optimum's loss
    ratio = excess[:, -1] / excess[:, 0]
    # count sign flips only while the error is resolvable: once it has decayed to float32
    # round-off (1e-4 of its start) its sign is noise
    live = np.abs(errs) > 1e-4 * np.abs(errs[:, :1])
    pairs = live[:, 1:] & live[:, :-1]
    flips = np.sum((np.sign(errs[:, 1:]) * np.sign(errs[:, :-1]) < 0) & pairs, axis=1)
    flip_rate = flips / np.maximum(pairs.sum(axis=1), 1)
    ok = ratio < 1
    return {
        "final_over_initial": dict(zip(map(str, FACTORS), ratio, strict=True)),
        "top_sign_flip_rate": dict(zip(map(str, FACTORS), flip_rate, strict=True)),
        "largest_converging_factor": max(f for f, k in zip(FACTORS, ok, strict=True) if k),
        "smallest_diverging_factor": min(
            [f for f, k in zip(FACTORS, ok, strict=True) if not k] or [float("inf")]
        ),  # fmt: skip
        "excess": excess,
        "errs": errs,
    }


def draw(results: dict, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.3))
    cmap = plt.get_cmap("coolwarm")
    for ax, (name, r) in zip(axes, results.items(), strict=False):
        for f, curve in zip(FACTORS, r["excess"], strict=True):
            color = cmap(np.clip(np.log10(f / 0.003) / np.log10(1.5 / 0.003), 0, 1))
            ax.semilogy(np.maximum(curve, 1e-12), color=color, label=f"{f:g} x 2/L",
                        ls="--" if f > 1 else "-")  # fmt: skip
        ax.set(xlabel="step", ylabel="loss - optimal loss", title=f"GD on the {name}",
               ylim=(1e-10, 1e6))  # fmt: skip
    axes[0].legend(fontsize=7, ncol=2)
    for name, r in results.items():
        axes[2].loglog(FACTORS, list(r["final_over_initial"].values()), "o-", label=name)
    axes[2].axvline(1.0, color="k", ls="--", lw=0.8, label="2/L")
    axes[2].axvline(0.5, color="grey", ls=":", lw=0.8, label="1/L (oscillation starts)")
    axes[2].set(xlabel="learning rate / (2/L)", ylabel="final / initial excess loss",
                title="after the run: crawl, converge, diverge")  # fmt: skip
    axes[2].legend(fontsize=8)
    errs = results["quadratic"]["errs"]
    for f in (0.3, 0.7, 0.98, 1.02):
        axes[3].plot(np.arange(1, 31), errs[FACTORS.index(f), :30], "o-", ms=3, label=f"{f} x 2/L")
    axes[3].set(xlabel="step", ylabel="error along the top eigenvector", ylim=(-2, 2),
                title="quadratic: oscillation above 1/L, growth above 2/L")  # fmt: skip
    axes[3].legend(fontsize=8)
    return save_figure(fig, out_dir, "learning_rate_range")


def main(cfg: Config, out_dir: Path) -> dict:
    q_loss, q_x0, q_top, q_l = quadratic(cfg.dim)
    r_loss, r_x0, r_top, r_l, w_opt = regression(cfg, jax.random.key(cfg.seed))
    problems = {
        "quadratic": (q_loss, q_x0, q_top, q_l, None, 0.0),
        "regression": (r_loss, r_x0, r_top, r_l, w_opt, float(r_loss(jnp.asarray(w_opt)))),
    }
    results = {}
    for name, (loss, x0, top, big_l, x_opt, loss_star) in problems.items():
        lrs = [f * 2 / big_l for f in FACTORS]
        results[name] = summarize(*sweep(loss, x0, jnp.asarray(top, x0.dtype), lrs, cfg.steps,
                                         x_opt), loss_star)  # fmt: skip
        results[name]["L"] = big_l
    figures = [draw(results, out_dir)]
    table = {n: {k: v for k, v in r.items() if k not in ("excess", "errs")}
             for n, r in results.items()}  # fmt: skip
    return {"metrics": table, "claims": claims(table, cfg), "figures": figures}


def claims(t: dict, cfg: Config) -> list[dict]:
    best = {n: min(r["final_over_initial"].values()) for n, r in t.items()}
    small = {n: r["final_over_initial"][str(FACTORS[0])] for n, r in t.items()}
    osc = [str(f) for f in FACTORS if 0.5 < f < 1]
    calm = [str(f) for f in FACTORS if f < 0.5]
    flips = {n: {f: r["top_sign_flip_rate"][f] for f in osc + calm} for n, r in t.items()}
    brackets = {n: (r["largest_converging_factor"], r["smallest_diverging_factor"])
                for n, r in t.items()}  # fmt: skip
    return [
        claim(
            f"Too small a rate crawls: at {FACTORS[0]} x 2/L the loss after {cfg.steps} steps is "
            f"over {cfg.crawl_ratio:g}x above the best rate's, on both problems",
            all(small[n] > cfg.crawl_ratio * best[n] for n in t),
            {"smallest_rate_final_over_initial": small, "best_final_over_initial": best},
            reason="the smallest rate got within the ratio of the best one",
        ),
        claim(
            "Too large a rate oscillates: between 1/L and 2/L the error along the top "
            "eigenvector flips sign at (nearly) every step, below 1/L it never does",
            all(min(flips[n][f] for f in osc) > 0.9 and max(flips[n][f] for f in calm) == 0
                for n in t),  # fmt: skip
            {"top_sign_flip_rate": flips},
            reason="the flip rates do not split at 1/L",
        ),
        claim(
            "Above 2/L GD diverges: the largest converging and the smallest diverging rate of "
            "the sweep bracket the stability threshold 2/L on both problems",
            all(lo < 1 < hi for lo, hi in brackets.values()),
            {"bracket_in_units_of_2_over_L": brackets, "L": {n: r["L"] for n, r in t.items()},
             "final_over_initial": {n: r["final_over_initial"] for n, r in t.items()}},
            reason="the measured threshold is not at 2/L",
        ),
    ]  # fmt: skip
