"""CS231n / d2l dropout: vanilla dropout must scale by p at test time; inverted dropout need not.

Keep probability p. *Vanilla* dropout multiplies each hidden activation by a Bernoulli(p) mask
while training and leaves it unscaled, so at training time a unit's expected output is p times
its full output; at test time every unit is on, and the outputs must be multiplied by p to match
(CS231n's "scale at test time"). *Inverted* dropout divides the mask by p while training, so the
test pass is left as it is. Measured on an MLP (two hidden ReLU layers of 100) trained with SGD
over seeds; each seed gives both dropout kinds the same initial weights, batches and masks
(paired). On the test images: the mean last-hidden-layer activation of the test pass against
its expectation over training-time masks (Monte Carlo), and the test loss and accuracy of vanilla
without rescaling, vanilla with it, and inverted. The regime map sweeps p.

The MLP is written out here in JAX rather than taken from ``jaxopt_notes.models.MLP``, whose
dropout is inverted only: the experiment needs both kinds with one set of masks.
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
from jaxopt_notes.experiments._claims import Source, Test, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn

SUMMARY = "Vanilla dropout biases test outputs unless scaled by p; inverted dropout needs nothing"
DATA = f"{_mnist.DIGITS}; with --set dataset=mnist5k: {_mnist.MNIST5K}"
QUICK_NOTE = (
    "quick trains 1,000 iterations instead of 3,000 over 6 seeds instead of 10. The activation "
    "bias is a property of the forward pass and shows at any length; the loss and accuracy "
    "comparisons are made on less trained nets, and an inconclusive equivalence of the two "
    "dropout kinds could be down to the seeds."
)
ACTIVATIONS = ("train_expected_activation", "activation_unscaled", "activation_rescaled")
SRC_CS231N = "CS231n (Stanford), lecture 7, 'Dropout: test time' and 'Inverted dropout'"
SRC_TEST_TIME = Source(
    "001_4509a285741226d3.txt",
    "dropout",
    "训练阶段的期望是右下角的公式，但是在测试阶段我们希望所有的神经元都可以参与到预测中，"
    "我们就需要将测试过程中的数学期望补充回来",
    "The expectation during training is the formula at the bottom right; at test time we want "
    "every neuron to take part in the prediction, so we must restore that expectation in the "
    "test pass",
    SRC_CS231N,
)
SRC_SCALE = Source(
    "001_4509a285741226d3.txt",
    "dropout",
    "代码中就需要在scale的时候同时乘以p的概率",
    "In the code the scaling must multiply by the probability p",
    SRC_CS231N,
)
SRC_INVERTED = Source(
    "001_4509a285741226d3.txt",
    "dropout",
    "就是将掩模版除以一个p，p代表着数学期望的值",
    "(Inverted dropout) divides the mask by p, p being the expectation",
    SRC_CS231N + "; Zhang et al., Dive into Deep Learning, sec. 'Dropout' (the d2l note, "
    "000_07e945f9227ab975.txt, 'dropout')",
)


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 10
    dataset: str = param("digits", choices=("digits", "mnist5k"))
    depth: int = 2
    width: int = 100
    keep_prob: float = param(0.5, low=0.0, high=1.0, low_open=True, help="p; 1: no dropout")
    map_keep_probs: tuple = (0.2, 0.35, 0.65, 0.8, 1.0)
    learning_rate: float = 0.05
    batch_size: int = 64
    steps: int = 3000
    mask_samples: int = 32  # training-time masks averaged for the expected activation
    bias_min: float = param(0.1, low=0.0, high=1.0, low_open=True)  # "biased": > 10% off
    loss_ratio_min: float = 1.1  # unscaled / rescaled test loss
    equivalence_margin: float = param(0.02, low=0.0, high=1.0, low_open=True)  # accuracy

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=6, steps=1000)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=3, width=32, steps=300, mask_samples=8, map_keep_probs=(1.0,))


# -- the model ---------------------------------------------------------------------------------


def init_params(key: jax.Array, sizes: list[int]) -> list[dict]:
    """He-normal weights (the init for ReLU), zero biases."""
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), "b": jnp.zeros(b)}
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def forward(params, x, p, train_scale, test_scale, mask_key=None):
    """Logits and the mean output of each hidden layer (over images and units).

    With ``mask_key`` each hidden output is multiplied by a Bernoulli(p) mask times
    ``train_scale`` (1: vanilla, 1/p: inverted); without it, by ``test_scale``.
    """
    h = x.reshape(x.shape[0], -1)
    means = []
    for i, layer in enumerate(params[:-1]):
        h = jax.nn.relu(h @ layer["w"] + layer["b"])
        if mask_key is None:
            h = h * test_scale
        else:
            mask = jax.random.bernoulli(jax.random.fold_in(mask_key, i), p, h.shape)
            h = h * mask * train_scale
        means.append(h.mean())
    return h @ params[-1]["w"] + params[-1]["b"], jnp.stack(means)


def train_one(key, p, inverted, arrays: _mnist.Arrays, cfg: Config):
    """SGD on dropout-trained ``params``; ``inverted`` (0. or 1.) picks the kind."""
    k_init, k_order, k_mask = jax.random.split(key, 3)
    sizes = [int(np.prod(arrays.x_train.shape[1:]))] + [cfg.width] * cfg.depth + [10]
    params = init_params(k_init, sizes)
    scale = jnp.where(inverted > 0, 1.0 / p, 1.0)
    tx = jn.sgd(cfg.learning_rate)
    order = _mnist.batch_order(k_order, arrays.x_train.shape[0], cfg.batch_size, cfg.steps)

    def loss(params, idx, k):
        logits, _ = forward(params, arrays.x_train[idx], p, scale, 1.0, mask_key=k)
        return optax.softmax_cross_entropy_with_integer_labels(logits, arrays.y_train[idx]).mean()

    def step(carry, inputs):
        params, state = carry
        idx, k = inputs
        updates, state = tx.update(jax.grad(loss)(params, idx, k), state, params)
        return (jn.apply_updates(params, updates), state), None

    keys = jax.random.split(k_mask, cfg.steps)
    (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), (order, keys))
    return params


def measure(params, p, inverted, key, arrays: _mnist.Arrays, cfg: Config) -> dict:
    """On the test images: mean activation (test pass vs expected training pass), loss, accuracy."""
    x, y = arrays.x_test, arrays.y_test
    scale = jnp.where(inverted > 0, 1.0 / p, 1.0)

    def train_pass(k):
        return forward(params, x, p, scale, 1.0, mask_key=k)[1]

    expected = jax.vmap(train_pass)(jax.random.split(key, cfg.mask_samples)).mean(axis=0)
    out = {"train_expected_activation": expected}
    for name, test_scale in (("unscaled", 1.0), ("rescaled", p)):
        logits, h = forward(params, x, p, scale, test_scale)
        out[f"activation_{name}"] = h
        out[f"loss_{name}"] = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        out[f"accuracy_{name}"] = (logits.argmax(-1) == y).mean()
    return out


def run_all(cfg: Config, arrays: _mnist.Arrays, probs: list[float]) -> dict[str, np.ndarray]:
    """Every (p, kind, seed) in one compiled, vmapped program.

    Arrays of shape (probs, 2 kinds, seeds), activations with a last axis of one per layer.
    """
    seeds = jax.random.split(jax.random.key(0), cfg.seeds)
    p = jnp.asarray(probs)[:, None, None] * jnp.ones((1, 2, cfg.seeds))
    inverted = jnp.asarray([0.0, 1.0])[None, :, None] * jnp.ones_like(p)
    keys = jnp.broadcast_to(seeds, p.shape)  # same seed: same init, batches and masks

    def one(key, p, inverted):
        params = train_one(key, p, inverted, arrays, cfg)
        return measure(params, p, inverted, jax.random.fold_in(key, 7), arrays, cfg)

    flat = jax.jit(jax.vmap(one))(keys.reshape(-1), p.reshape(-1), inverted.reshape(-1))
    return {k: np.asarray(v).reshape(*p.shape, *v.shape[1:]) for k, v in flat.items()}


# -- verdicts ----------------------------------------------------------------------------------


def claims(metrics: dict, cfg: Config) -> list[dict]:
    m = {k: np.asarray(v) for k, v in metrics["at_keep_prob"].items()}  # (2 kinds, seeds, ...)
    vanilla, inverted = 0, 1
    first = {k: m[k][..., 0] for k in ACTIVATIONS}  # the first hidden layer, where it is exact
    m |= {k: m[k][..., -1] for k in ACTIVATIONS}  # the claims: the last hidden layer
    expected = m["train_expected_activation"]
    n = cfg.seeds
    p = f"p = {cfg.keep_prob:g}"
    band = (1 - cfg.bias_min, 1 + cfg.bias_min)
    ratio = "test-pass mean activation / its expectation over training masks"
    unbiased = f"pre-stated: within {cfg.bias_min:.0%} of 1 (exact for one linear layer)"
    return [
        claim(
            f"Vanilla dropout ({p}) without rescaling at test time biases the test pass: "
            "its last hidden layer is more active than during training",
            _stats.paired_ratio(m["activation_unscaled"][vanilla], expected[vanilla]),
            Test(
                f"{ratio}, vanilla, not rescaled",
                ">",
                1 + cfg.bias_min,
                f"pre-stated: 'biased' as more than {cfg.bias_min:.0%} off (1/p per layer "
                "is expected)",
                n,
                paired=True,
            ),
            SRC_TEST_TIME,
            id="unscaled_test_pass_biased",
            kind="check",
        ),
        claim(
            "Multiplying by p at test time (vanilla) or dividing by p in training (inverted) "
            "restores the training-time expectation",
            [
                _stats.paired_ratio(m["activation_rescaled"][vanilla], expected[vanilla]),
                _stats.paired_ratio(m["activation_unscaled"][inverted], expected[inverted]),
            ],
            [
                Test(f"{ratio}, vanilla x p", "within", band, unbiased, n, paired=True),
                Test(f"{ratio}, inverted", "within", band, unbiased, n, paired=True),
            ],
            SRC_SCALE,
            evidence={
                "first hidden layer: same ratio, vanilla x p": _stats.paired_ratio(
                    first["activation_rescaled"][vanilla], first["train_expected_activation"][0]
                ),
                "first hidden layer: same ratio, inverted": _stats.paired_ratio(
                    first["activation_unscaled"][inverted], first["train_expected_activation"][1]
                ),
            },
            note="The rescaling is exact for the first hidden layer (a mask's mean is p); past a "
            "ReLU it is an approximation: by Jensen's inequality the mean of a ReLU over masks "
            "exceeds the ReLU of the mean, so the test pass falls short",
            id="scaling_restores_expectation",
        ),
        claim(
            f"The unscaled vanilla test pass ({p}) costs test loss: higher than with the rescaling",
            _stats.paired_ratio(m["loss_unscaled"][vanilla], m["loss_rescaled"][vanilla]),
            Test(
                "test loss, vanilla not rescaled / rescaled",
                ">",
                cfg.loss_ratio_min,
                "pre-stated: at least 10% higher test loss, the smallest harm we call biased "
                "outputs",
                n,
                paired=True,
            ),
            SRC_TEST_TIME,
            evidence={
                "test accuracy, vanilla not rescaled": _stats.mean(m["accuracy_unscaled"][0]),
                "test accuracy, vanilla x p": _stats.mean(m["accuracy_rescaled"][0]),
                "test accuracy, inverted": _stats.mean(m["accuracy_unscaled"][1]),
            },
            id="unscaled_costs_test_loss",
        ),
        claim(
            "Inverted dropout is the same method: its test accuracy equals vanilla dropout's "
            "with test-time rescaling",
            _stats.paired_difference(m["accuracy_unscaled"][inverted], m["accuracy_rescaled"][0]),
            Test(
                "test accuracy, inverted minus vanilla x p (same seeds)",
                "within",
                (-cfg.equivalence_margin, cfg.equivalence_margin),
                f"pre-stated equivalence margin: {cfg.equivalence_margin:.0%} "
                "(7 of the 360 test images)",
                n,
                paired=True,
            ),
            SRC_INVERTED,
            note="The two are not the same training run: inverted dropout's 1/p also scales "
            "the gradients, so at one learning rate their SGD paths differ",
            id="inverted_equals_rescaled_vanilla",
        ),
    ]


# -- figures -----------------------------------------------------------------------------------


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    """The regime map, from the metrics alone."""
    sweep = {k: np.asarray(v) for k, v in metrics["sweep"].items()}  # (probs, 2, seeds)
    probs = np.asarray(metrics["sweep_keep_probs"])
    order = np.argsort(probs)
    probs = probs[order]
    variants = (
        ("vanilla, not rescaled", 0, "unscaled", "tab:red"),
        ("vanilla x p", 0, "rescaled", "tab:blue"),
        ("inverted", 1, "unscaled", "tab:green"),
    )
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for label, kind, name, color in variants:
        ratio = (
            sweep[f"activation_{name}"][:, kind, :, -1]
            / sweep["train_expected_activation"][:, kind, :, -1]
        )
        loss = sweep[f"loss_{name}"][:, kind]
        for ax, v in ((ax1, ratio[order]), (ax2, loss[order])):
            ax.plot(probs, v.mean(axis=1), "o-", color=color, label=label)
            ax.fill_between(probs, v.min(axis=1), v.max(axis=1), color=color, alpha=0.2)
    ax1.plot(probs, probs ** -float(cfg.depth), "k:", label=f"1/p^{cfg.depth} (no rescaling)")
    ax1.axhspan(
        1 - cfg.bias_min,
        1 + cfg.bias_min,
        color="grey",
        alpha=0.2,
        label=f"within {cfg.bias_min:.0%} of 1",
    )
    ax1.set_yscale("log")
    ax1.set(
        xlabel="keep probability p",
        ylabel="test activation / training expectation",
        title=f"last hidden layer, {cfg.depth} x {cfg.width} ReLU, {cfg.seeds} seeds",
    )
    ax2.set(
        xlabel="keep probability p",
        ylabel="test loss",
        title=f"SGD lr {cfg.learning_rate:g}, {cfg.steps} iterations",
    )
    for ax in (ax1, ax2):
        ax.axvline(cfg.keep_prob, color="grey", lw=0.8, ls="--", label="p of the claims")
        ax.legend(fontsize=8)
    return save_figure(fig, out_dir, "dropout_scaling_map")


# -- main --------------------------------------------------------------------------------------


def main(cfg: Config, out_dir: Path) -> dict:
    arrays = _mnist.load(cfg.dataset)
    probs = [cfg.keep_prob] + [q for q in cfg.map_keep_probs if q != cfg.keep_prob]
    found = run_all(cfg, arrays, probs)
    metrics = {
        "at_keep_prob": {k: v[0] for k, v in found.items()},
        "sweep_keep_probs": probs,
        "sweep": found,
        "kinds": ["vanilla", "inverted"],
    }
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
