"""Edge of stability (Cohen et al. 2021; beyond the notes): under full-batch GD the sharpness,
the top Hessian eigenvalue, rises until it reaches about 2 / learning_rate and then hovers there.

On a quadratic, GD with learning rate eta diverges along any direction of curvature above
2 / eta. On a network, sharpness grows during training ("progressive sharpening") until it hits
that line; instead of diverging, GD keeps it hovering at 2 / eta while the loss keeps falling,
non-monotonically. Here: a 64-32-32-10 tanh MLP (Flax NNX, Xavier init) trained by full-batch
``jn.sgd`` on a fixed set of sklearn digits with the square loss 0.5 * |f(x) - onehot(y)|^2
averaged over examples, as in Cohen et al.'s MSE runs. Pixels are scaled to [0, 0.25] so that
the initial sharpness (~14) starts below 2 / eta for the smaller learning rates and the rise can
be seen. Sharpness is ``hessian.eigenvalues(..., k=1, method="lanczos")`` every ``every`` steps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

import jaxopt_notes as jn
from experiments._common import claim, save_figure
from jaxopt_notes import data, hessian, models

SUMMARY = "Full-batch GD drives the top Hessian eigenvalue up to ~2/lr, where it hovers (EoS)"
DATA = "scikit-learn 8x8 digits: the first num_examples training images, pixels scaled to [0, 0.25]"


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    num_examples: int = 500
    width: int = 32
    learning_rates: str = "0.05,0.1,0.2"  # a factor-2 ladder: 2/lr = 40, 20, 10
    steps: int = 10_000
    every: int = 50  # steps between sharpness measurements
    lanczos_iter: int = 20
    input_scale: float = 0.25
    reach: float = 0.9  # "reaches 2/lr": max sharpness >= reach * 2/lr
    band: float = 0.2  # "hovers": median of the last quarter within (1 +- band) * 2/lr

    @classmethod
    def quick(cls) -> Config:
        return cls(steps=4000)

    @classmethod
    def tiny(cls) -> Config:
        return cls(num_examples=100, width=8, steps=200, every=20, lanczos_iter=10)


def make_loss(cfg: Config):
    ds = data.load("digits")
    x = jnp.asarray(ds.x_train[: cfg.num_examples].reshape(-1, 64), jnp.float32)
    x = x / 255.0 * cfg.input_scale
    y = jax.nn.one_hot(ds.y_train[: cfg.num_examples], 10)
    model = models.MLP(in_features=64, depth=2, width=cfg.width, activation="tanh",
                       init="xavier", rngs=nnx.Rngs(cfg.seed))  # fmt: skip
    apply, params = models.functional(model)

    def loss(p):
        return 0.5 * jnp.mean(jnp.sum((apply(p, x) - y) ** 2, axis=1))

    return loss, params


def train(loss, params, lr: float, cfg: Config) -> dict:
    """Full-batch GD, sharpness every ``cfg.every`` steps; the steps between run as one scan."""
    tx = jn.sgd(lr)

    @jax.jit
    def chunk(p, s):
        def body(carry, _):
            p, s = carry
            value, g = jax.value_and_grad(loss)(p)
            u, s = tx.update(g, s, p)
            return (jn.apply_updates(p, u), s), value

        return jax.lax.scan(body, (p, s), None, length=cfg.every)

    state, steps, sharp, losses = tx.init(params), [], [], []
    key = jax.random.key(cfg.seed)
    for i in range(cfg.steps // cfg.every + 1):
        top = hessian.eigenvalues(loss, params, k=1, method="lanczos",
                                  key=jax.random.fold_in(key, i),
                                  num_iter=cfg.lanczos_iter)  # fmt: skip
        steps.append(i * cfg.every)
        sharp.append(float(top.values[0]))
        if i * cfg.every == cfg.steps:
            break
        (params, state), chunk_losses = chunk(params, state)
        losses.extend(np.asarray(chunk_losses).tolist())
    return {"steps": steps, "sharpness": sharp, "loss": losses}


def verdict(run: dict, lr: float, cfg: Config) -> dict:
    sharp = np.asarray(run["sharpness"])
    threshold = 2 / lr
    last = sharp[-max(len(sharp) // 4, 1) :]
    loss = np.asarray(run["loss"])
    return {
        "threshold_2_over_lr": threshold,
        "initial": float(sharp[0]),
        "max": float(np.nanmax(sharp)) if np.isfinite(sharp).any() else float("nan"),
        "last_quarter_median": float(np.median(last)),
        "last_quarter_median_over_threshold": float(np.median(last) / threshold),
        "first_step_at_reach": next(
            (s for s, v in zip(run["steps"], sharp, strict=True) if v >= cfg.reach * threshold),
            None,
        ),  # fmt: skip
        "final_loss": float(loss[-1]),
        "loss_increases": int(np.sum(np.diff(loss) > 0)),  # GD at the edge: non-monotone
        "diverged": bool(not np.isfinite(loss).all()),
    }


def draw(runs: dict, out_dir: Path) -> str:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(runs)))
    for (lr, run), color in zip(runs.items(), colors, strict=True):
        ax.plot(run["steps"], run["sharpness"], color=color, label=f"lr = {lr:g}")
        ax.axhline(2 / lr, color=color, ls="--", lw=0.9)
        bx.semilogy(run["loss"], color=color, lw=0.8, label=f"lr = {lr:g}")
    ax.set_xlabel("step")
    ax.set_ylabel("top Hessian eigenvalue")
    ax.set_title("sharpness under full-batch GD (dashed: 2 / lr)")
    ax.legend(fontsize=8)
    bx.set_xlabel("step")
    bx.set_ylabel("training loss")
    bx.set_title("the loss keeps falling, non-monotonically")
    bx.legend(fontsize=8)
    return save_figure(fig, out_dir, "edge_of_stability")


def main(cfg: Config, out_dir: Path) -> dict:
    lrs = [float(s) for s in cfg.learning_rates.split(",")]
    loss, params = make_loss(cfg)
    runs = {lr: train(loss, params, lr, cfg) for lr in lrs}
    found = {lr: verdict(run, lr, cfg) for lr, run in runs.items()}
    claims = []
    for lr, v in found.items():
        reached = v["max"] >= cfg.reach * v["threshold_2_over_lr"]
        hovers = abs(v["last_quarter_median_over_threshold"] - 1) <= cfg.band
        # a large lr starts above 2/lr: then sharpness falls to the edge (a catapult) instead
        move = "rises" if v["initial"] < v["threshold_2_over_lr"] else "falls (it starts above)"
        claims.append(claim(
            f"lr = {lr:g}: sharpness {move} to about 2/lr = {2 / lr:g} (max >= {cfg.reach:g} x) "
            f"and hovers there (median of the last quarter within {cfg.band:.0%}) without "
            f"diverging, within {cfg.steps} steps",
            reached and hovers and not v["diverged"],
            v,
            reason=f"sharpness rose from {v['initial']:.1f} to a maximum of {v['max']:.1f} "
            f"({v['max'] * lr / 2:.0%} of 2/lr); the last quarter's median was "
            f"{v['last_quarter_median']:.1f}: it had not reached 2/lr when the {cfg.steps}-step "
            "budget ran out" if not v["diverged"] else "GD diverged",
        ))  # fmt: skip
    metrics = {"per_learning_rate": {str(lr): v for lr, v in found.items()},
               "runs": {str(lr): {"steps": r["steps"], "sharpness": r["sharpness"]}
                        for lr, r in runs.items()}}  # fmt: skip
    return {"metrics": metrics, "claims": claims, "figures": [draw(runs, out_dir)]}
