"""Small optimisation runs on synthetic problems, one per sentence of the notes.

* L2 against L1 on ten correlated features, each penalty set so the fit gives up the same
  training MSE: the share of |w| held by the largest component (L2 spreads, L1 concentrates).
* Minibatch noise: per-example losses f_i(x) = x cos(pi x) + a_i x whose tilts a_i average to
  0, so the full-batch loss is d2l's x cos(pi x); SGD from its shallow minimum at batch 1, at a
  large batch and at the full batch (plain GD): the share of runs that leave the basin.
* Momentum (lr 0.05, beta 0.9) from random starts in [-1, 2] on x cos(pi x): the share that
  ends in the shallow minimum.
* Saito's bowl x^2/20 + y^2 from random starts: Adam's steps to f < 1e-3 against the better
  of its parents, Momentum and AdaGrad, each at its own rate chosen on separate starts from
  one log grid (the verdict), and at Saito's own rates (reported beside it).
* Least squares (10 features, noisy labels): SGD against GD for the same number of
  example-gradients, each at its rate chosen on separate problems; the cosine between SGD's
  step and the full gradient, early and late.
* A diagonal quadratic with curvatures 1..1000: per-coordinate rates growing with curvature
  (note 003's rule) against the best single rate, steps to 1e-6 (exact, closed form per step).

The problems with closed forms or hand-written steps run in NumPy (float64, every seed and
rate at once, nothing to compile); the library's optimizers run in one compiled, vmapped
``lax.scan`` per experiment part.

Sabotages: ``l1_arm=l2``, ``noise_scale=0``, ``surface=single_well``,
``adam_second_moment=off``, ``sgd_batch`` = the number of examples, ``max_curvature=1``.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jaxopt_notes.experiments import _stats
from jaxopt_notes.experiments._claims import Source, Test, claim
from jaxopt_notes.experiments._common import save_figure, trajectory
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn

SUMMARY = "Synthetic optimisation runs: L2 vs L1, minibatch escape, momentum, Adam, SGD vs GD"
DATA = (
    "synthetic only: correlated Gaussian features, d2l's x cos(pi x) as a finite sum with "
    "random tilts, Saito's bowl, random least-squares problems, a diagonal quadratic"
)
QUICK_NOTE = (
    "quick uses fewer seeds, runs and random starts than the defaults (the same steps, "
    "windows, rate grids and thresholds): wider intervals"
)

S = {
    "l2": Source(
        "000_07e945f9227ab975.txt",
        "权重衰减（L2正则化）",
        "使用L2范数的一个原因是它对权重向量的大分量施加了巨大的惩罚",
        "one reason to use the L2 norm is that it puts a huge penalty on large components"
        " of the weight vector",
    ),
    "minibatch_escape": Source(
        "000_07e945f9227ab975.txt",
        "优化算法 / 局部最小 vs 全局最小",
        "小批量上梯度的自然变化能够将参数从局部极小值中跳出",
        "the natural variation of minibatch gradients can knock the parameters out of a "
        "local minimum",
    ),
    "full_batch": Source(
        "002_3498af5075c2b1b1.txt",
        "批次(batch)",
        "现在假设使用所有数据集作为一个batch，那么损失函数就固定了，相对更容易陷入局部最优",
        "if the whole data set is one batch, the loss function is fixed, and it is "
        "relatively easier to get stuck in a local optimum",
    ),
    "small_batch": Source(
        "002_3498af5075c2b1b1.txt",
        "批次(batch)",
        "而如果使用小的batch，每次做gradient decent时loss都略有不同，这样就不容易陷入局部最优",
        "with small batches the loss differs slightly at each step, so it is less easy to"
        " get stuck in a local optimum",
    ),
    "noise_helps": Source(
        "002_3498af5075c2b1b1.txt",
        "批次(batch)",
        "但是噪声也使gradient decent更不容易陷入局部最优。",
        "but the noise also makes gradient descent less likely to get stuck in local optima.",
    ),
    "large_batch": Source(
        "002_3498af5075c2b1b1.txt",
        "批次(batch)",
        "但更容易陷入局部最优",
        "but it gets stuck in local optima more easily",
    ),
    "momentum_global": Source(
        "003_9f3980f7ef3a062d.txt",
        "Momentum",
        "但是，同样也不能保证到gloabal。",
        "but it cannot guarantee reaching the global [minimum] either.",
    ),
    "adam_parents": Source(
        "004_0bb7a3a390427018.txt",
        "1. Adam的特点",
        "通过组合前面两个方法的优点，有望实现参数空间的高效搜索",
        "combining the strengths of the two previous methods promises an efficient search"
        " of parameter space",
    ),
    "sgd_direction": Source(
        "000_07e945f9227ab975.txt",
        "优化算法 / 随机梯度下降（stochastic gradient descent）",
        "随机梯度下降整个过程不像梯度下降那么平滑，特别是在最后阶段比较曲折，但是整个大的"
        "方向和梯度下降是一致的（均值没有发生变化）",
        "SGD's run is not as smooth as GD's, especially tortuous in the last phase, but "
        "its overall direction is the same as GD's (the mean does not change)",
    ),
    "sgd_worth": Source(
        "000_07e945f9227ab975.txt",
        "优化算法 / 随机梯度下降（stochastic gradient descent）",
        "因为每一次计算只需要计算一个样本的梯度，所以虽然可能会走一点弯路，但是整体来看还"
        "是比较划算的",
        "since each step needs only one example's gradient, though it may take detours, "
        "overall it is worth it",
    ),
    "sgd_efficient": Source(
        "000_07e945f9227ab975.txt",
        "优化算法 / Adam",
        "随机梯度下降在解决优化问题时比梯度下降更有效",
        "SGD is more efficient than GD at solving optimisation problems",
    ),
    "flat_small_lr": Source(
        "003_9f3980f7ef3a062d.txt",
        "自适应的学习率  adaptive learning rate",
        "平坦的地方小的lr就行，梯度陡峭的地方需要大的lr。",
        "where it is flat a small lr is enough; where the gradient is steep a large lr is needed.",
    ),
}


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    rates_per_decade: int = 3  # every tuned rate comes from a log grid this fine
    # L2 against L1 on correlated features
    penalty_seeds: int = 12
    l1_arm: str = param("l1", choices=("l1", "l2"), help="sabotage: l2 (both arms ridge)")
    fit_loss_factor: float = 1.2  # both fits give up this factor of training MSE over OLS
    min_share_gap: float = 0.2
    # minibatch noise on a finite-sum double well
    examples: int = 20
    noise_scale: float = param(2.0, low=0.0, help="std of the per-example tilts (0: sabotage)")
    well_runs: int = 200
    well_steps: int = 1000
    well_lr: float = 0.05
    large_batch: int = 10
    escape_share: float = 0.5
    min_share_gap_batch: float = 0.2
    # momentum from random starts
    momentum_runs: int = 400
    surface: str = param("basins", choices=("basins", "single_well"), help="sabotage")
    stuck_share: float = 0.05
    # Adam against its parents on Saito's bowl
    saito_starts: int = 64
    saito_tune_starts: int = 16  # separate starts on which each method's rate is chosen
    saito_steps: int = 2000
    saito_rate_range: tuple[float, float] = (1e-3, 1e4)
    adam_second_moment: str = param(
        "on", choices=("on", "off"), help="sabotage: off (eps 1e6: Adam's momentum alone)"
    )
    # SGD against GD on least squares
    ls_seeds: int = 10
    ls_tune_seeds: int = 10  # separate problems on which each arm's rate is chosen
    ls_examples: int = 500
    ls_epochs: int = 3
    ls_rate_range: tuple[float, float] = (1e-4, 10.0)
    sgd_batch: int = param(1, low=1, help="sabotage: the number of examples (SGD becomes GD)")
    max_loss_ratio: float = 0.5
    cos_steps: int = 2000
    min_cos_drop: float = 0.2
    # the note-003 rule on a diagonal quadratic
    max_curvature: float = param(1000.0, low=1.0, help="1: all curvatures equal (sabotage)")
    max_steps_ratio: float = 2.0

    @classmethod
    def quick(cls) -> Config:
        return cls(penalty_seeds=10, well_runs=150, saito_starts=48, ls_seeds=8)

    @classmethod
    def tiny(cls) -> Config:  # fewer units; every step count and window as in the default
        return cls(
            penalty_seeds=6,
            well_runs=60,
            momentum_runs=200,
            saito_starts=16,
            saito_tune_starts=8,
            ls_seeds=6,
            ls_tune_seeds=6,
        )


def rate_grid(low_high: tuple[float, float], per_decade: int) -> np.ndarray:
    """Log-spaced rates from ``low`` to ``high``, ``per_decade`` to a factor of 10."""
    low, high = low_high
    return np.geomspace(low, high, round(per_decade * np.log10(high / low)) + 1)


def _chosen(score: np.ndarray, rates: np.ndarray) -> dict:
    """The least rate whose tuning ``score`` (one per rate, lower is better) is least; whether
    that least score is also reached at an end of the grid (ties counted), where a wider grid
    might have found a better one."""
    score = np.where(np.isfinite(score), score, np.inf)
    best = int(np.argmin(score))
    return {
        "index": best,
        "rate": float(rates[best]),
        "edge": bool(min(score[0], score[-1]) <= score[best]),
    }


# --- L2 against L1: how much of the weight sits in the largest component --------------------


def penalty_fits(cfg: Config) -> dict:
    """Per seed, ridge and lasso fits at the penalties that give up ``fit_loss_factor`` x the
    OLS training MSE; the share of |w| in the largest component of each. NumPy, float64:
    closed-form ridge, ISTA for the lasso, all seeds and penalties at once."""
    rng = np.random.default_rng(cfg.seed)
    s, n, d = cfg.penalty_seeds, 100, 10
    lams = np.geomspace(1e-4, 10.0, 40)
    z = rng.standard_normal((s, n, 1))
    x = z + 0.5 * rng.standard_normal((s, n, d))
    y = 3 * z[..., 0] + 0.5 * rng.standard_normal((s, n))
    a, b = np.einsum("snd,sne->sde", x, x) / n, np.einsum("snd,sn->sd", x, y) / n
    yy = np.mean(y**2, 1)

    def mse(w):  # (s, ..., d) -> (s, ...): w'aw - 2b'w + mean y^2
        aw = np.einsum("sde,s...e->s...d", a, w)
        return (
            np.einsum("s...d,s...d->s...", w, aw)
            - 2 * np.einsum("sd,s...d->s...", b, w)
            + (yy.reshape((s,) + (1,) * (w.ndim - 2)))
        )

    ridge = np.linalg.solve(a[:, None] + lams[:, None, None] * np.eye(d), b[:, None, :, None])
    ridge = ridge[..., 0]
    if cfg.l1_arm == "l1":  # ISTA on mse/2 + lam |w|_1
        step = (1 / np.linalg.eigvalsh(a).max(-1))[:, None, None]
        sparse = np.zeros_like(ridge)
        for _ in range(1000):
            sparse = sparse - step * (np.einsum("sde,sle->sld", a, sparse) - b[:, None])
            sparse = np.sign(sparse) * np.maximum(np.abs(sparse) - step * lams[:, None], 0.0)
    else:
        sparse = ridge
    target = cfg.fit_loss_factor * mse(np.linalg.solve(a, b[..., None])[..., 0])

    def at_target(ws):
        w = ws[np.arange(s), np.argmin(np.abs(mse(ws) - target[:, None]), 1)]
        return np.abs(w).max(1) / np.abs(w).sum(1), mse(w) / target, w

    (s2, f2, w2), (s1, f1, w1) = at_target(ridge), at_target(sparse)
    return {
        "share_l2": s2,
        "share_l1": s1,
        "fit_l2": f2,
        "fit_l1": f1,
        "weights_l2": w2[0],
        "weights_l1": w1[0],
    }


# --- minibatch noise on a finite-sum double well ----------------------------------------------

MAXIMA = (-1.0904, 0.2739, 2.0491)  # walls of f(x) = x cos(pi x) on [-1, 2] (as in basins)
SHALLOW, DEEP = -0.2739, 1.0904


def finite_sum_runs(cfg: Config) -> dict:
    """f_i(x) = x cos(pi x) + a_i x with sum a_i = 0, so the mean is d2l's x cos(pi x): SGD at
    each batch size from the shallow minimum; whether a run ever leaves its basin. The same
    tilts for every batch size; all runs and batch sizes step together (NumPy, float64)."""
    n, runs, steps = cfg.examples, cfg.well_runs, cfg.well_steps
    rng = np.random.default_rng(cfg.seed + 1)
    a = rng.standard_normal((runs, n))
    a = cfg.noise_scale * (a - a.mean(1, keepdims=True)) / a.std(1, keepdims=True)
    sizes = (1, cfg.large_batch, n)
    noise = np.empty((len(sizes), runs, steps))
    for i, b in enumerate(sizes):  # each step's batch mean of the tilts, drawn without replacement
        if b >= n:
            noise[i] = a.mean(1, keepdims=True)
        else:
            pick = np.argpartition(rng.random((runs, steps, n)), b - 1, axis=-1)[..., :b]
            noise[i] = np.take_along_axis(a[:, None, :], pick, -1).mean(-1)
    x = np.full((len(sizes), runs), SHALLOW)
    left = np.zeros_like(x, dtype=bool)
    for t in range(steps):
        grad = np.cos(np.pi * x) - np.pi * x * np.sin(np.pi * x) + noise[..., t]
        x = x - cfg.well_lr * grad
        left |= (x <= MAXIMA[0]) | (x > MAXIMA[1])
    return {str(b): left[i] for i, b in enumerate(sizes)}


# --- momentum from random starts ---------------------------------------------------------------


def momentum_starts(cfg: Config) -> dict:
    def f(x):
        if cfg.surface == "single_well":
            return (x - DEEP) ** 2
        return x * jnp.cos(jnp.pi * x)

    rng = np.random.default_rng(cfg.seed + 2)
    x0 = jnp.asarray(rng.uniform(-1.0, 2.0, cfg.momentum_runs), jnp.float32)
    tx = jn.sgd(0.05, momentum=0.9)
    ends = jax.jit(jax.vmap(lambda x: trajectory(tx, f, x, 1000)[-1]))(x0)
    ends = np.asarray(ends)
    return {
        "starts": np.asarray(x0),
        "ends": ends,
        "at_shallow": int(np.sum(np.abs(ends - SHALLOW) < 0.05)),
    }


# --- Adam against momentum and AdaGrad on Saito's bowl -----------------------------------------

SAITO_RATES = {"Momentum": 0.1, "AdaGrad": 1.5, "Adam": 0.3}  # Saito 6.1.7's own settings


def _saito_methods(cfg: Config) -> dict:
    """Each method as a function of its rate (traceable, so one compilation covers the grid)."""

    def adam(lr):
        if cfg.adam_second_moment == "off":  # sqrt(v) + 1e6 is 1e6 to 1e-5 here: lr * m_hat
            return jn.adam(lr * 1e6, eps=1e6)
        return jn.adam(lr)

    return {
        "Momentum": lambda lr: jn.sgd(lr, momentum=0.9),
        "AdaGrad": lambda lr: jn.adagrad(lr, convention="pytorch"),
        "Adam": adam,
    }


def _saito_starts(seed: int, count: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mag = np.stack([rng.uniform(4, 10, count), rng.uniform(1, 3, count)], 1)
    return (mag * rng.choice([-1.0, 1.0], (count, 2))).astype(np.float32)


def saito_steps(cfg: Config) -> dict:
    """Steps to f < 1e-3 for every method x rate (the grid, then Saito's own) x start (the
    tuning starts, then the measured ones): one compiled run per method. Each method's rate
    is chosen on the tuning starts alone (least geometric-mean steps)."""

    def f(p):
        return p[0] ** 2 / 20 + p[1] ** 2

    grid = rate_grid(cfg.saito_rate_range, cfg.rates_per_decade)
    tune = _saito_starts(cfg.seed + 30, cfg.saito_tune_starts)
    test = _saito_starts(cfg.seed + 3, cfg.saito_starts)
    starts = jnp.asarray(np.concatenate([tune, test]))
    cap = cfg.saito_steps + 1  # a run that never reaches 1e-3 counts this many steps
    methods = _saito_methods(cfg)
    rates = jnp.asarray([np.append(grid, SAITO_RATES[k]) for k in methods], jnp.float32)

    def reach(make, lr, p):
        below = trajectory(make(lr), f, p, cfg.saito_steps, f) < 1e-3
        return jnp.where(below.any(), below.argmax(), cap)

    @jax.jit
    def every(rates, starts):  # one compilation for the three methods
        over = [
            jax.vmap(jax.vmap(partial(reach, m), (None, 0)), (0, None)) for m in methods.values()
        ]
        return jnp.stack([run(r, starts) for run, r in zip(over, rates, strict=True)])

    out = {"rates": grid}
    steps = np.asarray(every(rates, starts)).astype(float)
    for name, per_rate in zip(methods, steps, strict=True):
        tuning, measured = per_rate[:, : len(tune)], per_rate[:, len(tune) :]
        score = np.log(tuning[:-1]).mean(1)
        chosen = _chosen(score, grid)
        out[name] = chosen | {
            "tuning_curve": np.exp(score),
            "tuned": measured[chosen["index"]],
            "source": measured[-1],
        }
    return out


# --- SGD against GD on least squares -----------------------------------------------------------


def _problems(rng: np.random.Generator, count: int, n: int, d: int = 10) -> tuple:
    """``count`` least-squares problems (n examples, d features, noisy labels) and the least
    training loss of each."""
    x = rng.standard_normal((count, n, d))
    y = np.einsum("pnd,pd->pn", x, rng.standard_normal((count, d)))
    y = y + 0.5 * rng.standard_normal((count, n))
    xx, xy = np.einsum("pnd,pne->pde", x, x), np.einsum("pnd,pn->pd", x, y)
    best = np.linalg.solve(xx, xy[..., None])[..., 0]
    floor = np.mean((np.einsum("pnd,pd->pn", x, best) - y) ** 2, 1) / 2
    return x, y, floor


def _descend(rng, x, y, floor, lrs, batch, epochs) -> np.ndarray:
    """Excess training loss, (rates, problems), after ``epochs`` x n example-gradients in
    batches of ``batch`` drawn with replacement (the full set: GD); every rate sees the same
    draws."""
    p, n, d = x.shape
    w = np.zeros((len(lrs), p, d))
    rows = np.arange(p)[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(epochs * n // batch):
            xb, yb = (
                (x, y)
                if batch >= n
                else (lambda i: (x[rows, i], y[rows, i]))(rng.integers(0, n, (p, batch)))
            )
            resid = np.einsum("pbd,rpd->rpb", xb, w) - yb
            w = w - lrs[:, None, None] * np.einsum("pbd,rpb->rpd", xb, resid) / xb.shape[1]
        loss = np.mean((np.einsum("pnd,rpd->rpn", x, w) - y) ** 2, -1) / 2 - floor
    return np.where(np.isfinite(loss), loss, np.inf)


def sgd_against_gd(cfg: Config) -> dict:
    """Each arm's rate chosen on ``ls_tune_seeds`` separate problems (least median excess
    loss over the grid), then measured at that rate on ``ls_seeds`` other problems."""
    n, e = cfg.ls_examples, cfg.ls_epochs
    lrs = rate_grid(cfg.ls_rate_range, cfg.rates_per_decade)
    rng = np.random.default_rng(cfg.seed + 4)
    tune, test = _problems(rng, cfg.ls_tune_seeds, n), _problems(rng, cfg.ls_seeds, n)
    out = {"rates": lrs}
    for arm, batch in (("SGD", cfg.sgd_batch), ("GD", n)):
        draws = np.random.default_rng(cfg.seed + 40)  # the same draws for both arms' runs
        curve = np.median(_descend(draws, *tune, lrs, batch, e), 1)
        chosen = _chosen(curve, lrs)
        excess = _descend(draws, *test, lrs[chosen["index"], None], batch, e)[0]
        out[arm] = chosen | {"tuning_curve": curve, "excess": excess}
    return out


def sgd_cosines(cfg: Config) -> dict:
    """Cosine between each SGD step (batch ``sgd_batch``) and the full-batch descent direction
    along a run at lr 0.01: early (first 10% of steps) and late (last 20%)."""
    n, b = cfg.ls_examples, cfg.sgd_batch
    rng = np.random.default_rng(cfg.seed + 5)
    x, y, _ = _problems(rng, cfg.ls_seeds, n)
    p = x.shape[0]
    a, xy = np.einsum("pnd,pne->pde", x, x) / n, np.einsum("pnd,pn->pd", x, y) / n
    rows = np.arange(p)[:, None]
    w = np.zeros((p, x.shape[2]))
    cos = np.empty((p, cfg.cos_steps))
    for t in range(cfg.cos_steps):
        full = np.einsum("pde,pe->pd", a, w) - xy
        if b >= n:
            g = full
        else:
            i = rng.integers(0, n, (p, b))
            xb = x[rows, i]
            g = np.einsum("pbd,pb->pd", xb, np.einsum("pbd,pd->pb", xb, w) - y[rows, i]) / b
        norms = np.linalg.norm(g, axis=1) * np.linalg.norm(full, axis=1) + 1e-30
        cos[:, t] = np.einsum("pd,pd->p", g, full) / norms
        w = w - 0.01 * g
    t = cfg.cos_steps
    return {
        "early": cos[:, : t // 10].mean(1),
        "late": cos[:, -t // 5 :].mean(1),
        "all": cos.mean(1),
        "curve": cos.mean(0),
    }


# --- the note-003 rule: rates growing with curvature -------------------------------------------

TOL = 1e-6  # f must fall below this fraction of f(x0)


def _steps(h: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Exact steps until f_t = sum h_i (1 - r_i h_i)^(2t) / 2 falls below TOL x f_0 (x0 = 1),
    for rows of per-coordinate rates; -1 where a coordinate does not contract. Bisection on t
    in [0, 2^50]: f_t falls monotonically, and no contracting rule here needs 2^50 steps."""
    factor = (1 - rates * h) ** 2
    ok = (factor < 1).all(1)
    factor = np.where(ok[:, None], factor, 0.0)
    f0 = np.sum(h) / 2
    lo, hi = np.zeros(len(rates)), np.full(len(rates), 2.0**50)
    while np.any(lo < hi):
        mid = np.floor((lo + hi) / 2)
        done = np.sum(h * factor ** mid[:, None], 1) / 2 <= TOL * f0
        hi, lo = np.where(done, mid, hi), np.where(done, lo, mid + 1)
    return np.where(ok, lo, -1)


CURVATURE_RULES = {
    "single rate": lambda c, h: np.full_like(h, c),
    "rate ∝ curvature (note 003)": lambda c, h: c * h / h.max(),
    "rate ∝ 1/curvature (note 002)": lambda c, h: c / h,
}


def curvature_rules(cfg: Config) -> dict:
    """Each rule at its best scale from the grid: exact steps (no noise, so choosing the scale
    on the problem it is measured on favours no rule; each gets its best)."""
    h = np.geomspace(1.0, cfg.max_curvature, 20)
    scales = np.geomspace(1e-9, 10, 400)
    out = {}
    for name, rule in CURVATURE_RULES.items():
        steps = _steps(h, np.stack([rule(c, h) for c in scales]))
        steps = np.where(steps < 0, np.inf, steps)
        best = int(steps.argmin())
        out[name] = {
            "best_steps": int(steps[best]),
            "best_scale": float(scales[best]),
            "edge": best in (0, len(scales) - 1),
        }
    return out


# --- verdicts ----------------------------------------------------------------------------------


def claims(metrics: dict, cfg: Config) -> list[dict]:
    pen, wells, mom = metrics["penalty"], metrics["wells"], metrics["momentum"]
    sai, ls, cos, rules = metrics["saito"], metrics["ls"], metrics["cosines"], metrics["rules"]
    gap = _stats.paired_difference(pen["share_l1"], pen["share_l2"])
    small, large, full = (
        np.asarray(wells[str(b)], float) for b in (1, cfg.large_batch, cfg.examples)
    )
    runs = len(small)
    single = rules["single rate"]["best_steps"]
    note003 = rules["rate ∝ curvature (note 003)"]["best_steps"]
    adam_test = Test(
        "steps, Adam / better parent",
        "<",
        1.0,
        "the note's 'efficient': at most the better parent's steps",
        len(sai["Adam"]["tuned"]),
        paired=True,
        unit="random starts",
    )

    def adam_ratio(at):  # Adam's steps over the better parent's, start by start
        parents = np.minimum(sai["Momentum"][at], sai["AdaGrad"][at])
        return _stats.paired_ratio(sai["Adam"][at], parents)

    saito_evidence = {
        "rate grid": _grid_text(cfg.saito_rate_range, cfg.rates_per_decade),
        **{f"rate chosen, {k}": _rate_text(sai[k]) for k in SAITO_RATES},
        **{f"steps at the chosen rate, {k}": _stats.mean(sai[k]["tuned"]) for k in SAITO_RATES},
        **{f"Saito's rate, {k}": r for k, r in SAITO_RATES.items()},
    }
    ls_evidence = {
        "rate grid": _grid_text(cfg.ls_rate_range, cfg.rates_per_decade),
        "rate chosen, SGD": _rate_text(ls["SGD"]),
        "rate chosen, GD": _rate_text(ls["GD"]),
        "tuning": f"median excess loss over {cfg.ls_tune_seeds} separate problems",
        "excess loss, SGD": _stats.positive_mean(ls["SGD"]["excess"]),
        "excess loss, GD": _stats.positive_mean(ls["GD"]["excess"]),
    }
    batch_origin = (
        f"pre-stated effect size: {cfg.min_share_gap_batch:.0%} of runs, so that a "
        "few stray escapes are not taken for the effect"
    )
    return [
        claim(
            f"At the same training fit ({cfg.fit_loss_factor:g} x OLS's MSE), L2's largest "
            "weight component holds a smaller share of |w| than L1's, on 10 correlated features",
            gap,
            Test(
                "largest-component share, L1 - L2",
                ">",
                cfg.min_share_gap,
                f"pre-stated effect size: {cfg.min_share_gap:g} of |w|_1",
                len(pen["share_l1"]),
                paired=True,
                unit="random data sets",
            ),
            S["l2"],
            {
                "share, L2": _stats.mean(pen["share_l2"]),
                "share, L1": _stats.mean(pen["share_l1"]),
                "fit / target, L2": _stats.mean(pen["fit_l2"]),
                "fit / target, L1": _stats.mean(pen["fit_l1"]),
            },
            id="l2_smaller_largest_component",
        ),
        claim(
            f"Minibatch noise (batch 1 of {cfg.examples} examples whose tilts average to 0) "
            "takes SGD out of the shallow minimum of x cos(pi x) in most runs",
            _stats.proportion(int(small.sum()), runs),
            Test(
                "share of batch-1 runs that leave the shallow basin",
                ">",
                cfg.escape_share,
                "pre-stated: more often than not (as basins' escape_share)",
                runs,
                unit="runs",
            ),
            S["minibatch_escape"],
            {"share, full batch": _stats.proportion(int(full.sum()), runs)},
            id="minibatch_noise_escapes",
        ),
        claim(
            "With the whole data set as one batch the loss is fixed and GD stays in the shallow "
            "minimum that batch-1 SGD leaves",
            _stats.paired_difference(small, full),
            Test(
                "share left, batch 1 - full batch",
                ">",
                cfg.min_share_gap_batch,
                batch_origin,
                runs,
                paired=True,
                unit="runs",
            ),
            S["full_batch"],
            id="full_batch_stuck",
        ),
        claim(
            f"A large batch ({cfg.large_batch} of {cfg.examples}) leaves the shallow minimum "
            "less often than batch 1",
            _stats.paired_difference(small, large),
            Test(
                f"share left, batch 1 - batch {cfg.large_batch}",
                ">",
                cfg.min_share_gap_batch,
                batch_origin,
                runs,
                paired=True,
                unit="runs",
            ),
            S["large_batch"],
            {f"share left, batch {cfg.large_batch}": _stats.proportion(int(large.sum()), runs)},
            id="large_batch_stuck_more",
        ),
        claim(
            "Momentum (lr 0.05, beta 0.9) from random starts in [-1, 2] does not always reach "
            "the deeper minimum: some runs end in the shallow one",
            _stats.proportion(mom["at_shallow"], len(mom["ends"])),
            Test(
                "share of runs ending at the shallow minimum",
                ">",
                cfg.stuck_share,
                f"pre-stated: a non-negligible share, {cfg.stuck_share:.0%}",
                len(mom["ends"]),
                unit="random starts",
            ),
            S["momentum_global"],
            id="momentum_no_global_guarantee",
        ),
        claim(
            "On Saito's f = x^2/20 + y^2 from random starts, Adam reaches f < 1e-3 in fewer "
            "steps than the better of Momentum and AdaGrad, each at its own rate chosen on "
            "separate starts",
            adam_ratio("tuned"),
            adam_test,
            S["adam_parents"],
            saito_evidence,
            note=f"Runs that never reach 1e-3 count as {cfg.saito_steps + 1} steps; rates are "
            f"chosen on {cfg.saito_tune_starts} other starts (least geometric-mean steps; "
            "on a tie, the least rate). On this axis-aligned bowl AdaGrad at a large rate is "
            "close to Newton's method per coordinate (its first step fills the accumulator, "
            "after which its rate is about 1/curvature), so its steps flatten as the rate grows",
            also={"at Saito's settings (6.1.7)": (adam_ratio("source"), adam_test)},
            id="adam_beats_parents",
        ),
        claim(
            f"SGD's step (batch {cfg.sgd_batch}) points along the full gradient on average, and "
            "less so late in the run than early",
            [_stats.paired_difference(cos["early"], cos["late"]), _stats.mean(cos["all"])],
            [
                Test(
                    "mean cosine, early - late",
                    ">",
                    cfg.min_cos_drop,
                    f"pre-stated effect size: {cfg.min_cos_drop:g}",
                    len(cos["all"]),
                    paired=True,
                    unit="random problems",
                ),
                Test(
                    "mean cosine over the run",
                    ">",
                    0.0,
                    "the sign: the same direction on average",
                    len(cos["all"]),
                    unit="random problems",
                ),
            ],
            S["sgd_direction"],
            {"early": _stats.mean(cos["early"]), "late": _stats.mean(cos["late"])},
            id="sgd_direction_early_late",
        ),
        claim(
            f"Per example-gradient SGD (batch {cfg.sgd_batch}) is worth it: after "
            f"{cfg.ls_epochs} epochs of example-gradients its excess training loss is below "
            f"{cfg.max_loss_ratio:g} x GD's, each at its rate chosen on separate problems",
            _stats.paired_ratio(ls["SGD"]["excess"], ls["GD"]["excess"]),
            Test(
                "excess loss, SGD / GD",
                "<",
                cfg.max_loss_ratio,
                "pre-stated effect size: half",
                len(ls["SGD"]["excess"]),
                paired=True,
                unit="random problems",
            ),
            S["sgd_worth"],
            ls_evidence,
            note="The notes give no rates, so there are no source settings: both arms run "
            "at their own tuned rate only",
            id="sgd_cheaper_than_gd",
        ),
        claim(
            f"On a diagonal quadratic with curvatures 1..{cfg.max_curvature:g}, rates growing "
            "with curvature (note 003: small where flat, large where steep) at their best scale "
            f"reach 1e-6 within {cfg.max_steps_ratio:g} x the steps of the best single rate",
            _stats.exact(note003 / single, "deterministic: exact step counts (closed form)"),
            Test(
                "steps, rate ∝ curvature / best single rate",
                "<",
                cfg.max_steps_ratio,
                "pre-stated margin: a factor 2 of the plain rate",
                0,
            ),
            S["flat_small_lr"],
            {
                "compared": "steps until f = sum h_i x_i^2 / 2 falls below 1e-6 x f(x0), "
                "x0 = (1, ..., 1), 20 curvatures h log-spaced over 1.."
                f"{cfg.max_curvature:g}; per coordinate, GD contracts x_i by (1 - r_i h_i) "
                "each step, so the count is exact (bisection on t, no cap)",
                "rules": "rate r_i = c (single), c h_i / max h (note 003), c / h_i (note 002)",
                "scale grid": "c: 400 log-spaced values over 1e-9..10; each rule at its best "
                "(no noise: choosing c on the problem it is measured on favours no rule)",
                "either way": "ratio < 2 reproduces, > 2 does not; with equal curvatures "
                "every rule is the single rate (ratio 1, reproduced)",
                **{f"steps, {k}": v["best_steps"] for k, v in rules.items()},
                **{f"best scale, {k}": v["best_scale"] for k, v in rules.items()},
                "best scale at the grid's edge": any(v["edge"] for v in rules.values()),
            },
            note="Stability needs rate x curvature < 2 on every axis, so a rate that grows "
            "with curvature must be tiny on the flat axes",
            id="curvature_growing_rates",
        ),
    ]


def _grid_text(low_high: tuple[float, float], per_decade: int) -> str:
    low, high = low_high
    return f"{len(rate_grid(low_high, per_decade))} log-spaced rates over {low:g}..{high:g}"


def _rate_text(arm: dict) -> str:
    where = "inside the grid"
    if arm["edge"]:
        where = "its best score is also reached at the grid's edge"
    return f"{arm['rate']:.3g} ({where})"


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, axes = plt.subplots(2, 4, figsize=(20, 8.5), layout="constrained")
    pen = metrics["penalty"]
    ax = axes[0, 0]
    w = np.arange(10)
    ax.bar(w - 0.2, np.abs(pen["weights_l2"]), 0.4, label="L2 (ridge)")
    ax.bar(w + 0.2, np.abs(pen["weights_l1"]), 0.4, label=f"{cfg.l1_arm.upper()} arm")
    ax.set(xlabel="feature", ylabel="|w|", title="one data set: weights at the same fit")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    wells = metrics["wells"]
    bs = [str(b) for b in (1, cfg.large_batch, cfg.examples)]
    ax.bar([f"batch {b}" for b in bs], [np.mean(wells[b]) for b in bs])
    ax.axhline(cfg.escape_share, color="r", ls=":")
    ax.set(
        ylabel="share of runs leaving the shallow basin",
        title=f"finite-sum x cos(pi x), noise scale {cfg.noise_scale:g}",
    )
    ax = axes[0, 2]
    mom = metrics["momentum"]
    ax.scatter(mom["starts"], mom["ends"], s=6)
    ax.axhline(SHALLOW, color="r", ls=":", label="shallow minimum")
    ax.set(xlabel="start", ylabel="end", title=f"momentum, surface {cfg.surface}")
    ax.legend(fontsize=8)
    ax = axes[0, 3]
    sai = metrics["saito"]
    for k, rate in SAITO_RATES.items():
        (line,) = ax.loglog(sai["rates"], sai[k]["tuning_curve"], ".-", label=k)
        ax.plot(sai[k]["rate"], np.exp(np.log(sai[k]["tuned"]).mean()), "o", color=line.get_color())
        ax.plot(rate, np.exp(np.log(sai[k]["source"]).mean()), "*", ms=12, color=line.get_color())
    ax.set(
        xlabel="learning rate",
        ylabel="steps to f < 1e-3 (geometric mean)",
        title="Saito's bowl: tuning curves; o chosen, * Saito's rate (measured starts)",
    )
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    cos = metrics["cosines"]
    c = np.asarray(cos["curve"])
    k = max(1, len(c) // 100)
    ax.plot(np.convolve(c, np.ones(k) / k, "valid"))
    ax.set(
        xlabel="step",
        ylabel="cos(SGD step, full gradient), mean over problems",
        title=f"SGD batch {cfg.sgd_batch}: direction along the run",
    )
    ax = axes[1, 1]
    ls = metrics["ls"]
    for arm in ("SGD", "GD"):
        ax.loglog(
            ls["rates"], ls[arm]["tuning_curve"], "o-", label=f"{arm}: chosen {ls[arm]['rate']:.3g}"
        )
    start = max(ls[arm]["tuning_curve"][0] for arm in ("SGD", "GD"))  # about the loss at w = 0
    ax.set_ylim(top=100 * start)  # a diverging rate's 1e40 would flatten the rest
    ax.set(
        xlabel="learning rate",
        ylabel="excess loss (median, tuning problems)",
        title=f"{cfg.ls_epochs} epochs of example-gradients",
    )
    ax.legend(fontsize=8)
    ax = axes[1, 2]
    rules = metrics["rules"]
    ax.bar(range(3), [v["best_steps"] for v in rules.values()])
    ax.set_xticks(range(3), [k.replace(" (", "\n(") for k in rules], fontsize=8)
    ax.set(
        yscale="log",
        ylabel="steps to 1e-6 x f(x0), each rule at its best scale",
        title=f"per-coordinate rules, curvatures 1..{cfg.max_curvature:g}",
    )
    ax = axes[1, 3]
    ax.hist([pen["share_l2"], pen["share_l1"]], bins=15, label=["L2", cfg.l1_arm.upper()])
    ax.set(xlabel="largest component / |w|_1", title="share of the largest component")
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, "toy_dynamics")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics = {
        "penalty": penalty_fits(cfg),
        "wells": finite_sum_runs(cfg),
        "momentum": momentum_starts(cfg),
        "saito": saito_steps(cfg),
        "ls": sgd_against_gd(cfg),
        "cosines": sgd_cosines(cfg),
        "rules": curvature_rules(cfg),
    }
    return {
        "metrics": metrics,
        "claims": claims(metrics, cfg),
        "figures": [draw(metrics, cfg, out_dir)],
    }
