"""Model ensembles (the notes' 模型集成), measured against the best single model.

Four ways, all trained side by side as trials of one compiled program:

- ``independent``: ``k`` models from different initial weights (same data order), their
  softmax outputs averaged;
- ``snapshots``: one run on a cyclic (SGDR) schedule, the model at the end of each cycle kept
  and the last ``k`` averaged (Huang et al. 2017, "Snapshot Ensembles");
- ``checkpoints``: one run on the config's own schedule, its last ``k`` epochs averaged;
- ``ema`` / ``polyak``: one model whose *weights* are averaged during training by
  ``jn.ema_params`` / ``jn.polyak_params`` (a transform closing the chain), then evaluated once.

Each is scored on the validation split against the best single model of the same run(s).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxopt_notes as jn
from jaxopt_notes import data as data_lib
from jaxopt_notes.train import TrainConfig, with_validation
from jaxopt_notes.tune import _trials


def _accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(-1) == y).mean())


def _train(cfg, data, seeds, *, average=None, keep_every_epoch=False):
    """Trains one trial per seed; returns the validation probabilities (per epoch if asked) and
    the final state."""
    program = _trials.build(cfg, data, ("learning_rate",), average=average)
    hypers = _trials.stack({"learning_rate": np.full(len(seeds), cfg.learning_rate)})
    states = program.init(_trials.initial_params(cfg, data, seeds), hypers)
    x, y = jax.device_put((data.x_train, data.y_train))
    x_val = jnp.asarray(data.x_val)
    k_data = jax.random.split(jax.random.key(cfg.seed))[1]
    per_epoch = []
    for epoch in range(cfg.epochs):
        key = jax.random.fold_in(k_data, epoch)
        states, _ = program.epoch(states, hypers, np.ones(len(seeds), bool), x, y, key)
        if keep_every_epoch or epoch == cfg.epochs - 1:
            per_epoch.append(np.asarray(jax.nn.softmax(program.logits(states, x_val), -1)))
    return per_epoch, states, program


def independent(cfg: TrainConfig, data: data_lib.Dataset, k: int = 4) -> dict[str, Any]:
    """``k`` models from seeds ``cfg.seed .. cfg.seed + k - 1``, their predictions averaged."""
    (probs,), _, _ = _train(cfg, data, [cfg.seed + i for i in range(k)])
    singles = [_accuracy(p, data.y_val) for p in probs]
    return {"members": singles, "ensemble": _accuracy(probs.mean(0), data.y_val)}


def snapshots(cfg: TrainConfig, data: data_lib.Dataset, k: int = 3) -> dict[str, Any]:
    """One run on a cyclic schedule (``cfg.cycle_epochs`` per cycle); the last ``k`` cycle ends
    averaged. ``cfg.epochs`` should be a multiple of ``cfg.cycle_epochs``."""
    cyclic = dataclasses.replace(cfg, schedule="cyclic")
    probs, _, _ = _train(cyclic, data, [cfg.seed], keep_every_epoch=True)
    ends = [probs[e][0] for e in range(cfg.cycle_epochs - 1, cfg.epochs, cfg.cycle_epochs)][-k:]
    singles = [_accuracy(p, data.y_val) for p in ends]
    return {"members": singles, "ensemble": _accuracy(np.mean(ends, 0), data.y_val)}


def checkpoints(cfg: TrainConfig, data: data_lib.Dataset, k: int = 3) -> dict[str, Any]:
    """One run on ``cfg``'s schedule; the models of its last ``k`` epochs averaged."""
    probs, _, _ = _train(cfg, data, [cfg.seed], keep_every_epoch=True)
    last = [p[0] for p in probs[-k:]]
    singles = [_accuracy(p, data.y_val) for p in last]
    return {"members": singles, "ensemble": _accuracy(np.mean(last, 0), data.y_val)}


def weight_average(
    cfg: TrainConfig, data: data_lib.Dataset, kind: str = "ema", decay: float = 0.99
) -> dict[str, Any]:
    """One run with ``jn.ema_params(decay)`` or ``jn.polyak_params()`` closing the chain: the
    final weights and the averaged weights, each evaluated."""
    if kind not in ("ema", "polyak"):
        raise ValueError(f"`kind` must be 'ema' or 'polyak', got {kind!r}")
    average = jn.ema_params(decay) if kind == "ema" else jn.polyak_params()
    (probs,), states, program = _train(cfg, data, [cfg.seed], average=average)
    averaged = states._replace(params=jn.averaged_params(states.opt_state))
    avg_probs = np.asarray(jax.nn.softmax(program.logits(averaged, jnp.asarray(data.x_val)), -1))
    return {
        "members": [_accuracy(probs[0], data.y_val)],
        "ensemble": _accuracy(avg_probs[0], data.y_val),
    }


def compare(
    cfg: TrainConfig, *, seeds: list[int], k: int = 4, data: data_lib.Dataset | None = None
) -> dict[str, Any]:
    """Every kind for each seed: the ensemble's validation accuracy minus its best member's."""
    data = with_validation(cfg, data)
    kinds = {
        "independent": lambda c: independent(c, data, k),
        "snapshots": lambda c: snapshots(c, data, k),
        "checkpoints": lambda c: checkpoints(c, data, k),
        "ema": lambda c: weight_average(c, data, "ema"),
        "polyak": lambda c: weight_average(c, data, "polyak"),
    }
    out: dict[str, Any] = {"config": dataclasses.asdict(cfg), "seeds": seeds, "k": k}
    for name, run in kinds.items():
        rows = [run(dataclasses.replace(cfg, seed=s)) for s in seeds]
        gains = [r["ensemble"] - max(r["members"]) for r in rows]
        out[name] = {
            "runs": rows,
            "gain_over_best_member": gains,
            "mean_gain": float(np.mean(gains)),
        }
    return out
