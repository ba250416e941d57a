"""The learning rate of gradient descent: too small makes no progress, too large diverges, and
small batches need a smaller one.

On a quadratic with curvatures between mu and L, GD multiplies the error along an eigenvector
of curvature h by (1 - lr h) each step: it crawls when lr h << 1, flips sign every step when
1 < lr h < 2, and grows when lr h > 2. On a fixed quadratic these are closed-form facts, so
they are checks here (a 20-d diagonal quadratic, curvatures 0.1 to 10).

The claims are measured on least squares over random data sets, one per seed: N Gaussian
points with unequal feature scales, random true weights and label noise; L is the top
eigenvalue of X^T X / N, computed per data set, and every rate is a multiple of that data
set's 2/L. Full-batch GD gives the "too small / too large" claim; minibatch SGD (a fresh
random batch every step, drawn without replacement) gives the note's "small batches need a
smaller rate": the largest rate of the grid that does not diverge, as a fraction of full-batch
GD's, paired over data sets. ``small_batch = samples`` (the sabotage) compares the full batch
with itself.
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

SUMMARY = "too small a rate crawls, too large diverges (2/L); small batches diverge at lower rates"
DATA = (
    "synthetic: a 20-d diagonal quadratic (curvatures 0.1..10), and least squares on random "
    "Gaussian data sets (200 points, 10 features with scales 0.5..2), one per seed"
)

# the quadratic's rates, as multiples of its stability threshold 2/L
FACTORS = (0.003, 0.03, 0.1, 0.3, 0.5, 0.7, 0.9, 0.98, 1.02, 1.1, 1.5)


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 200
    dim: int = 20  # the quadratic
    seeds: int = 20  # random data sets
    samples: int = 200
    features: int = 10
    noise_std: float = 0.1
    batches: tuple = (1, 4, 16, 64, 200)  # the regime map; the largest should be `samples`
    small_batch: int = param(1, low=1, help="the claim's small batch; = samples: sabotage")
    grid: int = 24  # rates of the map: log-spaced multiples of 2/L in [0.01, 1.5]
    crawl_factor: float = param(0.003, low=0.0, low_open=True, high=0.1)
    diverge_factor: float = param(1.1, low=1.0, low_open=True)
    # stated tests
    crawl_orders: float = param(1.0, low=0.0, low_open=True, help="log10 above the best rate")
    batch_ratio: float = param(0.8, low=0.0, low_open=True, high=1.0)
    seed: int = 0

    def validate(self) -> None:
        if self.small_batch > self.samples or max(self.batches) > self.samples:
            raise ValueError(
                f"`small_batch` and `batches` must be <= samples = {self.samples}, got "
                f"{self.small_batch} and {self.batches}"
            )

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=10, grid=16)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=5, grid=10, batches=(1, 200), steps=120, dim=10)


QUICK_NOTE = (
    "Quick uses 10 data sets instead of 20 and 16 rates instead of 24 (a coarser grid makes "
    "the largest stable rate coarser too); the runs are as long."
)


# ----- checks: GD on a fixed diagonal quadratic -------------------------------------------


def quadratic_runs(cfg: Config) -> dict:
    """GD at each factor x 2/L on 0.5 sum h x^2 from x = 1: iterates and the closed form."""
    h = np.logspace(-1, 1, cfg.dim).astype(np.float32)  # curvatures mu = 0.1 .. L = 10
    x0 = np.ones(cfg.dim, np.float32)

    def one(lr):
        tx = jn.sgd(lambda _: lr)

        def body(carry, _):
            x, s = carry
            u, s = tx.update(h * x, s, x)
            x = jn.apply_updates(x, u)
            return (x, s), x

        return jax.lax.scan(body, (x0, tx.init(x0)), None, length=cfg.steps)[1]

    lrs = np.asarray(FACTORS, np.float32) * np.float32(2 / 10.0)
    xs = np.asarray(jax.jit(jax.vmap(one))(lrs), np.float64)  # (factors, steps, dim)
    t = np.arange(1, cfg.steps + 1)[None, :, None]
    closed = (1 - np.asarray(lrs, np.float64)[:, None, None] * np.asarray(h)[None, None]) ** t
    top = xs[:, :, -1]  # the error along the top eigenvector (curvature L)
    live = np.abs(top) > 1e-4  # below that its sign is float32 round-off
    pairs = live[:, 1:] & live[:, :-1]
    flips = np.sum((np.sign(top[:, 1:]) != np.sign(top[:, :-1])) & pairs, axis=1)
    loss = 0.5 * np.sum(np.asarray(h) * xs**2, axis=-1)
    # compared where float32 can hold the value and round-off does not swamp it
    resolvable = (np.abs(closed) > 1e-3) & (np.abs(closed) < 1e30)
    with np.errstate(invalid="ignore", over="ignore"):
        rel = np.abs(xs - closed) / np.maximum(np.abs(closed), 1e-6)
    return {
        "factors": list(FACTORS),
        "closed_form_max_rel_error": float(np.nanmax(np.where(resolvable, rel, 0))),
        "top_flip_rate": flips / np.maximum(pairs.sum(axis=1), 1),
        "final_over_initial_loss": loss[:, -1] / (0.5 * float(np.sum(h))),
        "losses": loss,
    }


# ----- claims: least squares on random data sets ------------------------------------------


def data_sets(cfg: Config):
    """Per seed: X (N, d), y (N,), L = top eigenvalue of X^T X / N, and the optimal loss."""
    rng = np.random.default_rng(cfg.seed)
    scales = np.linspace(0.5, 2.0, cfg.features)  # unequal scales: some conditioning
    xs = rng.standard_normal((cfg.seeds, cfg.samples, cfg.features)) * scales
    w = rng.standard_normal((cfg.seeds, cfg.features))
    noise = cfg.noise_std * rng.standard_normal((cfg.seeds, cfg.samples))
    ys = np.einsum("snd,sd->sn", xs, w) + noise
    big_l = np.array([np.linalg.eigvalsh(x.T @ x / cfg.samples)[-1] for x in xs])
    best = np.array([np.linalg.lstsq(x, y, rcond=None)[0] for x, y in zip(xs, ys, strict=True)])
    loss_star = 0.5 * np.mean((np.einsum("snd,sd->sn", xs, best) - ys) ** 2, axis=1)
    return xs, ys, big_l, loss_star


def rate_grid(cfg: Config) -> np.ndarray:
    """Multiples of 2/L: the map's log grid plus the claim's crawl and divergence rates."""
    grid = np.logspace(-2, np.log10(1.5), cfg.grid)
    return np.unique(np.concatenate([grid, [cfg.crawl_factor, cfg.diverge_factor]]))


def sgd_runs(cfg: Config, xs, ys, big_l, batches) -> np.ndarray:
    """Full-batch loss after ``steps`` (batches, seeds, rates): minibatch SGD from w = 0.

    A batch is the first ``b`` of a fresh random permutation each step, as a 0/1 mask, so
    every batch size shares one compiled program; ``b = N`` is exact full-batch GD.
    """
    factors = rate_grid(cfg).astype(np.float32)
    n = cfg.samples

    def one(b, x, y, lr, seed):
        key = jax.random.key(seed)
        tx = jn.sgd(lambda _: lr)
        w0 = jnp.zeros(cfg.features)

        def body(carry, k):
            w, s = carry
            mask = (jax.random.permutation(k, n) < b).astype(x.dtype)
            g = x.T @ (mask * (x @ w - y)) / b
            u, s = tx.update(g, s, w)
            return (jn.apply_updates(w, u), s), None

        (w, _), _ = jax.lax.scan(body, (w0, tx.init(w0)), jax.random.split(key, cfg.steps))
        return 0.5 * jnp.mean((x @ w - y) ** 2)

    over_rates = jax.vmap(one, in_axes=(None, None, None, 0, None))
    over_seeds = jax.vmap(over_rates, in_axes=(None, 0, 0, 0, 0))
    over_batches = jax.jit(jax.vmap(over_seeds, in_axes=(0, None, None, None, None)))
    lrs = (factors[None, :] * 2 / big_l[:, None]).astype(np.float32)
    seeds = np.arange(cfg.seeds, dtype=np.uint32) + np.uint32(1000 * (cfg.seed + 1))
    x32, y32 = xs.astype(np.float32), ys.astype(np.float32)
    b = np.asarray(batches, np.float32)
    return np.asarray(over_batches(b, x32, y32, lrs, seeds), np.float64)


def measure(cfg: Config) -> dict:
    xs, ys, big_l, loss_star = data_sets(cfg)
    batches = sorted({*cfg.batches, cfg.small_batch, cfg.samples})
    final = sgd_runs(cfg, xs, ys, big_l, batches)
    start = 0.5 * np.mean(ys**2, axis=1)  # the loss at w = 0
    return {
        "quadratic": quadratic_runs(cfg),
        "rate_factors": rate_grid(cfg),  # multiples of each data set's 2/L
        "batches": batches,
        "L": big_l,
        "start_loss": start,
        "optimal_loss": loss_star,
        "final_loss": final,  # (batches, seeds, rates)
    }


def excess_ratio(full: np.ndarray, start: np.ndarray, star: np.ndarray) -> np.ndarray:
    """Final / initial excess loss (seeds, rates), floored at float32's resolution of the loss
    (1e-6 of the start: below it the difference is round-off) and capped at 1e30 (diverged)."""
    floor = 1e-6 * start[:, None]
    with np.errstate(invalid="ignore", over="ignore"):
        ex = np.maximum(full - star[:, None], floor) / (start - star)[:, None]
    return np.where(np.isfinite(ex), np.minimum(ex, 1e30), 1e30)


def largest_stable(final: np.ndarray, start: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Per (batch, seed): the largest rate factor below the first one that diverged.

    Diverged: the final loss is not finite or above the starting loss.
    """
    bad = ~np.isfinite(final) | (final > start[None, :, None])
    first_bad = np.where(bad.any(-1), np.argmax(bad, axis=-1), len(factors))
    return np.where(first_bad > 0, factors[np.maximum(first_bad - 1, 0)], factors[0] / 2)


NOTE_GD = "000_07e945f9227ab975.txt"
SECTION_GD = "优化算法 / 梯度下降（gradient descent）"
D2L = "d2l.ai sec. 12.3 (Gradient Descent), learning rate"
TUNE = Source(
    NOTE_GD,
    SECTION_GD,
    "学习率太大会使模型发散，学习率太小会没有进展",
    "Too large a learning rate makes the model diverge; too small a one makes no progress.",
    D2L,
)
OSCILLATE = Source(
    NOTE_GD,
    SECTION_GD,
    "如果学习率过高可能会导致 **x 振荡甚至可能逐渐发散**",
    "If the learning rate is too high, x may oscillate and even gradually diverge.",
    D2L,
)
BATCH = Source(
    "003_9f3980f7ef3a062d.txt",
    "一般的优化方法",
    "一般批量大小较小时，需要设置较小的学习率，否则模型会不收敛。",
    "In general, with a small batch size one must set a smaller learning rate, otherwise the "
    "model does not converge.",
    "Goyal et al. 2017 (the learning rate scaled with the batch)",
)


def claims(metrics: dict, cfg: Config) -> list[dict]:
    q = metrics["quadratic"]
    flip = np.asarray(q["top_flip_rate"], np.float64)
    grow = np.asarray(q["final_over_initial_loss"], np.float64)
    grow = np.where(np.isfinite(grow), grow, np.inf)  # an overflowed run (inf, nan) has grown
    fq = np.asarray(q["factors"], np.float64)
    factors = np.asarray(metrics["rate_factors"], np.float64)
    batches = [int(b) for b in metrics["batches"]]
    final = np.asarray(metrics["final_loss"], np.float64)
    start = np.asarray(metrics["start_loss"], np.float64)
    star = np.asarray(metrics["optimal_loss"], np.float64)
    log_excess = np.log10(excess_ratio(final[batches.index(cfg.samples)], start, star))
    at = {float(f): i for i, f in enumerate(factors)}
    stable = factors <= 1.0
    crawl = log_excess[:, at[cfg.crawl_factor]] - log_excess[:, stable].min(axis=1)
    grows = log_excess[:, at[cfg.diverge_factor]]
    lmax = largest_stable(final, start, factors)
    small, whole = lmax[batches.index(cfg.small_batch)], lmax[batches.index(cfg.samples)]
    n = cfg.seeds
    return [
        check(
            "GD on the quadratic follows its closed form (1 - lr h)^t x0 at every rate",
            q["closed_form_max_rel_error"] < 1e-3,
            {"max_relative_error": q["closed_form_max_rel_error"]},
            id="quadratic_closed_form",
        ),
        check(
            "On the quadratic the error along the top eigenvector flips sign at every step "
            "for lr between 1/L and 2/L and never below 1/L",
            bool(np.all(flip[(fq > 0.5) & (fq < 1)] == 1) and np.all(flip[fq < 0.5] == 0)),
            {f"flip rate at {f:g} x 2/L": r for f, r in zip(fq, flip, strict=True)},
            OSCILLATE,
            id="oscillation_above_1_over_L",
        ),
        check(
            "On the quadratic the loss grows above 2/L and shrinks below it",
            bool(np.all(grow[fq > 1] > 1) and np.all(grow[fq < 1] < 1)),
            {f"final / initial loss at {f:g} x 2/L": r for f, r in zip(fq, grow, strict=True)},
            id="divergence_above_2_over_L",
        ),
        claim(
            f"The rate must be tuned: on random least-squares problems, full-batch GD at "
            f"{cfg.crawl_factor:g} x 2/L ends over {cfg.crawl_orders:g} order(s) of magnitude "
            f"above the best rate's loss after {cfg.steps} steps, and at "
            f"{cfg.diverge_factor:g} x 2/L its loss grows",
            [_stats.mean(crawl), _stats.mean(grows)],
            [
                Test(
                    f"log10 excess loss at {cfg.crawl_factor:g} x 2/L minus at the best rate",
                    ">",
                    cfg.crawl_orders,
                    "pre-stated effect size: 'no progress' read as 10x worse than the best "
                    "rate (excess losses floored at float32 resolution, 1e-6 of the start)",
                    n,
                    paired=True,
                ),
                Test(
                    f"log10 final / initial excess loss at {cfg.diverge_factor:g} x 2/L "
                    "(capped at 30 where float32 overflowed)",
                    ">",
                    0.0,
                    "mathematical bound: a loss that grows has a ratio above 1",
                    n,
                ),
            ],
            TUNE,
            {"L (top eigenvalue of X^T X / N), mean": float(np.mean(metrics["L"]))},
            note="least squares is a quadratic, so both parts follow from its spectrum; the "
            "claim is that random data sets put the crawl and the blow-up where the note says",
            id="rate_must_be_tuned",
        ),
        claim(
            f"Small batches need a smaller rate: minibatch SGD with batch {cfg.small_batch} "
            f"diverges at a rate under {cfg.batch_ratio:g} x full-batch GD's largest stable "
            "rate, on the same data sets",
            _stats.paired_ratio(small, whole),
            Test(
                f"largest stable rate, batch {cfg.small_batch} / batch {cfg.samples}",
                "<",
                cfg.batch_ratio,
                "pre-stated effect size: a rate at least 20% smaller",
                n,
                paired=True,
            ),
            BATCH,
            {
                f"largest stable rate / (2/L), batch {cfg.small_batch}": _stats.mean(small),
                f"largest stable rate / (2/L), batch {cfg.samples}": _stats.mean(whole),
                "grid step (ratio of neighbouring rates)": float(factors[-1] / factors[-2]),
            },
            note="'stable' is the largest rate of the grid below the first whose final "
            "full-batch loss is above the starting loss (or not finite)",
            id="small_batch_needs_smaller_rate",
        ),
    ]


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    q = metrics["quadratic"]
    fig, ax = plt.subplots(1, 4, figsize=(22, 4.8), layout="constrained")
    cmap = plt.get_cmap("coolwarm")
    for f, curve in zip(FACTORS, np.asarray(q["losses"]), strict=True):
        color = cmap(np.clip(np.log10(f / 0.003) / np.log10(1.5 / 0.003), 0, 1))
        ax[0].semilogy(
            np.maximum(curve, 1e-12),
            color=color,
            ls="--" if f > 1 else "-",
            label=f"lr {f * 0.2:.3g} = {f:g} x 2/L",
        )
    ax[0].set(
        xlabel="step",
        ylabel="loss",
        ylim=(1e-10, 1e6),
        title="GD on the 20-d quadratic (L = 10): crawl, converge, diverge",
    )
    ax[0].legend(fontsize=7, ncol=2)
    factors = np.asarray(metrics["rate_factors"])
    batches = [int(b) for b in metrics["batches"]]
    final = np.asarray(metrics["final_loss"])
    start = np.asarray(metrics["start_loss"])
    star = np.asarray(metrics["optimal_loss"])
    med = np.median(excess_ratio(final[batches.index(cfg.samples)], start, star), axis=0)
    ax[1].loglog(factors, np.minimum(med, 1e3), "o-", color="k", label="median over data sets")
    ax[1].axhspan(1.0, 1e3, color="tab:red", alpha=0.08, label="grew (shown capped at 1e3)")
    ax[1].axhline(1e-6, color="grey", ls=":", lw=0.8, label="float32 floor (1e-6 of the start)")
    ax[1].axvline(1.0, color="tab:red", ls="--", lw=0.8, label="2/L (diverges above)")
    ax[1].axvline(cfg.crawl_factor, color="tab:blue", ls=":", lw=0.8, label="the crawl rate")
    ax[1].set(
        xlabel="learning rate / (2/L)",
        ylabel="final / initial excess loss",
        ylim=(1e-7, 3e3),
        title=f"least squares, full-batch GD, {cfg.steps} steps",
    )
    ax[1].legend(fontsize=8)
    bad = ~np.isfinite(final) | (final > start[None, :, None])
    im = ax[2].pcolormesh(
        factors,
        np.arange(len(batches)),
        bad.mean(axis=1),
        cmap="Reds",
        vmin=0,
        vmax=1,
        shading="nearest",
    )
    ax[2].set_xscale("log")
    ax[2].set_yticks(np.arange(len(batches)), [str(b) for b in batches])
    ax[2].axvline(1.0, color="k", ls="--", lw=0.8)
    ax[2].set(
        xlabel="learning rate / (2/L)",
        ylabel="batch size",
        title="share of data sets where SGD diverged (red)",
    )
    fig.colorbar(im, ax=ax[2], label="share diverged")
    lmax = largest_stable(final, start, factors)
    ax[3].errorbar(batches, lmax.mean(1), yerr=lmax.std(1), fmt="o-", capsize=3)
    ax[3].set(
        xscale="log",
        yscale="log",
        xlabel="batch size",
        ylabel="largest stable rate / (2/L)",
        title="regime map: the largest stable rate grows with the batch",
    )
    ax[3].axhline(1.0, color="k", ls="--", lw=0.8, label="2/L")
    ax[3].legend(fontsize=8)
    return save_figure(fig, out_dir, "learning_rate_range")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics = measure(cfg)
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
