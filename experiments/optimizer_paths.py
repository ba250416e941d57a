"""Saito 6.1: the paths of SGD, Momentum, AdaGrad, Adam (and RMSProp, Nesterov, Nadam) on
f(x, y) = x^2/20 + y^2 from (-7, 2), and the same methods on the Rosenbrock valley.

Saito's own versions of AdaGrad and RMSProp start their accumulator at 0 and add eps outside
the root, so those two use ``convention="pytorch"`` here; the rest agree in both conventions.
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

SUMMARY = "SGD zigzags on x^2/20 + y^2; momentum and adaptive methods go more directly"
DATA = "synthetic functions: Saito's bowl x^2/20 + y^2 and Rosenbrock (no data set)"


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 30
    sgd_lr: float = 0.95
    momentum_lr: float = 0.1
    adagrad_lr: float = 1.5
    adam_lr: float = 0.3
    rmsprop_lr: float = 0.1
    nesterov_lr: float = 0.1
    nadam_lr: float = 0.3
    rosenbrock_steps: int = 1000

    @classmethod
    def quick(cls) -> Config:
        return cls(rosenbrock_steps=300)

    @classmethod
    def tiny(cls) -> Config:
        return cls(steps=12, rosenbrock_steps=20)


def bowl(p):
    return p[0] ** 2 / 20 + p[1] ** 2


def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def bowl_optimizers(cfg: Config) -> dict:
    return {
        "SGD": jn.sgd(cfg.sgd_lr),
        "Momentum": jn.sgd(cfg.momentum_lr, momentum=0.9),
        "Nesterov": jn.sgd(cfg.nesterov_lr, momentum=0.9, nesterov=True),
        "AdaGrad": jn.adagrad(cfg.adagrad_lr, convention="pytorch"),
        "RMSProp": jn.rmsprop(cfg.rmsprop_lr, convention="pytorch"),
        "Adam": jn.adam(cfg.adam_lr),
        "Nadam": jn.nadam(cfg.nadam_lr),
    }


def rosenbrock_optimizers() -> dict:
    return {
        "SGD": jn.sgd(1e-3),
        "Momentum": jn.sgd(1e-3, momentum=0.9),
        "Nesterov": jn.sgd(1e-3, momentum=0.9, nesterov=True),
        "AdaGrad": jn.adagrad(0.5, convention="pytorch"),
        "RMSProp": jn.rmsprop(1e-2, convention="pytorch"),
        "Adam": jn.adam(0.05),
        "Nadam": jn.nadam(0.05),
    }


def path(tx, f, start, steps: int) -> np.ndarray:
    """The iterates x_0..x_steps of ``tx`` on ``f``, as one jitted scan."""
    p0 = jnp.asarray(start, jnp.float32)
    return np.asarray(jax.jit(lambda x: trajectory(tx, f, x, steps))(p0))


def sign_changes(values: np.ndarray) -> int:
    s = np.sign(values)
    return int(np.sum(s[1:] * s[:-1] < 0))


def directness(points: np.ndarray) -> float:
    """Straight-line distance covered / length of the path walked (1 = perfectly direct)."""
    walked = np.sum(np.linalg.norm(np.diff(points, axis=0), axis=1))
    return float(np.linalg.norm(points[-1] - points[0]) / max(walked, 1e-12))


def draw(paths: dict, f, box, out_dir: Path, name: str, title: str, log_levels=False) -> str:
    xs, ys = np.meshgrid(np.linspace(*box[0], 300), np.linspace(*box[1], 300))
    zs = np.asarray(jax.vmap(jax.vmap(lambda a, b: f(jnp.array([a, b]))))(xs, ys))
    cols = 4
    rows = -(-len(paths) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
    levels = np.logspace(-1, 3.5, 20) if log_levels else 20
    for ax, (label, pts) in zip(axes.flat, paths.items(), strict=False):
        ax.contour(xs, ys, zs, levels=levels, cmap="Greys", linewidths=0.6)
        ax.plot(pts[:, 0], pts[:, 1], "o-", color="tab:red", ms=2.5, lw=1)
        ax.plot(*pts[0], "ks", ms=4)
        ax.set_title(f"{label}: f = {float(f(jnp.asarray(pts[-1]))):.3g}", fontsize=10)
        ax.set_xlim(*box[0])
        ax.set_ylim(*box[1])
    for ax in list(axes.flat)[len(paths) :]:
        ax.axis("off")
    fig.suptitle(title)
    return save_figure(fig, out_dir, name)


def main(cfg: Config, out_dir: Path) -> dict:
    bowl_paths = {
        k: path(tx, bowl, [-7.0, 2.0], cfg.steps) for k, tx in bowl_optimizers(cfg).items()
    }
    rosen_paths = {
        k: path(tx, rosenbrock, [-1.5, 2.0], cfg.rosenbrock_steps)
        for k, tx in rosenbrock_optimizers().items()
    }
    loss = {k: float(bowl(p[-1])) for k, p in bowl_paths.items()}
    flips = {k: sign_changes(p[:, 1]) for k, p in bowl_paths.items()}
    direct = {k: directness(p) for k, p in bowl_paths.items()}
    rosen_dist = {k: float(np.linalg.norm(p[-1] - 1.0)) for k, p in rosen_paths.items()}
    figures = [
        draw(bowl_paths, bowl, ((-10, 10), (-5, 5)), out_dir, "bowl_paths",
             f"f(x, y) = x^2/20 + y^2 from (-7, 2), {cfg.steps} steps"),
        draw(rosen_paths, rosenbrock, ((-2, 2), (-1, 3)), out_dir, "rosenbrock_paths",
             f"Rosenbrock from (-1.5, 2), {cfg.rosenbrock_steps} steps", log_levels=True),
    ]  # fmt: skip
    others = [k for k in loss if k != "SGD"]
    saito = ["Momentum", "AdaGrad", "Adam"]
    claims = [
        claim(
            "SGD zigzags: its y-coordinate changes sign at most steps, more often than any "
            "other method's",
            flips["SGD"] >= cfg.steps // 2 and all(flips["SGD"] > flips[k] for k in others),
            {"y_sign_changes": flips, "steps": cfg.steps},
        ),
        claim(
            "Momentum, AdaGrad and Adam reach a lower loss than SGD in the same number of steps",
            all(loss[k] < loss["SGD"] for k in saito),
            {"final_loss": loss},
            reason="ended above SGD's loss after overshooting the minimum: "
            + ", ".join(k for k in saito if loss[k] >= loss["SGD"]),
        ),
        claim(
            "AdaGrad and Adam walk a more direct path than SGD (distance covered / path length)",
            all(direct[k] > direct["SGD"] for k in ("AdaGrad", "Adam")),
            {"directness": direct},
        ),
        claim(
            "On Rosenbrock's curved valley, momentum and the adaptive methods end closer to the "
            "minimum (1, 1) than plain SGD",
            all(rosen_dist[k] < rosen_dist["SGD"] for k in others),
            {"distance_to_minimum": rosen_dist, "steps": cfg.rosenbrock_steps},
        ),
    ]
    metrics = {
        "bowl": {"final_loss": loss, "y_sign_changes": flips, "directness": direct,
                 "final_point": {k: p[-1] for k, p in bowl_paths.items()}},
        "rosenbrock": {"distance_to_minimum": rosen_dist,
                       "final_loss": {k: float(rosenbrock(p[-1])) for k, p in rosen_paths.items()}},
    }  # fmt: skip
    return {"metrics": metrics, "claims": claims, "figures": figures}
