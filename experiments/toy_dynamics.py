"""Small optimisation runs on synthetic problems, one per sentence of the notes.

* L2 against L1 on ten correlated features, each penalty set so the fit gives up the same
  training MSE: the share of |w| held by the largest component (L2 spreads, L1 concentrates).
* Minibatch noise: per-example losses f_i(x) = x cos(pi x) + a_i x whose tilts a_i average to
  0, so the full-batch loss is d2l's x cos(pi x); SGD from its shallow minimum at batch 1, at a
  large batch and at the full batch (plain GD): the share of runs that leave the basin.
* Momentum (lr 0.05, beta 0.9) from random starts in [-1, 2] on x cos(pi x): the share that
  ends in the shallow minimum.
* Saito's bowl x^2/20 + y^2 from random starts at Saito's rates: Adam's steps to f < 1e-3
  against the better of its parents, Momentum and AdaGrad.
* Least squares (10 features, noisy labels): SGD against GD for the same number of
  example-gradients, each at its rate chosen on separate problems; the cosine between SGD's
  step and the full gradient, early and late.
* A diagonal quadratic with curvatures 1..1000: per-coordinate rates growing with curvature
  (note 003's rule) against the best single rate, steps to 1e-6 (exact, closed form per step).

Sabotages: ``l1_arm=l2``, ``noise_scale=0``, ``surface=single_well``, ``adam_lr=0.003``,
``sgd_batch`` = the number of examples, ``max_curvature=1``.
"""

from __future__ import annotations

import dataclasses
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
    "quick uses fewer seeds, runs and steps than the defaults (same rates and thresholds): "
    "wider intervals, and the escapes have 600 steps instead of 1,000"
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
    saito_steps: int = 2000
    adam_lr: float = param(0.3, low=0.0, low_open=True, help="Saito's 0.3")
    # SGD against GD on least squares
    ls_seeds: int = 10
    ls_examples: int = 500
    ls_epochs: int = 3
    sgd_batch: int = param(1, low=1, help="sabotage: the number of examples (SGD becomes GD)")
    max_loss_ratio: float = 0.5
    cos_steps: int = 2000
    min_cos_drop: float = 0.2
    # the note-003 rule on a diagonal quadratic
    max_curvature: float = param(1000.0, low=1.0, help="1: all curvatures equal (sabotage)")
    max_steps_ratio: float = 2.0

    @classmethod
    def quick(cls) -> Config:
        return cls(
            penalty_seeds=10,
            well_runs=150,
            well_steps=600,
            saito_starts=48,
            ls_seeds=8,
            cos_steps=1500,
        )

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            penalty_seeds=6,
            well_runs=60,
            momentum_runs=200,
            saito_starts=16,
            ls_seeds=5,
            ls_examples=200,
            cos_steps=1000,
        )


# --- L2 against L1: how much of the weight sits in the largest component --------------------


def penalty_fits(cfg: Config) -> dict:
    """Per seed, ridge and lasso fits at the penalties that give up ``fit_loss_factor`` x the
    OLS training MSE; the share of |w| in the largest component of each."""
    lams = jnp.geomspace(1e-4, 10.0, 40)

    def one(key):
        kz, ke, kn = jax.random.split(key, 3)
        n, d = 100, 10
        z = jax.random.normal(kz, (n, 1))
        x = z + 0.5 * jax.random.normal(ke, (n, d))
        y = 3 * z[:, 0] + 0.5 * jax.random.normal(kn, (n,))
        a, b = x.T @ x / n, x.T @ y / n

        def mse(w):
            return jnp.mean((x @ w - y) ** 2)

        ridge = jax.vmap(lambda lam: jnp.linalg.solve(a + lam * jnp.eye(d), b))(lams)
        step = 1 / jnp.linalg.eigvalsh(a).max()

        def lasso(lam):  # ISTA on mse/2 + lam |w|_1
            def body(w, _):
                w = w - step * (a @ w - b)
                return jnp.sign(w) * jnp.maximum(jnp.abs(w) - step * lam, 0.0), None

            return jax.lax.scan(body, jnp.zeros(d), None, length=1000)[0]

        sparse = jax.vmap(lasso)(lams) if cfg.l1_arm == "l1" else ridge
        target = cfg.fit_loss_factor * mse(jnp.linalg.solve(a, b))

        def at_target(ws):
            w = ws[jnp.argmin(jnp.abs(jax.vmap(mse)(ws) - target))]
            return jnp.abs(w).max() / jnp.abs(w).sum(), mse(w) / target, w

        return at_target(ridge), at_target(sparse)

    keys = jax.random.split(jax.random.key(cfg.seed), cfg.penalty_seeds)
    (s2, f2, w2), (s1, f1, w1) = jax.jit(jax.vmap(one))(keys)
    return {
        "share_l2": np.asarray(s2),
        "share_l1": np.asarray(s1),
        "fit_l2": np.asarray(f2),
        "fit_l1": np.asarray(f1),
        "weights_l2": np.asarray(w2[0]),
        "weights_l1": np.asarray(w1[0]),
    }


# --- minibatch noise on a finite-sum double well ----------------------------------------------

MAXIMA = (-1.0904, 0.2739, 2.0491)  # walls of f(x) = x cos(pi x) on [-1, 2] (as in basins)
SHALLOW, DEEP = -0.2739, 1.0904


def basin(x):
    return jnp.searchsorted(jnp.asarray(MAXIMA), x)


def finite_sum_runs(cfg: Config) -> dict:
    """f_i(x) = x cos(pi x) + a_i x with sum a_i = 0, so the mean is d2l's x cos(pi x): SGD at
    each batch size from the shallow minimum; whether a run ever leaves its basin."""
    n = cfg.examples

    def tilts(key):
        a = jax.random.normal(key, (n,))
        return cfg.noise_scale * (a - a.mean()) / a.std()

    def run(key, batch):
        ka, kr = jax.random.split(key)
        a = tilts(ka)

        def body(x, k):
            g = jax.grad(lambda x: x * jnp.cos(jnp.pi * x))(x) + batch_mean(a, k, batch)
            x = x - cfg.well_lr * g
            return x, basin(x)

        x, seen = jax.lax.scan(body, jnp.float32(SHALLOW), jax.random.split(kr, cfg.well_steps))
        return jnp.any(seen != 1)

    keys = jax.random.split(jax.random.key(cfg.seed + 1), cfg.well_runs)
    out = {}
    for b in (1, cfg.large_batch, n):  # the same keys (tilts, draws) for every batch size
        out[str(b)] = np.asarray(jax.jit(jax.vmap(lambda k, b=b: run(k, b)))(keys))
    return out


# --- momentum from random starts ---------------------------------------------------------------


def momentum_starts(cfg: Config) -> dict:
    def f(x):
        if cfg.surface == "single_well":
            return (x - DEEP) ** 2
        return x * jnp.cos(jnp.pi * x)

    x0 = jax.random.uniform(
        jax.random.key(cfg.seed + 2), (cfg.momentum_runs,), minval=-1.0, maxval=2.0
    )
    tx = jn.sgd(0.05, momentum=0.9)
    ends = jax.jit(jax.vmap(lambda x: trajectory(tx, f, x, 1000)[-1]))(x0)
    ends = np.asarray(ends)
    return {
        "starts": np.asarray(x0),
        "ends": ends,
        "at_shallow": int(np.sum(np.abs(ends - SHALLOW) < 0.05)),
    }


# --- Adam against momentum and AdaGrad on Saito's bowl -----------------------------------------


def saito_steps(cfg: Config) -> dict:
    def f(p):
        return p[0] ** 2 / 20 + p[1] ** 2

    rng = np.random.default_rng(cfg.seed + 3)
    size = (cfg.saito_starts, 2)
    mag = np.stack([rng.uniform(4, 10, size[0]), rng.uniform(1, 3, size[0])], 1)
    starts = jnp.asarray(mag * rng.choice([-1.0, 1.0], size), jnp.float32)
    methods = {
        "Momentum": jn.sgd(0.1, momentum=0.9),
        "AdaGrad": jn.adagrad(1.5, convention="pytorch"),
        "Adam": jn.adam(cfg.adam_lr),
    }
    out = {}
    for name, tx in methods.items():
        losses = jax.jit(jax.vmap(lambda p, tx=tx: trajectory(tx, f, p, cfg.saito_steps, f)))(
            starts
        )
        below = np.asarray(losses) < 1e-3
        out[name] = np.where(below.any(1), below.argmax(1), cfg.saito_steps + 1).astype(float)
    return out


# --- SGD against GD on least squares -----------------------------------------------------------


def batch_mean(v: jax.Array, key: jax.Array, batch: int) -> jax.Array:
    """Mean of ``v`` over a random batch: all of it at the full size, one random entry at
    size 1, else a batch drawn without replacement."""
    n = v.shape[0]
    if batch >= n:
        return v.mean(0)
    if batch == 1:
        return v[jax.random.randint(key, (), 0, n)]
    return v[jax.random.permutation(key, n)[:batch]].mean(0)


def _problem(key, n):
    kx, kw, ke = jax.random.split(key, 3)
    x = jax.random.normal(kx, (n, 10))
    y = x @ jax.random.normal(kw, (10,)) + 0.5 * jax.random.normal(ke, (n,))
    best = jnp.linalg.lstsq(x, y)[0]
    return x, y, jnp.mean((x @ best - y) ** 2) / 2


def _sgd_excess(key, lr, batch, epochs, n):
    """Excess training loss after ``epochs`` x n example-gradients with batches of ``batch``."""
    x, y, floor = _problem(key, n)
    steps = epochs * n // batch

    def body(w, k):
        if batch >= n:
            g = x.T @ (x @ w - y) / n
        else:  # examples drawn with replacement
            idx = jax.random.randint(k, (batch,), 0, n)
            g = x[idx].T @ (x[idx] @ w - y[idx]) / batch
        return w - lr * g, None

    w, _ = jax.lax.scan(body, jnp.zeros(10), jax.random.split(jax.random.fold_in(key, 9), steps))
    return jnp.mean((x @ w - y) ** 2) / 2 - floor


def sgd_against_gd(cfg: Config) -> dict:
    n, e = cfg.ls_examples, cfg.ls_epochs
    lrs = jnp.geomspace(1e-3, 1.0, 9)
    tune = jax.random.split(jax.random.key(cfg.seed + 100), 5)  # rates chosen on these
    test = jax.random.split(jax.random.key(cfg.seed + 4), cfg.ls_seeds)
    out = {"rates": np.asarray(lrs)}
    for arm, batch in (("SGD", cfg.sgd_batch), ("GD", n)):
        run = jax.jit(
            jax.vmap(
                jax.vmap(lambda k, lr, b=batch: _sgd_excess(k, lr, b, e, n), (0, None)), (None, 0)
            )
        )
        tuned = np.asarray(run(tune, lrs))  # (rates, tuning problems)
        tuned = np.where(np.isfinite(tuned), tuned, np.inf)
        best = int(np.argmin(np.median(tuned, 1)))
        out[arm] = {
            "rate": float(lrs[best]),
            "tuning_curve": np.median(tuned, 1),
            "excess": np.asarray(run(test, lrs[best : best + 1]))[0],
        }
    return out


def sgd_cosines(cfg: Config) -> dict:
    """Cosine between each SGD step (batch ``sgd_batch``) and the full-batch descent direction
    along a run at lr 0.01: early (first 10% of steps) and late (last 20%)."""
    n = cfg.ls_examples

    def one(key):
        x, y, _ = _problem(key, n)

        def body(w, k):
            per = x * (x @ w - y)[:, None]  # per-example gradients
            g, full = batch_mean(per, k, cfg.sgd_batch), per.mean(0)
            cos = g @ full / (jnp.linalg.norm(g) * jnp.linalg.norm(full) + 1e-30)
            return w - 0.01 * g, cos

        return jax.lax.scan(body, jnp.zeros(10), jax.random.split(key, cfg.cos_steps))[1]

    keys = jax.random.split(jax.random.key(cfg.seed + 5), cfg.ls_seeds)
    cos = np.asarray(jax.jit(jax.vmap(one))(keys))
    t = cfg.cos_steps
    return {
        "early": cos[:, : t // 10].mean(1),
        "late": cos[:, -t // 5 :].mean(1),
        "all": cos.mean(1),
        "curve": cos.mean(0),
    }


# --- the note-003 rule: rates growing with curvature -------------------------------------------


def _steps(h, rates, tol=1e-6, cap=100_000):
    factor = (1 - rates * h) ** 2
    if np.any(factor >= 1):
        return cap + 1  # a coordinate does not contract: never reached
    f0 = np.sum(h) / 2
    # f_t = sum h_i factor_i^t / 2: bisect on t (it falls monotonically)
    lo, hi = 0, cap + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if np.sum(h * factor**mid) / 2 <= tol * f0:
            hi = mid
        else:
            lo = mid + 1
    return lo


def curvature_rules(cfg: Config) -> dict:
    h = np.geomspace(1.0, cfg.max_curvature, 20)
    scales = np.geomspace(1e-9, 10, 400)
    rules = {
        "single rate": lambda c: np.full_like(h, c),
        "rate ∝ curvature (note 003)": lambda c: c * h / h.max(),
        "rate ∝ 1/curvature (note 002)": lambda c: c / h,
    }
    out = {}
    for name, rule in rules.items():
        steps = np.array([_steps(h, rule(c)) for c in scales])
        out[name] = {"best_steps": int(steps.min()), "best_scale": float(scales[steps.argmin()])}
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
    parents = np.minimum(sai["Momentum"], sai["AdaGrad"])
    single = rules["single rate"]["best_steps"]
    note003 = rules["rate ∝ curvature (note 003)"]["best_steps"]
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
            "On Saito's f from random starts at Saito's rates, Adam reaches f < 1e-3 in fewer "
            "steps than the better of Momentum and AdaGrad",
            _stats.paired_ratio(sai["Adam"], parents),
            Test(
                "steps, Adam / better parent",
                "<",
                1.0,
                "the note's 'efficient': at most the better parent's steps",
                len(parents),
                paired=True,
                unit="random starts",
            ),
            S["adam_parents"],
            {k: _stats.mean(v) for k, v in sai.items()},
            note=f"runs that never reach 1e-3 count as {cfg.saito_steps + 1} steps",
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
                cfg.ls_seeds,
                paired=True,
                unit="random problems",
            ),
            S["sgd_worth"],
            {"rate, SGD": ls["SGD"]["rate"], "rate, GD": ls["GD"]["rate"]},
            id="sgd_cheaper_than_gd",
        ),
        claim(
            f"On a diagonal quadratic with curvatures 1..{cfg.max_curvature:g}, rates growing "
            "with curvature (note 003: small where flat, large where steep) at their best scale "
            f"reach 1e-6 within {cfg.max_steps_ratio:g} x the steps of the best single rate",
            _stats.exact(note003 / single),
            Test(
                "steps, rate ∝ curvature / best single rate",
                "<",
                cfg.max_steps_ratio,
                "pre-stated margin: a factor 2 of the plain rate",
                0,
            ),
            S["flat_small_lr"],
            {k: v["best_steps"] for k, v in rules.items()},
            note="stability needs rate x curvature < 2 on every axis, so a rate that grows "
            "with curvature must be tiny on the flat axes",
            id="curvature_growing_rates",
        ),
    ]


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
    ax.boxplot(list(sai.values()), tick_labels=list(sai))
    ax.set(yscale="log", ylabel="steps to f < 1e-3", title="Saito's bowl, random starts")
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
        ylabel="steps to 1e-6 (cap 1e5)",
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
