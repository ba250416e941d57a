"""Saito 6.2.1 (and d2l): weights initialised to zero keep the hidden units of a layer identical.

With every weight equal (zero, as the note says, or any one constant) all units of a hidden layer
compute the same value, receive the same gradient and take the same update, so gradient descent
never makes them differ: the layer acts as one unit. A random initialisation breaks the
symmetry. Measured on a sigmoid MLP (two hidden layers of 100) trained with SGD over seeds: the
spread between the units of each hidden layer after training, and the test accuracy of the
constant init against a random (Xavier) init with the same batches (paired). The regime map adds
small random perturbations to the constant init: how large a perturbation must be for gradient
descent to break the symmetry. A check confirms the ReLU case: at exact zeros no hidden weight
gets any gradient at all.
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

import jaxopt_notes as jn
from jaxopt_notes import models

SUMMARY = "Constant (zero) init keeps a layer's units identical through training; random breaks it"
DATA = f"{_mnist.DIGITS}; with --set dataset=mnist5k: {_mnist.MNIST5K}"
QUICK_NOTE = (
    "quick trains 1,000 iterations instead of 2,000 over 4 seeds instead of 10. The symmetry "
    "claim cannot be helped by a shorter run (identical units stay identical at any length); "
    "the accuracy gap could be smaller after fewer iterations."
)
SRC = Source(
    "004_0bb7a3a390427018.txt",
    "6.2　权重初始值的设置方法",
    "权重初始值不能设置为0，会造成在通过乘法节点时，两个输入的反向传输是同样的值，更新也是相同"
    "的，成为了一种对称的结构，就失去了神经网络的意义。",
    "The initial weights must not be set to 0: passing through the multiplication nodes, the "
    "backward signals of the inputs are the same, so are the updates, the structure becomes "
    "symmetric, and the network loses its point.",
    "Saito, Deep Learning from Scratch, sec. 6.2.1; Zhang et al., Dive into Deep Learning, "
    "'Numerical Stability and Initialization: Breaking the Symmetry'",
)


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 10
    dataset: str = param("digits", choices=("digits", "mnist5k"))
    depth: int = 2
    width: int = 100
    activation: str = param("sigmoid", choices=("sigmoid", "tanh"))
    learning_rate: float = 0.5
    batch_size: int = 64
    steps: int = 2000
    init_value: float = param(0.0, low=-10.0, high=10.0, help="every weight's initial value")
    perturbation: float = param(0.0, low=0.0, help="std of noise added to it (sabotage: > 0)")
    map_perturbations: tuple = (1e-7, 1e-5, 1e-3, 1e-1)
    symmetry_tol: float = 1e-4  # relative spread of identical units: float32 rounding only
    accuracy_gap_min: float = param(0.1, low=0.0, high=1.0)

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=4, steps=1000)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=3, width=32, steps=300, map_perturbations=(1e-5, 1e-1))


def constant_net(key: jax.Array, arrays: _mnist.Arrays, cfg: Config, noise: float, width: int):
    """An MLP whose every weight is ``init_value`` plus N(0, noise^2) (biases 0, as built)."""
    net = _mnist.mlp(key, arrays, depth=cfg.depth, width=width, activation=cfg.activation)
    for i, layer in enumerate([*net.hidden, net.out]):
        shape = layer.kernel[...].shape
        normal = jax.random.normal(jax.random.fold_in(key, 100 + i), shape)
        layer.kernel[...] = jnp.full(shape, cfg.init_value) + noise * normal
    return net


def random_net(key: jax.Array, arrays: _mnist.Arrays, cfg: Config, width: int):
    """The control: Xavier normal weights, the init meant for sigmoid and tanh."""
    return _mnist.mlp(
        key, arrays, depth=cfg.depth, width=width, activation=cfg.activation, init="xavier"
    )


def unit_spread(params, depth: int) -> np.ndarray:
    """Per run: the largest over hidden layers of max_j ||u_j - mean u|| / mean ||u_j||.

    u_j is unit j's incoming weights and bias; 0 when every unit of the layer is the same.
    """
    out = []
    for i in range(depth):
        kernel = np.asarray(params["hidden"][i]["kernel"][...])  # (runs, fan_in, units)
        bias = np.asarray(params["hidden"][i]["bias"][...])[:, None, :]
        u = np.concatenate([kernel, bias], axis=1)
        dev = np.linalg.norm(u - u.mean(axis=2, keepdims=True), axis=1).max(axis=1)
        out.append(dev / (np.linalg.norm(u, axis=1).mean(axis=1) + 1e-30))
    return np.max(out, axis=0)


def arms(cfg: Config) -> dict[str, float | None]:
    """Arm name -> the perturbation of its constant init (None: the random control)."""
    out = {"constant": cfg.perturbation, "random": None}
    out |= {f"constant + {p:g} noise": p for p in cfg.map_perturbations}
    return out


def train(cfg: Config, arrays: _mnist.Arrays, width: int, names: list[str]) -> _mnist.Run:
    """The arms ``names`` x seeds in one vmapped run; seed s gives every arm the same batches."""
    seed_keys = jax.random.split(jax.random.key(0), cfg.seeds)
    table = arms(cfg)
    nets = [
        random_net(k, arrays, cfg, width)
        if table[name] is None
        else constant_net(k, arrays, cfg, table[name], width)
        for name in names
        for k in seed_keys
    ]
    batch_keys = _mnist.paired_keys(1, cfg.seeds, len(names))
    return _mnist.fit(
        nets,
        jn.sgd(cfg.learning_rate),
        arrays,
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        key=batch_keys,
    )


def relu_zero_gradients(arrays: _mnist.Arrays, cfg: Config) -> dict[str, float]:
    """At all-zero weights in a ReLU net: the largest |gradient| of the kernels and biases."""
    net = _mnist.mlp(jax.random.key(0), arrays, depth=cfg.depth, width=cfg.width)
    for layer in [*net.hidden, net.out]:
        layer.kernel[...] = jnp.zeros_like(layer.kernel[...])
    apply, params = models.functional(net)
    x, y = arrays.x_train[: cfg.batch_size], arrays.y_train[: cfg.batch_size]
    grads = jax.grad(
        lambda p: optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y).mean()
    )(params)

    def largest(tree):
        return float(max(jnp.abs(leaf).max() for leaf in jax.tree.leaves(tree)))

    return {
        "hidden kernels": largest([grads["hidden"][i]["kernel"] for i in range(cfg.depth)]),
        "output kernel": largest(grads["out"]["kernel"]),
        "output bias": largest(grads["out"]["bias"]),
    }


def claims(metrics: dict, cfg: Config) -> list[dict]:
    spread = {k: np.asarray(v) for k, v in metrics["unit_spread"].items()}
    acc = {k: np.asarray(v) for k, v in metrics["test_accuracy"].items()}
    n = cfg.seeds
    init = f"weights all {cfg.init_value:g}"
    if cfg.perturbation:
        init += f" + N(0, {cfg.perturbation:g}^2)"
    grads = metrics["relu_zero_gradients"]
    return [
        claim(
            f"From {init}, the units of each hidden layer are still identical after "
            f"{cfg.steps} SGD iterations: gradient descent never breaks the symmetry",
            _stats.mean(spread["constant"]),
            Test(
                "largest relative spread between a hidden layer's units after training",
                "<",
                cfg.symmetry_tol,
                "float32 rounding: identical units may differ only by rounding (~1e-7 "
                "relative per operation); 1e-4 allows a thousand-fold accumulation",
                n,
            ),
            SRC,
            evidence={"same spread, random (Xavier) init": _stats.mean(spread["random"])},
            id="constant_init_units_stay_identical",
            kind="check",
        ),
        claim(
            f"The symmetric net loses the point of having {cfg.width} units: a random "
            f"init beats {init} on test accuracy by at least {cfg.accuracy_gap_min:.0%}",
            _stats.paired_difference(acc["random"], acc["constant"]),
            Test(
                "test accuracy, random (Xavier) init minus constant init (same batches)",
                ">",
                cfg.accuracy_gap_min,
                "pre-stated: 10 points, far beyond the noise of a 360-image test set, for "
                "'loses its point'",
                n,
                paired=True,
            ),
            SRC,
            evidence={
                "test accuracy, constant init": _stats.mean(acc["constant"]),
                "test accuracy, random init": _stats.mean(acc["random"]),
                "test accuracy, random init, 1 unit per layer (for scale)": _stats.mean(
                    acc["random, 1 unit per layer"]
                ),
            },
            id="random_init_beats_constant",
        ),
        check(
            "With ReLU and all weights exactly 0, no kernel gets any gradient (only the output "
            "bias does): the hidden layers output 0 and every backward path is multiplied by 0",
            grads["hidden kernels"] == 0.0
            and grads["output kernel"] == 0.0
            and grads["output bias"] > 0.0,
            grads,
            reason="largest |gradient| at all-zero ReLU weights: "
            + ", ".join(f"{k} {v:.3g}" for k, v in grads.items()),
            id="relu_zero_init_no_gradient",
        ),
    ]


def draw_map(metrics: dict, cfg: Config, out_dir: Path) -> str:
    perts = np.asarray(cfg.map_perturbations)
    names = [f"constant + {p:g} noise" for p in perts]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    for ax, key, ylabel in (
        (ax1, "unit_spread", "relative spread between units (after training)"),
        (ax2, "test_accuracy", "test accuracy"),
    ):
        vals = np.stack([np.asarray(metrics[key][n]) for n in names])  # (perts, seeds)
        ax.errorbar(
            perts,
            vals.mean(axis=1),
            yerr=[vals.mean(axis=1) - vals.min(axis=1), vals.max(axis=1) - vals.mean(axis=1)],
            fmt="o-",
            capsize=3,
            label=f"weights {cfg.init_value:g} + N(0, noise^2)",
        )
        for arm, style in (("constant", "r--"), ("random", "g:")):
            v = float(np.mean(metrics[key][arm]))
            label = "no noise" if arm == "constant" else "random (Xavier) init"
            ax.axhline(v, color=style[0], ls=style[1:], label=f"{label}: {v:.3g}")
        if key == "unit_spread":
            ax.set_yscale("log")
            ax.axhline(cfg.symmetry_tol, color="grey", lw=0.8, label="claim's tolerance")
        ax.set_xscale("log")
        ax.set(xlabel="std of the noise added to the constant init", ylabel=ylabel)
        ax.legend(fontsize=8)
    ax1.set_title(f"symmetry breaking, {cfg.activation} MLP, SGD lr {cfg.learning_rate:g}")
    ax2.set_title(f"{cfg.depth} x {cfg.width} units, {cfg.steps} iterations, {cfg.seeds} seeds")
    return save_figure(fig, out_dir, "symmetry_regime_map")


def draw(metrics: dict, cfg: Config, out_dir: Path) -> list[str]:
    """Both figures, from the metrics alone."""
    return [draw_map(metrics, cfg, out_dir), draw_units(metrics, cfg, out_dir)]


def first_units(run: _mnist.Run, names: list[str], cfg: Config) -> dict:
    """First hidden layer's incoming weights of 10 units, seed 0, per arm: (fan_in, 10)."""
    kernel = np.asarray(run.params["hidden"][0]["kernel"][...])
    return {
        arm: _plot.compact(kernel[names.index(arm) * cfg.seeds][:, :10], 3)
        for arm in ("constant", "random")
    }


def draw_units(metrics: dict, cfg: Config, out_dir: Path) -> str:
    """First hidden layer's incoming weights of 10 units, seed 0: constant vs random init."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, arm in zip(axes, ("constant", "random"), strict=True):
        w = np.asarray(metrics["drawn"]["first_units"][arm])  # (fan_in, 10 units)
        ax.plot(w, lw=0.8)
        ax.set(
            xlabel="input pixel",
            ylabel="weight after training",
            title=f"{arm} init: 10 units of hidden layer 1 (lr {cfg.learning_rate:g})",
        )
    return save_figure(fig, out_dir, "hidden_units")


def main(cfg: Config, out_dir: Path) -> dict:
    arrays = _mnist.load(cfg.dataset)
    names = list(arms(cfg))
    run = train(cfg, arrays, cfg.width, names)
    narrow = train(cfg, arrays, 1, ["random"])  # for scale: a net of one unit per layer
    per_arm = run.evals["test_accuracy"][:, -1].reshape(len(names), cfg.seeds)
    spread = unit_spread(run.params, cfg.depth).reshape(len(names), cfg.seeds)
    accuracy = dict(zip(names, per_arm, strict=True))
    accuracy["random, 1 unit per layer"] = narrow.evals["test_accuracy"][:, -1]
    metrics = {
        "unit_spread": dict(zip(names, spread, strict=True)),
        "test_accuracy": accuracy,
        "relu_zero_gradients": relu_zero_gradients(arrays, cfg),
        "train_seconds": run.seconds,
        "drawn": {"first_units": first_units(run, names, cfg)},
    }
    figures = draw(_plot.stored(metrics), cfg, out_dir)
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
