"""Saito 6.2: how the initial weight scale shapes activations, learning and gradients.

1. Saito 6.2.2: 1,000 standard-normal inputs of 100 dims through five sigmoid layers of 100
   units; histograms of each layer's activations for weight std 1, std 0.01 and Xavier.
2. Saito 6.2.4: a five-layer ReLU net (four hidden layers of 100 + output) trained with SGD
   (lr 0.01, batch 128, 2,000 iterations) from std 0.01, Xavier and He initial weights.
3. Vanishing gradients: tanh'(4) and the norm of each layer's weight gradient at initialisation
   in a ten-layer net: sigmoid (Xavier), tanh (std 1, saturated), tanh (Xavier), ReLU (He).
All nets are ``jaxopt_notes.models.MLP`` (zero biases); the activations are read layer by layer.
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
from flax import nnx

import jaxopt_notes as jn
from experiments import _mnist
from experiments._common import claim, save_figure
from jaxopt_notes import models

SUMMARY = (
    "Init scale: sigmoid saturation or collapse vs Xavier; He trains deep ReLU nets; gradients"
)
DATA = (
    "random standard-normal inputs (histograms); "
    + _mnist.data_note("mnist5k")
    + " (training and gradient norms)"
)
HIST_INITS = {"std 1": ("normal", 1.0), "std 0.01": ("normal", 0.01), "Xavier": ("xavier", 1.0)}
TRAIN_INITS = {"std 0.01": ("normal", 0.01), "Xavier": ("xavier", 1.0), "He": ("he", 1.0)}
GRAD_NETS = {
    "sigmoid, Xavier": ("sigmoid", "xavier", 1.0),
    "tanh, std 1 (saturated)": ("tanh", "normal", 1.0),
    "tanh, Xavier": ("tanh", "xavier", 1.0),
    "ReLU, He": ("relu", "he", 1.0),
}


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    dataset: str = "mnist5k"  # tiny: "digits"
    hist_samples: int = 1000
    hist_layers: int = 5
    width: int = 100
    depth: int = 4  # hidden layers of the trained net (five weight layers)
    learning_rate: float = 0.01
    batch_size: int = 128
    steps: int = 2000
    window: int = 100  # iterations averaged for the final training loss
    grad_depth: int = 10
    grad_batch: int = 256

    @classmethod
    def quick(cls) -> Config:
        return cls(steps=600, window=50)

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            dataset="digits",
            hist_samples=200,
            width=32,
            depth=2,
            batch_size=32,
            steps=20,
            window=5,
            grad_depth=4,
            grad_batch=64,
        )


def hidden_activations(net: models.MLP, x: jax.Array) -> np.ndarray:
    """(layers, samples, units): the activation after each hidden layer."""
    act, out = models.ACTIVATIONS[net.activation], []
    for layer in net.hidden:
        x = act(layer(x))
        out.append(x)
    return np.asarray(jnp.stack(out))


def histograms(cfg: Config) -> dict[str, np.ndarray]:
    key = jax.random.key(cfg.seed)
    x = jax.random.normal(jax.random.fold_in(key, 1), (cfg.hist_samples, cfg.width))
    nets = {
        name: models.MLP(
            in_features=cfg.width,
            depth=cfg.hist_layers,
            width=cfg.width,
            activation="sigmoid",
            init=init,
            init_std=std,
            rngs=nnx.Rngs(key),
        )
        for name, (init, std) in HIST_INITS.items()
    }
    return {name: hidden_activations(net, x) for name, net in nets.items()}


def train_inits(cfg: Config, arrays: _mnist.Arrays) -> _mnist.Run:
    """The three initialisations in one vmapped run: same batches, same learning rate."""
    key = jax.random.key(cfg.seed)
    nets = [
        _mnist.mlp(key, arrays, depth=cfg.depth, width=cfg.width, init=init, init_std=std)
        for init, std in TRAIN_INITS.values()
    ]
    return _mnist.fit(
        nets,
        jn.sgd(cfg.learning_rate),
        arrays,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        key=jax.random.fold_in(key, 1),
    )


def layer_gradient_norms(cfg: Config, arrays: _mnist.Arrays) -> dict[str, np.ndarray]:
    """||dL/dW_l|| of every weight layer (input side first) at initialisation."""
    x, y = arrays.x_train[: cfg.grad_batch], arrays.y_train[: cfg.grad_batch]
    norms = {}
    for name, (act, init, std) in GRAD_NETS.items():
        net = _mnist.mlp(
            jax.random.key(cfg.seed),
            arrays,
            depth=cfg.grad_depth,
            width=cfg.width,
            activation=act,
            init=init,
            init_std=std,
        )
        apply, params = models.functional(net)
        grads = jax.grad(
            lambda p: optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y).mean()
        )(params)
        kernels = [grads["hidden"][i]["kernel"] for i in range(cfg.grad_depth)]
        kernels.append(grads["out"]["kernel"])
        norms[name] = np.asarray([float(jnp.linalg.norm(k[...])) for k in kernels])
    return norms


def saturated_fraction(cfg: Config, arrays: _mnist.Arrays) -> float:
    """Fraction of hidden tanh units of the std-1 net with |tanh| > 0.96 (|z| > 2)."""
    net = _mnist.mlp(
        jax.random.key(cfg.seed),
        arrays,
        depth=cfg.grad_depth,
        width=cfg.width,
        activation="tanh",
        init="normal",
        init_std=1.0,
    )
    x = arrays.x_train[: cfg.grad_batch].reshape(cfg.grad_batch, -1)
    return float(np.mean(np.abs(hidden_activations(net, x)) > math.tanh(2.0)))


def draw_histograms(acts: dict, out_dir: Path) -> str:
    layers = next(iter(acts.values())).shape[0]
    fig, axes = plt.subplots(
        len(acts), layers, figsize=(2.6 * layers, 2.2 * len(acts)), sharex=True, squeeze=False
    )
    for row, (name, a) in zip(axes, acts.items(), strict=True):
        for i, ax in enumerate(row):
            ax.hist(a[i].ravel(), bins=30, range=(0, 1), color="tab:blue")
            ax.set_yticks([])
            ax.set_title(f"{name}: layer {i + 1}", fontsize=9)
    fig.suptitle("sigmoid activations per layer, 5 x 100 units, random normal inputs")
    fig.tight_layout()
    return save_figure(fig, out_dir, "activation_histograms")


def draw_training(run: _mnist.Run, norms: dict, cfg: Config, out_dir: Path) -> str:
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4))
    for name, loss in zip(TRAIN_INITS, run.loss, strict=True):
        trend = _mnist.smooth(loss, cfg.window)
        ax1.plot(np.arange(len(trend)) + cfg.window - 1, trend, label=name)
    ax1.set(
        xlabel="iteration",
        ylabel="training loss (moving average)",
        ylim=(0, 2.5),
        title=f"{cfg.depth + 1}-layer ReLU net, SGD lr {cfg.learning_rate}",
    )
    ax1.legend()
    for name, n in norms.items():
        ax2.semilogy(np.arange(1, len(n) + 1), n, "o-", ms=3, label=name)
    ax2.set(
        xlabel="weight layer (1 = input side)",
        ylabel="||dL/dW|| at initialisation",
        title=f"gradient norms, {cfg.grad_depth} hidden layers",
    )
    ax2.legend(fontsize=8)
    z = np.linspace(-6, 6, 400)
    ax3.plot(z, 1 - np.tanh(z) ** 2, label="tanh'(z)")
    ax3.plot(z, jax.nn.sigmoid(z) * (1 - jax.nn.sigmoid(z)), label="sigmoid'(z)")
    ax3.plot([4], [1 - np.tanh(4) ** 2], "ro", label=f"tanh'(4) = {1 - np.tanh(4) ** 2:.4f}")
    ax3.set(xlabel="pre-activation z", title="derivatives: saturated units pass ~0")
    ax3.legend()
    return save_figure(fig, out_dir, "init_training_gradients")


def main(cfg: Config, out_dir: Path) -> dict:
    arrays = _mnist.load(cfg.dataset)
    acts = histograms(cfg)
    extreme = {k: np.mean((a < 0.1) | (a > 0.9), axis=(1, 2)) for k, a in acts.items()}
    central = {k: np.mean(np.abs(a - 0.5) < 0.1, axis=(1, 2)) for k, a in acts.items()}
    spread = {k: a.std(axis=(1, 2)) for k, a in acts.items()}
    run = train_inits(cfg, arrays)
    final = {
        k: _mnist.final_loss(v, cfg.window) for k, v in zip(TRAIN_INITS, run.loss, strict=True)
    }
    test_acc = dict(zip(TRAIN_INITS, run.evals["test_accuracy"][:, -1].tolist(), strict=True))
    norms = layer_gradient_norms(cfg, arrays)
    ratio = {k: float(n[0] / n[-1]) for k, n in norms.items()}  # input side / output side
    tanh4 = float(jax.grad(jnp.tanh)(4.0))
    sat = saturated_fraction(cfg, arrays)
    chance = math.log(10)
    xavier_spreads = bool(
        np.all(extreme["Xavier"] < 0.1) and np.all(spread["Xavier"] > 2 * spread["std 0.01"])
    )
    figures = [draw_histograms(acts, out_dir), draw_training(run, norms, cfg, out_dir)]
    claims = [
        claim(
            "Sigmoid activations with init std 1 pile up at 0 and 1: in every layer most "
            "activations are within 0.1 of 0 or 1",
            bool(np.all(extreme["std 1"] > 0.5)),
            {"fraction_near_0_or_1": extreme["std 1"], "std_per_layer": spread["std 1"]},
            reason="fewer than half near 0 or 1 in some layer",
        ),
        claim(
            "With init std 0.01 they collapse to 0.5: in every layer more than 99% of the "
            "activations are within 0.1 of 0.5",
            bool(np.all(central["std 0.01"] > 0.99)),
            {
                "fraction_within_0.1_of_half": central["std 0.01"],
                "std_per_layer": spread["std 0.01"],
            },
            reason="some layer is not collapsed",
        ),
        claim(
            "Xavier spreads them: in every layer fewer than 10% are near 0 or 1 and the std "
            "is at least twice std 0.01's",
            xavier_spreads,
            {
                "fraction_near_0_or_1": extreme["Xavier"],
                "std_per_layer": spread["Xavier"],
                "std_per_layer_std_0.01": spread["std 0.01"],
            },
            reason="Xavier's activations saturate or collapse in some layer",
        ),
        claim(
            f"With std 0.01 a {cfg.depth + 1}-layer ReLU net does not learn: its training "
            f"loss stays above 90% of the chance level ln 10 = {chance:.3f}",
            final["std 0.01"] > 0.9 * chance,
            {"final_train_loss": final, "test_accuracy": test_acc},
            reason="the std-0.01 net's loss fell below 90% of ln 10",
        ),
        claim(
            "Xavier and He learn (final training loss below half of ln 10) and He, the init "
            "derived for ReLU, ends lower than Xavier",
            max(final["Xavier"], final["He"]) < chance / 2 and final["He"] < final["Xavier"],
            {"final_train_loss": final, "test_accuracy": test_acc},
            reason="Xavier or He did not get below ln(10)/2, or He did not end below Xavier",
        ),
        claim(
            "A saturated unit passes almost no gradient: tanh'(4) ~ 0.0013",
            abs(tanh4 - 0.0013) < 1e-4,
            {"tanh_prime_4": tanh4},
        ),
        claim(
            f"Gradient norms shrink with depth through sigmoid: in a {cfg.grad_depth}-layer "
            "Xavier net the first layer's weight gradient is < 1/10 of the last layer's",
            ratio["sigmoid, Xavier"] < 0.1,
            {"first_over_last": ratio, "norms": norms},
        ),
        claim(
            "... and through saturated tanh (init std 1): first/last gradient norm < 1/10",
            ratio["tanh, std 1 (saturated)"] < 0.1,
            {"first_over_last": ratio, "fraction_of_units_saturated": sat},
            reason=f"first/last = {ratio['tanh, std 1 (saturated)']:.3g}: with {sat:.0%} of "
            "the units saturated, the std-1 weights still amplify the backward signal more "
            "than the small derivatives shrink it, so the gradients grow toward the input",
        ),
        claim(
            "ReLU (He) keeps them: first/last gradient norm within a factor of 10",
            0.1 <= ratio["ReLU, He"] <= 10,
            {"first_over_last": ratio},
            reason="ReLU's gradient norms changed by more than 10x across the layers",
        ),
    ]
    metrics = {
        "histograms": {
            "fraction_near_0_or_1": extreme,
            "fraction_within_0.1_of_half": central,
            "std_per_layer": spread,
        },
        "training": {
            "final_train_loss": final,
            "test_accuracy": test_acc,
            "train_seconds": run.seconds,
        },
        "gradients": {
            "layer_norms": norms,
            "first_over_last": ratio,
            "tanh_prime_4": tanh4,
            "tanh_std1_saturated_fraction": sat,
        },
    }
    return {"metrics": metrics, "claims": claims, "figures": figures}
