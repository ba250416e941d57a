"""The notes' checks before any tuning: the initial loss, overfitting a tiny subset, and the
gradient and update/weight ratios of each layer at the start.

- With C classes and small random weights the softmax is near uniform, so the initial loss
  should be near ``ln C`` (2.303 for 10). Much higher means overconfident initial outputs (weights
  too large); much lower means the labels leak or the loss is not what it seems.
- A working model and optimizer fit 20-50 examples to ~100% training accuracy with the
  regularisation off; failure means a bug or too little capacity.
- cs231n's rule of thumb: one update should change each weight matrix by about 1e-3 of its norm;
  far below and learning crawls, far above and it is unstable.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

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
    make_optimizer,
    make_step,
    with_validation,
)
from jaxopt_notes.tune import _trials

RATIO_BAND = (1e-4, 1e-2)  # update/weight ratios outside this band are flagged (target 1e-3)


@dataclasses.dataclass
class Sanity:
    initial_loss: float
    ln_c: float
    subset_size: int
    subset_accuracy: float
    subset_steps: int
    layers: list[dict[str, Any]]  # {"layer", "weight_norm", "grad_norm", "update_ratio"}

    @property
    def initial_loss_ok(self) -> bool:
        return abs(self.initial_loss - self.ln_c) <= 0.25 * self.ln_c

    @property
    def overfits(self) -> bool:
        return self.subset_accuracy >= 0.99

    @property
    def ratios_ok(self) -> bool:
        return all(RATIO_BAND[0] <= r["update_ratio"] <= RATIO_BAND[1] for r in self.layers)

    def report(self) -> str:
        lines = [
            _initial_line(self),
            _subset_line(self),
            "update/weight ratio per layer "
            f"(target ~1e-3, flagged outside {RATIO_BAND[0]:g}..{RATIO_BAND[1]:g}):",
        ]
        for r in self.layers:
            flag = "" if RATIO_BAND[0] <= r["update_ratio"] <= RATIO_BAND[1] else "  <- check"
            lines.append(
                f"  {r['layer']:24s} |w| {r['weight_norm']:.3g}  |g| {r['grad_norm']:.3g}  "
                f"|dw|/|w| {r['update_ratio']:.2e}{flag}"
            )
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "initial_loss_ok": self.initial_loss_ok,
            "overfits": self.overfits,
            "ratios_ok": self.ratios_ok,
        }


def _initial_line(s: Sanity) -> str:
    off = s.initial_loss / s.ln_c - 1
    verdict = (
        "as expected"
        if s.initial_loss_ok
        else (
            f"{off:+.0%}, high: the initial logits are large (confident outputs), the weights or "
            "the last layer start too large"
            if off > 0
            else f"{off:+.0%}, low: check the labels and the loss"
        )
    )
    return f"initial loss {s.initial_loss:.3f} against ln C = {s.ln_c:.3f}: {verdict}"


def _subset_line(s: Sanity) -> str:
    verdict = "fits it" if s.overfits else "does NOT fit it: a bug, or too little capacity"
    return (
        f"{s.subset_size} training examples, regularisation off, {s.subset_steps} steps: "
        f"training accuracy {s.subset_accuracy:.3f}, the model {verdict}"
    )


def sanity_checks(
    cfg: TrainConfig,
    *,
    data: data_lib.Dataset | None = None,
    subset: int = 32,
    steps: int = 200,
    batch: int = 256,
) -> Sanity:
    """Runs the three checks on ``cfg``'s model, optimizer and training data."""
    if not 2 <= subset <= 1000:
        raise ValueError(f"`subset` must be in 2..1000 examples, got {subset}")
    data = with_validation(cfg, data)
    model = build_model(cfg, data.describe(), _trials.init_key(cfg))
    x = data_lib.normalize(jnp.asarray(data.x_train[:batch]), data.mean, data.std)
    onehot = jax.nn.one_hot(data.y_train[:batch], data.num_classes)
    apply = nnx.view(model, deterministic=True, use_running_average=True, raise_if_not_found=False)
    initial = float(optax.softmax_cross_entropy(apply(x), onehot).mean())
    layers = _ratios(cfg, model, data, x, onehot)
    accuracy = _overfit_subset(cfg, data, subset, steps)
    return Sanity(initial, math.log(data.num_classes), subset, accuracy, steps, layers)


def _ratios(cfg, model, data, x, onehot) -> list[dict[str, Any]]:
    """One step of train's step with ``cfg``'s own optimizer (its schedule's first rate) and
    loss from the initial weights: each layer's gradient and update against its weights."""
    tx = make_optimizer(cfg, max(1, len(data.y_train) // cfg.batch_size))
    gradients = lambda old, new, grads: grads  # noqa: E731
    step = make_step(model, tx, loss=functools.partial(example_loss, cfg.loss), probe=gradients)
    params, stats = nnx.state(model, nnx.Param), nnx.state(model, nnx.BatchStat)
    if cfg.label_smoothing:
        onehot = optax.smooth_labels(onehot, cfg.label_smoothing)
    opt = tx.init(params)
    _, (_, _, grads) = step(TrainState(params, stats, opt), x, onehot, jax.random.key(0))
    updates, _ = tx.update(grads, opt, params)
    out = []
    for (path, w), g, u in zip(*(_flat(t) for t in (params, grads, updates)), strict=True):
        if w.ndim < 2:  # biases start at zero: no ratio to speak of
            continue
        wn = float(jnp.linalg.norm(w))
        out.append(
            {
                "layer": path,
                "weight_norm": wn,
                "grad_norm": float(jnp.linalg.norm(g[1])),
                "update_ratio": float(jnp.linalg.norm(u[1])) / max(wn, 1e-12),
            }
        )
    return out


def _flat(tree: Any) -> list:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    names = [
        [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in p]
        for p, _ in leaves
    ]
    return [
        (".".join(n for n in ns if n not in ("", "value")), v)
        for ns, (_, v) in zip(names, leaves, strict=True)
    ]


def _overfit_subset(cfg: TrainConfig, data: data_lib.Dataset, subset: int, steps: int) -> float:
    """Training accuracy on ``subset`` examples after ``steps`` full-batch steps, with the
    augmentation, dropout, weight decay and schedule off."""
    x, y = data.x_train[:subset], data.y_train[:subset]
    repeats = 10  # one "epoch" = 10 full-batch steps, so the scan has a few steps per call
    tiny = dataclasses.replace(
        data, x_train=np.concatenate([x] * repeats), y_train=np.concatenate([y] * repeats)
    )
    plain = dataclasses.replace(
        cfg,
        batch_size=subset,
        epochs=max(1, steps // repeats),
        shift=0,
        rotate=0.0,
        scale=0.0,
        elastic=0.0,
        flip=False,
        cutout=0,
        mixup=0.0,
        dropout=0.0,
        weight_decay=0.0,
        label_smoothing=0.0,
        schedule="constant",
        warmup_epochs=0.0,
    )
    program = _trials.build(plain, tiny, ("learning_rate",))
    hypers = _trials.stack({"learning_rate": np.array([plain.learning_rate])})
    states = program.init(_trials.broadcast(nnx.state(program.model, nnx.Param), 1), hypers)
    xs, ys = jnp.asarray(tiny.x_train), jnp.asarray(tiny.y_train)
    for epoch in range(plain.epochs):
        key = jax.random.fold_in(jax.random.key(cfg.seed), epoch)
        states, _ = program.epoch(states, hypers, np.ones(1, bool), xs, ys, key)
    return float(program.evaluate(states, x, y)["accuracy"][0])
