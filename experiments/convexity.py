"""Convex and not: the Hessian spectrum of three losses on the same images, at many points.

Linear regression (MSE onto one-hot targets) and softmax regression (cross-entropy) are convex:
their Hessian is positive semi-definite at every parameter value. Their zero eigenvalues are
exact and countable. With d = 64 pixels + 1 bias and K = 10 classes, r = rank of the data matrix
[X, 1]: linear regression's Hessian is I_K (x) 2 X^T X / (n K), so it has K (d - r) zeros (pixels
that are constant in the sample); softmax regression adds the shift symmetry (adding the same
vector to every class's weights changes no probability): d + (K - 1)(d - r) zeros. A one-hidden-
layer tanh MLP on the same data has negative eigenvalues: not convex.

Every eigenvalue comes from ``hessian.dense`` and ``eigvalsh`` in float64. "Negative" means below
-sqrt(eps) * max|lambda| (``hessian.classify``'s default tolerance); an "exact zero" is one at
float64 roundoff, |lambda| <= 1e-12 * max|lambda|: the spectra show a clean gap there (zeros at
~1e-16, the smallest genuine eigenvalues at 1e-8 or above; a saturated softmax pushes some down
to ~1e-11), which is why the count does not use the looser sqrt(eps).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx

from experiments._common import claim, save_figure
from jaxopt_notes import data, hessian, models

SUMMARY = "Linear and softmax regression losses are convex (Hessian PSD); an MLP's is not"
DATA = "scikit-learn 8x8 digits: the first num_examples training images, pixels / 255"
MODELS = ("linear regression", "softmax regression", "tanh MLP")
NEG_RTOL = float(np.sqrt(np.finfo(np.float64).eps))  # classify's default eig_rtol in float64
ZERO_RTOL = 1e-12  # float64 roundoff on eigenvalues of a ~1000 x 1000 matrix


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    num_examples: int = 1000
    num_points: int = 10  # sampled parameter values per model
    hidden: int = 16
    pool: int = 1  # 2: average 2x2 blocks (4x4 images, 16 pixels): only to keep tiny fast

    @classmethod
    def quick(cls) -> Config:
        return cls(num_examples=300, num_points=4, hidden=8)

    @classmethod
    def tiny(cls) -> Config:
        return cls(num_examples=60, num_points=2, hidden=4, pool=2)


def pooled(images: np.ndarray, pool: int) -> np.ndarray:
    """uint8 N x 8 x 8 x 1 digits -> N x (8/pool)^2 floats on [0, 1], pool x pool averages."""
    n, side = len(images), 8 // pool
    blocks = images.reshape(n, side, pool, side, pool) / 255.0
    return blocks.mean(axis=(2, 4)).reshape(n, -1)


def make_problem(name: str, cfg: Config, x: jax.Array, y: jax.Array):
    """``(loss_fn, params)`` in float64 for one of :data:`MODELS`, built once per model."""
    depth = 1 if name == "tanh MLP" else 0  # depth 0: one Linear layer, pixels -> 10
    model = models.MLP(in_features=x.shape[1], num_classes=10, depth=depth, width=cfg.hidden,
                       activation="tanh", init="xavier", rngs=nnx.Rngs(cfg.seed))  # fmt: skip
    apply, params = models.functional(model)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
    onehot = jax.nn.one_hot(y, 10, dtype=jnp.float64)

    def loss(p):
        out = apply(p, x)
        if name == "linear regression":
            return jnp.mean((out - onehot) ** 2)
        return jnp.mean(optax.softmax_cross_entropy(out, onehot))

    return loss, params


def sample_points(params, cfg: Config) -> list:
    """Random parameter values around the init: fresh Gaussian draws at scales 0.5 .. 4."""
    points = []
    for i in range(cfg.num_points):
        scale = 0.5 * 2.0 ** (i % 4)
        keys = jax.random.split(jax.random.key(cfg.seed + 100 + i), len(jax.tree.leaves(params)))
        leaves, treedef = jax.tree.flatten(params)
        draws = [
            scale * jax.random.normal(k, a.shape, a.dtype) / np.sqrt(max(a.shape[0], 1))
            for k, a in zip(keys, leaves, strict=True)
        ]
        points.append(jax.tree.unflatten(treedef, draws))
    return points


def predicted_zeros(x: np.ndarray) -> dict[str, int]:
    """The exact null-space dimensions of the two convex losses (see the module docstring)."""
    design = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    d, r, k = design.shape[1], int(np.linalg.matrix_rank(design)), 10
    return {"rank": r, "d": d, "linear regression": k * (d - r),
            "softmax regression": d + (k - 1) * (d - r)}  # fmt: skip


def spectra(cfg: Config) -> tuple[dict, dict]:
    ds = data.load("digits")
    with jax.enable_x64(True):
        x = jnp.asarray(pooled(ds.x_train[: cfg.num_examples], cfg.pool), jnp.float64)
        y = jnp.asarray(ds.y_train[: cfg.num_examples])
        found = {}
        for name in MODELS:
            loss, params = make_problem(name, cfg, x, y)
            found[name] = [
                np.linalg.eigvalsh(np.asarray(hessian.dense(loss, p)))[::-1]  # descending
                for p in sample_points(params, cfg)
            ]
    return found, predicted_zeros(np.asarray(x))


def summarise(spectra: list[np.ndarray]) -> dict:
    scales = [np.abs(lam).max() for lam in spectra]
    return {
        "size": len(spectra[0]),
        "max_eig": scales,
        "min_eig_over_max": [lam[-1] / s for lam, s in zip(spectra, scales, strict=True)],
        "num_negative": [
            int((lam < -NEG_RTOL * s).sum()) for lam, s in zip(spectra, scales, strict=True)
        ],
        "num_exact_zero": [
            int((abs(lam) <= ZERO_RTOL * s).sum()) for lam, s in zip(spectra, scales, strict=True)
        ],
        "num_below_sqrt_eps": [
            int((abs(lam) <= NEG_RTOL * s).sum()) for lam, s in zip(spectra, scales, strict=True)
        ],
        "negative_tol_relative": NEG_RTOL,
        "zero_tol_relative": ZERO_RTOL,
    }


def evidence(summary: dict, zeros: dict, name: str) -> dict:
    """The deciding numbers first (REPORT.md shows only the start of the evidence)."""
    keys = ("num_negative", "num_exact_zero", "min_eig_over_max", "size")
    return {"predicted_exact_zeros": zeros.get(name), "data_rank": zeros["rank"],
            **{k: summary[k] for k in keys}, "all": summary}  # fmt: skip


def draw(found: dict, out_dir: Path) -> str:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, spectra in found.items():
        lam = spectra[0] / np.abs(spectra[0]).max()
        ax.plot(np.arange(len(lam)) / len(lam), lam, lw=1.2, label=f"{name} ({len(lam)} params)")
        ratios = [s[-1] / np.abs(s).max() for s in spectra]
        bx.scatter([name] * len(ratios), ratios, s=25)
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("eigenvalue rank / number of parameters")
    ax.set_ylabel("lambda / max lambda (symlog)")
    ax.set_title("Hessian spectrum at the first sampled point")
    ax.legend(fontsize=8)
    bx.set_yscale("symlog", linthresh=1e-6)
    bx.axhline(0, color="k", lw=0.6)
    bx.set_ylabel("min lambda / max lambda")
    bx.set_title("smallest eigenvalue at every sampled point")
    return save_figure(fig, out_dir, "convexity")


def main(cfg: Config, out_dir: Path) -> dict:
    found, zeros = spectra(cfg)
    s = {name: summarise(results) for name, results in found.items()}
    lin, soft, mlp = (s[name] for name in MODELS)
    claims = [
        claim(
            "Linear regression (MSE) is convex: no negative Hessian eigenvalue at any sampled "
            f"point; its {zeros['linear regression']} zeros are the predicted K (d - r)",
            max(lin["num_negative"]) == 0
            and all(z == zeros["linear regression"] for z in lin["num_exact_zero"]),
            evidence(lin, zeros, "linear regression"),
        ),
        claim(
            "Softmax regression (cross-entropy) is convex: no negative eigenvalue at any sampled "
            "point; its zero eigenvalues are exactly the shift symmetry's d plus (K-1)(d-r) from "
            "constant pixels",
            max(soft["num_negative"]) == 0
            and all(z == zeros["softmax regression"] for z in soft["num_exact_zero"]),
            evidence(soft, zeros, "softmax regression"),
        ),
        claim(
            "A one-hidden-layer tanh MLP's loss is not convex: negative Hessian eigenvalues at "
            "sampled points",
            max(mlp["num_negative"]) > 0,
            evidence(mlp, zeros, "tanh MLP"),
        ),
    ]
    metrics = {"spectra": s, "predicted_zeros": zeros}
    return {"metrics": metrics, "claims": claims, "figures": [draw(found, out_dir)]}
