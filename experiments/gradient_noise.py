"""The noise of a minibatch gradient falls as 1/b: measured on a small MLP against the exact law.

At a fixed parameter point (a random initialisation of a 64-32-10 tanh MLP, one per seed) we take
the per-example gradients G_1..G_N of the cross-entropy on scikit-learn's 8x8 digits (N = 1,437
training images), their mean g (the full-batch gradient) and their spread
sigma^2 = (1/N) sum_i |G_i - g|^2. A minibatch of b examples drawn without replacement has
E |g_B - g|^2 = (N - b) / (N - 1) * sigma^2 / b exactly (the finite-population correction of
sampling without replacement), so the log-log slope against b is -1, a little steeper where b
is a fair fraction of N. We measure the mean squared deviation over ``batches`` draws per b and
fit the slope, per seed. |g_B - g|^2 = (1/b^2) sum_{i,j in B} K_ij with K = D D^T, D the
centred per-example gradients, so each draw costs b^2 look-ups instead of a P-long sum.

Sabotage: ``sampling="repeat"`` fills a batch with one example repeated b times: the average of
b perfectly correlated gradients is no less noisy than one, and the slope falls to 0.
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

SUMMARY = "the mean squared noise of a minibatch gradient falls as 1/b (exactly (N-b)/(N-1) s^2/b)"
DATA = (
    f"{_mnist.DIGITS}: the 1,437 training images only; per-example gradients of a 64-32-10 "
    "tanh MLP at its random initialisation (one initialisation per seed)"
)
QUICK_NOTE = (
    "quick uses 5 seeds instead of 10 and 100 draws per batch size instead of 300: wider "
    "intervals, the same law; an `inconclusive` could be down to that, a `not_reproduced` not"
)

SAMPLINGS = ("without_replacement", "with_replacement", "repeat")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    seeds: int = 10  # parameter points (initialisations), each with its own batch draws
    hidden: int = 32
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    batches: int = 300  # minibatch draws per batch size and seed
    sampling: str = param(
        "without_replacement",
        choices=SAMPLINGS,
        help="how a batch is drawn; 'repeat' (one example b times) is the sabotage",
    )
    slope_band: tuple[float, ...] = param(
        (-1.1, -0.9), low=-2.0, high=0.0, help="the claimed band of the log-log slope"
    )
    less_noisy: float = param(10.0, help="E|g_1-g|^2 / E|g_bmax-g|^2 must exceed")
    ratio_band: tuple[float, ...] = param(
        (0.9, 1.1), low=0.0, low_open=True, help="measured / exact expectation, geometric mean"
    )

    def validate(self) -> None:
        if len(self.slope_band) != 2 or not self.slope_band[0] < self.slope_band[1]:
            raise ValueError(
                f"`slope_band` must be (low, high) with low < high, got {self.slope_band}"
            )
        if len(self.ratio_band) != 2 or not self.ratio_band[0] < self.ratio_band[1]:
            raise ValueError(
                f"`ratio_band` must be (low, high) with low < high, got {self.ratio_band}"
            )
        if max(self.batch_sizes) >= 1437:
            raise ValueError(f"`batch_sizes` must stay below N = 1437, got {max(self.batch_sizes)}")
        if len(self.batch_sizes) < 3:
            raise ValueError(
                f"`batch_sizes` needs at least 3 sizes to fit a slope, got {self.batch_sizes}"
            )

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=5, batches=100)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=4, hidden=8, batch_sizes=(1, 4, 16, 64), batches=100)


SOURCES = {
    "d2l": Source(
        note="000_07e945f9227ab975.txt",
        section="优化算法 / 小批量随机梯度下降（minibatch gradient descent）",
        quote="它的好处在于这样计算降低了方差（因为是 b 个样本的平均，所以整体在方向上的抖动相对"
        "来讲会小一些，噪音会少一点，更加平滑）",
        english="its benefit is that this lowers the variance (being the average of b samples, "
        "the jitter of the direction is smaller overall, there is less noise, it is smoother)",
        reference="d2l.ai, sec. 12.5 'Minibatch Stochastic Gradient Descent' (variance of the "
        "minibatch gradient falls by a factor b)",
    ),
    "lihongyi": Source(
        note="002_3498af5075c2b1b1.txt",
        section="批次(batch)",
        quote="大的batch size：噪声小，loss下降更平滑",
        english="a large batch size: little noise, the loss falls more smoothly",
        reference="Li Hongyi, ML 2021 lecture 'batch and momentum'",
    ),
}


def mlp_loss(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return optax.softmax_cross_entropy_with_integer_labels(h @ params["w2"] + params["b2"], y)


def init(key: jax.Array, hidden: int) -> dict:
    """Xavier-scaled weights and small random biases (so no gradient entry is exactly 0)."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return {
        "w1": jax.random.normal(k1, (64, hidden)) / np.sqrt(64),
        "b1": 0.1 * jax.random.normal(k2, (hidden,)),
        "w2": jax.random.normal(k3, (hidden, 10)) / np.sqrt(hidden),
        "b2": 0.1 * jax.random.normal(k4, (10,)),
    }


def centred_gradients(params: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    """D (N x P): the per-example gradients minus their mean, the full-batch gradient."""
    one = jax.grad(lambda p, xi, yi: mlp_loss(p, xi[None], yi[None])[0])
    per_example = jax.vmap(one, in_axes=(None, 0, 0))(params, x, y)
    flat = jnp.concatenate([a.reshape(x.shape[0], -1) for a in jax.tree.leaves(per_example)], 1)
    return flat - flat.mean(0)


def prefixes(key: jax.Array, n: int, b_max: int, count: int, sampling: str) -> jax.Array:
    """(count, b_max) indices; the first b of a row are one minibatch of size b.

    A prefix of a random permutation is a uniform sample without replacement of every size, so
    one permutation per draw serves all batch sizes.
    """
    keys = jax.random.split(key, count)
    if sampling == "without_replacement":
        return jax.vmap(lambda k: jax.random.permutation(k, n)[:b_max])(keys)
    if sampling == "with_replacement":
        return jax.random.randint(key, (count, b_max), 0, n)
    return jnp.repeat(jax.random.randint(key, (count, 1), 0, n), b_max, axis=1)  # the sabotage


def prefix_sums(k: jax.Array, idx: jax.Array, sizes: tuple[int, ...]) -> jax.Array:
    """|sum_{i in first b of idx} D_i|^2 = sum over the b x b block of K, for every b in sizes."""
    block = k[idx][:, idx]
    corner = jnp.cumsum(jnp.cumsum(block, 0), 1)
    at = jnp.asarray(sizes) - 1
    return corner[at, at]


def one_seed(key: jax.Array, x: jax.Array, y: jax.Array, cfg: Config) -> dict:
    """sigma^2, the mean |g_B - g|^2 per batch size for both samplings, and the Gram check."""
    k_init, k_draw, k_check = jax.random.split(key, 3)
    d = centred_gradients(init(k_init, cfg.hidden), x, y)
    k = d @ d.T
    n, b_max = x.shape[0], max(cfg.batch_sizes)
    b = jnp.asarray(cfg.batch_sizes, dtype=k.dtype)
    out = {"sigma2": jnp.trace(k) / n}
    for name in dict.fromkeys((cfg.sampling, "with_replacement")):
        idx = prefixes(
            jax.random.fold_in(k_draw, SAMPLINGS.index(name)), n, b_max, cfg.batches, name
        )
        sums = jax.lax.map(lambda i: prefix_sums(k, i, cfg.batch_sizes), idx)
        out[name] = sums.mean(0) / b**2
    # the same quantity summed directly over the P coordinates, on a few batches of 16
    idx = prefixes(k_check, n, 16, 8, "without_replacement")
    direct = jax.vmap(lambda i: jnp.sum(d[i].mean(0) ** 2))(idx)
    via_k = jax.vmap(lambda i: prefix_sums(k, i, (16,))[0] / 256)(idx)
    out["gram_error"] = jnp.max(jnp.abs(via_k - direct) / direct)
    return out


def exact(sigma2: float, n: int, b: np.ndarray, sampling: str) -> np.ndarray:
    """The expectation of |g_B - g|^2 for random batches drawn the honest way."""
    if sampling == "with_replacement":
        return sigma2 / b
    return (n - b) / (n - 1) * sigma2 / b


def slope(b: np.ndarray, values: np.ndarray) -> float:
    return float(np.polyfit(np.log(b), np.log(values), 1)[0])


def measure(cfg: Config) -> dict:
    arrays = _mnist.load("digits")
    x = arrays.x_train.reshape(arrays.x_train.shape[0], -1)
    y = arrays.y_train
    n = int(x.shape[0])
    b = np.asarray(cfg.batch_sizes, dtype=np.float64)
    keys = jax.random.split(jax.random.key(cfg.seed), cfg.seeds)
    # seeds one after another in one compiled program: vmapping them would hold every seed's
    # N x P per-example gradients at once
    runs = jax.jit(lambda ks: jax.lax.map(lambda kk: one_seed(kk, x, y, cfg), ks))(keys)
    runs = jax.tree.map(np.asarray, runs)
    sig = runs["sigma2"].astype(np.float64)
    pred = np.stack([exact(s, n, b, "without_replacement") for s in sig])
    out = {"N": n, "batch_sizes": cfg.batch_sizes, "sampling": cfg.sampling}
    for name in dict.fromkeys((cfg.sampling, "with_replacement")):
        m = runs[name].astype(np.float64)  # (seeds, sizes)
        out[name] = {
            "sigma2": sig,
            "msd": m,
            "slope": np.array([slope(b, row) for row in m]),
            # measured over the exact without-replacement law, geometric mean over b
            "log_ratio_to_exact": np.mean(np.log(m / pred), axis=1),
        }
    out["exact_slope"] = slope(b, exact(1.0, n, b, "without_replacement"))
    out["gram_check_error"] = float(np.max(runs["gram_error"]))
    return out


def claims(m: dict, cfg: Config) -> list[dict]:
    arm = m[m["sampling"]]
    slope_est = _stats.mean(arm["slope"])
    ratio_est = _stats.mean(arm["log_ratio_to_exact"])
    ratio_est = ratio_est._replace(
        value=float(np.exp(ratio_est.value)),
        low=float(np.exp(ratio_est.low)),
        high=float(np.exp(ratio_est.high)),
        method="geometric mean over b and seeds, t-interval on the per-seed log-ratios",
    )
    lo, hi = cfg.slope_band
    rlo, rhi = cfg.ratio_band
    with_repl = m["with_replacement"]
    return [
        claim(
            f"The mean squared deviation of a minibatch gradient from the full-batch one falls "
            f"as 1/b: its log-log slope over b = {min(cfg.batch_sizes)}..{max(cfg.batch_sizes)} "
            "lies near -1, and its size matches the exact (N-b)/(N-1) sigma^2/b",
            [slope_est, ratio_est],
            [
                Test(
                    "log-log slope of the mean squared deviation against b",
                    "within",
                    (lo, hi),
                    f"math: 1/b has slope -1; sampling without replacement makes it "
                    f"{m['exact_slope']:.3f} over these b; band +-0.1 pre-stated (b^-0.9 or "
                    "b^-1.1 is 1.7x off 1/b at b = 256)",
                    len(arm["slope"]),
                ),
                Test(
                    "measured / exact (N-b)/(N-1) sigma^2/b",
                    "within",
                    (rlo, rhi),
                    "math: the exact expectation is 1; +-10% pre-stated for sampling error",
                    len(arm["slope"]),
                ),
            ],
            SOURCES["d2l"],
            evidence={
                "sampling": m["sampling"],
                "N": m["N"],
                "batches_per_size": cfg.batches,
                "exact slope (without replacement)": m["exact_slope"],
                "slope with replacement (law: exactly -1)": _stats.mean(with_repl["slope"]),
                "sigma^2 (per-example, mean over seeds)": _stats.mean(arm["sigma2"]),
            },
            note="for sampling that is honestly random this is a theorem; what the run shows is "
            "that batches drawn as a data loader draws them meet it on a real model's gradients",
            id="variance_falls_as_1_over_b",
            kind="check",
        ),
        claim(
            "A large batch is less noisy: the gradient of a batch of the largest size deviates "
            f"from the full-batch gradient at least {cfg.less_noisy:g}x less (in mean square) "
            "than one example's",
            _stats.mean(arm["msd"][:, 0] / arm["msd"][:, -1]),
            Test(
                f"mean squared deviation at b = 1 / at b = {max(cfg.batch_sizes)}",
                ">",
                cfg.less_noisy,
                "pre-stated: an order of magnitude, the least that 'little noise' could mean "
                f"at b = {max(cfg.batch_sizes)} (1/b predicts {max(cfg.batch_sizes)}x)",
                len(arm["slope"]),
            ),
            SOURCES["lihongyi"],
            id="large_batch_less_noisy",
            kind="check",
        ),
        check(
            "The b^2 look-ups of the Gram matrix give the squared deviation as the direct "
            "P-long sum does (relative error below 1e-4 on test batches)",
            m["gram_check_error"] < 1e-4,
            {"largest relative error": m["gram_check_error"], "test batches": 8},
            id="gram_trick_exact",
        ),
    ]


def draw(m: dict, cfg: Config, out_dir: Path) -> str:
    b = np.asarray(cfg.batch_sizes, dtype=np.float64)
    fig, (a, c) = plt.subplots(1, 2, figsize=(13, 4.6))
    arm = m[m["sampling"]]
    sigma2 = float(np.mean(arm["sigma2"]))
    for name, style in ((m["sampling"], "o-"), ("with_replacement", "s--")):
        if name == m["sampling"] and name == "with_replacement":
            continue
        a.loglog(b, np.mean(m[name]["msd"], 0), style, label=f"measured, {name.replace('_', ' ')}")
    a.loglog(
        b,
        exact(sigma2, m["N"], b, "without_replacement"),
        "k:",
        lw=1.5,
        label="exact (N-b)/(N-1) s^2/b",
    )
    a.loglog(b, sigma2 / b, color="grey", lw=0.8, label="s^2/b")
    a.set(
        xlabel="batch size b",
        ylabel="E |g_B - g|^2 (mean over seeds)",
        title=f"digits MLP (64-{cfg.hidden}-10) at init: minibatch gradient noise",
    )
    a.legend(fontsize=8)
    pred = np.stack([exact(v, m["N"], b, "without_replacement") for v in arm["sigma2"]])
    for name, style in ((m["sampling"], "o-"), ("with_replacement", "s--")):
        if name == m["sampling"] and name == "with_replacement":
            continue
        r = np.asarray(m[name]["msd"]) / pred
        label = f"{name.replace('_', ' ')}: slope {np.mean(m[name]['slope']):.3f}"
        c.errorbar(b, r.mean(0), yerr=r.std(0), fmt=style, capsize=3, label=label)
    c.axhspan(*cfg.ratio_band, color="tab:green", alpha=0.12, label="claimed band")
    c.axhline(1.0, color="k", ls=":", lw=1)
    c.set(
        xscale="log",
        xlabel="batch size b",
        ylabel="measured / exact (N-b)/(N-1) s^2/b",
        title=f"{cfg.seeds} seeds x {cfg.batches} draws per b (bars: sd over seeds)",
    )
    c.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "gradient_noise")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics = measure(cfg)
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
