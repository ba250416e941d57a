"""Convolution arithmetic, counted and measured on real ``flax.nnx`` layers.

Weight sharing (claim 28, first half): six 5x5 filters on a 32x32x3 image against a dense layer
from the same image to 100 units. Stacked small filters (claim 30): two 3x3 convolutions see a
5x5 field, measured as the support of the gradient of one output pixel with respect to the
input, with 18 C^2 weights where one 5x5 has 25 C^2. A 1x1 convolution is a dense layer applied
at every pixel. Output sizes follow N = (W - F + 2P) / S + 1 (rounded down when S does not
divide), checked against the shapes Flax actually returns.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from experiments._common import claim, save_figure

SUMMARY = "Conv layers share weights: parameter counts, receptive fields, 1x1 = dense, output sizes"
DATA = "no data set: random images and weights (fixed seeds) fed to flax.nnx Conv/Linear layers"


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    channels: int = 16  # C of the stacked 3x3 vs 5x5 comparison
    field_size: int = 15  # side of the input image whose gradient support we measure
    pointwise_pixels: int = 32  # side of the image for the 1x1 = dense check
    max_width: int = 32  # output sizes are checked for W in 4..max_width

    @classmethod
    def quick(cls) -> Config:
        return cls()

    @classmethod
    def tiny(cls) -> Config:
        return cls(channels=4, field_size=11, pointwise_pixels=8, max_width=10)


def count(module: nnx.Module) -> dict[str, int]:
    """Scalars in each ``nnx.Param`` of ``module`` (kernel, bias) and their total."""
    state = nnx.state(module, nnx.Param)
    sizes = {name: math.prod(p.shape) for name, p in state.items()}
    return {**sizes, "total": sum(sizes.values())}


def weight_sharing(rngs: nnx.Rngs) -> dict:
    conv = nnx.Conv(3, 6, kernel_size=(5, 5), rngs=rngs)
    dense = nnx.Linear(32 * 32 * 3, 100, rngs=rngs)
    return {"conv_6x5x5_on_32x32x3": count(conv), "dense_3072_to_100": count(dense)}


def receptive_field(layers: list[nnx.Conv], size: int) -> np.ndarray:
    """|d out[centre] / d input| summed over channels: where one output pixel looks."""
    c_in = layers[0].in_features

    def centre(x):
        for layer in layers:
            x = layer(x)  # no activation: with random weights every tap in the field counts
        return x[0, size // 2, size // 2, 0]

    x = jax.random.normal(jax.random.key(1), (1, size, size, c_in))
    return np.asarray(jnp.abs(jax.grad(centre)(x)).sum(axis=(0, 3)))


def support(grad_map: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(grad_map > 0)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def stacked_vs_single(cfg: Config, rngs: nnx.Rngs) -> dict:
    c = cfg.channels
    kw = dict(padding="SAME", use_bias=False, rngs=rngs)
    stacked = [nnx.Conv(c, c, kernel_size=(3, 3), **kw), nnx.Conv(c, c, kernel_size=(3, 3), **kw)]
    single = [nnx.Conv(c, c, kernel_size=(5, 5), **kw)]
    one = [nnx.Conv(c, c, kernel_size=(3, 3), **kw)]
    nets = {"one 3x3": one, "two 3x3": stacked, "one 5x5": single}
    maps = {name: receptive_field(layers, cfg.field_size) for name, layers in nets.items()}
    return {
        "maps": maps,
        "field": {k: support(m) for k, m in maps.items()},
        "params": {
            "two 3x3": sum(count(layer)["total"] for layer in stacked),
            "one 5x5": count(single[0])["total"],
        },  # fmt: skip
        "formula": {"two 3x3": 18 * c * c, "one 5x5": 25 * c * c},
    }


def pointwise_equals_dense(cfg: Config, rngs: nnx.Rngs) -> dict:
    """A 1x1 conv and a Linear sharing its kernel give the same numbers at every pixel."""
    c_in, c_out, side = 8, 5, cfg.pointwise_pixels
    conv = nnx.Conv(c_in, c_out, kernel_size=(1, 1), rngs=rngs)
    dense = nnx.Linear(c_in, c_out, rngs=rngs)
    dense.kernel.value = conv.kernel.value[0, 0]  # (1, 1, c_in, c_out) -> (c_in, c_out)
    dense.bias.value = conv.bias.value
    x = jax.random.normal(jax.random.key(2), (2, side, side, c_in))
    by_conv = conv(x)
    by_dense = dense(x.reshape(-1, c_in)).reshape(by_conv.shape)
    diff = float(jnp.max(jnp.abs(by_conv - by_dense)))
    return {"max_abs_diff": diff, "max_abs_output": float(jnp.max(jnp.abs(by_conv))),
            "shape": list(by_conv.shape)}  # fmt: skip


def output_sizes(cfg: Config, rngs: nnx.Rngs) -> list[dict]:
    """Flax's output width against floor((W - F + 2P) / S) + 1 over a grid of W, F, P, S."""
    rows = []
    for f, p, s in itertools.product((1, 3, 5, 7), (0, 1, 2, 3), (1, 2, 3)):
        conv = nnx.Conv(1, 1, kernel_size=(f, f), strides=s, padding=[(p, p), (p, p)], rngs=rngs)
        for w in range(4, cfg.max_width + 1, 2 if cfg.max_width > 16 else 1):
            if w + 2 * p < f:
                continue  # the window does not fit: no output at all
            image = jax.ShapeDtypeStruct((1, w, w, 1), jnp.float32)
            flax_n = jax.eval_shape(conv, image).shape[1]  # the shape Flax computes, no FLOPs
            exact = (w - f + 2 * p) % s == 0
            rows.append({"W": w, "F": f, "P": p, "S": s, "flax": flax_n,
                         "formula": (w - f + 2 * p) // s + 1, "integer": exact})  # fmt: skip
    return rows


def draw(share: dict, stacked: dict, sizes: list[dict], out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 5, figsize=(19, 3.6))
    ax = axes[0]
    labels = ["conv 6@5x5\n32x32x3", "dense\n3072->100"]
    totals = [share["conv_6x5x5_on_32x32x3"]["total"], share["dense_3072_to_100"]["total"]]
    ax.bar(labels, totals, color=["tab:blue", "tab:orange"])
    ax.set_yscale("log")
    for i, t in enumerate(totals):
        ax.text(i, t, f"{t:,}", ha="center", va="bottom")
    ax.set_title("parameters (weights + biases)")
    for ax, (name, grad_map) in zip(axes[1:4], stacked["maps"].items(), strict=True):
        ax.imshow(grad_map > 0, cmap="Greys")
        h, w = stacked["field"][name]
        extra = f", {stacked['params'][name]:,} weights" if name in stacked["params"] else ""
        ax.set_title(f"{name}: field {h}x{w}{extra}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[4]
    flax_n = np.array([r["flax"] for r in sizes])
    formula = np.array([r["formula"] for r in sizes])
    exact = np.array([r["integer"] for r in sizes])
    ax.scatter(formula[exact], flax_n[exact], s=12, label="(W-F+2P)/S integer")
    ax.scatter(formula[~exact], flax_n[~exact], s=12, marker="x", label="rounded down")
    ax.plot([0, formula.max()], [0, formula.max()], "k:", lw=0.8)
    ax.set_xlabel("(W - F + 2P) // S + 1")
    ax.set_ylabel("flax Conv output size")
    ax.legend(fontsize=8)
    ax.set_title(f"output sizes, {len(sizes)} cases")
    fig.suptitle("Convolution arithmetic with flax.nnx layers (gradient support in black)")
    return save_figure(fig, out_dir, "conv_arithmetic")


def main(cfg: Config, out_dir: Path) -> dict:
    rngs = nnx.Rngs(cfg.seed)
    share = weight_sharing(rngs)
    stacked = stacked_vs_single(cfg, rngs)
    point = pointwise_equals_dense(cfg, rngs)
    sizes = output_sizes(cfg, rngs)
    conv_n, dense_n = share["conv_6x5x5_on_32x32x3"], share["dense_3072_to_100"]
    mismatches = [r for r in sizes if r["flax"] != r["formula"]]
    exact_rows = [r for r in sizes if r["integer"]]
    field = stacked["field"]
    claims = [
        claim(
            "Weight sharing: a conv layer of six 5x5 filters on 32x32x3 has 456 parameters "
            "(6*5*5*3 = 450 weights + 6 biases); a dense layer from 32x32x3 to 100 units has "
            "307,200 weights (+100 biases = 307,300)",
            conv_n["total"] == 456 and dense_n["kernel"] == 307_200 and dense_n["bias"] == 100,
            {"conv": conv_n, "dense": dense_n, "ratio": dense_n["total"] / conv_n["total"]},
        ),
        claim(
            "Two stacked 3x3 convolutions see a 5x5 field (non-zero gradient support of one "
            "output pixel), like one 5x5, with fewer weights: 18 C^2 against 25 C^2",
            field["two 3x3"] == (5, 5) == field["one 5x5"]
            and stacked["params"] == stacked["formula"]
            and stacked["params"]["two 3x3"] < stacked["params"]["one 5x5"],
            {"field": field, "params": stacked["params"], "C": cfg.channels},
        ),
        claim(
            "A 1x1 convolution equals a dense layer (same kernel) applied at every pixel",
            point["max_abs_diff"] <= 1e-5 * max(point["max_abs_output"], 1.0),
            point,
        ),
        claim(
            "Output sizes follow N = (W - F + 2P)/S + 1 (rounded down when S does not divide)",
            not mismatches and bool(exact_rows),
            {
                "cases": len(sizes),
                "integer_cases": len(exact_rows),
                "mismatches": mismatches[:5],
                "num_mismatches": len(mismatches),
            },  # fmt: skip
        ),
    ]
    metrics = {"weight_sharing": share, "receptive_field": field,
               "stacked_params": stacked["params"], "pointwise": point,
               "output_sizes": sizes}  # fmt: skip
    return {"metrics": metrics, "claims": claims, "figures": [draw(share, stacked, sizes, out_dir)]}
