"""Saito 6.1: the paths of SGD, Momentum, AdaGrad and Adam on f(x, y) = x^2/20 + y^2.

Saito's setup (ch06/optimizer_compare_naive.py of *Deep Learning from Scratch*): 30 steps from
(-7, 2) with SGD lr 0.95, Momentum lr 0.1 (alpha 0.9), AdaGrad lr 1.5, Adam lr 0.3. His AdaGrad
starts its accumulator at 0 and adds eps outside the root, hence ``convention="pytorch"``.

The claims are decided over random starting points (one seed each), not on Saito's one start:
a start is (x0, y0) with |x0| and |y0| uniform in the configured ranges (random signs), and
Saito's (-7, 2) is drawn in the figure. "Zigzag" is measured as the fraction of steps whose
y-move reverses the previous y-move. Two controls keep the Momentum claim honest: GD at
Momentum's own rate (a smaller step) and GD at its effective step lr/(1-alpha).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np
from jaxopt_notes.experiments import _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, check, claim
from jaxopt_notes.experiments._common import save_figure, trajectory
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn

SUMMARY = "SGD zigzags on x^2/20 + y^2; Momentum, AdaGrad and Adam go more directly (Saito 6.1)"
DATA = "synthetic: Saito's bowl f(x, y) = x^2/20 + y^2, random starting points (no data set)"

NOTE = "004_0bb7a3a390427018.txt"
SAITO = "Saito, Deep Learning from Scratch, sec. 6.1"
METHODS = ("SGD", "Momentum", "AdaGrad", "Adam")


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 30  # Saito: 30 iterations
    sgd_lr: float = 0.95
    momentum_lr: float = 0.1
    momentum: float = param(0.9, low=0.0, high=1.0, high_open=True, help="0: sabotage")
    adagrad_lr: float = 1.5
    adam_lr: float = 0.3
    seeds: int = 64  # random starting points
    start_x: tuple = (4.0, 10.0)  # |x0| uniform in this range (Saito: 7)
    start_y: tuple = (1.0, 3.0)  # |y0| uniform in this range (Saito: 2)
    sweep_lrs: int = 21  # learning rates of the regime map, log-spaced in [0.01, 10]
    # stated tests
    zigzag_drop: float = param(0.5, low=0.0, high=1.0, help="fewer reversals than SGD by this")
    loss_ratio: float = param(1.0, low=0.0, low_open=True, help="final loss / SGD's below this")
    control_loss_ratio: float = param(0.5, low=0.0, low_open=True, high=1.0)
    seed: int = 0

    def validate(self) -> None:
        for name in ("start_x", "start_y"):
            lo, hi = getattr(self, name)
            if not 0 < lo < hi:
                raise ValueError(f"`{name}` must be (low, high) with 0 < low < high, got {lo, hi}")

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=32, sweep_lrs=13)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=6, sweep_lrs=5)


QUICK_NOTE = (
    "Quick uses 32 random starts instead of 64 and a coarser learning-rate map; the paths "
    "are the same 30 steps, so a miss is not down to a shorter run."
)


def bowl(p):
    return p[0] ** 2 / 20 + p[1] ** 2


def _factory(name: str, cfg: Config):
    """lr -> transform; the rate enters as a constant schedule so that it may be traced."""
    if name == "SGD":
        return lambda lr: jn.sgd(lambda _: lr)
    if name == "Momentum":
        return lambda lr: jn.sgd(lambda _: lr, momentum=cfg.momentum)
    if name == "AdaGrad":
        return lambda lr: jn.adagrad(lambda _: lr, convention="pytorch")
    return lambda lr: jn.adam(lambda _: lr)


def saito_lr(name: str, cfg: Config) -> float:
    return {
        "SGD": cfg.sgd_lr,
        "Momentum": cfg.momentum_lr,
        "AdaGrad": cfg.adagrad_lr,
        "Adam": cfg.adam_lr,
    }[name]


def lr_grid(cfg: Config) -> np.ndarray:
    """The map's rates plus every rate a claim uses (Saito's, and the two GD controls)."""
    named = [saito_lr(m, cfg) for m in METHODS] + [cfg.momentum_lr / (1 - cfg.momentum)]
    grid = np.concatenate([np.logspace(-2, 1, cfg.sweep_lrs), named])
    return np.unique(np.round(grid.astype(np.float32), 6))


def starts(cfg: Config) -> np.ndarray:
    """``seeds`` random starts, then Saito's (-7, 2) as the last row (drawn, not counted)."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.seeds
    x = rng.uniform(*cfg.start_x, n) * rng.choice([-1.0, 1.0], n)
    y = rng.uniform(*cfg.start_y, n) * rng.choice([-1.0, 1.0], n)
    return np.concatenate([np.stack([x, y], 1), [[-7.0, 2.0]]]).astype(np.float32)


def sweep(make, lrs: np.ndarray, x0: np.ndarray, steps: int) -> np.ndarray:
    """Paths (lrs, starts, steps + 1, 2): every rate and start in one compiled program."""

    def one(lr, p0):
        return trajectory(make(lr), bowl, p0, steps)

    run = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))
    return np.asarray(run(lrs.astype(np.float32), x0), np.float64)


def path_measures(paths: np.ndarray) -> dict:
    """Per path: y-reversal rate, final loss, directness, and whether it diverged."""
    dy = np.diff(paths[..., 1], axis=-1)
    reversals = np.mean(dy[..., 1:] * dy[..., :-1] < 0, axis=-1)
    end, start = paths[..., -1, :], paths[..., 0, :]
    loss = end[..., 0] ** 2 / 20 + end[..., 1] ** 2
    walked = np.linalg.norm(np.diff(paths, axis=-2), axis=-1).sum(-1)
    with np.errstate(invalid="ignore", over="ignore"):  # a diverged path is nan: kept so
        direct = np.linalg.norm(end - start, axis=-1) / np.maximum(walked, 1e-12)
    start_loss = start[..., 0] ** 2 / 20 + start[..., 1] ** 2
    diverged = ~np.isfinite(loss) | (loss > start_loss)
    return {
        "reversal_rate": reversals,
        "final_loss": loss,
        "directness": direct,
        "diverged": diverged,
    }


def measure(cfg: Config) -> tuple[dict, dict]:
    """Metrics (per method, per seed at the claimed rates; the map) and Saito-start paths."""
    lrs, x0 = lr_grid(cfg), starts(cfg)
    at = {float(lr): i for i, lr in enumerate(lrs)}

    def index(lr):
        return at[float(np.round(np.float32(lr), 6))]

    arms, sweeps, drawn = {}, {}, {}
    for name in METHODS:
        paths = sweep(_factory(name, cfg), lrs, x0, cfg.steps)
        m = path_measures(paths)
        sweeps[name] = {k: v[:, : cfg.seeds].mean(1) for k, v in m.items()}
        i = index(saito_lr(name, cfg))
        arms[name] = {k: v[i, : cfg.seeds] for k, v in m.items()}
        drawn[name] = (saito_lr(name, cfg), paths[i, -1])
        if name == "SGD":  # GD controls for Momentum: its own rate, its effective step
            for label, lr in (
                ("GD at Momentum's lr", cfg.momentum_lr),
                ("GD at lr/(1-alpha)", cfg.momentum_lr / (1 - cfg.momentum)),
            ):
                arms[label] = {k: v[index(lr), : cfg.seeds] for k, v in m.items()}
                drawn[label] = (lr, paths[index(lr), -1])
    metrics = {"per_seed": arms, "lrs": lrs, "sweep": sweeps, "starts": np.asarray(x0[:-1])}
    return metrics, drawn


def _src(section: str, quote: str, english: str, reference: str = SAITO) -> Source:
    return Source(NOTE, section, quote, english, reference)


ZIGZAG = _src(
    "2.  SGD 的缺点",
    "呈现之字形，是因为图像的变化并不均匀，所以y方向变化很大时，x方向变化很小，只能迂回往复地寻找，效率很低。",
    "It zigzags because the function changes unevenly: while y changes a lot, x changes "
    "little, so it can only search back and forth, which is very inefficient.",
    SAITO + ".2 (SGD's shortcoming, figure 6-3)",
)
CANCEL = Source(
    "000_07e945f9227ab975.txt",
    "优化算法 / 冲量法（momentum）",
    "冲量法是**几个相互冲突的方向**在慢慢相互抵消，使得梯度的变化尽量朝着正确的方向",
    "in momentum, several conflicting directions slowly cancel each other, so the update heads "
    "as much as possible in the right direction",
    SAITO + ".4 (figure 6-5)",
)
AVERAGE = Source(
    "000_07e945f9227ab975.txt",
    "优化算法 / 冲量法（momentum） / 小结",
    "1、冲量法用**过去梯度的平均值**来替换梯度，大大加快了收敛速度",
    "1. momentum replaces the gradient by an average of past gradients, which greatly speeds "
    "up convergence",
    SAITO + ".4 (figure 6-5)",
)


ADAGRAD = _src(
    "1.\tAdaGrad的公式",
    "参数变动越大，标准差越大，学习率越低。",
    "The more a parameter moves, the larger its standard deviation and the lower its "
    "learning rate (so the steep y-direction is damped: less zigzag, figure 6-6).",
    SAITO + ".5 (figure 6-6)",
)
ADAM = _src(
    "1. Adam的特点",
    "通过组合前面两个方法的优点，有望实现参数空间的高效搜索",
    "Combining the strengths of the two previous methods promises an efficient search of "
    "parameter space (Saito: it sways less than Momentum, figure 6-7).",
    SAITO + ".6 (figure 6-7)",
)


def claims(metrics: dict, cfg: Config) -> list[dict]:
    arm = {
        k: {q: np.asarray(v, np.float64) for q, v in a.items()}
        for k, a in metrics["per_seed"].items()
    }
    sgd_rev = arm["SGD"]["reversal_rate"]
    others = ("Momentum", "AdaGrad", "Adam")
    n = cfg.seeds
    drop = {k: _stats.paired_difference(sgd_rev, arm[k]["reversal_rate"]) for k in others}
    ratio = {k: _ratio(arm[k]["final_loss"], arm["SGD"]["final_loss"]) for k in others}
    direct = {k: _stats.mean(arm[k]["directness"]) for k in ("SGD", *others)}
    notes = {
        "AdaGrad": "AdaGrad's first step moves every coordinate by the full lr, so a "
        "start with |y0| below lr overshoots and zigzags: the verdict depends on the "
        "range of starts",
        "Adam": "",
    }
    small, big = arm["GD at Momentum's lr"], arm["GD at lr/(1-alpha)"]
    zig = "SGD's y-reversal rate minus {}'s (lr {:g})"
    out = [
        check(
            f"At lr {cfg.sgd_lr:g} SGD's y-multiplier 1 - 2 lr = {1 - 2 * cfg.sgd_lr:.3g} is "
            "negative, so every y-move reverses the last one from any start (Saito's zigzag)",
            bool(np.all(sgd_rev == 1.0)) == (cfg.sgd_lr > 0.5),
            {
                "sgd_reversal_rate_min": float(sgd_rev.min()),
                "lr": cfg.sgd_lr,
                "zigzag_needs_lr_above": 0.5,
            },
            id="sgd_zigzag_closed_form",
        ),
        claim(
            "Momentum zigzags less than SGD taking the same effective step: its y-moves "
            f"reverse at a rate lower than GD's at lr/(1-alpha) = "
            f"{cfg.momentum_lr / (1 - cfg.momentum):.3g} by over {cfg.zigzag_drop:g}",
            _stats.paired_difference(big["reversal_rate"], arm["Momentum"]["reversal_rate"]),
            Test(
                "y-reversal rate of GD at lr/(1-alpha) minus Momentum's",
                ">",
                cfg.zigzag_drop,
                "pre-stated effect size: 'less zigzag' read as under half the reversals of a "
                "GD that reverses at every step",
                n,
                paired=True,
            ),
            CANCEL,
            {"directness Momentum": direct["Momentum"], "directness SGD": direct["SGD"]},
            note="Saito's own rates (SGD 0.95, Momentum 0.1) differ tenfold in step, and GD at "
            "0.1 does not zigzag either, so the fair arm is GD at Momentum's effective step; "
            "both are linear maps here, so the rates do not depend on the start",
            also={
                f"at Saito's rates (SGD lr {cfg.sgd_lr:g})": (
                    drop["Momentum"],
                    Test(
                        zig.format("Momentum", cfg.momentum_lr),
                        ">",
                        cfg.zigzag_drop,
                        "as above",
                        n,
                        paired=True,
                    ),
                )
            },  # fmt: skip
            id="momentum_less_zigzag",
        ),
        claim(
            "SGD is the inefficient one: Momentum, AdaGrad and Adam each end the 30 steps "
            "at a lower loss than SGD from the same start",
            [ratio[k] for k in others],
            [
                Test(
                    f"final loss of {k} / SGD's",
                    "<",
                    cfg.loss_ratio,
                    "the note calls SGD inefficient (效率很低); no margin is stated, so any "
                    "ratio below 1",
                    n,
                    paired=True,
                )
                for k in others
            ],
            ZIGZAG,
            {
                f"final loss {k}": _stats.positive_mean(arm[k]["final_loss"])
                for k in ("SGD", *others)
            },
            note="Momentum and Adam circle the minimum with slowly decaying swings (Saito's "
            "figures 6-5 and 6-7 show them so): a straighter path can still end above SGD's loss",
            id="lower_loss_than_sgd",
        ),
        claim(
            "Momentum is more than a smaller step: it zigzags less than GD at its effective "
            f"step lr/(1-alpha) = {cfg.momentum_lr / (1 - cfg.momentum):.3g}, and ends lower "
            f"than GD at its own lr {cfg.momentum_lr:g}",
            [
                _stats.paired_difference(big["reversal_rate"], arm["Momentum"]["reversal_rate"]),
                _ratio(arm["Momentum"]["final_loss"], small["final_loss"]),
            ],
            [
                Test(
                    "y-reversal rate of GD at lr/(1-alpha) minus Momentum's",
                    ">",
                    cfg.zigzag_drop,
                    "pre-stated effect size: under half the reversals of a GD that reverses at "
                    "every step",
                    n,
                    paired=True,
                ),
                Test(
                    f"final loss of Momentum / GD at lr {cfg.momentum_lr:g}",
                    "<",
                    cfg.control_loss_ratio,
                    "pre-stated effect size: at least 2x lower, "
                    "Saito's 'approaches faster along x'",
                    n,
                    paired=True,
                ),
            ],
            AVERAGE,
            {
                "momentum": cfg.momentum,
                "final loss GD at own lr": _stats.positive_mean(small["final_loss"]),
                "final loss Momentum": _stats.positive_mean(arm["Momentum"]["final_loss"]),
            },
            id="momentum_beyond_step_size",
        ),
    ]
    for k, src in (("AdaGrad", ADAGRAD), ("Adam", ADAM)):
        out.append(
            claim(
                f"{k} walks a more direct path than SGD: its y-reversal rate is lower than "
                f"SGD's by over {cfg.zigzag_drop:g}",
                drop[k],
                Test(
                    zig.format(k, saito_lr(k, cfg)),
                    ">",
                    cfg.zigzag_drop,
                    "pre-stated effect size: under half of SGD's reversals",
                    n,
                    paired=True,
                ),
                src,
                {f"directness {k}": direct[k], "directness SGD": direct["SGD"]},
                note=notes[k],
                id=f"{k.lower()}_direct",
                kind="beyond",
            )
        )
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> _stats.Estimate:
    """Paired ratio; a diverged or zero run makes it undefined (an inconclusive verdict)."""
    if np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(a > 0) and np.all(b > 0):
        return _stats.paired_ratio(a, b)
    return _stats.Estimate(np.nan, np.nan, np.nan, len(a), np.nan, "undefined: a run diverged")


def draw(metrics: dict, cfg: Config, out_dir: Path) -> list[str]:
    """Both figures, from the metrics alone."""
    return [draw_paths(metrics, cfg, out_dir), draw_map(metrics, cfg, out_dir)]


def draw_paths(metrics: dict, cfg: Config, out_dir: Path) -> str:
    xs, ys = np.meshgrid(np.linspace(-10, 10, 200), np.linspace(-5, 5, 200))
    zs = xs**2 / 20 + ys**2
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.6), layout="constrained")
    for ax, (label, path) in zip(axes.flat, metrics["drawn"]["paths"].items(), strict=True):
        lr, pts = path["lr"], np.asarray(path["path"])
        ax.contour(xs, ys, zs, levels=np.linspace(0.25, 12, 14), cmap="Greys", linewidths=0.6)
        ax.plot(pts[:, 0], pts[:, 1], "o-", color="tab:red", ms=2.5, lw=1, label="path")
        ax.plot(*pts[0], "ks", ms=5, label="start (-7, 2)")
        ax.plot(0, 0, "*", color="tab:blue", ms=12, label="minimum (0, 0)")
        extra = f" (alpha {cfg.momentum:g})" if label == "Momentum" else ""
        ax.set_title(f"{label}{extra}: lr {lr:.3g}, f(end) = {bowl(pts[-1]):.3g}", fontsize=10)
        ax.set(xlim=(-10, 10), ylim=(-5, 5), xlabel="x", ylabel="y")
    axes.flat[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"f(x, y) = x^2/20 + y^2, {cfg.steps} steps (Saito fig. 6-3 to 6-7; bottom: "
        "GD controls for Momentum)"
    )
    return save_figure(fig, out_dir, "bowl_paths")


def draw_map(metrics: dict, cfg: Config, out_dir: Path) -> str:
    lrs = np.asarray(metrics["lrs"])
    sw = {name: {k: np.asarray(v) for k, v in m.items()} for name, m in metrics["sweep"].items()}
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained")
    for name, color in zip(METHODS, ("k", "tab:red", "tab:green", "tab:blue"), strict=True):
        rate = np.where(sw[name]["diverged"] > 0.5, np.nan, sw[name]["reversal_rate"])
        a.semilogx(lrs, rate, "o-", ms=3, color=color, label=name)
        lr = saito_lr(name, cfg)
        a.plot(lr, np.interp(lr, lrs, sw[name]["reversal_rate"]), "*", ms=14, color=color)
    a.axvline(0.5, color="grey", ls=":", lw=0.8, label="GD zigzags above lr 0.5 = 1/h_y")
    a.set(
        xlabel="learning rate",
        ylabel="fraction of y-moves that reverse",
        title="zigzag vs lr (stars: Saito's rates; gaps: diverged)",
    )
    a.legend(fontsize=8)
    holds = (
        sw["SGD"]["reversal_rate"][None, :] - sw["Momentum"]["reversal_rate"][:, None]
        > cfg.zigzag_drop
    ).astype(float)
    bad = (sw["SGD"]["diverged"][None, :] > 0.5) | (sw["Momentum"]["diverged"][:, None] > 0.5)
    holds[bad] = np.nan
    b.pcolormesh(lrs, lrs, holds, cmap="RdYlGn", vmin=0, vmax=1, shading="nearest")
    b.plot(cfg.sgd_lr, cfg.momentum_lr, "k*", ms=14, label="Saito (0.95, 0.1)")
    b.set(
        xscale="log",
        yscale="log",
        xlabel="SGD learning rate",
        ylabel=f"Momentum learning rate (alpha {cfg.momentum:g})",
        title="green: SGD zigzags and Momentum does not (mean over starts);\n"
        "red: the claim fails; white: a run diverged",
    )
    b.legend(fontsize=8, loc="lower right")
    return save_figure(fig, out_dir, "zigzag_regimes")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics, drawn = measure(cfg)
    metrics["drawn"] = {  # the paths from Saito's start, at each arm's rate
        "paths": {k: {"lr": lr, "path": _plot.compact(pts, 6)} for k, (lr, pts) in drawn.items()}
    }
    figures = draw(_plot.stored(metrics), cfg, out_dir)
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
