"""Critical points of a small network: found by minimising the gradient norm, mostly not minima.

Li Hongyi's experiment: from many random starts, minimise |grad L|^2 instead of L. That finds
critical points of every kind, not only the minima that descent on L prefers. Each is classified
from its full Hessian spectrum (``hessian.classify``, every eigenvalue) and placed on the scatter
of training loss against the "minimum ratio", the fraction of positive eigenvalues (1 = minimum).

The network is a 1-8-1 tanh MLP (25 parameters) fitted by MSE to 40 noisy samples of sin(2x):
fewer parameters than data points, so a minimum is generically strict. Float64 throughout:
telling a zero eigenvalue from a small one needs it. The search is Adam on |grad L|^2, then
Levenberg-Marquardt on the same objective (the Gauss-Newton matrix of |g|^2 is H^2).

A control runs the same search on L itself. What it shows at these budgets: the low-loss region
is a flat valley with tiny negative curvature where the weights keep drifting (a minimum at
infinity as tanh units saturate), so descent does not reach a strict critical point either;
end points whose gradient is not zero within ``classify``'s tolerance are counted apart.
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
from jaxopt_notes import hessian

SUMMARY = "Critical points found by minimising |grad|^2 are almost all saddles or flat, not minima"
DATA = "synthetic regression: 40 points x ~ U(-2, 2), y = sin(2x) + N(0, 0.1^2), fixed seed"
KINDS = ("minimum", "saddle", "degenerate", "maximum", "not_critical")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    num_points: int = 40
    width: int = 8
    num_starts: int = 200
    adam_steps: int = 2000
    adam_lr: float = 1e-2
    polish_steps: int = 100
    max_minimum_fraction: float = 0.2  # "minima are rare": at most this share of critical points

    @classmethod
    def quick(cls) -> Config:
        return cls(num_starts=100, adam_steps=1000, polish_steps=60)

    @classmethod
    def tiny(cls) -> Config:
        return cls(num_starts=8, adam_steps=100, polish_steps=30)


def make_loss(cfg: Config):
    """MSE of a 1-width-1 tanh MLP over a flat parameter vector; built once, reused."""
    kx, kn = jax.random.split(jax.random.key(cfg.seed))
    w = cfg.width
    x = jax.random.uniform(kx, (cfg.num_points,), jnp.float64, -2.0, 2.0)

    def net(theta, x):
        w1, b1, w2, b2 = theta[:w], theta[w : 2 * w], theta[2 * w : 3 * w], theta[3 * w]
        return jnp.tanh(x[:, None] * w1 + b1) @ w2 + b2

    y = jnp.sin(2 * x) + 0.1 * jax.random.normal(kn, x.shape, jnp.float64)

    def loss(theta: jax.Array) -> jax.Array:
        return jnp.mean((net(theta, x) - y) ** 2)

    return loss, 3 * w + 1


def grad_norm_sq(loss):
    return lambda theta: jnp.sum(jax.grad(loss)(theta) ** 2)


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


def survey(cfg: Config, objective: str) -> list[dict]:
    """End points of Adam on ``objective`` ("grad_norm" or, as a control, "loss"), polished."""
    loss, n = make_loss(cfg)
    keys = jax.random.split(jax.random.key(cfg.seed + 1), cfg.num_starts)
    # first layer weights O(1) so the tanh units spread over the inputs; the rest 1/sqrt(fan_in)
    scale = jnp.concatenate([jnp.ones(2 * cfg.width), jnp.full(cfg.width + 1, cfg.width**-0.5)])
    starts = jax.vmap(lambda k: jax.random.normal(k, (n,), jnp.float64))(keys) * scale
    target = grad_norm_sq(loss) if objective == "grad_norm" else loss
    found = polish(loss, adam_search(target, starts, cfg), cfg.polish_steps)
    points = []
    for theta in found:
        c = hessian.classify(loss, theta)
        points.append({"kind": c.kind, "loss": float(loss(theta)), "grad_norm": c.grad_norm,
                       "grad_tol": c.grad_tol, "minimum_ratio": c.minimum_ratio,
                       "num_negative": c.num_negative,
                       "num_near_zero": c.num_near_zero})  # fmt: skip
    return points


def draw(points: list[dict], control: list[dict], out_dir: Path) -> str:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = {"minimum": "tab:green", "saddle": "tab:red", "degenerate": "tab:blue",
              "maximum": "tab:purple", "not_critical": "lightgrey"}  # fmt: skip
    for kind in KINDS:
        pts = [p for p in points if p["kind"] == kind]
        if pts:
            ax.scatter([p["minimum_ratio"] for p in pts], [p["loss"] for p in pts], s=18,
                       color=colors[kind], label=f"{kind} ({len(pts)})")  # fmt: skip
    crit = sum(p["kind"] != "not_critical" for p in control)
    ax.scatter([p["minimum_ratio"] for p in control], [p["loss"] for p in control], s=30,
               facecolors="none", edgecolors="k",
               label=f"control: descent on L, all end points ({crit} critical)")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("minimum ratio = fraction of positive Hessian eigenvalues")
    ax.set_ylabel("training loss (MSE)")
    ax.set_title("end points of minimising |grad L|^2 (grey: gradient not zero)")
    ax.legend(fontsize=8)
    pos = np.arange(len(KINDS))
    for shift, pts, label in ((-0.2, points, "min |grad L|^2"), (0.2, control, "min L (control)")):
        counts = [sum(p["kind"] == k for p in pts) for k in KINDS]
        bars = bx.bar(
            pos + shift,
            counts,
            width=0.4,
            label=label,
            color=[colors[k] for k in KINDS],
            hatch="" if shift < 0 else "//",
        )
        bx.bar_label(bars, fontsize=8)
    bx.set_xticks(pos, KINDS)
    bx.legend(fontsize=8)
    bx.set_title(f"kinds of the end points of {len(points)} starts")
    return save_figure(fig, out_dir, "critical_points")


def main(cfg: Config, out_dir: Path) -> dict:
    with jax.enable_x64(True):
        points = survey(cfg, "grad_norm")
        control = survey(cfg, "loss")  # the classifier must be able to see minima when they exist
    counts = {k: sum(p["kind"] == k for p in points) for k in KINDS}
    control_counts = {k: sum(p["kind"] == k for p in control) for k in KINDS}
    critical = [p for p in points if p["kind"] != "not_critical"]
    n_crit = len(critical)
    minima = counts["minimum"]
    share = minima / n_crit if n_crit else float("nan")
    ratios = np.array([p["minimum_ratio"] for p in critical])
    losses = np.array([p["loss"] for p in critical])
    corr = float(np.corrcoef(ratios, losses)[0, 1]) if n_crit > 2 and ratios.std() > 0 else None
    claims = [
        claim(
            "Critical points found by minimising the squared gradient norm from random starts "
            f"are almost all saddles or flat (degenerate): minima are at most "
            f"{cfg.max_minimum_fraction:.0%} of them",
            n_crit >= 5 and share <= cfg.max_minimum_fraction,
            {
                "counts": counts,
                "critical_points": n_crit,
                "minimum_share": share,
                "starts": cfg.num_starts,
                "control_descent_on_loss": control_counts,
            },  # fmt: skip
            reason=f"minima were {share:.0%} of the {n_crit} critical points found"
            if n_crit >= 5
            else f"only {n_crit} of {cfg.num_starts} searches reached a critical point",
        ),
    ]
    metrics = {"counts": counts, "control_counts": control_counts, "minimum_share": share,
               "corr_ratio_vs_loss": corr,
               "median_minimum_ratio": float(np.median(ratios)) if n_crit else None,
               "points": points, "control_points": control}  # fmt: skip
    return {"metrics": metrics, "claims": claims, "figures": [draw(points, control, out_dir)]}
