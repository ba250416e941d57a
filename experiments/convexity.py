"""Convex and not: the Hessian spectrum of three losses on the same images, at many points.

Linear regression (MSE onto one-hot targets) and softmax regression (cross-entropy) are convex:
their Hessian is positive semi-definite at every parameter value, a theorem, so these are
*checks*, with their exact zero eigenvalues counted too. With d = pixels + 1 bias, K = 10
classes and r = rank of the data matrix [X, 1]: linear regression's Hessian is
I_K (x) 2 X^T X / (n K), so it has K (d - r) zeros (pixels constant in the sample); softmax
regression adds the shift symmetry (adding one vector to every class's weights changes no
probability): d + (K - 1)(d - r) zeros.

The *claims* are about an MLP with tanh hidden layers (cross-entropy): that its loss is not
convex, measured as the share of random points (one per seed: a Xavier init, scaled by 0.5 to 4)
with an eigenvalue below -sqrt(eps) * max|lambda|; and that it "shows some convexity near a
minimum": after full-batch Adam training from the same seeds, the negative part of the spectrum
(sum of |negative eigenvalues| over the sum of positive ones) has at least halved. Depth 0 turns
the MLP into softmax regression: the sabotage, under which the first claim must fail.

Every eigenvalue comes from ``hessian.dense`` and ``eigvalsh`` in float64. An "exact zero" is
one at float64 roundoff, |lambda| <= 1e-12 * max|lambda|: the spectra show a clean gap there
(zeros at ~1e-16, the smallest genuine eigenvalues at 1e-8 or above).
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
from jaxopt_notes.experiments import _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, check, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn
from jaxopt_notes import data, hessian, models

SUMMARY = "Linear and softmax regression losses are convex (Hessian PSD); an MLP's is not"
DATA = "scikit-learn 8x8 digits: the first num_examples training images, pixels / 255"
QUICK_NOTE = (
    "Quick uses 300 images, 8 hidden units and 6 seeds (default 1000, 16, 10); training 300 "
    "Adam steps in both. A miss of 'some convexity near a minimum' could be down to training "
    "that has not reached a minimum."
)
MODELS = ("linear regression", "softmax regression", "MLP")
NEG_RTOL = float(np.sqrt(np.finfo(np.float64).eps))  # classify's default eig_rtol in float64
ZERO_RTOL = 1e-12  # float64 roundoff on eigenvalues of a ~1000 x 1000 matrix
SCALES = (1.0, 2.0, 4.0, 0.5)  # seed i's point: its Xavier init times SCALES[i % 4]

NOTE = "000_07e945f9227ab975.txt"
D2L = "Zhang et al., Dive into Deep Learning, sec. 12.2 (Convexity)"
SRC_CONVEX = Source(
    NOTE,
    "优化算法 (凸和非凸例子)",
    "softmax 回归：softmax 也是线性的",
    "Softmax regression: softmax is linear too (so, with linear regression, "
    "one of the only two convex models)",
    D2L,
)
SRC_MLP = Source(
    NOTE,
    "优化算法 (凸和非凸例子)",
    "有一个隐藏层的 MLP，因为**激活函数不是线性的**，导致它是非线性的（非线性的是非凸的）",
    "An MLP with one hidden layer: since the activation is not linear, it is nonlinear "
    "(and nonlinear means non-convex)",
    D2L,
)
SRC_NEAR_MIN = Source(
    NOTE,
    "优化算法 (凸性（convexity）)",
    "即使深度学习中的优化问题通常是非凸的，它们经常也在局部极小值附近表现出一些凸性",
    "Even though the optimization problems of deep learning are usually non-convex, they often "
    "show some convexity near local minima",
    D2L,
)


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    seeds: int = 10  # random points per model (and MLP trainings)
    num_examples: int = 1000
    hidden: int = 16
    depth: int = param(1, low=0, help="hidden layers of the MLP; 0: softmax regression")
    pool: int = param(1, choices=(1, 2, 4), help="average pool x pool pixel blocks")
    train_steps: int = 300  # full-batch Adam steps towards a minimum
    train_lr: float = 0.01
    nonconvex_share: float = param(0.5, low=0.0, high=1.0)
    halved: float = param(0.5, low=0.0, high=1.0, low_open=True)

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=6, num_examples=300, hidden=8)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=5, num_examples=60, hidden=4, pool=2, train_steps=200)


def pooled(images: np.ndarray, pool: int) -> np.ndarray:
    """uint8 N x 8 x 8 x 1 digits -> N x (8/pool)^2 floats on [0, 1], pool x pool averages."""
    n, side = len(images), 8 // pool
    blocks = images.reshape(n, side, pool, side, pool) / 255.0
    return blocks.mean(axis=(2, 4)).reshape(n, -1)


def make_loss(name: str, cfg: Config, x: jax.Array, y: jax.Array):
    """``(loss_fn, inits)`` in float64: the loss of one of :data:`MODELS` and one init per seed."""
    depth = cfg.depth if name == "MLP" else 0  # depth 0: one Linear layer, pixels -> 10

    def build(i):
        return models.MLP(
            in_features=x.shape[1],
            num_classes=10,
            depth=depth,
            width=cfg.hidden,
            activation="tanh",
            init="xavier",
            rngs=nnx.Rngs(cfg.seed + i),
        )

    apply, _ = models.functional(build(0))
    onehot = jax.nn.one_hot(y, 10, dtype=jnp.float64)

    def loss(p):
        out = apply(p, x)
        if name == "linear regression":
            return jnp.mean((out - onehot) ** 2)
        return jnp.mean(optax.softmax_cross_entropy(out, onehot))

    inits = []
    for i in range(cfg.seeds):
        params = models.functional(build(i))[1]
        inits.append(jax.tree.map(lambda a, s=SCALES[i % 4]: s * a.astype(jnp.float64), params))
    return loss, inits


def train(loss, inits: list, cfg: Config) -> list:
    """Full-batch Adam from every init at once (vmapped), towards a minimum."""
    tx = jn.adam(cfg.train_lr)

    def one(p):
        def body(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(loss)(p), s, p)
            return (jn.apply_updates(p, u), s), None

        return jax.lax.scan(body, (p, tx.init(p)), None, length=cfg.train_steps)[0][0]

    stacked = jax.tree.map(lambda *a: jnp.stack(a), *inits)
    done = jax.jit(jax.vmap(one))(stacked)
    return [jax.tree.map(lambda a, i=i: a[i], done) for i in range(len(inits))]


def spectrum(loss, params) -> np.ndarray:
    return np.linalg.eigvalsh(np.asarray(hessian.dense(loss, params)))[::-1]  # descending


def summarise(lam: np.ndarray) -> dict:
    """The numbers the verdicts use, from one descending spectrum."""
    scale = float(np.abs(lam).max())
    pos, neg = lam[lam > 0].sum(), -lam[lam < -NEG_RTOL * scale].sum()
    return {
        "size": int(lam.size),
        "max_eig": scale,
        "min_eig_over_max": float(lam[-1] / scale),
        "num_negative": int((lam < -NEG_RTOL * scale).sum()),
        "num_exact_zero": int((np.abs(lam) <= ZERO_RTOL * scale).sum()),
        "negative_mass": float(neg / pos) if pos > 0 else float("nan"),
    }


def predicted_zeros(x: np.ndarray) -> dict[str, int]:
    """The exact null-space dimensions of the two convex losses (see the module docstring)."""
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    d, r, k = design.shape[1], int(np.linalg.matrix_rank(design)), 10
    return {
        "rank": r,
        "d": d,
        "linear regression": k * (d - r),
        "softmax regression": d + (k - 1) * (d - r),
    }


def measure(cfg: Config) -> tuple[dict, dict]:
    """Per model, the summaries at every seed's point (and, for the MLP, after training)."""
    ds = data.load("digits")
    per, spectra = {}, {}
    with jax.enable_x64(True):
        x = jnp.asarray(pooled(ds.x_train[: cfg.num_examples], cfg.pool), jnp.float64)
        y = jnp.asarray(ds.y_train[: cfg.num_examples])
        for name in MODELS:
            loss, inits = make_loss(name, cfg, x, y)
            lams = [spectrum(loss, p) for p in inits]
            per[name], spectra[name] = [summarise(lam) for lam in lams], lams[0]
        done = train(loss, inits, cfg)  # the MLP's, the last of MODELS
        lams = [spectrum(loss, p) for p in done]
        per["MLP trained"], spectra["MLP trained"] = [summarise(lam) for lam in lams], lams[0]
        losses = {
            "init": [float(loss(p)) for p in inits],
            "trained": [float(loss(p)) for p in done],
        }
    metrics = {name: {k: [r[k] for r in rows] for k in rows[0]} for name, rows in per.items()}
    metrics["MLP training loss"] = losses
    metrics["predicted_zeros"] = predicted_zeros(np.asarray(x))
    return metrics, spectra


def log_ratio(after: list, before: list) -> _stats.Estimate:
    """Paired geometric-mean ratio; not finite where a value is not positive (nothing to halve)."""
    a, b = np.asarray(after, float), np.asarray(before, float)
    if np.all(a > 0) and np.all(b > 0):
        return _stats.paired_ratio(a, b)
    return _stats.Estimate(math.nan, math.nan, math.nan, a.size, math.nan, "a value is 0")


def convex_check(name: str, m: dict, zeros: dict, cfg: Config) -> dict:
    s = m[name]
    expected = zeros[name]
    holds = max(s["num_negative"]) == 0 and all(z == expected for z in s["num_exact_zero"])
    short = "linear" if name.startswith("linear") else "softmax"
    return check(
        f"{name.capitalize()} is convex: no eigenvalue below -sqrt(eps) max|lambda| at any of "
        f"{len(s['num_negative'])} points, and exactly the predicted {expected} zero eigenvalues",
        holds,
        {
            "num_negative_max": max(s["num_negative"]),
            "num_exact_zero": s["num_exact_zero"],
            "predicted_exact_zeros": expected,
            "data_rank": zeros["rank"],
            "min_eig_over_max": min(s["min_eig_over_max"]),
        },
        SRC_CONVEX,
        id=f"{short}_convex",
    )


def claims(metrics: dict, cfg: Config) -> list[dict]:
    mlp, trained, zeros = metrics["MLP"], metrics["MLP trained"], metrics["predicted_zeros"]
    neg = np.asarray(mlp["num_negative"]) > 0
    model = (
        f"{cfg.depth}-hidden-layer tanh MLP ({cfg.hidden} units)"
        if cfg.depth
        else ("depth-0 'MLP' (softmax regression)")
    )
    return [
        convex_check("linear regression", metrics, zeros, cfg),
        convex_check("softmax regression", metrics, zeros, cfg),
        claim(
            f"A {model}'s cross-entropy loss is not convex: at random points around its Xavier "
            "init, the Hessian has a negative eigenvalue beyond float64 roundoff at most of them",
            _stats.proportion(int(neg.sum()), neg.size),
            Test(
                "share of random points with an eigenvalue < -sqrt(eps) max|lambda|",
                ">",
                cfg.nonconvex_share,
                "pre-stated: a majority of points, for 'is non-convex' "
                "as a typical property rather than a rare one",
                neg.size,
            ),
            SRC_MLP,
            {
                "num_negative": mlp["num_negative"],
                "min_eig_over_max": mlp["min_eig_over_max"],
                "parameters": mlp["size"][0],
            },
            id="mlp_not_convex",
            kind="check",
        ),
        claim(
            f"Near a minimum the {model} shows some convexity: after {cfg.train_steps} "
            "full-batch Adam steps the negative part of the spectrum (sum of |negative "
            "eigenvalues| / sum of positive ones) is at most "
            f"{cfg.halved:g} of its value at the same seed's init",
            log_ratio(trained["negative_mass"], mlp["negative_mass"]),
            Test(
                "negative mass after training / at init",
                "<",
                cfg.halved,
                "pre-stated: at least halved, for 'some convexity'",
                neg.size,
                paired=True,
            ),
            SRC_NEAR_MIN,
            {
                "negative_mass_init": _stats.mean(mlp["negative_mass"]),
                "negative_mass_trained": _stats.mean(trained["negative_mass"]),
                "num_negative_trained": trained["num_negative"],
                "loss_init": _stats.positive_mean(metrics["MLP training loss"]["init"]),
                "loss_trained": _stats.positive_mean(metrics["MLP training loss"]["trained"]),
            },
            id="convex_near_minimum",
        ),
    ]


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.8))
    for name, rel in metrics["drawn"]["spectra"].items():
        n = rel["params"]
        ax.plot(np.asarray(rel["index"]) / n, rel["value"], lw=1.2, label=f"{name} ({n} params)")
    ax.set_yscale("symlog", linthresh=1e-9)
    ax.axhline(0, color="k", lw=0.6)
    ax.axhline(-NEG_RTOL, color="r", ls=":", lw=0.8, label="-sqrt(eps): 'negative' below")
    ax.set(
        xlabel="eigenvalue rank / number of parameters",
        ylabel="lambda / max|lambda| (symlog)",
        title=f"Hessian spectra at seed {cfg.seed}'s point ({cfg.num_examples} images)",
    )
    ax.legend(fontsize=8)
    for i, name in enumerate(("linear regression", "softmax regression", "MLP", "MLP trained")):
        ratios = np.asarray(metrics[name]["min_eig_over_max"])
        bx.scatter(np.full(ratios.size, i), ratios, s=25)
    bx.set_xticks(
        range(4),
        [
            "linear\nregression",
            "softmax\nregression",
            "MLP\nat init",
            f"MLP after\n{cfg.train_steps} Adam steps\n(lr {cfg.train_lr:g})",
        ],
    )
    bx.set_yscale("symlog", linthresh=1e-9)
    bx.axhline(0, color="k", lw=0.6)
    bx.axhline(-NEG_RTOL, color="r", ls=":", lw=0.8, label="-sqrt(eps)")
    bx.set(
        ylabel="min lambda / max|lambda| (symlog)",
        title=f"smallest eigenvalue at each of {cfg.seeds} seeds' points",
    )
    bx.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "convexity")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics, spectra = measure(cfg)
    metrics["drawn"] = {"spectra": {}}  # seed 0's sorted spectra over their largest |lambda|
    for name, lam in spectra.items():
        rel = _plot.curve(lam / np.abs(lam).max(), points=600)
        metrics["drawn"]["spectra"][name] = {"params": len(lam), **rel}
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
