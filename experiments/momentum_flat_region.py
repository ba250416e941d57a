"""Momentum in flat regions and shallow minima, and Nesterov's look-ahead on a narrow valley.

Claim 5. Heavy-ball momentum keeps the velocity it built on a slope, so it crosses a plateau and
rolls over the low barrier of a shallow local minimum where plain GD (same learning rate) crawls
or stops. Two 1-d functions: a plateau f(x) = -tanh(x) - tanh(x - 6) (+ a wall past x = 8), and
f(x) = x^4/4 - x^2/2 - 0.2 x, with a shallow minimum at x = -0.88 (barrier 0.08) before the
deeper one at x = 1.09, swept over starting points left of the shallow one.

Claim 6. On f(x, y) = (x^2 + kappa y^2)/2, Nesterov's gradient at the look-ahead point damps the
oscillation heavy-ball momentum shows: we measure the largest overshoot past the minimum and the
steps to reach 1e-6 of the starting loss, at the same learning rate 1/L and several momenta.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxopt_notes as jn
from experiments._common import claim, save_figure, trajectory

SUMMARY = "momentum crosses plateaus and shallow minima where GD stalls; Nesterov overshoots less"
DATA = "synthetic functions: a tanh plateau, a tilted double well, a 2-d quadratic (no data set)"


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 1000
    momentum: float = 0.9
    plateau_lr: float = 0.5
    well_lr: float = 0.05
    well_starts: int = 32  # starting points, evenly in [-2.5, -1.2]
    kappa: float = 100.0  # condition number of the valley
    valley_steps: int = 1000
    tolerance: float = 1e-6  # "converged": loss below this fraction of the starting loss

    @classmethod
    def quick(cls) -> Config:
        return cls()

    @classmethod
    def tiny(cls) -> Config:
        return cls(steps=300, well_starts=8, valley_steps=300)


def plateau(x):
    return -jnp.tanh(x) - jnp.tanh(x - 6) + 0.5 * jnp.maximum(x - 8, 0) ** 2


def double_well(x):
    return x**4 / 4 - x**2 / 2 - 0.2 * x


SHALLOW, BARRIER, DEEP = -0.8789, -0.2091, 1.0880  # critical points of double_well


def valley(kappa: float):
    return lambda p: 0.5 * (p[0] ** 2 + kappa * p[1] ** 2)


def first_step(mask: np.ndarray) -> int | None:
    hits = np.nonzero(mask)[0]
    return int(hits[0]) if len(hits) else None


def settled(ok: np.ndarray) -> int | None:
    """The step from which ``ok`` holds for good (an oscillation may cross it earlier)."""
    bad = np.nonzero(~ok)[0]
    if not len(bad):
        return 0
    return int(bad[-1]) + 1 if bad[-1] + 1 < len(ok) else None


def flat_regions(cfg: Config) -> dict:
    txs = {"GD": jn.sgd(cfg.plateau_lr), "Momentum": jn.sgd(cfg.plateau_lr, cfg.momentum)}
    plat = {
        k: np.asarray(
            jax.jit(lambda x, t=tx: trajectory(t, plateau, x, cfg.steps))(jnp.array(-1.5))
        )
        for k, tx in txs.items()
    }
    starts = jnp.linspace(-2.5, -1.2, cfg.well_starts)
    wells = {}
    for name, tx in {
        "GD": jn.sgd(cfg.well_lr),
        "Momentum": jn.sgd(cfg.well_lr, cfg.momentum),
        "GD at lr/(1-beta)": jn.sgd(cfg.well_lr / (1 - cfg.momentum)),
    }.items():
        run = jax.jit(jax.vmap(lambda x, t=tx: trajectory(t, double_well, x, cfg.steps)))
        wells[name] = np.asarray(run(starts))
    return {"plateau": plat, "wells": wells, "starts": np.asarray(starts)}


def nesterov_vs_heavy_ball(cfg: Config, momentum: float) -> dict:
    f = valley(cfg.kappa)
    x0 = jnp.array([1.0, 1.0])
    lr = 1.0 / cfg.kappa  # 1/L
    out = {}
    for name, nest in (("heavy-ball", False), ("Nesterov", True)):
        ps = np.asarray(jax.jit(lambda x, n=nest: trajectory(jn.sgd(lr, momentum, n), f, x,
                                                      cfg.valley_steps))(x0))  # fmt: skip
        loss = 0.5 * (ps[:, 0] ** 2 + cfg.kappa * ps[:, 1] ** 2)
        past = np.maximum(-ps * np.sign(np.asarray(x0)), 0)  # how far beyond the minimum
        live = np.abs(ps) > 1e-6  # signs below this are round-off, not oscillation
        flips = (np.sign(ps[1:]) * np.sign(ps[:-1]) < 0) & live[1:] & live[:-1]
        out[name] = {
            "max_overshoot": float(past.max()),
            "total_overshoot": float(past.sum()),  # summed over steps and both coordinates
            "sign_flips": int(flips.sum()),
            "steps_to_tolerance": settled(loss <= cfg.tolerance * loss[0]),
            "path": ps,
        }
    return out


def draw(flat: dict, valleys: dict, cfg: Config, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 4, figsize=(21, 4.3))
    for k, xs in flat["plateau"].items():
        axes[0].plot(xs, label=k)
    axes[0].axhline(6, color="grey", ls=":", label="far side of the plateau (x = 6)")
    axes[0].set(
        xlabel="step", ylabel="x", title=f"plateau -tanh(x) - tanh(x-6), lr {cfg.plateau_lr}"
    )
    axes[0].legend(fontsize=8)
    for (k, xs), mark in zip(flat["wells"].items(), ("o", "s", "^"), strict=True):
        axes[1].plot(flat["starts"], xs[:, -1], mark, ms=6, alpha=0.6, label=k)
    for level, text in ((SHALLOW, "shallow minimum"), (DEEP, "deep minimum")):
        axes[1].axhline(level, color="grey", ls=":", lw=0.8)
        axes[1].text(-2.5, level + 0.05, text, fontsize=8)
    axes[1].set(xlabel="start x0", ylabel=f"x after {cfg.steps} steps",
                title=f"x^4/4 - x^2/2 - 0.2x, lr {cfg.well_lr}: where runs end")  # fmt: skip
    axes[1].legend(fontsize=8)
    hb, nag = valleys[str(cfg.momentum)]["heavy-ball"], valleys[str(cfg.momentum)]["Nesterov"]
    for k, r in (("heavy-ball", hb), ("Nesterov", nag)):
        axes[2].plot(*r["path"][:200].T, ".-", ms=2, lw=0.7, label=k)
        loss = 0.5 * (r["path"][:, 0] ** 2 + cfg.kappa * r["path"][:, 1] ** 2)
        axes[3].semilogy(np.maximum(loss, 1e-30), label=k)
    axes[2].set(xlabel="x", ylabel="y", title=f"(x^2 + {cfg.kappa:g} y^2)/2, beta {cfg.momentum}")
    axes[3].set(xlabel="step", ylabel="loss", ylim=(1e-14, 1e2), title="loss at lr = 1/L")
    axes[2].legend(fontsize=8)
    axes[3].legend(fontsize=8)
    return save_figure(fig, out_dir, "momentum_flat_region")


MOMENTA = (0.5, 0.8, 0.9, 0.95, 0.99)


def main(cfg: Config, out_dir: Path) -> dict:
    flat = flat_regions(cfg)
    crossing = {k: first_step(xs >= 6) for k, xs in flat["plateau"].items()}
    deep = {k: float(np.mean(xs[:, -1] > BARRIER)) for k, xs in flat["wells"].items()}
    valleys = {str(b): nesterov_vs_heavy_ball(cfg, b) for b in MOMENTA}
    figures = [draw(flat, valleys, cfg, out_dir)]
    table = {b: {k: {m: v for m, v in r.items() if m != "path"} for k, r in v.items()}
             for b, v in valleys.items()}  # fmt: skip

    def pick(key):
        return {b: {k: r[key] for k, r in v.items()} for b, v in table.items()}

    over, total, flips, steps = (pick(k) for k in ("max_overshoot", "total_overshoot",
                                                   "sign_flips", "steps_to_tolerance"))  # fmt: skip
    gd, mom = crossing["GD"], crossing["Momentum"]
    b = str(cfg.momentum)
    claims = [
        claim(
            f"Momentum carries the iterate across a plateau: with the same rate {cfg.plateau_lr} "
            "it reaches the far side in under half the steps GD needs (or GD never does)",
            mom is not None and (gd is None or mom < gd / 2),
            {"steps_to_cross": crossing, "budget": cfg.steps},
            reason="momentum did not cross in under half of GD's steps",
        ),
        claim(
            "Momentum rolls through a shallow local minimum where GD stops: from starts left "
            "of it GD ends there every time, momentum (same rate) ends in the deeper one from "
            "at least half of them",
            deep["GD"] == 0 and deep["Momentum"] >= 0.5,
            {
                "fraction_ending_in_deep_minimum": deep,
                "starts": cfg.well_starts,
                "final_x_gd": flat["wells"]["GD"][:, -1],
                "final_x_momentum": flat["wells"]["Momentum"][:, -1],
            },
            reason="the fractions ending in the deep minimum do not split that way",
        ),  # fmt: skip
        claim(
            f"Nesterov oscillates less than heavy-ball on (x^2 + {cfg.kappa:g} y^2)/2 at lr = 1/L, "
            f"momentum {cfg.momentum}: less total overshoot past the minimum, fewer sign flips, "
            f"and it reaches {cfg.tolerance:g} of the starting loss in fewer steps",
            total[b]["Nesterov"] < total[b]["heavy-ball"]
            and flips[b]["Nesterov"] < flips[b]["heavy-ball"]
            and _no_slower(table[b]),
            {
                "total_overshoot": total[b],
                "sign_flips": flips[b],
                "steps_to_tolerance": steps[b],
                "max_overshoot": over[b],
            },
            reason="Nesterov did not oscillate less or converge faster here",
        ),
        claim(
            f"Nesterov's largest single overshoot is smaller than heavy-ball's at every momentum "
            f"in {list(MOMENTA)}",
            not _not_less(over),
            {"max_overshoot": over, "total_overshoot": total, "steps_to_tolerance": steps},
            reason=f"the largest overshoot was no smaller at momenta {_not_less(over)} (the "
            "first kick along the stiff direction); the total overshoot was smaller at "
            f"{[b for b, v in total.items() if v['Nesterov'] < v['heavy-ball']]}",
        ),
    ]
    metrics = {"plateau_steps_to_cross": crossing, "deep_fraction": deep, "valley": table}
    return {"metrics": metrics, "claims": claims, "figures": figures}


def _no_slower(runs: dict) -> bool:
    hb, nag = runs["heavy-ball"]["steps_to_tolerance"], runs["Nesterov"]["steps_to_tolerance"]
    return nag is not None and (hb is None or nag < hb)


def _not_less(by_momentum: dict) -> list[str]:
    # "smaller" with a margin, so that float32 round-off does not count as a difference
    return [b for b, v in by_momentum.items() if not v["Nesterov"] < 0.999 * v["heavy-ball"]]
