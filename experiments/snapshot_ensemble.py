"""Snapshot ensembles (Huang et al. 2017): restart the learning rate, keep a model per cycle.

The CS231n notes (seed 001) describe raising the learning rate periodically so that each
restart settles in a new local optimum that "can be seen as a new model", and warn that a
checkpoint ensemble of neighbouring epochs (the 98th and 99th) does not give different models.
Three arms per seed, at one budget of ``cycles * cycle_epochs`` epochs each (SGD with momentum):

- snapshot: ``jn.schedules.cyclic`` (cosine restarts); a snapshot at the end of every cycle;
- checkpoints: one cosine decay over the whole budget; the checkpoints of its last ``cycles``
  epochs (the notes' 98th-and-99th ensemble);
- independent: ``cycles`` models from different initial weights, one cycle each (the same total
  number of updates as one snapshot run).

Every ensemble averages its members' softmax outputs on the test set. The snapshot and
checkpoint arms of a seed start from the same weights and see the same batches (paired).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jaxopt_notes.experiments import _mnist, _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, check, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn

SUMMARY = "Snapshot ensembles of cyclic-lr restarts against the last snapshot and checkpoints"
DATA = _mnist.data_note("mnist5k")
QUICK_NOTE = (
    "quick runs 6 seeds instead of 10 with the same schedule; only the intervals widen, so an "
    "inconclusive verdict may be down to the few seeds."
)
NOTE, SECTION = "001_4509a285741226d3.txt", "学习率"
HUANG = "Huang et al., Snapshot Ensembles: Train 1, get M for free, ICLR 2017"


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 10
    dataset: str = param("mnist5k", choices=("mnist5k", "digits"))
    depth: int = 2
    width: int = 100
    batch_size: int = 128
    learning_rate: float = 0.05
    momentum: float = param(0.9, low=0.0, high=1.0, high_open=True)
    cycles: int = param(5, low=2, help="snapshots M = cycles")
    cycle_epochs: int = 4
    restarts: bool = param(True, help="false: one cosine decay, snapshots of the last epochs")
    nll_ratio: float = param(0.95, low=0.0, high=1.0, low_open=True)
    min_acc_gain: float = param(0.005, low=0.0)
    vs_checkpoints: float = param(1.0, low=0.0, low_open=True)
    vs_independent: float = param(1.05, low=0.0, low_open=True)

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=6)

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            seeds=4,
            dataset="digits",
            depth=1,
            width=64,
            batch_size=32,
            learning_rate=0.3,
            cycles=4,
            cycle_epochs=6,
        )


def schedules(cfg: Config, period: int):
    """(restarting, single): the cyclic schedule and one cosine decay over the same budget."""
    cyclic = jn.schedules.cyclic(cfg.learning_rate, period=period)
    single = jn.schedules.cosine_decay(cfg.learning_rate, decay_steps=cfg.cycles * period)
    return cyclic if cfg.restarts else single, single


def train(cfg: Config, arrays: _mnist.Arrays) -> dict[str, np.ndarray]:
    """Test-set softmax outputs of every member: (seeds, members, images, classes) per arm."""
    per_epoch = arrays.x_train.shape[0] // cfg.batch_size
    period, s, m = cfg.cycle_epochs * per_epoch, cfg.seeds, cfg.cycles
    keys = jax.random.split(jax.random.key(0), s)
    batches = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)

    def net(k):
        return _mnist.mlp(k, arrays, depth=cfg.depth, width=cfg.width, init="he")

    restarting, single = schedules(cfg, period)

    def tx(h):  # h = 1: the snapshot arm's schedule, h = 0: one cosine decay
        lr = lambda t: jnp.where(h > 0, restarting(t), single(t))  # noqa: E731
        return jn.sgd(lr, momentum=cfg.momentum)

    paired = _mnist.fit(
        [net(k) for k in keys] * 2,
        tx,
        arrays,
        hparams=jnp.repeat(jnp.array([1.0, 0.0]), s),
        steps=m * period,
        batch_size=cfg.batch_size,
        key=jnp.concatenate([batches, batches]),
        eval_every=per_epoch,
        snapshots=True,
    )
    own = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, 2), m))(keys).reshape(-1)
    lone = _mnist.fit(
        [net(k) for k in own],
        jn.sgd(jn.schedules.cosine_decay(cfg.learning_rate, decay_steps=period), cfg.momentum),
        arrays,
        steps=period,
        batch_size=cfg.batch_size,
        key=jax.vmap(lambda k: jax.random.fold_in(k, 1))(own),
    )
    apply = _mnist.eval_apply(net(keys[0]))
    soft = jax.jit(jax.vmap(lambda p: jax.nn.softmax(apply(p, {}, arrays.x_test))))
    epochs = m * cfg.cycle_epochs
    last = np.arange(epochs - m, epochs)
    # without restarts the "snapshots" are the last epochs' checkpoints: nothing is restarted
    ends = np.arange(cfg.cycle_epochs, epochs + 1, cfg.cycle_epochs) - 1 if cfg.restarts else last
    snap = _mnist.pick(paired.snapshots, slice(0, s))
    check_pts = _mnist.pick(paired.snapshots, slice(s, 2 * s))
    return {
        "snapshot": members(soft, snap, ends),
        "checkpoints": members(soft, check_pts, last),
        "independent": np.asarray(soft(lone.params)).reshape(s, m, arrays.x_test.shape[0], -1),
        "labels": np.asarray(arrays.y_test),
        "period": period,
    }


def members(soft, snapshots, epochs: np.ndarray) -> np.ndarray:
    """Softmax outputs of the snapshots at ``epochs`` (0-based), per seed."""
    chosen = jax.tree.map(lambda a: a[:, epochs], snapshots)
    flat = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), chosen)
    out = np.asarray(soft(flat))
    return out.reshape(-1, len(epochs), *out.shape[1:])


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, list]:
    """Per seed: accuracy and NLL of the last member, and of the ensembles of the last k members."""
    nll, acc = [], []
    for k in range(1, probs.shape[1] + 1):
        mix = probs[:, -k:].mean(1)  # (seeds, images, classes)
        p_true = np.take_along_axis(mix, labels[None, :, None], axis=-1)[..., 0]
        nll.append((-np.log(np.maximum(p_true, 1e-12))).mean(-1))
        acc.append((mix.argmax(-1) == labels).mean(-1))
    return {"nll_by_size": np.stack(nll, 1).tolist(), "accuracy_by_size": np.stack(acc, 1).tolist()}


def src(quote: str, english: str, reference: str = HUANG) -> Source:
    return Source(NOTE, SECTION, quote, english, reference)


NEW_MODEL = src(
    "这样每次跳到更大的学习率产生的局部最优点，都可以看作为一个新的模型",
    "so each local optimum reached after jumping to a larger learning rate can be seen as a new "
    "model",
)
CHECKPOINT = src(
    "例如使用第98轮和第99轮的数据进行集成，成为checkpoint的集成方法，但是这种方法实际上不能满足采用了不同模型的这个原则",
    "e.g. ensembling the models of epochs 98 and 99, the checkpoint ensemble; but in fact this "
    "does not satisfy the principle of using different models",
)


def column(metrics: dict, arm: str, key: str, k: int) -> np.ndarray:
    """Per seed, ``key`` of the ensemble of the last ``k`` members of ``arm``."""
    return np.asarray(metrics[arm][key])[:, k - 1]


def claims(metrics: dict, cfg: Config) -> list[dict]:
    m, n = cfg.cycles, cfg.seeds
    nll = {
        a: column(metrics, a, "nll_by_size", m) for a in ("snapshot", "checkpoints", "independent")
    }
    last_nll = column(metrics, "snapshot", "nll_by_size", 1)
    acc, last_acc = (column(metrics, "snapshot", "accuracy_by_size", k) for k in (m, 1))
    budget = f"{m} cycles of {cfg.cycle_epochs} epochs, lr {cfg.learning_rate}"
    lr = metrics["schedule_check"]
    return [
        claim(
            f"An ensemble of the {m} snapshots has a lower test NLL than the last snapshot "
            f"alone ({budget})",
            _stats.paired_ratio(nll["snapshot"], last_nll),
            Test(
                "test NLL ratio (ensemble / last snapshot)",
                "<",
                cfg.nll_ratio,
                "a pre-stated effect: 5% lower NLL",
                n,
                paired=True,
            ),
            NEW_MODEL,
            {"last_snapshot_nll": _stats.positive_mean(last_nll), "restarts": cfg.restarts},
            id="snapshots_beat_last_nll",
            kind="beyond",
        ),
        claim(
            f"An ensemble of the {m} snapshots has a higher test accuracy than the last "
            f"snapshot alone ({budget})",
            _stats.paired_difference(acc, last_acc),
            Test(
                "test-accuracy gain (ensemble - last snapshot)",
                ">",
                cfg.min_acc_gain,
                "a pre-stated effect: half a point (5 of the 1,000 test images)",
                n,
                paired=True,
            ),
            NEW_MODEL,
            {"last_snapshot_accuracy": _stats.mean(last_acc)},
            note="NLL sees the averaged confidences; accuracy only the argmax, which the "
            "snapshots mostly share",
            id="snapshots_beat_last_accuracy",
            kind="beyond",
        ),
        claim(
            f"Snapshots of restarts make a better ensemble than checkpoints of the last {m} "
            "epochs of one decaying run, at the same budget",
            _stats.paired_ratio(nll["snapshot"], nll["checkpoints"]),
            Test(
                "test NLL ratio (snapshot ensemble / checkpoint ensemble)",
                "<",
                cfg.vs_checkpoints,
                "the notes say only 'not different models': any gain",
                n,
                paired=True,
            ),
            CHECKPOINT,
            {"checkpoint_ensemble_nll": _stats.positive_mean(nll["checkpoints"])},
            id="snapshots_beat_checkpoints",
        ),
        claim(
            f"Train 1, get {m} for free: the snapshot ensemble's test NLL is no more than 5% "
            f"above that of {m} independently trained one-cycle models (the same total updates)",
            _stats.paired_ratio(nll["snapshot"], nll["independent"]),
            Test(
                "test NLL ratio (snapshot ensemble / independent ensemble)",
                "<",
                cfg.vs_independent,
                "Huang et al.'s title claim, read as at most 5% worse",
                n,
                paired=True,
            ),
            NEW_MODEL,
            {
                "independent_ensemble_nll": _stats.positive_mean(nll["independent"]),
                "independent_single_nll": _stats.positive_mean(
                    column(metrics, "independent", "nll_by_size", 1)
                ),
            },
            note="the independent models start from different weights: more diverse members",
            id="snapshots_match_independent",
        ),
        check(
            "The cyclic schedule restarts: its rate at a cycle's last step is under 1% of the "
            "initial rate and the next step starts again at the initial rate",
            lr["end"] < 0.01 * lr["start"] and abs(lr["restart"] - lr["start"]) < 1e-6,
            lr,
            id="cyclic_restarts",
        ),
    ]


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    sizes = np.arange(1, cfg.cycles + 1)
    labels = {
        "snapshot": "snapshots of restarts",
        "checkpoints": "checkpoints of last epochs",
        "independent": "independent one-cycle models",
    }
    for ax, key, name in (
        (axes[0], "nll_by_size", "test NLL"),
        (axes[1], "accuracy_by_size", "test accuracy"),
    ):
        for arm, label in labels.items():
            est = [_stats.mean(column(metrics, arm, key, k)) for k in sizes]
            mid = np.array([e.value for e in est])
            ax.plot(sizes, mid, "o-", label=label)
            ax.fill_between(sizes, [e.low for e in est], [e.high for e in est], alpha=0.15)
        ax.set(
            xlabel="ensemble size (last k members)",
            ylabel=f"{name} (mean, 95% CI)",
            title=f"{name}: SGD lr {cfg.learning_rate}, momentum {cfg.momentum}, "
            f"{cfg.cycles}x{cfg.cycle_epochs} epochs",
        )
        ax.set_xticks(sizes)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "snapshot_ensemble")


def main(cfg: Config, out_dir: Path) -> dict:
    arrays = _mnist.load(cfg.dataset)
    probs = train(cfg, arrays)
    metrics = {
        arm: scores(probs[arm], probs["labels"])
        for arm in ("snapshot", "checkpoints", "independent")
    }
    lr = jn.schedules.cyclic(cfg.learning_rate, period=probs["period"])
    period = probs["period"]
    metrics["schedule_check"] = {
        "start": float(lr(0)),
        "end": float(lr(period - 1)),
        "restart": float(lr(period)),
        "period_steps": period,
    }
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
