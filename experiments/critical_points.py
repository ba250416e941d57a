"""Critical points of a small network, found by minimising the gradient norm: mostly saddles.

Li Hongyi's experiment: from many random starts, minimise |grad L|^2 instead of L. That finds
critical points of every kind, not only the minima that descent on L prefers. Each end point is
classified by ``hessian.classify`` from its full Hessian spectrum (minimum, maximum, saddle,
degenerate, or not critical when its gradient is not zero within the tolerance) and placed on
the scatter of training loss against the "minimum ratio" (the share of positive eigenvalues).

The search is Adam on |grad L|^2, then Levenberg-Marquardt on the same objective (the
Gauss-Newton matrix of |g|^2 is H^2). End points that are not critical are not evidence either
way: the claims count minima and saddles among the *distinct* critical points, with Wilson
intervals: several searches often reach the same point, or one of its mirror images under the
network's symmetries (swapping hidden units, flipping a tanh unit's signs), which share its loss
and spectrum. Points of one kind whose losses agree to ``distinct_rtol`` and whose Hessians have
the same number of negative eigenvalues count once; the evidence gives how many searches reached
each.

A positive control comes first: the same search and classification on a function whose critical
points are all known, f(theta) = sum_i c_i ((Q theta)_i^2 - 1)^2 / 4 with a random rotation Q
and weights c_i: its critical points are z = Q theta in {-1, 0, 1}^d, a minimum where no z_i is
0, the maximum at z = 0, saddles elsewhere. Only if the survey finds both minima and saddles
there and classifies every one right are the network's counts a test; otherwise the claims are
inconclusive. Width 0 replaces the network by a straight line y = a x + b, whose least-squares
loss is convex: its one critical point is the minimum, the sabotage under which the claims fail.

The network is a 1-8-1 tanh MLP (25 parameters) fitted by MSE to 40 noisy samples of sin(2x):
fewer parameters than data points, so a minimum is generically strict. Float64 throughout.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jaxopt_notes.experiments import _stats
from jaxopt_notes.experiments._claims import INCONCLUSIVE, Source, Test, check, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn
from jaxopt_notes import hessian

SUMMARY = "Critical points found by minimising |grad|^2 are mostly saddles, rarely minima"
DATA = "synthetic regression: 40 points x ~ U(-2, 2), y = sin(2x) + N(0, 0.1^2), fixed seed"
QUICK_NOTE = (
    "Quick runs 100 searches of 1000 Adam + 100 Levenberg-Marquardt steps (default 200 of "
    "2000 + 200): fewer searches reach a critical point, so the intervals are wider and a "
    "claim may stay inconclusive where the default decides it."
)
KINDS = ("minimum", "saddle", "degenerate", "maximum", "not_critical")
PLURAL = {"minimum": "minima", "saddle": "saddles"}

LI = "002_3498af5075c2b1b1.txt"
LI_REF = "Li Hongyi, ML 2021 lecture 'When gradient is small' (minimum ratio experiment)"
SRC_RARE = Source(
    LI,
    "局部最小与鞍点",
    "先给出答案 saddle point更常见，local minima 很少很少",
    "The answer first: saddle points are more common, local minima are very, very rare",
    LI_REF,
)
SRC_KINDS = Source(
    LI,
    "局部最小与鞍点",
    "Hessian矩阵**正定**(特征值全大于0):**极小值点**",
    "Hessian positive definite (all eigenvalues > 0): a local minimum",
    LI_REF,
)


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    num_points: int = 40
    width: int = param(8, low=0, help="hidden tanh units; 0: a straight line y = a x + b")
    seeds: int = 200  # random starts of the search on the network
    adam_steps: int = 2000
    adam_lr: float = 1e-2
    polish_steps: int = 200
    control_dim: int = 3
    control_seeds: int = 64
    width_map: tuple = param((1, 2, 4), low=0, help="widths of the regime map")
    map_seeds: int = 48  # searches per width of the map
    max_minimum_share: float = param(0.2, low=0.0, high=1.0)
    min_saddle_share: float = param(0.5, low=0.0, high=1.0)
    distinct_rtol: float = param(1e-6, low=0.0, help="losses this close: one critical point")

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=100, adam_steps=1000, polish_steps=100, control_seeds=32, map_seeds=32)

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            seeds=96, adam_steps=600, polish_steps=60, control_seeds=12, width_map=(8,), map_seeds=8
        )


def make_loss(cfg: Config):
    """MSE of a 1-width-1 tanh MLP (or, width 0, a line) over a flat parameter vector."""
    kx, kn = jax.random.split(jax.random.key(cfg.seed))
    w = cfg.width
    x = jax.random.uniform(kx, (cfg.num_points,), jnp.float64, -2.0, 2.0)
    y = jnp.sin(2 * x) + 0.1 * jax.random.normal(kn, x.shape, jnp.float64)

    def net(theta, x):
        if w == 0:
            return theta[0] * x + theta[1]
        w1, b1, w2, b2 = theta[:w], theta[w : 2 * w], theta[2 * w : 3 * w], theta[3 * w]
        return jnp.tanh(x[:, None] * w1 + b1) @ w2 + b2

    def loss(theta: jax.Array) -> jax.Array:
        return jnp.mean((net(theta, x) - y) ** 2)

    return loss, 3 * w + 1 if w else 2


def make_control(cfg: Config):
    """The known-critical-point function (module docstring): ``(loss, to_z, c)``."""
    kq, kc = jax.random.split(jax.random.key(cfg.seed + 7))
    q, _ = jnp.linalg.qr(jax.random.normal(kq, (cfg.control_dim, cfg.control_dim), jnp.float64))
    c = jax.random.uniform(kc, (cfg.control_dim,), jnp.float64, 0.5, 2.0)

    def loss(theta: jax.Array) -> jax.Array:
        return jnp.sum(c * ((q @ theta) ** 2 - 1) ** 2) / 4

    return loss, lambda theta: q @ theta


def true_kind(z: np.ndarray) -> str:
    """The kind of the control's critical point at the lattice point z in {-1, 0, 1}^d."""
    zeros = int(np.sum(np.round(z) == 0))
    return "minimum" if zeros == 0 else "maximum" if zeros == len(z) else "saddle"


def adam_search(objective, starts: jax.Array, cfg: Config) -> jax.Array:
    """Adam on ``objective`` from every start at once (vmapped scan)."""
    tx = jn.adam(cfg.adam_lr)

    def one(theta):
        def body(carry, _):
            t, s = carry
            u, s = tx.update(jax.grad(objective)(t), s, t)
            return (jn.apply_updates(t, u), s), None

        return jax.lax.scan(body, (theta, tx.init(theta)), None, length=cfg.adam_steps)[0][0]

    return jax.jit(jax.vmap(one))(starts)


def polish(loss, thetas: jax.Array, steps: int) -> jax.Array:
    """Levenberg-Marquardt on |g|^2: solve (H^2 + mu I) d = H g, keep d if |g| fell."""

    def step(carry, _):
        t, mu = carry
        g = jax.grad(loss)(t)
        h = hessian.dense(loss, t)
        d = jnp.linalg.solve(h @ h + mu * jnp.eye(t.size), h @ g)
        better = jnp.linalg.norm(jax.grad(loss)(t - d)) < jnp.linalg.norm(g)
        return (jnp.where(better, t - d, t), jnp.where(better, mu / 3, mu * 3)), None

    def one(t):
        return jax.lax.scan(step, (t, jnp.asarray(1e-2, t.dtype)), None, length=steps)[0][0]

    return jax.jit(jax.vmap(one))(thetas)


def survey(loss, starts: jax.Array, cfg: Config) -> tuple[np.ndarray, list[dict]]:
    """End points of the |grad L|^2 search from ``starts``, each classified."""
    found = polish(
        loss, adam_search(lambda t: jnp.sum(jax.grad(loss)(t) ** 2), starts, cfg), cfg.polish_steps
    )
    points = []
    for theta in found:
        c = hessian.classify(loss, theta)
        points.append(
            {
                "kind": c.kind,
                "loss": float(loss(theta)),
                "grad_norm": c.grad_norm,
                "grad_tol": c.grad_tol,
                "minimum_ratio": c.minimum_ratio,
                "num_negative": c.num_negative,
            }
        )
    return np.asarray(found), points


def network_survey(cfg: Config) -> list[dict]:
    """The survey on the network of ``cfg.width`` from ``cfg.seeds`` random starts."""
    loss, n = make_loss(cfg)
    keys = jax.random.split(jax.random.key(cfg.seed + 1), cfg.seeds)
    # first-layer weights O(1) so the tanh units spread over the inputs; the rest 1/sqrt(fan_in)
    w = cfg.width
    scale = (
        jnp.concatenate([jnp.ones(2 * w), jnp.full(w + 1, max(w, 1) ** -0.5)]) if w else jnp.ones(2)
    )
    starts = jax.vmap(lambda k: jax.random.normal(k, (n,), jnp.float64))(keys) * scale
    return survey(loss, starts, cfg)[1]


def control_survey(cfg: Config) -> list[dict]:
    """The survey on the known function; each point with the truth at its nearest lattice point."""
    loss, to_z = make_control(cfg)
    keys = jax.random.split(jax.random.key(cfg.seed + 2), cfg.control_seeds)
    starts = jax.vmap(lambda k: jax.random.normal(k, (cfg.control_dim,), jnp.float64))(keys)
    found, points = survey(loss, starts, cfg)
    for theta, p in zip(found, points, strict=True):
        z = np.asarray(to_z(jnp.asarray(theta)))
        lattice = np.clip(np.round(z), -1, 1)
        p["distance_to_lattice"] = float(np.abs(z - lattice).max())
        p["true_kind"] = true_kind(lattice)
    return points


def distinct(points: list[dict], rtol: float) -> list[dict]:
    """The critical points once each: one representative per group of points with one kind,
    one count of negative eigenvalues and losses equal to ``rtol``; ``searches`` says how many
    searches reached the group."""
    groups: list[dict] = []
    for p in sorted(points, key=lambda p: p["loss"]):
        if p["kind"] == "not_critical":
            continue
        for g in groups:
            same = g["kind"] == p["kind"] and g["num_negative"] == p["num_negative"]
            if same and abs(g["loss"] - p["loss"]) <= rtol * max(abs(g["loss"]), 1e-12):
                g["searches"] += 1
                break
        else:
            groups.append(p | {"searches": 1})
    return groups


def counts(points: list[dict]) -> dict[str, int]:
    return {k: sum(p["kind"] == k for p in points) for k in KINDS}


def share(k: int, n: int) -> _stats.Estimate:
    """A Wilson share, not finite when there is nothing to share (no critical point)."""
    if n == 0:
        return _stats.Estimate(math.nan, math.nan, math.nan, 0, math.nan, "no critical point")
    return _stats.proportion(k, n)


def control_result(points: list[dict]) -> dict:
    """Does the survey find minima and saddles of the known function, and call each right?"""
    at_known = [p for p in points if p["distance_to_lattice"] < 1e-6]
    critical = [p for p in points if p["kind"] != "not_critical"]
    wrong = [p for p in critical if p["distance_to_lattice"] >= 1e-6 or p["kind"] != p["true_kind"]]
    missed = [p for p in at_known if p["kind"] == "not_critical"]
    c = counts(critical)
    return {
        "starts": len(points),
        "critical": len(critical),
        "minima_found": c["minimum"],
        "saddles_found": c["saddle"],
        "maxima_found": c["maximum"],
        "misclassified": len(wrong),
        "at_a_known_point_but_not_critical": len(missed),
        "passed": c["minimum"] > 0 and c["saddle"] > 0 and not wrong and not missed,
    }


def gated(entry: dict, control: dict) -> dict:
    """A claim whose positive control failed is not a test: inconclusive, saying why."""
    if control["passed"]:
        return entry
    why = (
        f"the positive control failed ({control['minima_found']} minima and "
        f"{control['saddles_found']} saddles found, {control['misclassified']} misclassified, "
        f"{control['at_a_known_point_but_not_critical']} known points missed), so the survey "
        "has not shown it can find and tell minima and saddles; measured: "
    )
    return entry | {"verdict": INCONCLUSIVE, "reason": why + entry["reason"]}


def claims(metrics: dict, cfg: Config) -> list[dict]:
    control, searched = metrics["control"], metrics["counts"]
    unique = distinct(metrics["points"], cfg.distinct_rtol)
    c = counts(unique)
    n = len(unique)  # the unit: distinct critical points, not searches
    evidence = {
        "distinct critical points": n,
        "distinct, by kind": {k: v for k, v in c.items() if k != "not_critical"},
        "searches": cfg.seeds,
        "searches ending at a critical point, by kind": {
            k: v for k, v in searched.items() if k != "not_critical"
        },
        "searches ending at no critical point": searched["not_critical"],
        "control_passed": control["passed"],
    }
    where = (
        f"among the distinct critical points that {cfg.seeds} |grad|^2 searches on the "
        "network reach"
    )
    return [
        check(
            f"Positive control: on sum c_i((Q theta)_i^2 - 1)^2/4 in {cfg.control_dim} dimensions "
            "(known minima, saddles, maximum) the same search finds minima and saddles and "
            "hessian.classify calls every critical point it reaches what it is",
            control["passed"],
            {k: v for k, v in control.items() if k != "passed"},
            SRC_KINDS,
            id="control_finds_both",
        ),
        gated(
            claim(
                f"Local minima are rare: {where}, at most {cfg.max_minimum_share:.0%} are minima",
                share(c["minimum"], n),
                Test(
                    "share of minima among critical points",
                    "<",
                    cfg.max_minimum_share,
                    "pre-stated: one in five, for 'very, very rare'",
                    n,
                    unit="distinct critical points",
                ),
                SRC_RARE,
                evidence,
                id="minima_rare",
            ),
            control,
        ),
        gated(
            claim(
                f"Saddle points are common: {where}, more than {cfg.min_saddle_share:.0%} are "
                "saddles",
                share(c["saddle"], n),
                Test(
                    "share of saddles among critical points",
                    ">",
                    cfg.min_saddle_share,
                    "pre-stated: a majority, for 'more common'",
                    n,
                    unit="distinct critical points",
                ),
                SRC_RARE,
                evidence,
                id="saddles_common",
            ),
            control,
        ),
    ]


COLORS = {
    "minimum": "tab:green",
    "saddle": "tab:red",
    "degenerate": "tab:blue",
    "maximum": "tab:purple",
    "not_critical": "lightgrey",
}


def draw_map(ax, by_width: dict, cfg: Config) -> None:
    """Share of minima and of saddles among the critical points, with Wilson intervals."""
    crit = [sum(by_width[k][i] for k in KINDS[:4]) for i in range(len(by_width["width"]))]
    for kind, marker in (("minimum", "o"), ("saddle", "s")):
        est = [share(k, n) for k, n in zip(by_width[kind], crit, strict=True)]
        mid = np.array([e.value for e in est])
        err = np.array([[e.value - e.low, e.high - e.value] for e in est]).T
        err = np.maximum(np.nan_to_num(err), 0.0)  # no critical point: no bar (and no dot)
        ax.errorbar(
            by_width["parameters"],
            mid,
            yerr=err,
            marker=marker,
            capsize=3,
            color=COLORS[kind],
            label=f"share of {PLURAL[kind]} (95% Wilson)",
        )
    for x, n, total in zip(by_width["parameters"], crit, by_width["searches"], strict=True):
        ax.annotate(f"{n}/{total}", (x, 1.02), ha="center", fontsize=7)
    ax.axhline(
        cfg.max_minimum_share,
        color=COLORS["minimum"],
        ls="--",
        lw=0.8,
        label=f"claimed: minima < {cfg.max_minimum_share:g}",
    )
    ax.axhline(
        cfg.min_saddle_share,
        color=COLORS["saddle"],
        ls="--",
        lw=0.8,
        label=f"claimed: saddles > {cfg.min_saddle_share:g}",
    )
    ax.set_xscale("log")
    ax.set(
        xlabel="parameters (3 x width + 1)",
        ylabel="share among critical points",
        ylim=(-0.03, 1.1),
        title="regime map over width (critical / searches on top)",
    )
    ax.legend(fontsize=8)


def draw(
    points: list[dict], control: list[dict], by_width: dict, cfg: Config, out_dir: Path
) -> str:
    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(19, 4.8))
    for kind in KINDS:
        pts = [p for p in points if p["kind"] == kind]
        if pts:
            ax.scatter(
                [p["minimum_ratio"] for p in pts],
                [p["loss"] for p in pts],
                s=18,
                color=COLORS[kind],
                label=f"{kind} ({len(pts)})",
            )
    ax.axvline(1.0, color="tab:green", ls=":", lw=0.8, label="ratio 1: a minimum")
    ax.set_yscale("log")
    ax.set(
        xlabel="minimum ratio = share of positive Hessian eigenvalues",
        ylabel="training loss (MSE)",
        title=f"network (width {cfg.width}): end points of {cfg.seeds} |grad L|^2 searches "
        f"(Adam lr {cfg.adam_lr:g})",
    )
    ax.legend(fontsize=8)
    pos = np.arange(len(KINDS))
    for shift, pts, label in ((-0.2, points, "network"), (0.2, control, "positive control")):
        c = counts(pts)
        bars = bx.bar(
            pos + shift,
            [c[k] / len(pts) for k in KINDS],
            width=0.4,
            label=label,
            color=[COLORS[k] for k in KINDS],
            hatch="" if shift < 0 else "//",
            edgecolor="k",
        )
        bx.bar_label(bars, [str(c[k]) for k in KINDS], fontsize=8)
    right = sum(p["kind"] == p["true_kind"] for p in control if p["kind"] != "not_critical")
    crit = sum(p["kind"] != "not_critical" for p in control)
    bx.set_xticks(pos, KINDS)
    bx.set(
        ylabel="share of end points (count on the bar)",
        title=f"kinds; control ({cfg.control_dim}-d, known points): {right} of {crit} "
        "critical points called right",
    )
    bx.legend(fontsize=8)
    draw_map(cx, by_width, cfg)
    fig.tight_layout()
    return save_figure(fig, out_dir, "critical_points")


def width_map(cfg: Config, points: list[dict]) -> dict:
    """Counts of every kind at each width of the map (and at the claims' own width)."""
    found = {cfg.width: counts(points)}
    for w in cfg.width_map:
        if w != cfg.width:
            found[w] = counts(
                network_survey(dataclasses.replace(cfg, width=w, seeds=cfg.map_seeds))
            )
    widths = sorted(found)
    return {
        "width": widths,
        "parameters": [3 * w + 1 if w else 2 for w in widths],
        "searches": [sum(found[w].values()) for w in widths],
        **{k: [found[w][k] for w in widths] for k in KINDS},
    }


def main(cfg: Config, out_dir: Path) -> dict:
    with jax.enable_x64(True):
        control = control_survey(cfg)  # first: can the pipeline see minima and saddles at all?
        points = network_survey(cfg)
        by_width = width_map(cfg, points)
    metrics = {
        "distinct": [
            {k: p[k] for k in ("kind", "loss", "minimum_ratio", "num_negative", "searches")}
            for p in distinct(points, cfg.distinct_rtol)
        ],
        "control": control_result(control),
        "counts": counts(points),
        "points": points,
        "control_points": control,
        "width_map": by_width,
    }
    figures = [draw(points, control, by_width, cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
