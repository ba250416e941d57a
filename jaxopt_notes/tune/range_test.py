"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates"; fastai's lr_find).

One short run in which the rate grows exponentially, step by step, from ``min_lr`` to
``max_lr``; the loss is smoothed with a bias-corrected moving average. The suggested range runs
from the rate of steepest descent (where the smoothed loss falls fastest per decade of rate) to
the rate of the smallest smoothed loss, just before it turns up and diverges. The whole run is
one compiled ``lax.scan`` of train's own step, optimizer and loss (``cfg.loss``); the rate
enters through ``optax.inject_hyperparams``.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxopt_notes import data as data_lib
from jaxopt_notes.train import (
    TrainConfig,
    TrainState,
    build_model,
    example_loss,
    make_step,
    with_validation,
)
from jaxopt_notes.tune import _trials


@dataclasses.dataclass
class RangeTest:
    """Rates and losses per step, the smoothed loss, and the suggested range of rates."""

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    steepest_lr: float
    min_loss_lr: float
    diverged_at: float | None  # the rate where the smoothed loss passed 4x its minimum

    @property
    def suggested(self) -> tuple[float, float]:
        return (min(self.steepest_lr, self.min_loss_lr), self.min_loss_lr)

    def report(self) -> str:
        low, high = self.suggested
        end = f"diverged at {self.diverged_at:.3g}" if self.diverged_at else "did not diverge"
        return (
            f"range test: steepest descent at lr {self.steepest_lr:.3g}, smallest smoothed loss "
            f"{self.smoothed.min():.3f} at lr {self.min_loss_lr:.3g}, {end}; suggested learning "
            f"rates {low:.3g} to {high:.3g}"
        )

    def to_json(self) -> dict:
        return {
            "learning_rates": self.learning_rates.tolist(),
            "losses": self.losses.tolist(),
            "smoothed": self.smoothed.tolist(),
            "steepest_lr": self.steepest_lr,
            "min_loss_lr": self.min_loss_lr,
            "diverged_at": self.diverged_at,
            "suggested": list(self.suggested),
        }


def range_test(
    cfg: TrainConfig,
    *,
    min_lr: float = 1e-6,
    max_lr: float = 10.0,
    steps: int = 200,
    smoothing: float = 0.95,
    data: data_lib.Dataset | None = None,
) -> RangeTest:
    """Runs the range test of ``cfg``'s model and optimizer on its training data."""
    if not 0 < min_lr < max_lr:
        raise ValueError(f"the range test needs 0 < `min_lr` < `max_lr`, got {min_lr}, {max_lr}")
    if steps < 10:
        raise ValueError(f"`steps` must be >= 10, got {steps}")
    data = with_validation(cfg, data)
    lrs = np.geomspace(min_lr, max_lr, steps)
    losses = np.asarray(jax.device_get(_run(cfg, data, jnp.asarray(lrs, jnp.float32))))
    return _analyse(lrs, losses, smoothing)


def _run(cfg: TrainConfig, data: data_lib.Dataset, lrs: jax.Array) -> jax.Array:
    """Train's step, optimizer and loss, the rate of each step injected (no schedule of its own)."""
    flat = dataclasses.replace(cfg, schedule="constant", warmup_epochs=0.0)
    model = build_model(flat, data.describe(), _trials.init_key(cfg))
    tx = _trials.make_optimizer(flat, 1, {"learning_rate": cfg.learning_rate})
    step = make_step(model, tx, loss=functools.partial(example_loss, cfg.loss))
    params = nnx.state(model, nnx.Param)
    state = TrainState(params, nnx.state(model, nnx.BatchStat), tx.init(params))
    x_all, y_all = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    key = jax.random.split(jax.random.key(cfg.seed))[1]

    @jax.jit
    def run(state, lrs):
        def one(state, inputs):
            lr, k = inputs
            k_idx, k_drop = jax.random.split(k)
            idx = jax.random.choice(k_idx, x_all.shape[0], (cfg.batch_size,), replace=False)
            x = data_lib.normalize(x_all[idx], data.mean, data.std)
            onehot = jax.nn.one_hot(y_all[idx], data.num_classes)
            if cfg.label_smoothing:
                onehot = optax.smooth_labels(onehot, cfg.label_smoothing)
            state = _trials.with_values(state, {"learning_rate": lr})
            state, (loss, _, _) = step(state, x, onehot, k_drop)
            return state, loss

        keys = jax.random.split(key, lrs.shape[0])
        return jax.lax.scan(one, state, (lrs, keys))[1]

    return run(state, lrs)


def _analyse(lrs: np.ndarray, losses: np.ndarray, smoothing: float) -> RangeTest:
    smoothed, avg = np.empty_like(losses), 0.0
    for t, loss in enumerate(losses):
        avg = smoothing * avg + (1 - smoothing) * (loss if np.isfinite(loss) else 1e30)
        smoothed[t] = avg / (1 - smoothing ** (t + 1))
    best = int(np.argmin(smoothed))
    over = np.nonzero(smoothed[best:] > 4 * smoothed[best])[0]
    diverged = float(lrs[best + over[0]]) if over.size else None
    # steepest descent per decade of rate, before the minimum, over a few steps' window
    window = max(2, len(lrs) // 40)
    slope = (smoothed[window:] - smoothed[:-window]) / np.log10(lrs[window:] / lrs[:-window])
    before = slope[: max(1, best - window + 1)]
    steepest = int(np.argmin(before)) + window // 2
    return RangeTest(lrs, losses, smoothed, float(lrs[steepest]), float(lrs[best]), diverged)


def plot_range_test(result: RangeTest, path: str | Path, title: str = "") -> None:
    """Loss and smoothed loss against the rate (log axis), the suggested range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    ax.plot(result.learning_rates, result.losses, color="0.7", lw=0.8, label="loss per step")
    ax.plot(result.learning_rates, result.smoothed, color="C0", label="smoothed")
    low, high = result.suggested
    ax.axvspan(low, high, color="C2", alpha=0.2, label=f"suggested {low:.2g} to {high:.2g}")
    if result.diverged_at:
        ax.axvline(result.diverged_at, color="C3", ls="--", lw=0.8, label="diverged")
    finite = result.smoothed[np.isfinite(result.smoothed)]
    ax.set_ylim(0, min(4 * finite.min(), 1.5 * result.smoothed[0]) + 0.1 * finite.min())
    ax.set(
        xscale="log",
        xlabel="learning rate",
        ylabel="training loss",
        title=title or "learning-rate range test",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
