"""Saddle points: gradient descent stalls beside them, the Hessian names them and shows the way out.

f(x, y) = x^2 - y^2 + y^4 / 4 has a saddle at (0, 0) and minima at (0, +-sqrt(2)) with f = -1.
Started a hair off the saddle, GD first slides down x into the saddle, where the gradient is tiny
for many steps, and only then slips off along y. ``hessian.classify`` calls (0, 0) a saddle;
a step along ``hessian.escape_direction`` lowers the loss at once; gradient noise (a fixed PRNG
key) and heavy-ball momentum leave the neighbourhood in fewer steps. A second saddle: the origin
of a two-layer linear network y = W2 W1 x on synthetic data, where every gradient vanishes.
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

SUMMARY = "GD stalls near a saddle; the Hessian classifies it; curvature, noise, momentum escape"
DATA = "synthetic: f(x, y) = x^2 - y^2 + y^4/4, and a 2-layer linear net on 32 Gaussian points"


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    steps: int = 400
    learning_rate: float = 0.05
    momentum: float = 0.9
    noise_std: float = 0.01  # std of the Gaussian added to every gradient
    start_x: float = 1.0
    start_y: float = 1e-6
    escape_loss: float = -0.5  # "escaped" once f <= this: halfway from the saddle (0) to -1
    stall_grad: float = 1e-2  # a step with |grad| below this counts as stalled
    escape_step: float = 0.5

    @classmethod
    def quick(cls) -> Config:
        return cls()

    @classmethod
    def tiny(cls) -> Config:
        return cls(steps=200)  # the whole run is a few hundred 2-d steps: tiny already


def saddle(p: jax.Array) -> jax.Array:
    return p[0] ** 2 - p[1] ** 2 + p[1] ** 4 / 4


def run(tx, start: jax.Array, steps: int, noise_std: float, key: jax.Array) -> np.ndarray:
    """Iterates of ``tx`` on :func:`saddle`, with N(0, noise_std^2) added to each gradient."""

    def body(carry, k):
        p, s = carry
        g = jax.grad(saddle)(p) + noise_std * jax.random.normal(k, p.shape)
        u, s = tx.update(g, s, p)
        p = jn.apply_updates(p, u)
        return (p, s), p

    keys = jax.random.split(key, steps)
    _, ps = jax.jit(lambda c: jax.lax.scan(body, c, keys))((start, tx.init(start)))
    return np.concatenate([np.asarray(start)[None], np.asarray(ps)])


def escape_time(path: np.ndarray, level: float) -> int | None:
    """First step with f <= ``level`` (below the saddle's value 0), or None if never.

    A loss level, not a ball around (0, 0): momentum overshoots along x and would leave a ball
    without having escaped anything.
    """
    below = np.nonzero(np.asarray(jax.vmap(saddle)(jnp.asarray(path))) <= level)[0]
    return int(below[0]) if below.size else None


def linear_net_saddle(seed: int) -> dict:
    """The origin of y = W2 W1 x (3 -> 2 -> 2): zero gradient, curvature of both signs."""
    kx, kw = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (32, 3))
    y = x @ jax.random.normal(kw, (3, 2))

    def loss(p):
        return jnp.mean(jnp.sum((x @ p["w1"] @ p["w2"] - y) ** 2, axis=1))

    zero = {"w1": jnp.zeros((3, 2)), "w2": jnp.zeros((2, 2))}
    c = hessian.classify(loss, zero)
    step = hessian.escape_step(loss, zero, step_size=0.5)
    return {"kind": c.kind, "grad_norm": c.grad_norm, "num_negative": c.num_negative,
            "num_positive": c.num_positive, "num_near_zero": c.num_near_zero,
            "loss_before": step.loss_before, "loss_after_escape_step": step.loss_after,
            "escape_step_size": step.step_size}  # fmt: skip


def draw(paths: dict, times: dict, grads: dict, cfg: Config, out_dir: Path) -> str:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    xs, ys = np.meshgrid(np.linspace(-1.2, 1.2, 200), np.linspace(-2, 2, 200))
    zs = xs**2 - ys**2 + ys**4 / 4
    ax.contour(xs, ys, zs, levels=25, cmap="Greys", linewidths=0.6)
    ax.contour(xs, ys, zs, levels=[cfg.escape_loss], colors="k", linestyles="--", linewidths=1)
    for label, pts in paths.items():
        t = times[label]
        line = ax.plot(pts[:, 0], pts[:, 1], ".-", ms=2, lw=0.8, label=f"{label} (escapes at {t})")
        bx.semilogy(np.maximum(grads[label], 1e-12), lw=1, color=line[0].get_color(), label=label)
        if t is not None:
            bx.axvline(t, color=line[0].get_color(), ls="--", lw=0.8)
    ax.plot(0, 0, "kx")
    ax.set_xlim(-1.2, 1.2)
    ax.set_ylim(-2, 2)
    ax.set_title("x^2 - y^2 + y^4/4: paths (dashed: f = escape level)")
    ax.legend(fontsize=8, loc="lower left")
    bx.axhline(cfg.stall_grad, color="k", ls=":", lw=0.8)
    bx.set_xlabel("step")
    bx.set_ylabel("|grad f| (exact, noise-free)")
    bx.set_title("|grad| vanishes while GD sits at the saddle (dashed: escape)")
    bx.legend(fontsize=8)
    return save_figure(fig, out_dir, "saddle_escape")


def main(cfg: Config, out_dir: Path) -> dict:
    key = jax.random.key(cfg.seed)
    start = jnp.array([cfg.start_x, cfg.start_y], jnp.float32)
    runs = {
        "GD": (jn.sgd(cfg.learning_rate), 0.0),
        "GD + noise": (jn.sgd(cfg.learning_rate), cfg.noise_std),
        "momentum": (jn.sgd(cfg.learning_rate, momentum=cfg.momentum), 0.0),
    }
    paths = {k: run(tx, start, cfg.steps, s, key) for k, (tx, s) in runs.items()}
    grads = {k: np.linalg.norm(np.asarray(jax.vmap(jax.grad(saddle))(p)), axis=1)
             for k, p in paths.items()}  # fmt: skip
    times = {k: escape_time(p, cfg.escape_loss) for k, p in paths.items()}
    final = {k: float(saddle(jnp.asarray(p[-1]))) for k, p in paths.items()}
    t_gd, t_noise, t_mom = times["GD"], times["GD + noise"], times["momentum"]
    gd_stalled = int(np.sum(grads["GD"][: times["GD"] or None] < cfg.stall_grad))
    origin = jnp.zeros(2)
    kind = hessian.classify(saddle, origin)
    stall = int(np.argmin(grads["GD"][: t_gd or None]))  # where GD sits, before it escapes
    near = jnp.asarray(paths["GD"][stall])
    v = hessian.escape_direction(saddle, near)
    after = None if v is None else float(saddle(near + cfg.escape_step * v))
    net = linear_net_saddle(cfg.seed)

    def faster(t):
        return t is not None and (t_gd is None or t < t_gd)

    claims = [
        claim(
            f"GD started {cfg.start_y:g} off the saddle's stable line stalls: many steps with "
            f"|grad| < {cfg.stall_grad:g} before its loss falls below {cfg.escape_loss:g} "
            "(the saddle's loss is 0, the minima's -1)",
            gd_stalled >= 20,
            {
                "stalled_steps": gd_stalled,
                "steps_to_escape": t_gd,
                "final_loss": final["GD"],
                "min_grad_norm": grads["GD"][stall],
            },  # fmt: skip
        ),
        claim(
            "hessian.classify calls the stationary points saddles: (0, 0) of x^2 - y^2 + y^4/4 "
            "and the origin of a two-layer linear network",
            kind.kind == "saddle" and net["kind"] == "saddle",
            {
                "toy_eigenvalues": kind.eigenvalues,
                "toy_kind": kind.kind,
                "toy_grad_norm": kind.grad_norm,
                "linear_net": net,
            },  # fmt: skip
        ),
        claim(
            f"A step of {cfg.escape_step:g} along hessian.escape_direction (most negative "
            "curvature) from the point where GD stalls lowers the loss; so does "
            "hessian.escape_step at the linear net's saddle",
            after is not None
            and after < float(saddle(near))
            and net["loss_after_escape_step"] < net["loss_before"],
            {
                "stalled_point": near,
                "loss_there": float(saddle(near)),
                "loss_after_step": after,
                "direction": v,
                "linear_net": net,
            },  # fmt: skip
        ),
        claim(
            f"Gradient noise (std {cfg.noise_std:g}) and momentum ({cfg.momentum:g}) escape "
            "the saddle in fewer steps than GD",
            faster(t_noise) and faster(t_mom),
            {"steps_to_escape": times, "final_loss": final},
        ),
    ]
    metrics = {"steps_to_escape": times, "stalled_steps_gd": gd_stalled, "final_loss": final,
               "classify_origin": kind.kind, "linear_net": net}  # fmt: skip
    return {"metrics": metrics, "claims": claims,
            "figures": [draw(paths, times, grads, cfg, out_dir)]}  # fmt: skip
