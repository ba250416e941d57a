"""How fast SGD's rate should decay on a convex problem with noisy gradients (d2l 11.4).

The problem is d2l's own: f(x) = x1^2 + 2 x2^2 (curvatures h = 2 and 4), started at (-5, -2),
every gradient plus N(0, noise^2) per coordinate, for 10,000 steps at the rate
lr_t = lr0 * t^-p with p in {0, 1/2, 1, 2}. Seed s draws one noise stream that every schedule
shares (paired). The error is f(x_t) - f* = f(x_t). The theory is Robbins-Monro's: a run keeps
approaching the optimum while the rates sum to infinity and shrink to zero.

* p = 2: the rates sum to lr0 pi^2/6, a finite budget; after t = 100 only lr0 / 100 of it is left,
  so the run stalls short of the optimum.
* p = 0: a constant rate never averages the noise away; the error settles at the floor
  sum_i lr noise^2 / (2 (2 - lr h_i)) (the stationary variance of each coordinate, a check).
* p = 1/2 and 1: the error keeps falling, as lr_t (p = 1/2) or 1/t (p = 1 when 2 lr0 h_min > 1).

The claims are decided at d2l's rate lr0 = 0.1 and, beside, at each schedule's own lr0 chosen
from a grid on separate tuning seeds. Sabotage: ``noise=0`` (exact gradients: a constant rate
converges linearly and loses its floor); ``fast_power=1`` (the too-fast arm decays like p = 1);
``decay_power=2`` (the gradual arm decays too fast).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jaxopt_notes.experiments import _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, check, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

SUMMARY = (
    "SGD on a noisy convex quadratic: lr0 t^-p stalls at p=2, floors at p=0, converges between"
)
DATA = "synthetic: d2l's f(x) = x1^2 + 2 x2^2 with Gaussian gradient noise (no data set)"
CURVATURES = (2.0, 4.0)  # the Hessian's diagonal of x1^2 + 2 x2^2
NOTE = "000_07e945f9227ab975.txt"
D2L = (
    "Zhang et al., Dive into Deep Learning, sec. 11.4 (dynamic learning rate); Robbins & Monro 1951"
)

TOO_FAST = Source(
    NOTE,
    "优化算法 / 冲量法（momentum）",
    "如果衰减速度太快，收敛就会停滞",
    "if [the rate] decays too fast, convergence stalls",
    D2L,
)
TOO_LOOSE = Source(
    NOTE,
    "优化算法 / 冲量法（momentum）",
    "如果太宽松，就肯恶搞无法收敛到最优解",
    "if [it decays] too loosely, it may fail to converge to the optimum",
    D2L,
)
WIDE_RANGE = Source(
    NOTE,
    "优化算法 / 随机梯度下降（stochastic gradient descent） / 小结",
    "1、对于凸问题，对于广泛的学习率选择，随机梯度下降将收敛到最优解。",
    "1. for convex problems, SGD converges to the optimum for a wide range of learning rates.",
    D2L,
)


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 256
    tune_seeds: int = 64  # separate noise streams on which each schedule's lr0 is chosen
    steps: int = 10_000
    early: int = 100  # the step the progress ratio starts from
    lr0: float = param(0.1, help="d2l's rate; must be one of lr_grid")
    lr_grid: tuple = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)  # each schedule's lr0 from here
    wide_range: tuple = (0.01, 0.03, 0.1, 0.3)  # a decade and a half below the stability edge
    decay_power: float = param(0.5, low=0.0, help="the gradual arm's p, d2l's (sabotage: 2)")
    fast_power: float = param(2.0, low=0.0, help="the too-fast arm's p (sabotage: 1)")
    noise: float = param(1.0, low=0.0, help="gradient noise std (sabotage: 0)")
    start: tuple = (-5.0, -2.0)
    # stated tests
    stall_keep: float = 0.5
    gap: float = 10.0
    falling_max: float = 0.5
    floor_tolerance: float = 0.03
    seed: int = 0

    def validate(self) -> None:
        if self.lr0 not in self.lr_grid:
            raise ValueError(f"`lr0` must be one of `lr_grid` {self.lr_grid}, got {self.lr0}")
        if not set(self.wide_range) <= set(self.lr_grid) or max(self.wide_range) >= 0.5:
            raise ValueError(
                f"`wide_range` must be rates of `lr_grid` below 0.5, got {self.wide_range}"
            )
        if not 1 <= self.early < self.steps // 10:
            raise ValueError(f"`early` must leave two decades before `steps`, got {self.early}")

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=128, tune_seeds=32)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=48, tune_seeds=16)


def powers(cfg: Config) -> tuple[float, ...]:
    """The arms, in this order: no decay, the gradual one, 1/t, the too-fast one."""
    return (0.0, cfg.decay_power, 1.0, cfg.fast_power)


def simulate(cfg: Config, key: jax.Array, seeds: int) -> dict[str, np.ndarray]:
    """Every (p, lr0) over ``seeds`` noise streams in one scan: errors at ``early`` and at the
    end, the mean error over seeds at every step, the mean error over the second half."""
    grid = np.array([(p, lr) for p in powers(cfg) for lr in cfg.lr_grid], np.float32)
    p, lr0 = (jnp.asarray(grid[:, i])[:, None, None] for i in (0, 1))
    h = jnp.asarray(CURVATURES)
    x0 = jnp.broadcast_to(jnp.asarray(cfg.start, jnp.float32), (len(grid), seeds, 2))
    half = cfg.steps // 2

    def error(x):
        return 0.5 * (h * x**2).sum(-1)

    def step(carry, t):
        x, at_early, tail = carry
        xi = jax.random.normal(jax.random.fold_in(key, t), (seeds, 2))  # shared by all arms
        lr = lr0 * t.astype(jnp.float32) ** -p
        x = x - lr * (h * x + cfg.noise * xi)
        e = error(x)
        at_early = jnp.where(t == cfg.early, e, at_early)
        tail = tail + jnp.where(t > half, e, 0.0) / (cfg.steps - half)
        return (x, at_early, tail), jnp.nanmean(e, axis=1)

    zeros = jnp.zeros((len(grid), seeds))
    ts = jnp.arange(1, cfg.steps + 1)
    (x, at_early, tail), curve = jax.jit(lambda c: jax.lax.scan(step, c, ts))((x0, zeros, zeros))
    shape = (len(powers(cfg)), len(cfg.lr_grid))
    marks = curve_steps(cfg)
    return {
        "early": np.asarray(at_early).reshape(*shape, seeds),
        "final": np.asarray(error(x)).reshape(*shape, seeds),
        "tail_mean": np.asarray(tail).reshape(*shape, seeds),
        "curve": np.asarray(curve)[marks - 1].T.reshape(*shape, len(marks)),
    }


def curve_steps(cfg: Config) -> np.ndarray:
    """About 80 log-spaced steps: the mean curve at every step would bloat result.json."""
    return np.unique(np.geomspace(1, cfg.steps, 80).round().astype(int))


def choose(final: np.ndarray) -> list[int]:
    """Per schedule, the lr0 (index) of the lowest mean final error; a diverged one never."""
    mean = np.where(np.isfinite(final).all(-1), np.nan_to_num(final, posinf=0).mean(-1), np.inf)
    return [int(i) for i in np.argmin(mean, axis=1)]


def measure(cfg: Config) -> dict:
    key_eval, key_tune = jax.random.split(jax.random.key(cfg.seed))
    tuned = choose(simulate(cfg, key_tune, cfg.tune_seeds)["final"])
    run = simulate(cfg, key_eval, cfg.seeds)
    return {**run, "tuned_lr0": [cfg.lr_grid[i] for i in tuned], "powers": list(powers(cfg))}


def floor(lr: float, cfg: Config) -> float:
    """Stationary E f under a constant rate: per coordinate, v = lr noise^2 / (h (2 - lr h))."""
    return float(sum(lr * cfg.noise**2 / (2 * (2 - lr * h)) for h in CURVATURES))


def _pos(a: np.ndarray) -> np.ndarray:
    # an exact-gradient run can reach 0.0 in float32; 1e-30 keeps its log-ratio defined
    return np.maximum(np.nan_to_num(np.asarray(a, np.float64), nan=np.inf), 1e-30)


def stated_tests(cfg: Config) -> tuple[Test, Test, Callable[[str], Test]]:
    """The tests, fixed before the run: a stalled run keeps its error, a converging one loses
    it, and a stall or a floor leaves the run an order of magnitude short."""
    n, T, e = cfg.seeds, cfg.steps, cfg.early
    keep = Test(
        f"error at t = {T} / error at t = {e}",
        ">",
        cfg.stall_keep,
        f"after t = {e}, p = 2 has lr0/{e} of its rate budget left (it keeps >= exp(-2 h_max "
        f"lr0 / {e}) of its error) and a run at its floor keeps all; 1/t keeps {e / T:g}",
        n,
        paired=True,
    )
    falls = dataclasses.replace(keep, comparison="<", threshold=cfg.falling_max)

    def short(what: str) -> Test:
        return Test(what, ">", cfg.gap, "pre-stated: an order of magnitude short", n, True)

    return keep, falls, short


def claims(metrics: dict, cfg: Config) -> list[dict]:
    final, early = _pos(metrics["final"]), _pos(metrics["early"])
    at = cfg.lr_grid.index(cfg.lr0)
    tuned = [cfg.lr_grid.index(lr) for lr in metrics["tuned_lr0"]]
    none, gradual, inv, fast = range(4)  # the order of powers()
    q = cfg.decay_power

    def progress(i, j):
        return _stats.paired_ratio(final[i, j], early[i, j])

    def gap(i, j, k, m):
        return _stats.paired_ratio(final[i, j], final[k, m])

    keep, falls, short = stated_tests(cfg)
    e = cfg.early
    stable = [cfg.lr_grid.index(lr) for lr in cfg.wide_range]
    tail = float(np.mean(metrics["tail_mean"][none, at]))
    want = floor(cfg.lr0, cfg)
    at_tuned = "at each schedule's own lr0 (tuned on separate seeds)"
    return [
        claim(
            f"lr0 t^-{cfg.fast_power:g} (rates summing to a finite budget) stalls short of the "
            f"optimum: from t = {e} on it keeps its error, which ends far above 1/t's",
            [progress(fast, at), gap(fast, at, inv, at)],
            [keep, short(f"final error, p = {cfg.fast_power:g} / p = 1 (lr0 {cfg.lr0:g})")],
            TOO_FAST,
            also={at_tuned: (gap(fast, tuned[fast], inv, tuned[inv]), short("final error ratio"))},
            id="fast_decay_stalls",
        ),
        claim(
            "A constant rate (no decay) stops at a noise floor: its error stops falling while "
            f"lr0 t^-{q:g} from the same lr0 keeps going, far below it",
            [progress(none, at), gap(none, at, gradual, at)],
            [keep, short(f"final error, constant / p = {q:g} (lr0 {cfg.lr0:g})")],
            TOO_LOOSE,
            {f"floor in closed form at lr {cfg.lr0:g}": want},
            also={
                at_tuned: (
                    gap(none, tuned[none], gradual, tuned[gradual]),
                    short("final error ratio"),
                )
            },
            note="a constant rate tuned for a known horizon comes within a log factor of a "
            "decaying one; the floor is what never goes away",
            id="no_decay_floor",
        ),
        claim(
            f"On this convex problem SGD with lr0 t^-{q:g} keeps approaching the optimum at every "
            f"lr0 in {list(cfg.wide_range)} (stability edge 2/h_max: {2 / max(CURVATURES):g})",
            [progress(gradual, j) for j in stable],
            [
                dataclasses.replace(falls, quantity=f"{falls.quantity}, lr0 {cfg.lr_grid[j]:g}")
                for j in stable
            ],
            WIDE_RANGE,
            {
                **{f"same ratio, p = 1, lr0 {cfg.lr_grid[j]:g}": progress(inv, j) for j in stable},
                **{
                    f"same ratio, p = {q:g}, lr0 {lr:g} (outside the range)": progress(gradual, j)
                    for j, lr in enumerate(cfg.lr_grid)
                    if lr not in cfg.wide_range
                },
            },
            note=f"threshold {cfg.falling_max:g}: lr_t of p = 1/2 falls by 10 over two decades, "
            "so does the error once it tracks lr_t; a stalled run keeps about 1",
            id="converges_for_wide_range",
        ),
        check(
            f"The constant rate's mean error over the second half matches the stationary floor "
            f"sum_i lr noise^2 / (2 (2 - lr h_i)) at lr {cfg.lr0:g} within "
            f"{cfg.floor_tolerance:.0%}",
            abs(tail - want) <= cfg.floor_tolerance * want + 1e-12,
            {"measured": tail, "closed form": want},
            id="constant_rate_floor",
        ),
    ]


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    at = cfg.lr_grid.index(cfg.lr0)
    curve = np.asarray(metrics["curve"])
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    t = curve_steps(cfg)
    for i, p in enumerate(metrics["powers"]):
        ax1.loglog(t, curve[i, at], label=f"lr0 t^-{p:g}")
    ax1.axhline(floor(cfg.lr0, cfg) or np.nan, color="grey", ls=":", label="constant rate's floor")
    ax1.axvline(cfg.early, color="grey", lw=0.6)
    ax1.set(
        xlabel="step t",
        ylabel="f(x_t) - f*, mean over seeds",
        title=f"noisy x1^2 + 2 x2^2, lr0 {cfg.lr0:g}, noise {cfg.noise:g}",
    )
    ax1.legend(fontsize=8)
    final = _pos(metrics["final"])
    for i, p in enumerate(metrics["powers"]):
        g = np.exp(np.log(final[i]).mean(-1))
        ax2.loglog(cfg.lr_grid, g, "o-", label=f"p = {p:g} (tuned lr0 {metrics['tuned_lr0'][i]:g})")
    ax2.axvline(2 / max(CURVATURES), color="grey", ls="--", lw=0.8, label="stability edge")
    ax2.set(
        xlabel="lr0",
        ylabel=f"error at t = {cfg.steps} (geometric mean)",
        title=f"final error by lr0, {cfg.seeds} seeds",
    )
    ax2.legend(fontsize=8)
    return save_figure(fig, out_dir, "rate_decay")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics = measure(cfg)
    return {
        "metrics": metrics,
        "claims": claims(metrics, cfg),
        "figures": [draw(_plot.stored(metrics), cfg, out_dir)],
    }
