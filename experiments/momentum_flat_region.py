"""Momentum on plateaus and past shallow minima, against GD at its effective step; Nesterov's
look-ahead against heavy-ball overshoot.

Heavy-ball momentum with decay beta and rate lr moves, on a steady slope, like GD at the rate
lr/(1-beta): a 10x larger step at beta 0.9. So "momentum crosses where GD stalls" says little
unless momentum also beats GD at lr/(1-beta). Every momentum claim here is decided against that
control, paired over random starting points (one seed each):

* a tilted double well f(x) = x^4/4 - x^2/2 - 0.2 x (a shallow minimum at x = -0.88 behind a
  barrier at -0.21, the deep one at 1.09), from starts uniform left of the shallow minimum:
  the share of runs that end in the deep minimum;
* a plateau f(x) = -tanh(x) - tanh(x - 6) (+ a wall past x = 8), from starts on its left slope:
  the steps to reach the far side x = 6;
* Nesterov against heavy ball on (x^2 + kappa y^2)/2 at lr 1/L, over random condition numbers
  kappa (log-uniform) and random start directions: the total overshoot past the minimum.

Regime maps sweep beta; ``momentum=0`` (the sabotage) turns momentum into plain GD.
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
from jaxopt_notes.experiments._common import save_figure, trajectory
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn

SUMMARY = (
    "momentum vs GD at its effective step lr/(1-beta) on a double well and a plateau; "
    "Nesterov vs heavy-ball overshoot over random condition numbers"
)
DATA = (
    "synthetic functions with random starting points: a tilted double well, a tanh plateau, "
    "2-d quadratics with random condition numbers (no data set)"
)

SHALLOW, BARRIER, DEEP = -0.8789, -0.2091, 1.0880  # critical points of double_well
NEVER = 10**6  # steps-to-cross of a run that never crossed (capped at budget + 1 in claims)


@dataclasses.dataclass(frozen=True)
class Config:
    momentum: float = param(0.9, low=0.0, high=1.0, high_open=True, help="0: sabotage")
    nesterov: bool = param(True, help="False: sabotage, the Nesterov arm is heavy ball")
    steps: int = 1000
    well_lr: float = 0.05
    well_starts: tuple = (-2.5, -1.2)  # starts uniform in this range, left of the shallow min
    plateau_lr: float = 0.5
    plateau_starts: tuple = (-3.0, -0.5)  # on the plateau's left slope
    seeds: int = 256  # random starts for the double well and the plateau
    kappa_range: tuple = (10.0, 1000.0)  # condition numbers, log-uniform
    valley_seeds: int = 64
    valley_steps: int = 1000
    betas: tuple = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)  # the regime maps
    # stated tests
    deep_gain: float = param(0.1, low=0.0, high=1.0, help="share of starts, pre-stated")
    cross_ratio: float = param(0.8, low=0.0, low_open=True, high=1.0)
    same_lr_cross_ratio: float = param(0.5, low=0.0, low_open=True, high=1.0)
    overshoot_ratio: float = param(0.9, low=0.0, low_open=True, high=1.0)
    seed: int = 0

    def validate(self) -> None:
        for name in ("well_starts", "plateau_starts", "kappa_range"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"`{name}` must be (low, high) with low < high, got {lo, hi}")
        if self.well_starts[1] >= SHALLOW:
            raise ValueError(f"`well_starts` must lie left of {SHALLOW}, got {self.well_starts}")
        if self.kappa_range[0] < 1:
            raise ValueError(f"`kappa_range` must be >= 1, got {self.kappa_range}")
        if any(b >= 1 for b in self.betas):
            raise ValueError(f"`betas` must be < 1, got {self.betas}")

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=128, valley_seeds=32)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=96, valley_seeds=12, steps=500, valley_steps=400, betas=(0.5, 0.9))


QUICK_NOTE = (
    "Quick draws 128 starts instead of 256 (and 32 valleys instead of 64): wider intervals, "
    "the same runs; an inconclusive verdict there may resolve at the full settings."
)


def double_well(x):
    return x**4 / 4 - x**2 / 2 - 0.2 * x


def plateau(x):
    return -jnp.tanh(x) - jnp.tanh(x - 6) + 0.5 * jnp.maximum(x - 8, 0) ** 2


def heavy_ball(lr, beta, nesterov: bool = False):
    """Momentum from its links, so that lr and beta may be traced (vmapped over)."""
    return jn.chain(jn.trace(beta, nesterov), jn.scale_by_learning_rate(lambda _: lr))


def beta_grid(cfg: Config) -> np.ndarray:
    return np.unique(np.asarray((*cfg.betas, cfg.momentum), np.float32))


def arms(cfg: Config, lr: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(lrs, betas) of each arm: momentum at every beta, GD at lr/(1-beta), GD at lr."""
    b = beta_grid(cfg)
    zero = np.zeros_like(b)
    return {
        "momentum": (np.full_like(b, lr), b),
        "GD at lr/(1-beta)": (lr / (1 - b), zero),
        "GD at lr": (np.full_like(b, lr), zero),
    }


def run_arms(f, cfg: Config, lr: float, x0: jax.Array, record) -> dict[str, np.ndarray]:
    """``record`` of every iterate, (betas, starts, steps + 1), all arms in one program."""
    spec = arms(cfg, lr)
    lrs = np.concatenate([v[0] for v in spec.values()])
    bs = np.concatenate([v[1] for v in spec.values()])

    def one(a, b, x):
        return trajectory(heavy_ball(a, b), f, x, cfg.steps, record)

    run = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, None, 0)), in_axes=(0, 0, None)))
    out = np.asarray(run(lrs.astype(np.float32), bs.astype(np.float32), x0))
    return dict(zip(spec, np.split(out, len(spec)), strict=True))


def starts(rng: np.random.Generator, lo_hi: tuple, n: int) -> np.ndarray:
    return rng.uniform(*lo_hi, n).astype(np.float32)


def settled(ok: np.ndarray) -> np.ndarray:
    """Along the last axis, the first step from which ``ok`` holds to the end; NEVER if not."""
    steps = ok.shape[-1]
    last_bad = steps - 1 - np.argmax(~ok[..., ::-1], axis=-1)
    return np.where(ok.all(-1), 0, np.where(ok[..., -1], last_bad + 1, NEVER))


def flat_measures(cfg: Config) -> dict:
    rng = np.random.default_rng(cfg.seed)
    xw = starts(rng, cfg.well_starts, cfg.seeds)
    finals = {k: v[..., -1] for k, v in run_arms(double_well, cfg, cfg.well_lr, xw, None).items()}
    xp = starts(rng, cfg.plateau_starts, cfg.seeds)
    paths = run_arms(plateau, cfg, cfg.plateau_lr, xp, None)
    crossed = {
        k: np.where((v >= 6).any(-1), np.argmax(v >= 6, axis=-1), NEVER) for k, v in paths.items()
    }
    stayed = {k: settled(v >= 6) for k, v in paths.items()}
    betas = beta_grid(cfg)
    deep = {k: (np.nan_to_num(v, nan=-np.inf) > BARRIER).astype(float) for k, v in finals.items()}
    return {
        "betas": betas,
        "deep": deep,  # (betas, starts): 1 where the run ended past the barrier
        "diverged": {k: (~np.isfinite(v)).astype(float) for k, v in finals.items()},
        "steps_to_cross": crossed,  # (betas, starts): first step at x >= 6; NEVER: not reached
        "steps_to_stay": stayed,  # from this step on x >= 6 (a run may bounce off the wall)
        "well_starts": np.asarray(xw),
        "plateau_starts": np.asarray(xp),
        "plateau_example": {
            k: v[list(betas).index(np.float32(cfg.momentum)), 0] for k, v in paths.items()
        },
    }


def valley_runs(cfg: Config) -> dict:
    """Heavy ball and Nesterov at lr = 1/kappa over random kappas and start directions."""
    rng = np.random.default_rng(cfg.seed + 1)
    kappa = (10 ** rng.uniform(*np.log10(cfg.kappa_range), cfg.valley_seeds)).astype(np.float32)
    angle = rng.uniform(0.0, 2 * np.pi, cfg.valley_seeds)
    x0 = np.stack([np.cos(angle), np.sin(angle)], 1).astype(np.float32)

    def one(beta, k, p0, nesterov):
        f = lambda p: 0.5 * (p[0] ** 2 + k * p[1] ** 2)  # noqa: E731
        ps = trajectory(heavy_ball(1.0 / k, beta, nesterov), f, p0, cfg.valley_steps)
        past = jnp.maximum(-ps * jnp.sign(p0), 0.0)  # how far beyond the minimum, per axis
        return past.sum(), past[:, 1].max()

    out = {}
    betas = beta_grid(cfg)
    for name, nest in (("heavy ball", False), ("Nesterov", cfg.nesterov)):
        run = jax.jit(
            jax.vmap(
                jax.vmap(lambda b, k, p, n=nest: one(b, k, p, n), in_axes=(None, 0, 0)),
                in_axes=(0, None, None),
            )
        )
        total, first_y = (np.asarray(a, np.float64) for a in run(betas, kappa, x0))
        out[name] = {"total_overshoot": total, "largest_y_overshoot": first_y}
    out["kappa"], out["abs_y0"] = np.asarray(kappa), np.abs(np.asarray(x0[:, 1]))
    return out


def valley_example(cfg: Config, kappa: float = 100.0) -> dict[str, np.ndarray]:
    f = lambda p: 0.5 * (p[0] ** 2 + kappa * p[1] ** 2)  # noqa: E731
    x0 = np.full(2, 1 / np.sqrt(2), np.float32)
    out = {}
    for name, nest in (("heavy ball", False), ("Nesterov", cfg.nesterov)):
        tx = heavy_ball(1.0 / kappa, cfg.momentum, nest)
        out[name] = np.asarray(jax.jit(lambda x, t=tx: trajectory(t, f, x, 150))(x0))
    return out


def measure(cfg: Config) -> dict:
    flat = flat_measures(cfg)
    valley = valley_runs(cfg)
    return {**flat, "valley": valley}


def _src(note: str, section: str, quote: str, english: str, reference: str) -> Source:
    return Source(note, section, quote, english, reference)


INERTIA = _src(
    "003_9f3980f7ef3a062d.txt",
    "Momentum",
    "设想，在plateau或者local minima或者saddle point"
    "鞍点附近，当前的原始梯度为0或接近0，但是还有momentum的惯性，同样可以进行参数的更新。",
    "Near a plateau, a local minimum or a saddle point the raw gradient is zero or nearly "
    "so, but momentum's inertia still updates the parameters.",
    "Polyak 1964; Goodfellow et al., Deep Learning, sec. 8.3.2",
)
LOOK_AHEAD = _src(
    "001_4509a285741226d3.txt",
    "(untitled lecture notes; the passage after the momentum figures)",
    "先按照速度的方向前进，然后在终点处计算梯度，这可以帮助模型提前感知到坡度的平缓，避免增加的梯度较大导致偏离最低点",
    "First move along the velocity, then compute the gradient at the end point: this lets "
    "the model sense the slope ahead and avoids overshooting the lowest point.",
    "Sutskever et al., ICML 2013 (Nesterov momentum); CS231n lecture 7",
)


def _ratio(a: np.ndarray, b: np.ndarray) -> _stats.Estimate:
    """Paired ratio; zero or non-finite samples make it undefined (an inconclusive verdict)."""
    if np.all(np.isfinite(a)) and np.all(np.isfinite(b)) and np.all(a > 0) and np.all(b > 0):
        return _stats.paired_ratio(a, b)
    return _stats.Estimate(np.nan, np.nan, np.nan, len(a), np.nan, "undefined: a zero sample")


def _at(metrics: dict, cfg: Config) -> int:
    betas = np.asarray(metrics["betas"], np.float32)
    return int(np.argmin(np.abs(betas - np.float32(cfg.momentum))))


def claims(metrics: dict, cfg: Config) -> list[dict]:
    i = _at(metrics, cfg)
    deep = {k: np.asarray(v, np.float64)[i] for k, v in metrics["deep"].items()}
    div = {k: float(np.mean(np.asarray(v)[i])) for k, v in metrics["diverged"].items()}
    cap = cfg.steps + 1  # a run that never crossed counts as the budget + 1 (favours it)
    cross, stay = (
        {k: np.minimum(np.asarray(v, np.float64)[i], cap) for k, v in metrics[name].items()}
        for name in ("steps_to_cross", "steps_to_stay")
    )
    valley = metrics["valley"]
    hb, nag = valley["heavy ball"], valley["Nesterov"]
    total = {
        k: np.asarray(v["total_overshoot"], np.float64)[i] for k, v in (("hb", hb), ("nag", nag))
    }
    first = {
        k: np.asarray(v["largest_y_overshoot"], np.float64)[i]
        for k, v in (("hb", hb), ("nag", nag))
    }
    expect = cfg.momentum * np.asarray(valley["abs_y0"], np.float64)
    n, b = cfg.seeds, cfg.momentum
    eff = cfg.well_lr / (1 - b)
    share = {k: _stats.proportion(int(v.sum()), len(v)) for k, v in deep.items()}
    return [
        claim(
            f"Momentum (lr {cfg.well_lr:g}, beta {b:g}) rolls through the shallow minimum of "
            "the double well more often than GD at the same rate and than GD at its effective "
            f"step lr/(1-beta) = {eff:.3g}, from the same random starts",
            [
                _stats.paired_difference(deep["momentum"], deep["GD at lr"]),
                _stats.paired_difference(deep["momentum"], deep["GD at lr/(1-beta)"]),
            ],
            [
                Test(
                    f"share ending in the deep minimum: momentum minus GD at lr {cfg.well_lr:g}",
                    ">",
                    cfg.deep_gain,
                    "pre-stated effect size: 10 more starts in 100",
                    n,
                    paired=True,
                ),
                Test(
                    f"share ending in the deep minimum: momentum minus GD at lr {eff:.3g}",
                    ">",
                    cfg.deep_gain,
                    "pre-stated effect size: 10 more starts in 100; the control "
                    "for momentum's larger effective step",
                    n,
                    paired=True,
                ),
            ],
            INERTIA,
            {
                **{f"share deep, {k}": v for k, v in share.items()},
                **{f"share diverged, {k}": v for k, v in div.items()},
            },
            note=(
                f"{div['GD at lr/(1-beta)']:.0%} of the control's runs diverged: its large "
                "step is unstable on the steep outer wall"
            )
            if div["GD at lr/(1-beta)"] > 0
            else "",
            id="shallow_minimum_beyond_step",
        ),
        claim(
            f"Momentum (lr {cfg.plateau_lr:g}, beta {b:g}) reaches the far side of the tanh "
            f"plateau in fewer steps than GD at the same rate and than GD at lr/(1-beta) = "
            f"{cfg.plateau_lr / (1 - b):.3g}, from the same random starts",
            [
                _ratio(cross["momentum"], cross["GD at lr"]),
                _ratio(cross["momentum"], cross["GD at lr/(1-beta)"]),
            ],
            [
                Test(
                    f"steps to cross: momentum / GD at lr {cfg.plateau_lr:g}",
                    "<",
                    cfg.same_lr_cross_ratio,
                    "pre-stated effect size: under half the steps",
                    n,
                    paired=True,
                ),
                Test(
                    f"steps to cross: momentum / GD at lr {cfg.plateau_lr / (1 - b):.3g}",
                    "<",
                    cfg.cross_ratio,
                    "pre-stated effect size: 20% fewer steps than the "
                    "control for the larger effective step",
                    n,
                    paired=True,
                ),
            ],
            INERTIA,
            {
                **{f"median steps to reach x = 6, {k}": np.median(v) for k, v in cross.items()},
                **{f"median steps until x stays >= 6, {k}": np.median(v) for k, v in stay.items()},
            },
            note="the test counts the first step at the far side x = 6. On a flat stretch "
            "the momentum buffer settles at g/(1-beta), i.e. GD at lr/(1-beta), but only after "
            "about 1/(1-beta) steps. The median steps until x stays >= 6 are in the table: a "
            "large-step run can reach the far side and bounce back off the wall at x = 8",
            id="plateau_beyond_step",
        ),
        claim(
            f"Nesterov's look-ahead overshoots the minimum less than heavy ball (beta {b:g}, "
            f"lr 1/L) on (x^2 + kappa y^2)/2, kappa log-uniform in "
            f"[{cfg.kappa_range[0]:g}, {cfg.kappa_range[1]:g}], random start directions",
            _ratio(total["nag"], total["hb"]),
            Test(
                "total overshoot past the minimum: Nesterov / heavy ball",
                "<",
                cfg.overshoot_ratio,
                "pre-stated effect size: at least 10% less",
                cfg.valley_seeds,
                paired=True,
            ),
            LOOK_AHEAD,
            {"nesterov": cfg.nesterov},
            id="nesterov_less_overshoot",
        ),
        check(
            "At lr 1/L the first overshoot along the stiff axis is the same for both, "
            "beta abs(y0) (heavy ball at step 2, Nesterov at step 1): Nesterov's gain is in the "
            "swings that follow, not the first kick",
            bool(
                np.allclose(first["hb"], expect, rtol=1e-3, atol=1e-6)
                and np.allclose(first["nag"], expect, rtol=1e-3, atol=1e-6)
            ),
            {
                "largest_y_overshoot_heavy_ball_max_error": float(
                    np.max(np.abs(first["hb"] - expect))
                ),
                "largest_y_overshoot_nesterov_max_error": float(
                    np.max(np.abs(first["nag"] - expect))
                ),
                "beta": b,
            },
            id="first_overshoot_equal",
        ),
    ]


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    betas = np.asarray(metrics["betas"])
    i = _at(metrics, cfg)
    fig, ax = plt.subplots(2, 3, figsize=(17, 9), layout="constrained")
    colors = {"momentum": "tab:red", "GD at lr/(1-beta)": "tab:blue", "GD at lr": "k"}
    for k, v in metrics["deep"].items():
        v = np.asarray(v)
        est = [_stats.proportion(int(r.sum()), len(r)) for r in v]
        mid = np.array([e.value for e in est])
        err = np.clip(np.array([[e.value - e.low, e.high - e.value] for e in est]).T, 0, None)
        ax[0, 0].errorbar(betas, mid, yerr=err, fmt="o-", capsize=3, color=colors[k], label=k)
    ax[0, 0].axvline(cfg.momentum, color="grey", ls=":", lw=0.8, label=f"beta {cfg.momentum:g}")
    ax[0, 0].set(
        xlabel="beta (GD controls: lr or lr/(1-beta), no momentum)",
        ylabel="share of starts ending in the deep minimum",
        title=f"double well, lr {cfg.well_lr:g}: 95% Wilson intervals",
    )
    ax[0, 0].legend(fontsize=8)
    xw = np.asarray(metrics["well_starts"])
    for k, mark in zip(colors, ("o", "s", "^"), strict=True):
        ax[0, 1].plot(
            xw,
            np.asarray(metrics["deep"][k])[i]
            + {"momentum": 0.04, "GD at lr/(1-beta)": 0.0, "GD at lr": -0.04}[k],
            mark,
            ms=3,
            alpha=0.6,
            color=colors[k],
            label=k,
        )
    ax[0, 1].set(
        xlabel="start x0",
        ylabel="ended in the deep minimum (1) or not (0)",
        title=f"where each start ends (beta {cfg.momentum:g}; jittered)",
    )
    ax[0, 1].legend(fontsize=8)
    for k, v in metrics["steps_to_cross"].items():
        med = np.median(np.minimum(np.asarray(v), cfg.steps + 1), axis=1)
        ax[0, 2].semilogy(betas, med, "o-", color=colors[k], label=f"{k}: reach x = 6")
        stay = np.median(np.minimum(np.asarray(metrics["steps_to_stay"][k]), cfg.steps + 1), 1)
        ax[0, 2].semilogy(betas, stay, "x:", color=colors[k], label=f"{k}: stay past it")
    ax[0, 2].axvline(cfg.momentum, color="grey", ls=":", lw=0.8)
    ax[0, 2].set(
        xlabel="beta",
        ylabel=f"median steps (budget {cfg.steps}: never)",
        title=f"plateau -tanh(x) - tanh(x-6), lr {cfg.plateau_lr:g}",
    )
    ax[0, 2].legend(fontsize=8)
    for k, xs in metrics["plateau_example"].items():
        ax[1, 0].plot(np.asarray(xs)[:200], color=colors[k], label=k)
    ax[1, 0].axhline(6, color="grey", ls=":", label="far side x = 6")
    ax[1, 0].set(xlabel="step", ylabel="x", title=f"plateau, one start, beta {cfg.momentum:g}")
    ax[1, 0].legend(fontsize=8)
    hb, nag = metrics["valley"]["heavy ball"], metrics["valley"]["Nesterov"]
    est = [
        _ratio(np.asarray(nag["total_overshoot"])[j], np.asarray(hb["total_overshoot"])[j])
        for j in range(len(betas))
    ]
    mid = np.array([e.value for e in est])
    err = np.clip(np.array([[e.value - e.low, e.high - e.value] for e in est]).T, 0, None)
    ax[1, 1].errorbar(betas, mid, yerr=err, fmt="o-", capsize=3, color="tab:purple")
    ax[1, 1].axhline(cfg.overshoot_ratio, color="grey", ls="--", lw=0.8, label="threshold")
    ax[1, 1].axhline(1.0, color="k", lw=0.6)
    ax[1, 1].set(
        xlabel="beta",
        ylabel="total overshoot, Nesterov / heavy ball",
        title="valleys at lr 1/L, random kappa: geometric mean, 95% CI",
    )
    ax[1, 1].legend(fontsize=8)
    for k, ps in metrics["drawn"]["valley_example"].items():
        ps = np.asarray(ps)
        ax[1, 2].plot(ps[:, 0], ps[:, 1], ".-", ms=2, lw=0.7, label=k)
    ax[1, 2].plot(0, 0, "k*", ms=12, label="minimum")
    ax[1, 2].set(
        xlabel="x",
        ylabel="y",
        title=f"(x^2 + 100 y^2)/2, lr 1/L = 0.01, beta {cfg.momentum:g}, 150 steps",
    )
    ax[1, 2].legend(fontsize=8)
    return save_figure(fig, out_dir, "momentum_flat_region")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics = measure(cfg)
    example = valley_example(cfg)  # the iterates on one valley, for the figure
    metrics["drawn"] = {"valley_example": {k: _plot.compact(ps) for k, ps in example.items()}}
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
