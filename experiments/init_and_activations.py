"""Saito 6.2: how the initial weight scale shapes activations, gradients and learning.

1. Saito 6.2.2 (figures 6-10 to 6-13): 1,000 standard-normal inputs of 100 dims through five
   bias-free sigmoid layers of 100 units, weights of std 1, std 0.01 and Xavier (1/sqrt(100)),
   as in Saito's code; the share of activations near 0 or 1 and near 0.5 in every layer, over
   random weights and inputs (one draw per seed), and a sweep of the weight std (the regime map).
2. Saito 6.2.2: "a distribution biased to 0 and 1 makes the gradients shrink in backprop until
   they vanish": the norm of dL/dz of each of the five layers of the std-1 sigmoid net on a batch
   of images, first layer against fifth.
3. Saito 6.2.4 (figure 6-15): the five-layer ReLU net (four hidden layers of 100 + output)
   trained with SGD (lr 0.01, batch 128, 2,000 iterations) from std 0.01, Xavier and He weights,
   the three inits sharing each seed's batches (paired).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from jaxopt_notes.experiments import _mnist, _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, check, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param
from scipy import special

import jaxopt_notes as jn

SUMMARY = "Init scale: sigmoid saturation or collapse vs Xavier; std 0.01 stalls a ReLU net; He"
DATA = (
    "standard-normal random inputs (activation histograms); "
    + _mnist.data_note("mnist5k")
    + " (gradients and training)"
)
QUICK_NOTE = (
    "quick trains 600 iterations instead of Saito's 2,000, over 4 seeds instead of 10; the "
    "histogram and gradient parts are the same. A miss of the He-vs-Xavier claim could be down "
    "to the shorter training; the other claims are decided long before 600 iterations."
)
NOTE = "004_0bb7a3a390427018.txt"
SAITO = "Saito, Deep Learning from Scratch, sec. 6.2"
ARMS = ("std large", "std small", "Xavier")  # the histogram arms, in Saito's order
INITS = ("std small", "Xavier", "He")  # the trained nets of figure 6-15
HIST_BINS = 30
STATS = {"mean": np.mean, "min": np.min, "max": np.max}  # over seeds, of the loss trends


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 10
    # histograms (Saito 6.2.2)
    hist_samples: int = 1000
    hist_layers: int = 5
    width: int = 100
    large_std: float = param(1.0, low=0.0, low_open=True, help="the saturating arm's weight std")
    small_std: float = param(0.01, low=0.0, low_open=True, help="the collapsing arm's weight std")
    sweep_stds: tuple = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
    band: float = param(0.1, low=0.0, high=0.5, low_open=True, help="'near' 0, 1 or 0.5")
    saturated_min: float = param(0.5, low=0.0, high=1.0)  # "most": more than half
    collapsed_min: float = param(0.95, low=0.0, high=1.0)  # "almost all"
    spread_ratio_min: float = 2.0  # Xavier's activation std / std 0.01's
    xavier_saturated_max: float = param(0.1, low=0.0, high=1.0)
    # gradients (Saito 6.2.2, "gradient vanishing")
    grad_batch: int = 256
    vanish_ratio: float = param(0.1, low=0.0, high=1.0, low_open=True)
    # training (Saito 6.2.4)
    dataset: str = param("mnist5k", choices=("mnist5k", "digits"))
    depth: int = 4  # hidden layers: five weight layers with the output
    learning_rate: float = 0.01
    batch_size: int = 128
    steps: int = 2000
    stalled_fraction: float = param(0.9, low=0.0, high=1.0)  # of ln 10: "does not learn"
    learned_fraction: float = param(0.5, low=0.0, high=1.0)  # of ln 10: "learns"
    he_margin: float = param(0.0, low=0.0)  # Xavier's loss minus He's must exceed this

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=4, steps=600)

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            seeds=3,
            hist_samples=200,
            sweep_stds=(0.01, 1.0),
            grad_batch=64,
            dataset="digits",
            learning_rate=0.05,
            batch_size=64,
            steps=300,
        )


# -- 1. activation histograms ------------------------------------------------------------------


def draws(seed: int, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Seed ``seed``'s inputs (samples, units) and standard normals (layers, units, units)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((cfg.hist_samples, cfg.width), dtype=np.float32)
    w = rng.standard_normal((cfg.hist_layers, cfg.width, cfg.width), dtype=np.float32)
    return x, w


def sigmoid_activations(x: np.ndarray, normals: np.ndarray, std: float) -> np.ndarray:
    """(layers, samples, units): Saito's bias-free sigmoid stack with weights std * normals."""
    acts = []
    for w in normals:
        x = special.expit(x @ (std * w))
        acts.append(x)
    return np.stack(acts)


def layer_stats(acts: np.ndarray, band: float) -> dict[str, np.ndarray]:
    """Per layer: the share within ``band`` of 0 or 1, the share within it of 0.5, the std."""
    return {
        "saturated": np.mean((acts < band) | (acts > 1 - band), axis=(1, 2)),
        "central": np.mean(np.abs(acts - 0.5) < band, axis=(1, 2)),
        "std": acts.std(axis=(1, 2)),
    }


def histogram_stats(cfg: Config, stds: list[float]) -> dict[str, np.ndarray]:
    """(stds, seeds, layers) statistics; seed s draws the same inputs and normals for every std."""
    per_seed = [draws(seed, cfg) for seed in range(cfg.seeds)]
    rows = [
        [layer_stats(sigmoid_activations(x, w, std), cfg.band) for x, w in per_seed] for std in stds
    ]
    return {k: np.array([[r[k] for r in row] for row in rows]) for k in rows[0][0]}


# -- 2. gradients ------------------------------------------------------------------------------


def delta_norms(ws: list[jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
    """||dL/dz_l|| of each sigmoid layer l (input side first) of the bias-free net ``ws``."""

    def loss(offsets):
        h = x
        for w, e in zip(ws[:-1], offsets, strict=True):
            h = jax.nn.sigmoid(h @ w + e)  # e = 0: its gradient is dL/dz of this layer
        return optax.softmax_cross_entropy_with_integer_labels(h @ ws[-1], y).mean()

    zeros = [jnp.zeros((x.shape[0], w.shape[1])) for w in ws[:-1]]
    return jnp.stack([jnp.linalg.norm(g) for g in jax.grad(loss)(zeros)])


def gradient_norms(cfg: Config, arrays: _mnist.Arrays) -> dict[str, np.ndarray]:
    """(seeds, layers) norms for the large-std and the Xavier net; seed s: the same normals."""
    x = arrays.x_train[: cfg.grad_batch].reshape(cfg.grad_batch, -1)
    y = arrays.y_train[: cfg.grad_batch]
    sizes = [x.shape[1]] + [cfg.width] * cfg.hist_layers + [10]
    rngs = [np.random.default_rng(1000 + seed) for seed in range(cfg.seeds)]
    normals = [
        np.stack([rng.standard_normal((a, b), dtype=np.float32) for rng in rngs])
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]  # per layer: (seeds, fan_in, fan_out)
    norms = jax.jit(jax.vmap(delta_norms, in_axes=(0, None, None)))
    stds = {"std large": cfg.large_std, "Xavier": 1 / math.sqrt(cfg.width)}
    return {k: np.asarray(norms([s * w for w in normals], x, y)) for k, s in stds.items()}


# -- 3. training -------------------------------------------------------------------------------


def train_inits(cfg: Config, arrays: _mnist.Arrays) -> _mnist.Run:
    """All inits x seeds in one vmapped run; seed s gives every init the same batches."""
    seed_keys = jax.random.split(jax.random.key(2), cfg.seeds)
    specs = {"std small": ("normal", cfg.small_std), "Xavier": ("xavier", 1.0), "He": ("he", 1.0)}
    nets = [
        _mnist.mlp(k, arrays, depth=cfg.depth, width=cfg.width, init=init, init_std=std)
        for init, std in (specs[name] for name in INITS)
        for k in seed_keys
    ]
    batch_keys = _mnist.paired_keys(3, cfg.seeds, len(INITS))
    return _mnist.fit(
        nets,
        jn.sgd(cfg.learning_rate),
        arrays,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        key=batch_keys,
    )


# -- verdicts ----------------------------------------------------------------------------------


def _src(section: str, quote: str, english: str, ref: str = SAITO) -> Source:
    return Source(NOTE, section, quote, english, ref)


SRC_STD1 = _src(
    "1. 权重初始值高斯分布的标准差设为1（sigmoid函数）",
    "偏向 0 和 1 的数据分布会造成反向传播中梯度的值不断变小，最后消失。",
    "A distribution biased towards 0 and 1 makes the gradients shrink and shrink in "
    "backpropagation until they vanish.",
    SAITO + ".2, figure 6-10",
)
SRC_STD001 = _src(
    "2. 权重初始值高斯分布的标准差设为0.01（sigmoid函数）",
    "激活值在分布上有所偏向会出现“表现力受限”的问题。",
    "Activations biased in their distribution (here: all near 0.5) limit what the net can express.",
    SAITO + ".2, figure 6-11",
)
SRC_XAVIER = _src(
    "3. Xavier初始值（sigmoid函数）",
    "前一层节点为n，使用初始值为权重初始值高斯分布的标准差为 $\\frac{1}{\\sqrt{n}}$ 的分布",
    "With n nodes in the previous layer, draw the initial weights from a Gaussian of std "
    "1/sqrt(n) (Saito's figure 6-13: the activations then spread over (0, 1)).",
    SAITO + ".2, figure 6-13",
)
SRC_MNIST = _src(
    "6.2.4　基于 MNIST 数据集的权重初始值的比较（ReLu函数）",
    "std = 0.01 时完全无法进行学习。",
    "With std = 0.01 the net cannot learn at all.",
    SAITO + ".4, figure 6-15",
)
SRC_GOOD_INIT = Source(
    "000_07e945f9227ab975.txt",
    "优化算法 / 梯度消失 / 小结",
    "**对参数进行良好的初始化**也可能是有益的",
    "a good initialisation of the parameters may also help",
    SAITO + ".4, figure 6-15 (Xavier and He both learn where std 0.01 does not)",
)
SRC_HE = _src(
    "4. ReLU 的权重初始值（He 初始值）",
    "当前一层的节点数为 n 时，He 初始值使用高斯分布的标准差为$\\sqrt{\\frac{2}{n}}$",
    "With n nodes in the previous layer, He's initialisation uses a Gaussian of std "
    "sqrt(2/n) (for ReLU; Saito's figure 6-15 shows He learning faster than Xavier).",
    SAITO + ".4, figure 6-15",
)


def _arm(metrics: dict, stat: str, arm: str) -> np.ndarray:
    return np.asarray(metrics["histograms"][stat][arm])  # (seeds, layers)


def histogram_claims(metrics: dict, cfg: Config) -> list[dict]:
    n = cfg.seeds
    band = f"{cfg.band:g}"
    sat_large = _arm(metrics, "saturated", "std large").min(axis=1)
    central_small = _arm(metrics, "central", "std small").min(axis=1)
    spread = _arm(metrics, "std", "Xavier").mean(axis=1) / _arm(metrics, "std", "std small").mean(
        axis=1
    )
    sat_xavier = _arm(metrics, "saturated", "Xavier").max(axis=1)
    hist = "Saito's 30-bin histograms on [0, 1]: the outermost 3 bins on each side"
    return [
        claim(
            f"Sigmoid with weight std {cfg.large_std:g}: in every layer most activations lie "
            f"within {band} of 0 or 1",
            _stats.mean(sat_large),
            Test(
                f"smallest share within {band} of 0 or 1 over the layers",
                ">",
                cfg.saturated_min,
                f"'biased to 0 and 1' read as more than half ({hist}, figure 6-10)",
                n,
            ),
            SRC_STD1,
            id="large_std_saturates",
            kind="check",
        ),
        claim(
            f"With weight std {cfg.small_std:g} they collapse: in every layer almost all lie "
            f"within {band} of 0.5",
            _stats.mean(central_small),
            Test(
                f"smallest share within {band} of 0.5 over the layers",
                ">",
                cfg.collapsed_min,
                "'almost all': Saito's figure 6-11 has all mass in the 6 central bins",
                n,
            ),
            SRC_STD001,
            id="small_std_collapses",
            kind="check",
        ),
        claim(
            "Xavier spreads them: their std is at least twice the small-std net's, and in "
            f"every layer fewer than {cfg.xavier_saturated_max:.0%} lie near 0 or 1",
            [_stats.paired_ratio(spread, np.ones_like(spread)), _stats.mean(sat_xavier)],
            [
                Test(
                    "activation std, Xavier / small std (same inputs and normals)",
                    ">",
                    cfg.spread_ratio_min,
                    "pre-stated: 'a wider distribution' as at least twice the spread",
                    n,
                    paired=True,
                ),
                Test(
                    f"largest share within {band} of 0 or 1 over the layers, Xavier",
                    "<",
                    cfg.xavier_saturated_max,
                    "pre-stated: no piling up at 0 and 1 (figure 6-13 has none)",
                    n,
                ),
            ],
            SRC_XAVIER,
            id="xavier_spreads",
            kind="check",
        ),
    ]


def gradient_claim(metrics: dict, cfg: Config) -> dict:
    norms = {k: np.asarray(v) for k, v in metrics["gradients"]["delta_norms"].items()}
    large = norms["std large"]
    ratio = _stats.paired_ratio(large[:, 0], large[:, -1])
    xavier = _stats.paired_ratio(norms["Xavier"][:, 0], norms["Xavier"][:, -1])
    return claim(
        f"In the std-{cfg.large_std:g} sigmoid net the backpropagated gradient vanishes: "
        f"||dL/dz|| of layer 1 is below {cfg.vanish_ratio:g} of layer {cfg.hist_layers}'s",
        ratio,
        Test(
            f"||dL/dz_1|| / ||dL/dz_{cfg.hist_layers}||, std-{cfg.large_std:g} weights",
            "<",
            cfg.vanish_ratio,
            "pre-stated: 'vanish' as at least tenfold smaller over the five layers",
            cfg.seeds,
            paired=True,
        ),
        SRC_STD1,
        evidence={"same ratio, Xavier weights (for comparison)": xavier},
        note="Compare the Xavier net's ratio in the evidence: sigmoid' <= 1/4 shrinks the "
        "backward signal at every layer, and weights of std 1 multiply it by about "
        "sqrt(100) = 10 per layer, which offsets much of that",
        id="large_std_gradients_vanish",
    )


def training_claims(metrics: dict, cfg: Config) -> list[dict]:
    loss = {k: np.asarray(v) for k, v in metrics["training"]["final_train_loss"].items()}
    acc = {k: _stats.mean(v) for k, v in metrics["training"]["test_accuracy"].items()}
    chance = math.log(10)
    n = cfg.seeds
    title = f"{cfg.depth + 1}-layer ReLU net, SGD lr {cfg.learning_rate:g}, {cfg.steps} iterations"
    return [
        claim(
            f"With weight std {cfg.small_std:g} the {title} does not learn: its training loss "
            f"stays above {cfg.stalled_fraction:.0%} of chance, ln 10",
            _stats.mean(loss["std small"]),
            Test(
                "training loss (whole training set) after the last iteration, std small",
                ">",
                cfg.stalled_fraction * chance,
                f"'cannot learn at all': within {1 - cfg.stalled_fraction:.0%} of the chance "
                "loss ln 10 (figure 6-15's std-0.01 curve stays flat at 2.3)",
                n,
            ),
            SRC_MNIST,
            evidence={"test accuracy": acc},
            id="small_std_does_not_learn",
            kind="check",
        ),
        claim(
            f"Xavier and He learn: training loss below {cfg.learned_fraction:.0%} of ln 10",
            [_stats.mean(loss["Xavier"]), _stats.mean(loss["He"])],
            [
                Test(
                    f"training loss after the last iteration, {name}",
                    "<",
                    cfg.learned_fraction * chance,
                    "pre-stated: learning clearly under way (figure 6-15: both fall far below)",
                    n,
                )
                for name in ("Xavier", "He")
            ],
            SRC_GOOD_INIT,
            evidence={"test accuracy": acc},
            id="xavier_and_he_learn",
        ),
        claim(
            "He, the init derived for ReLU, ends with a lower training loss than Xavier",
            _stats.paired_difference(loss["Xavier"], loss["He"]),
            Test(
                "training loss, Xavier minus He (same batches per seed)",
                ">",
                cfg.he_margin,
                "Saito's figure 6-15: He's curve lies below Xavier's; any gap counts",
                n,
                paired=True,
            ),
            SRC_HE,
            evidence={"test accuracy": acc},
            note=f"Trained {cfg.steps} iterations, fewer than Saito's {Config().steps}: a miss "
            "could be down to that"
            if cfg.steps < Config().steps
            else "",
            id="he_beats_xavier",
            kind="beyond",
        ),
    ]


def claims(metrics: dict, cfg: Config) -> list[dict]:
    tanh4 = metrics["tanh_prime_4"]
    exact = 1 / math.cosh(4.0) ** 2
    return [
        *histogram_claims(metrics, cfg),
        gradient_claim(metrics, cfg),
        *training_claims(metrics, cfg),
        check(
            "jax.grad(tanh)(4) equals 1/cosh(4)^2 = 0.00134: a saturated unit passes almost "
            "no gradient",
            abs(tanh4 - exact) < 1e-6,
            {"jax.grad(tanh)(4)": tanh4, "1/cosh(4)^2": exact},
            reason=f"jax.grad gives {tanh4:.6g}, the closed form {exact:.6g} (tolerance 1e-6)",
            id="tanh_prime_4",
        ),
    ]


# -- figures -----------------------------------------------------------------------------------


def draw(metrics: dict, cfg: Config, out_dir: Path) -> list[str]:
    """The three figures, from the metrics alone."""
    return [
        draw_histograms(metrics, out_dir),
        draw_sweep(metrics, cfg, out_dir),
        draw_training(metrics, cfg, out_dir),
    ]


def draw_histograms(metrics: dict, out_dir: Path) -> str:
    counts, stds = metrics["drawn"]["activation_counts"], metrics["histogram_stds"]
    layers = len(next(iter(counts.values())))
    edges = np.linspace(0, 1, HIST_BINS + 1)
    fig, axes = plt.subplots(
        len(counts), layers, figsize=(2.4 * layers, 2.1 * len(counts)), sharex=True, squeeze=False
    )
    for row, (name, c) in zip(axes, counts.items(), strict=True):
        for i, ax in enumerate(row):  # the stored counts, drawn as the activations' histogram
            ax.hist(edges[:-1], bins=edges, weights=c[i], color="tab:blue")
            ax.set_yticks([])
            ax.set_title(f"std {stds[name]:.3g} ({name}): layer {i + 1}", fontsize=8)
    fig.suptitle("sigmoid activations per layer (Saito 6.2.2), one seed")
    fig.tight_layout()
    return save_figure(fig, out_dir, "activation_histograms")


def draw_sweep(metrics: dict, cfg: Config, out_dir: Path) -> str:
    sweep = metrics["sweep"]
    stds = np.asarray(sweep["stds"])
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for key, label, thr, style in (
        (
            "saturated",
            f"share within {cfg.band:g} of 0 or 1 (smallest over layers)",
            cfg.saturated_min,
            "o-",
        ),
        (
            "central",
            f"share within {cfg.band:g} of 0.5 (smallest over layers)",
            cfg.collapsed_min,
            "s-",
        ),
    ):
        v = np.asarray(sweep[key])  # (stds, seeds)
        ax.semilogx(stds, v.mean(axis=1), style, label=label)
        ax.fill_between(stds, v.min(axis=1), v.max(axis=1), alpha=0.2)
        ax.axhline(thr, color="grey", lw=0.8, ls=":")
    ax.axvline(1 / math.sqrt(cfg.width), color="k", lw=0.8, ls="--", label="Xavier 1/sqrt(n)")
    ax.set(
        xlabel="weight std",
        ylabel="share of activations",
        ylim=(-0.02, 1.02),
        title=f"where sigmoid nets saturate or collapse ({cfg.hist_layers} x {cfg.width}, "
        f"{cfg.seeds} seeds)",
    )
    ax.legend(fontsize=8)
    return save_figure(fig, out_dir, "saturation_regime_map")


def loss_trends(run: _mnist.Run, cfg: Config) -> tuple[int, dict]:
    """Per init, the moving average of the minibatch loss over seeds (mean, min, max), at
    every k-th iteration: what the training figure draws."""
    window = max(1, cfg.steps // 20)
    losses = run.loss.reshape(len(INITS), cfg.seeds, -1)
    out = {}
    for name, loss in zip(INITS, losses, strict=True):
        trend = np.stack([_mnist.smooth(v, window) for v in loss])
        index = _plot.thin(trend.shape[1])
        out[name] = {
            "iteration": (index + window).tolist(),
            **{k: _plot.compact(f(trend, axis=0)[index]) for k, f in STATS.items()},
        }
    return window, out


def draw_training(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    window = metrics["drawn"]["loss_window"]
    for name, trend in metrics["drawn"]["loss_trend"].items():
        steps = trend["iteration"]
        label = f"std {cfg.small_std:g}" if name == "std small" else name
        ax1.plot(steps, trend["mean"], label=label)
        ax1.fill_between(steps, trend["min"], trend["max"], alpha=0.2)
    ax1.set(
        xlabel="iteration",
        ylabel=f"minibatch loss ({window}-iteration mean)",
        ylim=(0, 2.5),
        title=f"{cfg.depth + 1}-layer ReLU, SGD lr {cfg.learning_rate:g}, {cfg.seeds} seeds",
    )
    ax1.legend()
    for name, norms in metrics["gradients"]["delta_norms"].items():
        n = np.asarray(norms)
        layers = np.arange(1, n.shape[1] + 1)
        label = f"std {cfg.large_std:g}" if name == "std large" else "Xavier"
        ax2.semilogy(layers, np.exp(np.log(n).mean(axis=0)), "o-", label=label)
    ax2.set(
        xlabel="sigmoid layer (1 = input side)",
        ylabel="||dL/dz|| (geometric mean over seeds)",
        title="backpropagated gradient at initialisation",
    )
    ax2.set_xticks(layers)
    ax2.legend()
    return save_figure(fig, out_dir, "init_training_gradients")


# -- main --------------------------------------------------------------------------------------


def main(cfg: Config, out_dir: Path) -> dict:
    stds = {"std large": cfg.large_std, "std small": cfg.small_std, "Xavier": cfg.width**-0.5}
    both = histogram_stats(cfg, [stds[a] for a in ARMS] + list(cfg.sweep_stds))  # one compile
    hist = {k: v[: len(ARMS)] for k, v in both.items()}
    sweep = {k: v[len(ARMS) :] for k, v in both.items()}
    arrays = _mnist.load(cfg.dataset)
    run = train_inits(cfg, arrays)
    final = run.evals["train_loss"][:, -1].reshape(len(INITS), cfg.seeds)
    test_acc = run.evals["test_accuracy"][:, -1].reshape(len(INITS), cfg.seeds)
    metrics = {
        "histograms": {s: dict(zip(ARMS, v, strict=True)) for s, v in hist.items()},
        "histogram_stds": stds,
        "sweep": {
            "stds": cfg.sweep_stds,
            "saturated": sweep["saturated"].min(axis=2),
            "central": sweep["central"].min(axis=2),
        },
        "gradients": {"delta_norms": gradient_norms(cfg, arrays)},
        "training": {
            "final_train_loss": dict(zip(INITS, final, strict=True)),
            "test_accuracy": dict(zip(INITS, test_acc, strict=True)),
            "train_seconds": run.seconds,
        },
        "tanh_prime_4": float(jax.grad(jnp.tanh)(4.0)),
    }
    x, w = draws(0, cfg)  # seed 0 of histogram_stats
    acts = {a: sigmoid_activations(x, w, stds[a]) for a in ARMS}
    window, trends = loss_trends(run, cfg)
    metrics["drawn"] = {
        "activation_counts": {  # per arm and layer: seed 0's activations in HIST_BINS bins
            a: [np.histogram(layer.ravel(), HIST_BINS, (0, 1))[0] for layer in v]
            for a, v in acts.items()
        },
        "loss_window": window,
        "loss_trend": trends,
    }
    figures = draw(_plot.stored(metrics), cfg, out_dir)
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
