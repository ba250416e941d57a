"""Learning-rate schedules and switching optimizers on MNIST digits with a five-layer ReLU MLP.

1. SGD with momentum 0.9 at a constant rate, against step decay (x ``decay_factor`` at 50% and
   75% of the run: the ResNet recipe, "x0.1 every 30 of 90 epochs", scaled to this run) and
   against the same decay applied too early (at 10% and 20%).
2. Adam at ``large_factors`` times its default rate, with linear warm-ups over
   ``warmup_fractions`` of the run: a regime map of the early loss spike. The claim is decided
   at ``large_factor`` with warm-up ``warmup`` against no warm-up.
3. ``jn.adam_then_sgd``: Adam (default rate) until ``switch_at``, then SGD with momentum;
   against Adam alone and against Adam whose rate drops by ``decay_factor`` at the same step
   (the control: is the gain SGD's, or just a smaller step late in training?).

Every arm of one seed starts from the same He-initialised weights and sees the same batches, so
arms are compared seed by seed (paired differences and ratios with t-intervals). All runs are
one vmapped, compiled call (``_mnist.one_of`` picks each run's optimizer family).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jaxopt_notes.experiments import _mnist, _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn

SUMMARY = "Step decay helps, too early hurts; warm-up tames a large Adam rate; Adam then SGD"
DATA = (
    f"{_mnist.MNIST5K}, standardised; the tiny test settings use {_mnist.DIGITS}. No source "
    "fixes a data set or net for these claims; this is the 5-layer MLP of Saito ch. 6"
)
QUICK_NOTE = (
    "quick trains 12 epochs instead of 30, over 5 seeds, and maps fewer warm-up lengths. With "
    "fewer epochs a constant rate has had less time to settle, which favours step decay; the "
    "switch to SGD has had half as many SGD steps, so a miss of the Adam-then-SGD claims may "
    "be down to the budget."
)
FAMILIES = ("SGD+momentum", "Adam", "Adam then SGD")
NEVER = 1e9  # a milestone past every run's end

DECAY = Source(
    note="000_07e945f9227ab975.txt",
    section="优化算法 › 小批量随机梯度下降（minibatch gradient descent） › 小结",
    quote="在训练期间降低学习率有助于训练",
    english="lowering the learning rate during training helps training",
    reference="He et al. 2016 (ResNet): the rate divided by 10 at set epochs; d2l sec. 12.11",
)
EARLY = Source(
    note="001_4509a285741226d3.txt",
    section="超参数的选择",
    quote="过早降低学习率也不好",
    english="lowering the learning rate too early is also bad",
    reference="CS231n, lecture 'Training neural networks II': babysitting the learning process",
)
WARMUP = Source(
    note="002_3498af5075c2b1b1.txt",
    section="优化器",
    quote="另一个方法：Warm Up",
    english="another method [against the adaptive rate's blow-up]: warm-up",
    reference="Goyal et al. 2017 (gradual warm-up); Liu et al. 2020 (RAdam: Adam's early variance)",
)
SWITCH = Source(
    note="003_9f3980f7ef3a062d.txt",
    section="Adam=RMSProp + Momentum。",
    quote="前期使用Adam快速下降，后期使用SGD进行最优化调整",
    english="use Adam early for a fast descent, and SGD late for the final fine adjustment",
    reference="Keskar & Socher 2017 (SWATS: switching from Adam to SGD)",
)


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 10
    dataset: str = param("mnist5k", choices=("mnist5k", "digits"))
    depth: int = 4
    width: int = 100
    batch_size: int = 128
    epochs: int = 30
    sgd_lr: float = 0.05
    momentum: float = param(0.9, low=0.0, high=1.0, high_open=True)
    decay_factor: float = param(0.1, low=0.0, high=1.0, low_open=True, help="1: no decay")
    milestones: tuple = param((0.5, 0.75), low=0.0, high=1.0, help="fractions of the run")
    early_milestones: tuple = param((0.1, 0.2), low=0.0, high=1.0)
    adam_lr: float = 0.001
    large_factors: tuple = (3.0, 10.0, 30.0)
    warmup_fractions: tuple = param((0.0, 0.02, 0.05, 0.1, 0.2), low=0.0, high=1.0)
    large_factor: float = 10.0
    warmup: float = param(0.1, low=0.0, high=1.0, help="0: no warm-up")
    early_fraction: float = param(0.2, low=0.0, high=1.0, low_open=True)
    switch_sgd_lr: float = 0.01
    switch_at: float = param(0.5, low=0.0, high=1.0, help="1: never switch")
    max_loss_ratio: float = param(0.5, low=0.0, high=1.0, low_open=True)
    min_accuracy_gain: float = param(0.005, low=0.0, high=1.0)
    min_spike_drop: float = param(0.5, low=0.0, help="nats")

    def validate(self) -> None:
        if self.large_factor not in self.large_factors:
            raise ValueError(
                f"`large_factor` must be one of `large_factors` {self.large_factors}, "
                f"got {self.large_factor}"
            )
        if self.warmup not in self.warmup_fractions or 0.0 not in self.warmup_fractions:
            raise ValueError(
                f"`warmup_fractions` must hold 0 and `warmup` = {self.warmup}, "
                f"got {self.warmup_fractions}"
            )

    @classmethod
    def quick(cls) -> Config:
        # 5 seeds, not 3: a t-interval of a loss ratio over 3 seeds spanned [0.009, 188]
        return cls(seeds=5, epochs=12, warmup_fractions=(0.0, 0.05, 0.1, 0.2))

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            seeds=3,
            dataset="digits",
            depth=2,
            width=32,
            batch_size=64,
            epochs=8,
            large_factors=(300.0,),  # the small net spikes only at far larger rates
            large_factor=300.0,
            warmup_fractions=(0.0, 0.1),
        )


def arms(cfg: Config, steps: int) -> dict[str, dict]:
    """Name -> (family, rate, warm-up steps, milestone steps) of the runs of one seed."""

    def at(fractions):
        marks = [f * steps for f in fractions]
        return marks + [NEVER] * (width - len(marks))

    width = max(len(cfg.milestones), len(cfg.early_milestones), 1)
    never = at(())
    out = {
        "constant": (0, cfg.sgd_lr, 1.0, never),
        "step decay": (0, cfg.sgd_lr, 1.0, at(cfg.milestones)),
        "decay too early": (0, cfg.sgd_lr, 1.0, at(cfg.early_milestones)),
        "Adam": (1, cfg.adam_lr, 1.0, never),
    }
    for f in cfg.large_factors:
        for w in cfg.warmup_fractions:
            out[warm_name(f, w)] = (1, cfg.adam_lr * f, max(1.0, w * steps), never)
    out["Adam then SGD"] = (2, cfg.adam_lr, 1.0, never)
    out["Adam, decayed at the switch"] = (1, cfg.adam_lr, 1.0, at((cfg.switch_at,)))
    return out


def warm_name(factor: float, warmup: float) -> str:
    return f"Adam x{factor:g}, warm-up {warmup:g}"


def schedule(lr, warmup, milestones, factor: float):
    """lr, ramped linearly over ``warmup`` steps, times ``factor`` per milestone passed."""
    return lambda t: lr * jnp.minimum(1.0, (t + 1.0) / warmup) * factor ** jnp.sum(t >= milestones)


def optimizer(cfg: Config, steps: int):
    switch = jn.adam_then_sgd(
        cfg.adam_lr, cfg.switch_sgd_lr, switch_step=int(cfg.switch_at * steps), momentum=0.9
    )

    def make(h):
        lr = schedule(h["lr"], h["warmup"], h["milestones"], cfg.decay_factor)
        options = [jn.sgd(lr, momentum=cfg.momentum), jn.adam(lr), switch]
        return _mnist.one_of(options, h["family"])

    return make


def train(cfg: Config, arrays: _mnist.Arrays, steps: int) -> tuple[dict, np.ndarray]:
    plan = arms(cfg, steps)
    nets, keys, rows = [], [], []
    for k in jax.random.split(jax.random.key(0), cfg.seeds):
        k_init, k_batches = jax.random.split(k)
        for row in plan.values():  # one seed's arms share the initial weights and batches
            nets.append(_mnist.mlp(k_init, arrays, depth=cfg.depth, width=cfg.width, init="he"))
            keys.append(k_batches)
            rows.append(row)
    hparams = {
        "family": jnp.asarray([r[0] for r in rows], jnp.int32),
        "lr": jnp.asarray([r[1] for r in rows], jnp.float32),
        "warmup": jnp.asarray([r[2] for r in rows], jnp.float32),
        "milestones": jnp.asarray([r[3] for r in rows], jnp.float32),
    }
    run = _mnist.fit(
        nets,
        optimizer(cfg, steps),
        arrays,
        hparams=hparams,
        steps=steps,
        batch_size=cfg.batch_size,
        key=jnp.stack(keys),
    )
    shape = (cfg.seeds, len(plan))
    loss = run.loss.reshape(*shape, steps)
    early = max(1, int(cfg.early_fraction * steps))
    peak = loss[..., :early].max(-1)  # NaN where a run diverged: the claim is then undecided
    per_arm = {
        name: {
            "train_loss": run.evals["train_loss"][:, -1].reshape(shape)[:, i],
            "test_accuracy": run.evals["test_accuracy"][:, -1].reshape(shape)[:, i],
            "peak_early_loss": peak[:, i],
        }
        for i, name in enumerate(plan)
    }
    return per_arm, loss


def _gain_test(cfg: Config, what: str, n: int) -> Test:
    return Test(
        what,
        ">",
        cfg.min_accuracy_gain,
        f"pre-stated effect size: {cfg.min_accuracy_gain * 100:g} accuracy point, 5 of the 1,000 "
        "test images; a smaller paired gain is a tie, not a win",
        n,
        paired=True,
    )


def _gain(per: dict, a: str, b: str):
    return _stats.paired_difference(per[a]["test_accuracy"], per[b]["test_accuracy"])


def claims(metrics: dict, cfg: Config) -> list[dict]:
    per = metrics["arms"]
    n = len(per["constant"]["test_accuracy"])
    cold, warm = (warm_name(cfg.large_factor, w) for w in (0.0, cfg.warmup))
    loss_ratio = _stats.paired_ratio(per["step decay"]["train_loss"], per["constant"]["train_loss"])
    spike = per[cold]["peak_early_loss"], per[warm]["peak_early_loss"]
    # both arms start from the same weights on the same batch, so the starting loss cancels
    spike_drop = _stats.paired_difference(*spike)
    finite = bool(np.all(np.isfinite(spike)))

    def acc(name):
        return _stats.mean(per[name]["test_accuracy"])

    return [
        claim(
            f"Step decay (x{cfg.decay_factor:g} at {cfg.milestones} of the run) helps training: "
            f"its final training loss is below {cfg.max_loss_ratio:g} x a constant rate's",
            loss_ratio,
            Test(
                "step decay's / constant rate's final training loss",
                "<",
                cfg.max_loss_ratio,
                f"pre-stated effect size: at most {cfg.max_loss_ratio:g} of the constant rate's "
                "loss, a visible step on a log-scale loss curve as in the ResNet curves",
                n,
                paired=True,
            ),
            DECAY,
            evidence={"constant": _stats.positive_mean(per["constant"]["train_loss"])},
            id="step_decay_lowers_loss",
        ),
        claim(
            "Step decay helps generalisation too: test accuracy above a constant rate's by more "
            f"than {cfg.min_accuracy_gain * 100:g} point",
            _gain(per, "step decay", "constant"),
            _gain_test(cfg, "step decay's - constant rate's test accuracy", n),
            DECAY,
            evidence={k: acc(k) for k in ("constant", "step decay")},
            id="step_decay_raises_accuracy",
            kind="beyond",
        ),
        claim(
            f"Decaying too early (at {cfg.early_milestones} of the run) hurts: test accuracy "
            f"below decaying at {cfg.milestones} by more than {cfg.min_accuracy_gain * 100:g} "
            "point",
            _gain(per, "step decay", "decay too early"),
            _gain_test(cfg, "step decay's - early decay's test accuracy", n),
            EARLY,
            evidence={k: acc(k) for k in ("step decay", "decay too early")}
            | {
                "early / step decay final training loss": _stats.paired_ratio(
                    per["decay too early"]["train_loss"], per["step decay"]["train_loss"]
                )
            },
            id="early_decay_hurts",
        ),
        claim(
            f"Warm-up tames a large Adam rate: at {cfg.large_factor:g} x Adam's default rate, a "
            f"linear warm-up over {cfg.warmup:g} of the run lowers the peak minibatch loss of "
            f"the first {cfg.early_fraction:g} of the run by more than {cfg.min_spike_drop:g} "
            "nats",
            spike_drop,
            Test(
                "peak early loss without - with warm-up (nats)",
                ">",
                cfg.min_spike_drop,
                f"pre-stated effect size: {cfg.min_spike_drop:g} nats, a fifth of the 2.3 nats "
                "of a uniform guess over 10 classes; a smaller drop is not a tamed spike",
                n,
                paired=True,
            ),
            WARMUP,
            evidence={
                "peak without warm-up": _stats.mean(spike[0]),
                "peak with warm-up": _stats.mean(spike[1]),
                "test accuracy without warm-up": acc(cold),
                "test accuracy with warm-up": acc(warm),
            },
            note="" if finite else "a run diverged (no finite peak): the drop is undecided",
            id="warmup_tames_spike",
            kind="beyond",
        ),
        claim(
            f"Adam early then SGD late (switch at {cfg.switch_at:g} of the run) ends with a test "
            f"accuracy above Adam's alone by more than {cfg.min_accuracy_gain * 100:g} point",
            _gain(per, "Adam then SGD", "Adam"),
            _gain_test(cfg, "Adam-then-SGD's - Adam's test accuracy", n),
            SWITCH,
            evidence={k: acc(k) for k in ("Adam", "Adam then SGD")},
            id="adam_then_sgd_beats_adam",
        ),
        claim(
            "The switch's gain is SGD's, not only a smaller late step: Adam then SGD beats Adam "
            f"whose rate drops x{cfg.decay_factor:g} at the same step by more than "
            f"{cfg.min_accuracy_gain * 100:g} point",
            _gain(per, "Adam then SGD", "Adam, decayed at the switch"),
            _gain_test(cfg, "Adam-then-SGD's - decayed Adam's test accuracy", n),
            SWITCH,
            evidence={k: acc(k) for k in ("Adam, decayed at the switch", "Adam then SGD")},
            id="switch_beats_adam_decay",
        ),
    ]


def warmup_map(metrics: dict, cfg: Config) -> dict:
    """Per large factor and warm-up: mean peak early loss and test accuracy over seeds."""
    per = metrics["arms"]
    out = {}
    for f in cfg.large_factors:
        rows = [per[warm_name(f, w)] for w in cfg.warmup_fractions]
        out[f"x{f:g}"] = {
            "warmup_fractions": list(cfg.warmup_fractions),
            "peak_early_loss": [float(np.mean(r["peak_early_loss"])) for r in rows],
            "test_accuracy": [float(np.mean(r["test_accuracy"])) for r in rows],
        }
    return out


def loss_curves(metrics: dict, loss: np.ndarray, cfg: Config, steps: int) -> dict:
    """What the figure draws of the minibatch losses, means over seeds: the SGD schedules'
    moving averages (every k-th iteration), and each warm-up's first steps."""
    names = list(metrics["arms"])
    window, early = max(1, steps // 40), max(1, int(cfg.early_fraction * steps))
    trends = {}
    for name in ("constant", "step decay", "decay too early"):
        trend = np.nanmean([_mnist.smooth(c, window) for c in loss[:, names.index(name)]], 0)
        index = _plot.thin(len(trend))
        trends[name] = {"iteration": (index + window).tolist(), "loss": _plot.compact(trend[index])}
    first = {
        f"{w:g}": _plot.curve(
            np.nanmean(loss[:, names.index(warm_name(cfg.large_factor, w)), : 2 * early], 0), 1200
        )
        for w in cfg.warmup_fractions
    }
    return {"schedules": trends, "warmup_first_steps": first}


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    steps, drawn = metrics["steps"], metrics["drawn"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    ax = axes[0, 0]
    for name, trend in drawn["schedules"].items():
        ax.plot(trend["iteration"], trend["loss"], label=name)
    for m, style in ((cfg.milestones, "--"), (cfg.early_milestones, ":")):
        for f in m:
            ax.axvline(f * steps, color="grey", ls=style, lw=0.8)
    ax.set(
        yscale="log",
        xlabel="iteration",
        ylabel="minibatch loss (moving average)",
        title=f"SGD+momentum {cfg.momentum:g}, lr {cfg.sgd_lr:g}, "
        f"x{cfg.decay_factor:g} at the dotted/dashed lines",
    )
    ax.legend()
    ax = axes[0, 1]
    early = max(1, int(cfg.early_fraction * steps))
    for w in cfg.warmup_fractions:
        first = drawn["warmup_first_steps"][f"{w:g}"]
        ax.plot(first["index"], first["value"], lw=0.8, label=f"warm-up {w:g}")
    ax.axvline(early, color="grey", ls=":", label="end of the early phase")
    ax.set(
        yscale="log",
        xlabel="iteration",
        ylabel=f"minibatch loss (mean of {cfg.seeds} seeds)",
        title=f"Adam at lr {cfg.adam_lr * cfg.large_factor:g}: the first steps",
    )
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    for label, row in warmup_map(metrics, cfg).items():
        ax.plot(row["warmup_fractions"], row["peak_early_loss"], "o-", label=f"Adam {label}")
    ax.set(
        yscale="log",
        xlabel="warm-up length (fraction of the run)",
        ylabel="peak minibatch loss, early phase (mean over seeds)",
        title=f"regime map: warm-up against the spike (Adam default lr {cfg.adam_lr:g})",
    )
    ax.legend()
    ax = axes[1, 1]
    shown = [
        "constant",
        "step decay",
        "decay too early",
        "Adam",
        "Adam then SGD",
        "Adam, decayed at the switch",
        warm_name(cfg.large_factor, 0.0),
        warm_name(cfg.large_factor, cfg.warmup),
    ]
    est = [_stats.mean(metrics["arms"][n]["test_accuracy"]) for n in shown]
    ax.errorbar(
        [e.value for e in est],
        range(len(shown)),
        fmt="o",
        xerr=[[e.value - e.low for e in est], [e.high - e.value for e in est]],
    )
    ax.set_yticks(range(len(shown)), shown, fontsize=8)
    ax.set(
        xlabel=f"final test accuracy (mean, 95% CI, {cfg.seeds} seeds)",
        title="test accuracy of the compared arms (paired by seed)",
    )
    fig.tight_layout()
    return save_figure(fig, out_dir, "schedules_and_switch")


def main(cfg: Config, out_dir: Path) -> dict:
    arrays = _mnist.load(cfg.dataset)
    steps = cfg.epochs * (arrays.x_train.shape[0] // cfg.batch_size)
    per_arm, loss = train(cfg, arrays, steps)
    metrics = {"arms": per_arm, "steps": steps, "data": _mnist.data_note(cfg.dataset)}
    metrics["warmup_map"] = warmup_map(metrics, cfg)
    metrics["drawn"] = loss_curves(metrics, loss, cfg, steps)
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
