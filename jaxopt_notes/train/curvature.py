"""Curvature while training (``--track-curvature EVERY``), for any optimizer.

Every ``EVERY`` steps of an epoch (at steps 0, N, 2N, ... of each epoch) the loop pauses and
records, on a fixed evaluation batch (the first ``curvature_examples`` training images, eval
mode, no augmentation) or the whole training set (``curvature_examples = 0``):

- ``top`` and ``bottom``: the extreme Hessian eigenvalues, from one reading of the sharpness
  tracker (``hessian.measure``: Lanczos, both ends) warm-started from the last one;
- ``trace``: Hutchinson's estimate with Rademacher probes;
- for optimizers with a second moment ``nu`` (the Adam family, RMSprop), ``preconditioned``: the
  top eigenvalue of ``P^-1/2 H P^-1/2`` with ``P = diag(sqrt(nu_hat) + eps)``, its own reading
  warm-started the same way (Cohen et al. 2022, "Adaptive gradient methods at the edge of
  stability");
- beside them the thresholds at the current rate ``lr``: ``edge = 2/lr`` for plain gradient
  descent, ``(2 + 2 beta) / lr`` with heavy-ball momentum beta, and for Adam the adaptive edge
  ``(2 + 2 b1) / ((1 - b1) lr)`` (38/lr at b1 = 0.9).

Each measurement is timed, so the run reports its cost as a fraction of the training time.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxopt_notes import hessian, models
from jaxopt_notes.train.config import TrainConfig
from jaxopt_notes.train.steps import label_loss, make_chunk_fns

ADAM_LIKE = ("adam", "adamw", "amsgrad", "nadam", "nadamw", "radam", "adamax", "yogi", "adabelief")


def find_field(tree: Any, name: str) -> Any:
    """The first ``name`` attribute of a NamedTuple inside ``tree`` (an optimizer state)."""
    if hasattr(tree, "_fields"):
        if name in tree._fields:
            return getattr(tree, name)
        children = list(tree)
    elif isinstance(tree, tuple | list):
        children = list(tree)
    else:
        return None
    for child in children:
        found = find_field(child, name)
        if found is not None:
            return found
    return None


def thresholds(cfg: TrainConfig, lr: float) -> dict[str, float]:
    """The stability edges at learning rate ``lr`` for ``cfg``'s optimizer."""
    if not lr > 0:
        return {}
    if cfg.optimizer in ADAM_LIKE:
        b1 = 0.9 if cfg.b1 is None else cfg.b1
        return {"edge": 2 / lr, "adaptive_edge": (2 + 2 * b1) / ((1 - b1) * lr)}
    beta = {"momentum": 0.9, "nesterov": 0.9}.get(cfg.optimizer, 0.0)
    beta = cfg.momentum if cfg.momentum is not None else beta
    return {"edge": (2 + 2 * beta) / lr}


class CurvatureTracker:
    """Measures the curvature of a training state; keeps the warm-start vectors and timings."""

    def __init__(self, model, data, cfg: TrainConfig):
        num_iter, probes = cfg.curvature_iters, cfg.curvature_probes
        n = cfg.curvature_examples or len(data.y_train)
        x = data.x_train[:n]
        labels = jnp.asarray(data.y_train[:n])
        pure = models.split(model, train=False)
        self.cfg, self.records, self.v = cfg, [], None
        self.seconds = self.compile_seconds = 0.0
        self.key = jax.random.fold_in(jax.random.key(cfg.seed), 7)
        adam_like = cfg.optimizer in ADAM_LIKE or cfg.optimizer == "rmsprop"
        b2 = (cfg.b2 if cfg.b2 is not None else 0.999) if cfg.optimizer != "rmsprop" else None
        eps = 1e-8 if cfg.eps is None else cfg.eps
        xs = jnp.asarray(x)
        mean, std = data.mean, data.std

        def loss(params, stats):
            from jaxopt_notes import data as data_lib

            net = pure.merge(params, stats)
            logits = net(data_lib.normalize(xs, mean, std))
            return label_loss(cfg, logits, labels, data.num_classes)  # the loss the run trains on

        def measure(params, stats, opt_state, count, v_top, v_pre, key):
            flat, unravel = ravel_pytree(params)
            grad = jax.grad(lambda f: loss(unravel(f), stats))
            # reverse over reverse: the kernels' custom_vjp convolutions have no forward mode
            hv = lambda v: jax.grad(lambda f: jnp.vdot(grad(f), v))(flat)  # noqa: E731
            k1, k2, k3 = jax.random.split(key, 3)
            ext = hessian.measure(hv, v_top, num_iter=num_iter, which="both", key=k1)
            z = jax.random.rademacher(k2, (probes, flat.size), flat.dtype)
            samples = jnp.sum(z * jax.vmap(hv)(z), axis=1)
            out = {
                "top": ext.values[0],
                "bottom": ext.values[-1],
                # the Ritz residual estimates, relative to the spectrum's scale: how converged
                "top_residual": ext.residuals[0],
                "bottom_residual": ext.residuals[-1],
                "trace": samples.mean(),
                "trace_se": samples.std(ddof=1) / np.sqrt(probes),
            }
            nu = find_field(opt_state, "nu")
            if adam_like and nu is not None:
                nu_hat = ravel_pytree(nu)[0]
                if b2 is not None:
                    nu_hat = nu_hat / (1 - b2 ** jnp.maximum(count, 1).astype(flat.dtype))
                d = 1 / jnp.sqrt(jnp.sqrt(nu_hat) + eps)
                pre = hessian.measure(lambda u: d * hv(d * u), v_pre, num_iter=num_iter, key=k3)
                out["preconditioned"] = jnp.where(count > 0, pre.values[0], jnp.nan)  # nu set
                v_pre = pre.start
            return out, ext.start, v_pre

        self._measure = jax.jit(measure)

    def __call__(self, state, step: int, lr: float) -> dict[str, Any]:
        """Measures at ``state`` (after ``step`` steps, rate ``lr``); appends and returns it."""
        t = time.perf_counter()
        size = ravel_pytree(state.params)[0].size
        if self.v is None:
            self.key, k = jax.random.split(self.key)
            start = jax.random.normal(k, (1, size))
            self.v = (start, start)
        self.key, k = jax.random.split(self.key)
        args = (
            state.params,
            state.batch_stats,
            state.opt_state,
            jnp.asarray(step, jnp.int32),
            *self.v,
            k,
        )
        if not isinstance(self._measure, jax.stages.Compiled):
            self._measure = self._measure.lower(*args).compile()
            self.compile_seconds += time.perf_counter() - t
            t = time.perf_counter()
        out, v_top, v_pre = self._measure(*args)
        self.v = (v_top, v_pre)
        record = {
            "kind": "curvature",
            "step": step,
            "lr": lr,
            **{k: float(v) for k, v in jax.device_get(out).items()},
            **thresholds(self.cfg, lr),
        }
        self.seconds += time.perf_counter() - t
        record["seconds"] = time.perf_counter() - t
        self.records.append(record)
        return record


def current_lr(opt_state: Any) -> float:
    """The learning rate the optimizer's schedule link used last (NaN when it has none)."""
    lr = find_field(opt_state, "learning_rate")
    return float(lr) if lr is not None else float("nan")


def make_tracked_epoch(model, tx, data, cfg: TrainConfig, mesh, tracker: CurvatureTracker):
    """An epoch function like :func:`~jaxopt_notes.train.make_epoch_fn`'s that stops at every
    step divisible by ``cfg.track_curvature`` to measure: the same plan, its steps in chunks of
    at most N (padded to N and masked, so one program is compiled), and the seconds spent in
    the steps alone."""
    plan, steps = make_chunk_fns(model, tx, data, cfg, mesh)
    every, n_steps = cfg.track_curvature, len(data.y_train) // cfg.batch_size
    plan, steps = jax.jit(plan), jax.jit(steps, donate_argnums=0)
    compiled: list[Any] = []

    def chunk(state, x_all, y_all, order, keys, start, stop):
        rows = np.arange(start, start + every)
        idx = np.minimum(rows, stop - 1)  # padding repeats the last row, masked off
        args = (state, x_all, y_all, order[idx], keys[idx], jnp.asarray(rows < stop))
        if not compiled:
            t = time.perf_counter()
            compiled.append(steps.lower(*args).compile())
            tracker.compile_seconds += time.perf_counter() - t
        t = time.perf_counter()
        state, (loss, acc) = compiled[0](*args)
        jax.block_until_ready(loss)
        n = stop - start
        return state, loss[:n], acc[:n], time.perf_counter() - t

    def epoch(state, x_all, y_all, key, *, first_step: int):
        order, keys = plan(key)
        bounds = [s for s in range(n_steps) if (first_step + s) % every == 0]
        cuts = sorted({0, *bounds, n_steps})
        losses, accs, seconds = [], [], 0.0
        for start, stop in itertools.pairwise(cuts):
            if start in bounds:
                tracker(state, first_step + start, current_lr(state.opt_state))
            state, loss, acc, t = chunk(state, x_all, y_all, order, keys, start, stop)
            losses.append(loss), accs.append(acc)
            seconds += t
        metrics = {"loss": jnp.concatenate(losses).mean(), "accuracy": jnp.concatenate(accs).mean()}
        return state, metrics, seconds

    return epoch


def edge_ratios(records: list[dict], band: tuple[float, float] = (0.8, 1.2)) -> dict[str, Any]:
    """The top eigenvalue over its edge (2/lr, with momentum 2(1+b)/lr) through a run's curvature
    records: at the first measurement, the median over the second half and the share of the
    second half within ``band`` (Cohen et al. 2021: full-batch GD rises to the edge from below
    and hovers there). Records without a finite top or edge are left out.

    >>> r = [{"top": t, "edge": 10.0} for t in (4.0, 9.0, 10.5, 9.5, 11.0, 13.0)]
    >>> edge_ratios(r)
    {'first': 0.4, 'second_half_median': 1.1, 'second_half_in_band': 0.667, 'measurements': 6}
    """
    ratio = np.array(
        [r["top"] / r["edge"] for r in records if r.get("top") is not None and r.get("edge")]
    )
    if not len(ratio):
        raise ValueError("`records` must hold measurements with a top eigenvalue and an edge")
    half = ratio[len(ratio) // 2 :]
    return {
        "first": round(float(ratio[0]), 3),
        "second_half_median": round(float(np.median(half)), 3),
        "second_half_in_band": round(float(np.mean((half >= band[0]) & (half <= band[1]))), 3),
        "measurements": len(ratio),
    }


def plot_curvature(records: list[dict], path) -> None:
    """``curvature.png``: top eigenvalue beside its edge, the preconditioned one beside the
    adaptive edge (Adam), and the bottom eigenvalue and trace, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in records]
    pre = any("preconditioned" in r for r in records)
    fig, axes = plt.subplots(1, 3 if pre else 2, figsize=(13 if pre else 9, 3.6))
    # a value JSON could not hold (NaN, Inf) is None in the records: drawn as a gap
    col = lambda k: [np.nan if r.get(k) is None else r[k] for r in records]  # noqa: E731
    axes[0].plot(steps, col("top"), label="top eigenvalue")
    axes[0].plot(steps, col("edge"), "k--", label="edge (2/lr, with momentum 2(1+b)/lr)")
    top = np.nanmax(col("top") + [1e-12])
    edge = np.nanmin(col("edge") + [np.inf])  # the edge is in view when it is within 4x the top
    axes[0].set(
        xlabel="step",
        ylabel="eigenvalue",
        title="sharpness",
        ylim=(0, 1.15 * (max(edge, top) if edge < 4 * top else top)),
    )
    axes[0].legend(fontsize=7)
    if pre:
        axes[1].plot(steps, col("preconditioned"), label="top of P^-1/2 H P^-1/2")
        axes[1].plot(steps, col("adaptive_edge"), "k--", label="adaptive edge (2+2b1)/((1-b1)lr)")
        axes[1].set(xlabel="step", title="preconditioned sharpness (Adam)", yscale="log")
        axes[1].legend(fontsize=7)
    ax = axes[-1]
    ax.plot(steps, col("bottom"), label="bottom eigenvalue")
    ax.set(xlabel="step", ylabel="bottom eigenvalue", title="bottom and trace")
    twin = ax.twinx()
    twin.plot(steps, col("trace"), color="C2", label="trace (Hutchinson)")
    twin.set_ylabel("trace")
    lines = ax.get_lines() + twin.get_lines()  # one legend for both y axes, inside the panel
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
