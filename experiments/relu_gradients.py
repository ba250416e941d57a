"""ReLU against vanishing gradients, and why He's init carries a factor 2 (d2l; Saito 6.2.2).

A bias-free MLP of ``depth`` hidden layers of ``width`` units on a batch of 8x8 digits, one
random draw of weights and batch per seed, measured at initialisation (no training):

1. the gradient norm of the first hidden layer's weights over that of the last hidden layer's,
   ||dL/dW_1|| / ||dL/dW_depth||: a sigmoid net with Xavier weights against a ReLU net with He
   weights. Backprop multiplies the signal by the activation's slope at every layer; sigmoid's
   is at most 1/4, ReLU's is 0 or 1.
2. the std of the activations of the last hidden layer over that of the first, in a ReLU net
   with Xavier weights (std 1/sqrt(n), as in Saito) and with He weights (std sqrt(2/n)). ReLU
   zeroes half of its inputs, so E[relu(z)^2] = Var(z)/2: with Xavier each layer halves the
   variance, (1/2)^((depth-1)/2) in std over the stack; He's factor 2 cancels the half.

Sabotage: ``gradient_activation=sigmoid`` puts sigmoid into the ReLU arm of part 1;
``init_activation=tanh`` puts tanh (odd, slope 1 at 0, nothing zeroed) in place of ReLU in part 2.
A check holds every sigmoid layer to the bound |delta_l| <= |delta_l+1 W_l+1^T| / 4.
"""

from __future__ import annotations

import dataclasses
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

SUMMARY = "Gradient ratio first/last layer: sigmoid+Xavier vanishes, ReLU+He keeps it; He's 2"
DATA = _mnist.DIGITS
ACTIVATIONS = {"sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu, "tanh": jnp.tanh}

RELU_000 = Source(
    "000_07e945f9227ab975.txt",
    "优化算法 / 梯度消失",
    "2、引入 **ReLU 激活函数**能够很好地缓解这个问题",
    "2. using the ReLU activation alleviates this [vanishing-gradient] problem well",
    "Glorot, Bordes & Bengio, AISTATS 2011; Zhang et al., Dive into Deep Learning, "
    "'Numerical Stability and Initialization'",
)
HE_004 = Source(
    "004_0bb7a3a390427018.txt",
    "4. ReLU 的权重初始值（He 初始值）",
    "因为 ReLU 的负值区域的值为 0，为了使它更有广度，所以需要 2 倍的系数。",
    "because ReLU is 0 on the negative side, a factor of 2 is needed to keep [the activations] "
    "spread.",
    "He et al., ICCV 2015; Saito, Deep Learning from Scratch, sec. 6.2.3",
)


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 30
    depth: int = 10  # hidden layers (the output layer comes on top)
    width: int = 100
    batch: int = 256
    gradient_activation: str = param(
        "relu", choices=("relu", "sigmoid", "tanh"), help="the ReLU arm's activation (sabotage)"
    )
    init_activation: str = param(
        "relu", choices=("relu", "tanh"), help="the activation of part 2 (sabotage: tanh)"
    )
    # stated tests
    sigmoid_ratio_max: float = 0.1
    relu_ratio_band: tuple = (0.3, 3.0)
    xavier_std_ratio_max: float = 0.2
    he_std_ratio_band: tuple = (0.5, 2.0)
    seed: int = 0

    def validate(self) -> None:
        for name in ("relu_ratio_band", "he_std_ratio_band"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"`{name}` must be (low, high) with low < high, got {lo, hi}")
        if self.depth < 2:
            raise ValueError(
                f"`depth` must be >= 2 to compare a first and a last layer, got {self.depth}"
            )

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=20)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=12, width=64, batch=128)


def arms(cfg: Config) -> dict[str, tuple[str, float]]:
    """Arm -> (activation, gain): weights are N(0, gain / fan_in); Xavier 1, He 2."""
    return {
        "sigmoid, Xavier": ("sigmoid", 1.0),
        f"{cfg.gradient_activation}, He": (cfg.gradient_activation, 2.0),
        f"{cfg.init_activation}, Xavier (part 2)": (cfg.init_activation, 1.0),
        f"{cfg.init_activation}, He (part 2)": (cfg.init_activation, 2.0),
        "tanh, Xavier (for comparison)": ("tanh", 1.0),
    }


def probe(key: jax.Array, x: jax.Array, y: jax.Array, cfg: Config, act: jax.Array, gain):
    """Per-layer weight-gradient norms and activation stds, and the sigmoid bound's slack.

    ``act`` indexes ``ACTIVATIONS`` and may be traced, so every arm shares one compiled
    program (under vmap the switch evaluates all three activations, which costs little).
    """
    sizes = [x.shape[1]] + [cfg.width] * cfg.depth + [10]
    keys = jax.random.split(key, len(sizes) - 1)
    ws = [
        jax.random.normal(k, (a, b)) * jnp.sqrt(gain / a)
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]
    fs = list(ACTIVATIONS.values())

    def loss(ws, shifts):  # shifts (zeros) give dL/dz of each hidden layer as their gradient
        a, acts = x, []
        for w, s in zip(ws[:-1], shifts, strict=True):
            a = jax.lax.switch(act, fs, a @ w + s)
            acts.append(a)
        ce = optax.softmax_cross_entropy_with_integer_labels(a @ ws[-1], y).mean()
        return ce, acts

    shifts = [jnp.zeros((x.shape[0], cfg.width)) for _ in range(cfg.depth)]
    (gw, gs), acts = jax.grad(loss, argnums=(0, 1), has_aux=True)(ws, shifts)
    # delta_l = slope(z_l) * (delta_l+1 W_l+1^T) elementwise; with sigmoid, slope <= 1/4, so
    # |delta_l| <= |delta_l+1 W_l+1^T| / 4 entry by entry: its worst excess, scaled
    back = [jnp.abs(d @ w.T) / 4 for d, w in zip(gs[1:], ws[1:-1], strict=True)]
    excess = jnp.stack(
        [(jnp.abs(d) - b).max() / b.max() for d, b in zip(gs[:-1], back, strict=True)]
    )
    return {
        "grad_norm": jnp.stack([jnp.linalg.norm(g) for g in gw[:-1]]),
        "act_std": jnp.stack([a.std() for a in acts]),
        "quarter_slope_excess": excess,
    }


def measure(cfg: Config) -> dict:
    data = _mnist.load("digits")
    x = data.x_train.reshape(data.x_train.shape[0], -1)
    y = data.y_train
    rng = np.random.default_rng(cfg.seed)
    idx = np.stack([rng.choice(len(x), cfg.batch, replace=False) for _ in range(cfg.seeds)])
    keys = jax.random.split(jax.random.key(cfg.seed), cfg.seeds)  # shared: arms are paired
    table = arms(cfg)
    names = list(ACTIVATIONS)
    acts = jnp.array([names.index(a) for a, _ in table.values()])
    gains = jnp.array([g for _, g in table.values()])

    def one(k, i, a, g):
        return probe(k, x[i], y[i], cfg, a, g)

    per_seed = jax.vmap(one, in_axes=(0, 0, None, None))
    run = jax.jit(jax.vmap(per_seed, in_axes=(None, None, 0, 0)))
    out = run(keys, jnp.asarray(idx), acts, gains)
    return {
        "arms": {
            name: {k: np.asarray(v[j], np.float64) for k, v in out.items()}
            for j, name in enumerate(table)
        },
        "input_pixels": int(x.shape[1]),
    }


def stated_tests(cfg: Config) -> dict[str, Test]:
    """The tests, fixed before the run, with where each threshold comes from."""
    n, d, tail = cfg.seeds, cfg.depth, (cfg.depth - 1) / 2
    grad, std = f"||dL/dW_1|| / ||dL/dW_{d}||", f"std of layer {d}'s activations / layer 1's"
    return {
        "sigmoid": Test(
            f"{grad}, sigmoid + Xavier",
            "<",
            cfg.sigmoid_ratio_max,
            f"sigmoid' <= 1/4 at each of the {d - 1} layers between, Xavier weights keeping "
            f"norms about level: (1/4)^{d - 1}; {cfg.sigmoid_ratio_max:g} leaves room for "
            "operator norms up to 2 per layer",
            n,
        ),
        "relu": Test(
            f"{grad}, {cfg.gradient_activation} + He",
            "within",
            cfg.relu_ratio_band,
            "He's derivation keeps the backward variance level at each layer: ratio 1, a factor "
            "3 either way for the input's own norm and finite width",
            n,
        ),
        "xavier": Test(
            f"{std}, Xavier",
            "<",
            cfg.xavier_std_ratio_max,
            f"ReLU halves the variance per layer under Xavier: (1/2)^{tail:g} = {0.5**tail:.3f}; "
            f"{cfg.xavier_std_ratio_max:g} is about the geometric midpoint of that and 1",
            n,
        ),
        "he": Test(
            f"{std}, He",
            "within",
            cfg.he_std_ratio_band,
            "He's factor 2 cancels the halving: ratio 1, a factor 2 either way",
            n,
        ),
    }


def claims(metrics: dict, cfg: Config) -> list[dict]:
    a = list(arms(cfg))
    m = {k: metrics["arms"][k] for k in a}
    first_last = {
        k: _stats.paired_ratio(v["grad_norm"][:, 0], v["grad_norm"][:, -1]) for k, v in m.items()
    }
    std_ratio = {
        k: _stats.paired_ratio(v["act_std"][:, -1], v["act_std"][:, 0]) for k, v in m.items()
    }
    excess = float(np.max(m["sigmoid, Xavier"]["quarter_slope_excess"]))
    t, d = stated_tests(cfg), cfg.depth
    return [
        claim(
            f"In a {d}-layer MLP at init, sigmoid with Xavier weights lets the first layer's "
            f"gradient vanish against the last's; {cfg.gradient_activation} with He weights keeps "
            "them level",
            [first_last[a[0]], first_last[a[1]]],
            [t["sigmoid"], t["relu"]],
            RELU_000,
            {"same ratio, " + k: first_last[k] for k in (a[2], a[4])},
            note="the ratio compares layers, not sizes: under ReLU with Xavier weights the "
            "activations and the backward signal shrink together, so that ratio can sit near 1 "
            "while every gradient is small (the figure's left panel shows the sizes)",
            id="relu_relieves_vanishing",
        ),
        claim(
            f"Under {cfg.init_activation}, Xavier weights (std 1/sqrt(n)) shrink the activations "
            f"layer after layer; He's factor 2 (std sqrt(2/n)) keeps them spread",
            [std_ratio[a[2]], std_ratio[a[3]]],
            [t["xavier"], t["he"]],
            HE_004,
            {"same ratio, " + k: std_ratio[k] for k in (a[0], a[4])},
            id="he_factor_two_keeps_spread",
        ),
        check(
            "Backprop through a sigmoid layer obeys |delta_l| <= |delta_l+1 W_l+1^T| / 4 entry "
            "by entry (sigmoid' <= 1/4) at every layer, example and seed",
            excess <= 1e-6,
            {"largest (|delta_l| - bound) / largest bound": excess, "layers": d - 1},
            id="sigmoid_backprop_bound",
        ),
    ]


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    layers = np.arange(1, cfg.depth + 1)
    names = list(arms(cfg))
    for name in [*names[:2], names[2], names[4]]:
        g = np.asarray(metrics["arms"][name]["grad_norm"])
        mid = np.exp(np.log(g).mean(0))
        ax1.semilogy(layers, mid, "o-", label=name)
        ax1.fill_between(layers, g.min(0), g.max(0), alpha=0.2)
    ax1.set(
        xlabel="hidden layer",
        ylabel="||dL/dW_l|| at init (geometric mean; band: range over seeds)",
        title=f"gradient by layer, {cfg.depth} x {cfg.width}, {cfg.seeds} seeds",
    )
    ax1.legend(fontsize=8)
    for name in names[2:4]:
        s = np.asarray(metrics["arms"][name]["act_std"])
        ax2.semilogy(layers, s.mean(0) / s[:, :1].mean(), "o-", label=name)
    tail = 0.5 ** ((layers - 1) / 2)
    ax2.semilogy(layers, tail, "k:", label="(1/2)^((l-1)/2): halving variance")
    ax2.set(
        xlabel="hidden layer",
        ylabel="activation std / layer 1's",
        title="activation spread by layer (part 2)",
    )
    ax2.legend(fontsize=8)
    return save_figure(fig, out_dir, "relu_gradients")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics = measure(cfg)
    return {
        "metrics": metrics,
        "claims": claims(metrics, cfg),
        "figures": [draw(_plot.stored(metrics), cfg, out_dir)],
    }
