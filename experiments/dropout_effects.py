"""What dropout does to a small ReLU net on real digits, beyond lowering the test loss.

One training set-up, two arms: a 64-H-H-10 ReLU MLP on scikit-learn's 8x8 digits (pixels on
[0, 1]), plain minibatch SGD, with inverted dropout (drop probability ``dropout``, Srivastava
et al.'s 0.5 for hidden units) after each hidden layer, against the same net without it. A seed
fixes the He initialisation, the batch order and the stream of uniform draws the masks are cut
from, for both arms and every rate (paired runs). Each arm's rate is chosen from a stated log
grid by the mean final validation NLL over seeds (20% of the training images, stratified);
every statement below is decided at the chosen rates and reported beside at one common rate
(the plain arm's), since the notes give no settings. Measured, on the 360 test images unless
said otherwise, with the net in test mode (no masks, inverted scaling already folded in):

* training time: epochs until the training loss (test mode, all training images) first falls
  below ``target_loss`` (note 001: "dropout makes training take longer");
* smoothness: the Frobenius norm of the input-output Jacobian of the logits (note 000:
  injected noise enforces smoothness of the input-output mapping);
* co-adaptation: the mean |correlation| between hidden units' activations (note 001: "the
  fixed links between neurons decrease");
* independence: the mean rise in test NLL when one hidden unit is removed (note 001: units
  "no longer need to co-operate"), decided as dropout's rise - 0.8 x plain's < 0 (a dropout
  net's rise can be 0 or below, where a ratio is undefined);
* sparsity: the share of hidden ReLU outputs that are exactly 0 (note 001, after Srivastava
  et al. 2014, figure 8);
* the ensemble view: test NLL of the weight-scaled pass against the average of
  ``mc_samples`` sampled masks' probabilities and against one sampled mask (note 001; the
  comparison is Srivastava et al.'s figure 11).

Sabotage: ``dropout=0`` makes the dropout arm the plain net (the same runs, bit for bit), which
removes every effect: each ratio becomes exactly 1, the ablation difference 0.2 x plain's rise
(> 0), the sparsity gain 0, and one mask is the ensemble.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import threadpoolctl
from jaxopt_notes.experiments import _stats
from jaxopt_notes.experiments._claims import Source, Test, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

from jaxopt_notes import data as data_lib

SUMMARY = "Dropout on a digits MLP: training time, smoothness, correlation, ablation, sparsity"
DATA = (
    "digits: scikit-learn's 1,797 8x8 digits (1,437 train / 360 test, stratified seed 0); 20% "
    "of the training images held out (stratified, seed 0) to choose each arm's rate"
)
QUICK_NOTE = (
    "quick runs fewer seeds and epochs than the default (the same grid, target and "
    "thresholds): wider intervals, and a dropout net further from its final loss"
)
REFERENCE = (
    "Srivastava, Hinton, Krizhevsky, Sutskever, Salakhutdinov, 'Dropout: a simple way to "
    "prevent neural networks from overfitting', JMLR 15 (2014): sec. 7 (features, sparsity), "
    "sec. 7.5 (Monte-Carlo model averaging), sec. 9 (training takes 2-3 times longer)"
)
N1 = "001_4509a285741226d3.txt"
S = {
    "longer": Source(
        N1,
        "dropout",
        "使用了dropout会使得训练事件变长",
        "using dropout makes training take longer",
        REFERENCE,
    ),
    "smooth": Source(
        "000_07e945f9227ab975.txt",
        "dropout",
        "因为当训练一个有多层的深层网络时，注入噪声只会在输入-输出映射上增强平滑性。",
        "because when training a deep network with many layers, injecting noise only "
        "enforces smoothness of the input-output mapping.",
    ),
    "links": Source(
        N1,
        "dropout",
        "当我们进行神经元随机的掐死之后，神经元之间的固定的联系就会减少",
        "when we randomly kill neurons, the fixed links between neurons decrease",
        REFERENCE,
    ),
    "independent": Source(
        N1,
        "dropout",
        "增加了各个神经元之间的独立性，不再需要协同合作就能够使得结果判断准确",
        "it increases the independence between neurons, which no longer need to co-operate "
        "to judge correctly",
        REFERENCE,
    ),
    "sparse": Source(
        N1,
        "dropout",
        "还增加了稀疏性，找到了主要矛盾",
        "it also increases sparsity, finding the main factors",
        REFERENCE,
    ),
    "ensemble": Source(
        N1,
        "dropout",
        "有各种说法，首先他可以看作非常巨量的不同的表现的模型的集成",
        "there are various explanations; first, it can be seen as an ensemble of a huge "
        "number of different models",
        REFERENCE,
    ),
}
ARMS = ("plain", "dropout")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    seeds: int = 8
    hidden: int = 64
    epochs: int = 60
    batch: int = 32
    val_fraction: float = 0.2
    dropout: float = param(
        0.5, low=0.0, high=1.0, high_open=True, help="drop probability (0: sabotage)"
    )
    rate_range: tuple[float, float] = (0.025, 0.8)
    rates: int = 6  # log-spaced over rate_range (factor 2 apart by default)
    target_loss: float = 0.1  # training NLL (nats) that counts as trained
    mc_samples: int = 50  # Srivastava et al.'s figure 11: ~50 masks match weight scaling
    # thresholds, each a pre-stated effect size
    min_epochs_ratio: float = 1.25
    max_jacobian_ratio: float = 0.8
    max_corr_ratio: float = 0.9
    max_ablation_ratio: float = 0.8
    min_zero_share_gain: float = 0.05
    mc_band: tuple[float, float] = (0.9, 1.1)
    min_one_mask_ratio: float = 1.1

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=6, epochs=40)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=4, epochs=20, rate_range=(0.1, 0.4), rates=3)


# --- training: every seed x (arm, rate) in one compiled call ----------------------------------


def load(cfg: Config) -> dict:
    ds = data_lib.split_validation(data_lib.load("digits"), fraction=cfg.val_fraction, seed=0)

    def flat(x):
        return (x.reshape(len(x), -1) / 255.0).astype(np.float32)

    return {
        "x": flat(ds.x_train),
        "y": ds.y_train,
        "x_val": flat(ds.x_val),
        "y_val": ds.y_val,
        "x_test": flat(ds.x_test),
        "y_test": ds.y_test,
        "describe": ds.describe(),
    }


def _init(key, sizes):
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        (jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), jnp.zeros(b))
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]


def _logits(params, x, masks=None):
    """The MLP; ``masks`` (one per hidden layer, already divided by the keep probability)
    are applied after each hidden ReLU; None is the test-mode pass."""
    h = x
    for i, (w, b) in enumerate(params[:-1]):
        h = jax.nn.relu(h @ w + b)
        if masks is not None:
            h = h * masks[i]
    w, b = params[-1]
    return h @ w + b


def _nll(params, x, y, masks=None):
    z = jax.nn.log_softmax(_logits(params, x, masks))
    return -jnp.mean(jnp.take_along_axis(z, y[:, None], 1))


def train(cfg: Config, d: dict) -> dict:
    """Per seed, every (arm, rate) run from the same He init on the same batches and uniform
    draws; the training and validation NLL (test mode) after every epoch; the final weights."""
    n, b, h = len(d["y"]), cfg.batch, cfg.hidden
    steps = n // b  # per epoch; the last partial batch is dropped
    rates = np.geomspace(*cfg.rate_range, cfg.rates)
    lrs = jnp.asarray(np.tile(rates, 2), jnp.float32)
    keep = jnp.asarray(np.repeat([1.0, 1.0 - cfg.dropout], cfg.rates), jnp.float32)
    x, y = jnp.asarray(d["x"]), jnp.asarray(d["y"])
    xv, yv = jnp.asarray(d["x_val"]), jnp.asarray(d["y_val"])
    rng = np.random.default_rng(cfg.seed)
    order = jnp.asarray(np.argsort(rng.random((cfg.seeds, cfg.epochs, n)), -1)[..., : steps * b])
    # "rbg" (XLA's RngBitGenerator) compiles in half the time of the default threefry here
    keys = jax.random.split(jax.random.key(cfg.seed, impl="rbg"), cfg.seeds)
    sizes = (x.shape[1], h, h, 10)

    def one_seed(key, order):
        p0 = _init(jax.random.fold_in(key, 0), sizes)
        params = jax.tree.map(lambda a: jnp.broadcast_to(a, (len(lrs),) + a.shape), p0)
        nll = jax.vmap(_nll, (0, None, None))

        def epoch(params, e):
            def step(params, s):
                i = jax.lax.dynamic_slice(order[e], (s * b,), (b,))
                u = jax.random.uniform(jax.random.fold_in(key, 1 + e * steps + s), (2, b, h))

                def grad(p, k):  # one run: its masks cut from the seed's shared draws
                    return jax.grad(_nll)(p, x[i], y[i], [(u[j] < k) / k for j in range(2)])

                g = jax.vmap(grad)(params, keep)
                return jax.tree.map(
                    lambda p, g: p - lrs.reshape((-1,) + (1,) * (p.ndim - 1)) * g, params, g
                ), None

            params, _ = jax.lax.scan(step, params, jnp.arange(steps))
            return params, (nll(params, x, y), nll(params, xv, yv))

        params, (tr, va) = jax.lax.scan(epoch, params, jnp.arange(cfg.epochs))
        return params, tr, va

    params, tr, va = jax.jit(jax.vmap(one_seed))(keys, order)
    shape = (cfg.seeds, cfg.epochs, 2, cfg.rates)  # seeds, epochs, arms, rates
    return {
        "rates": rates,
        "train_loss": np.asarray(tr).reshape(shape),
        "val_loss": np.asarray(va).reshape(shape),
        "params": jax.tree.map(
            lambda a: np.asarray(a).reshape((cfg.seeds, 2, cfg.rates) + a.shape[2:]), params
        ),
    }


def _chosen(score: np.ndarray, rates: np.ndarray) -> dict:
    """The rate with the least score (ties: the least rate), and whether that score is also
    reached at an end of the grid, where a wider grid might find a better one."""
    score = np.where(np.isfinite(score), score, np.inf)
    best = int(np.argmin(score))
    return {
        "index": best,
        "rate": float(rates[best]),
        "edge": bool(min(score[0], score[-1]) <= score[best]),
    }


# --- measurements on the test images (NumPy, test mode) ---------------------------------------


def _hidden(params, x):
    """Pre-activations and ReLU outputs of both hidden layers, test mode."""
    (w1, b1), (w2, b2), _ = params
    a1 = x @ w1 + b1
    h1 = np.maximum(a1, 0)
    a2 = h1 @ w2 + b2
    return a1, h1, a2, np.maximum(a2, 0)


def _log_probs(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _nll_np(z, y):
    return float(-np.mean(np.take_along_axis(_log_probs(z), y[:, None], -1)))


def jacobian_norm(params, x) -> float:
    """Mean over images of |d logits / d x|_F: W1 D1 W2 D2 W3 per image (D: ReLU slopes)."""
    (w1, _), (w2, _), (w3, _) = params
    a1, _, a2, _ = _hidden(params, x)
    j = np.einsum("ih,nh,hk,nk,kc->nic", w1, a1 > 0, w2, a2 > 0, w3, optimize=True)
    return float(np.linalg.norm(j.reshape(len(x), -1), axis=1).mean())


def mean_abs_corr(params, x) -> float:
    """Mean |Pearson correlation| over pairs of hidden units of one layer (units that vary
    on the images), averaged over the two hidden layers."""
    out = []
    for h in _hidden(params, x)[1::2]:
        live = h[:, h.std(0) > 1e-6]
        c = np.corrcoef(live, rowvar=False)
        out.append(np.abs(c[~np.eye(len(c), dtype=bool)]).mean())
    return float(np.mean(out))


def zero_share(params, x) -> float:
    """Share of hidden ReLU outputs (both layers) that are exactly 0."""
    return float(np.mean([np.mean(h == 0) for h in _hidden(params, x)[1::2]]))


def ablation_rise(params, x, y) -> tuple[float, float]:
    """Mean over hidden units of the rise in test NLL (and the fall in accuracy) when that one
    unit's output is set to 0 (test mode)."""
    (w1, b1), (w2, b2), (w3, b3) = params
    _, h1, _, h2 = _hidden(params, x)
    base = h2 @ w3 + b3
    # layer 2's unit k removed: subtract its contribution to the logits
    z2 = base[None] - h2.T[:, :, None] * w3[:, None, :]
    # layer 1's unit k removed: recompute layer 2 without it
    a2 = (h1 @ w2 + b2)[None] - h1.T[:, :, None] * w2[:, None, :]
    z1 = np.maximum(a2, 0) @ w3 + b3
    z = np.concatenate([z1, z2])
    lp = np.take_along_axis(
        _log_probs(z), np.broadcast_to(y[None, :, None], z.shape[:2] + (1,)), -1
    )
    nll0, acc0 = _nll_np(base, y), np.mean(base.argmax(-1) == y)
    return float(-lp.mean() - nll0), float(acc0 - np.mean(z.argmax(-1) == y))


def mc_curve(params, x, y, keep: float, samples: int, rng) -> dict:
    """Test NLL of the weight-scaled pass, of the average of k sampled masks' probabilities
    (k = 1..samples), and of single masks (mean over the samples)."""
    (w1, b1), (w2, b2), (w3, b3) = params
    probs, single, single_acc = np.zeros((len(x), 10)), [], []
    curve = []
    for _ in range(samples):
        h = np.maximum(x @ w1 + b1, 0) * (rng.random((len(x), w1.shape[1])) < keep) / keep
        h = np.maximum(h @ w2 + b2, 0) * (rng.random((len(x), w2.shape[1])) < keep) / keep
        lp = _log_probs(h @ w3 + b3)
        single.append(-np.mean(np.take_along_axis(lp, y[:, None], -1)))
        single_acc.append(np.mean(lp.argmax(-1) == y))
        probs += np.exp(lp)
        curve.append(-np.mean(np.log(np.take_along_axis(probs / len(single), y[:, None], -1))))
    _, _, _, h2 = _hidden(params, x)
    z = h2 @ w3 + b3
    return {
        "scaled": _nll_np(z, y),
        "ensemble": curve,
        "single": float(np.mean(single)),
        "acc_scaled": float(np.mean(z.argmax(-1) == y)),
        "acc_ensemble": float(np.mean(probs.argmax(-1) == y)),
        "acc_single": float(np.mean(single_acc)),
    }


def _net(run: dict, seed: int, arm: int, rate: int) -> list:
    """One trained net's layers as float64 (w, b) pairs."""
    return [tuple(np.asarray(a[seed, arm, rate], np.float64) for a in wb) for wb in run["params"]]


def _arm(cfg: Config, d: dict, run: dict, arm: int, rate: int) -> dict:
    x, y = d["x_test"], d["y_test"]
    nets = [_net(run, s, arm, rate) for s in range(cfg.seeds)]
    tl = run["train_loss"][:, :, arm, rate]
    below = tl < cfg.target_loss
    abl = np.array([ablation_rise(q, x, y) for q in nets])
    return {
        "train_loss": tl,
        "val_loss": run["val_loss"][:, :, arm, rate],
        "epochs_to_target": np.where(below.any(1), below.argmax(1) + 1, cfg.epochs + 1),
        "reached": below.any(1),
        "test_nll": np.array([_nll_np(_hidden(q, x)[3] @ q[2][0] + q[2][1], y) for q in nets]),
        "jacobian": np.array([jacobian_norm(q, x) for q in nets]),
        "corr": np.array([mean_abs_corr(q, x) for q in nets]),
        "zeros": np.array([zero_share(q, x) for q in nets]),
        "ablation_nll": abl[:, 0],
        "ablation_acc": abl[:, 1],
    }


def measure(cfg: Config, d: dict, run: dict) -> dict:
    """Each arm at its chosen rate ("tuned"), and both at the plain arm's rate ("common")."""
    rates = run["rates"]
    val_end = run["val_loss"][:, -1]  # seeds, arms, rates
    chosen = {a: _chosen(val_end[:, i].mean(0), rates) for i, a in enumerate(ARMS)}
    common = chosen["plain"]["index"]
    out = {
        "rates": rates,
        "chosen": chosen,
        "common_rate": float(rates[common]),
        "val_end_mean": val_end.mean(0),
    }
    for setting in ("tuned", "common"):
        at = {a: chosen[a]["index"] if setting == "tuned" else common for a in ARMS}
        per = {a: _arm(cfg, d, run, i, at[a]) for i, a in enumerate(ARMS)}
        rng = np.random.default_rng(cfg.seed + 7)
        mc = [
            mc_curve(
                _net(run, s, 1, at["dropout"]),
                d["x_test"],
                d["y_test"],
                1.0 - cfg.dropout,
                cfg.mc_samples,
                rng,
            )
            for s in range(cfg.seeds)
        ]
        per["mc"] = {k: np.array([m[k] for m in mc]) for k in mc[0]}
        out[setting] = per
    return out


# --- verdicts ----------------------------------------------------------------------------------


def _ratio(m: dict, key: str) -> _stats.Estimate:
    """Dropout over plain, seed by seed (paired: same init, batches and draws)."""
    floor = 1e-12  # a non-positive mean rise cannot enter a log-ratio; reported in the evidence
    a, b = (np.maximum(np.asarray(m[arm][key], float), floor) for arm in ARMS[::-1])
    return _stats.paired_ratio(a, b)


def _ablation(m: dict, cfg: Config) -> _stats.Estimate:
    rise = {a: np.asarray(m[a]["ablation_nll"], float) for a in ARMS}
    return _stats.paired_difference(rise["dropout"], cfg.max_ablation_ratio * rise["plain"])


def claims(metrics: dict, cfg: Config) -> list[dict]:
    tuned, common = metrics["tuned"], metrics["common"]
    seeds = len(tuned["plain"]["jacobian"])
    rate_evidence = {
        "rate grid": f"{cfg.rates} log-spaced rates over {cfg.rate_range[0]:g}.."
        f"{cfg.rate_range[1]:g}, chosen per arm by mean final validation NLL over seeds",
        **{f"rate chosen, {a}": _rate_text(metrics["chosen"][a]) for a in ARMS},
        "common rate (the plain arm's)": metrics["common_rate"],
        "dropout (drop probability)": cfg.dropout,
    }
    common_name = "at one common rate (the plain arm's)"

    def test(quantity, comparison, threshold, origin):
        return Test(quantity, comparison, threshold, origin, seeds, paired=True)

    def both(key):
        return {f"{key}, {a}": _stats.mean(tuned[a][key]) for a in ARMS}

    def ratio_claim(cid, text, key, quantity, comparison, threshold, src, note="", extra=None):
        t = test(quantity, comparison, threshold, f"pre-stated effect size: {threshold:g}")
        return claim(
            text,
            _ratio(tuned, key),
            t,
            S[src],
            rate_evidence | both(key) | (extra or {}),
            note=note,
            also={common_name: (_ratio(common, key), t)},
            id=cid,
        )

    def mc_parts(m):
        ens = np.asarray(m["mc"]["ensemble"])[:, -1]
        return [
            _stats.paired_ratio(m["mc"]["scaled"], ens),
            _stats.paired_ratio(m["mc"]["single"], ens),
        ]

    mc_tests = [
        test(
            f"test NLL, weight-scaled pass / average of {cfg.mc_samples} masks",
            "within",
            tuple(cfg.mc_band),
            f"pre-stated: agree within {cfg.mc_band[1] - 1:.0%} (Srivastava et al.'s figure 11)",
        ),
        test(
            f"test NLL, one sampled mask / average of {cfg.mc_samples} masks",
            ">",
            cfg.min_one_mask_ratio,
            f"pre-stated effect size: {cfg.min_one_mask_ratio:g}",
        ),
    ]
    ablation_test = test(
        "mean test-NLL rise when one unit is removed, dropout - "
        f"{cfg.max_ablation_ratio:g} x plain",
        "<",
        0.0,
        f"pre-stated effect size: dropout's rise below {cfg.max_ablation_ratio:g} x plain's",
    )
    reached = {a: f"{int(np.sum(tuned[a]['reached']))}/{seeds}" for a in ARMS}
    return [
        ratio_claim(
            "dropout_trains_longer",
            f"With dropout {cfg.dropout:g} the net needs more epochs before its training loss "
            f"(test mode) falls below {cfg.target_loss:g} nats",
            "epochs_to_target",
            "epochs to the target training loss, dropout / plain",
            ">",
            cfg.min_epochs_ratio,
            "longer",
            note=f"A run that never reaches the target within {cfg.epochs} epochs counts "
            f"{cfg.epochs + 1} (a lower bound on its time); runs that reached it: plain "
            f"{reached['plain']}, dropout {reached['dropout']}. Srivastava et al. (sec. 9) "
            "report 2-3 times longer on their nets",
        ),
        ratio_claim(
            "dropout_smoother_map",
            "The net trained with dropout has a smoother input-output map: a smaller norm of "
            "the Jacobian of its logits with respect to the input, on test images",
            "jacobian",
            "mean |d logits / d x|_F, dropout / plain",
            "<",
            cfg.max_jacobian_ratio,
            "smooth",
        ),
        ratio_claim(
            "dropout_fewer_links",
            "Hidden units of the net trained with dropout are less correlated with each other "
            "on test images",
            "corr",
            "mean |correlation| between hidden units, dropout / plain",
            "<",
            cfg.max_corr_ratio,
            "links",
        ),
        claim(
            "Removing one hidden unit hurts the net trained with dropout less: its mean "
            f"test-NLL rise is below {cfg.max_ablation_ratio:g} x the plain net's",
            _ablation(tuned, cfg),
            ablation_test,
            S["independent"],
            rate_evidence
            | both("ablation_nll")
            | {f"accuracy fall, {a}": _stats.mean(tuned[a]["ablation_acc"]) for a in ARMS},
            note="Written as a difference, not a ratio: a dropout net's mean rise can be 0 "
            "or below (removing a unit may even lower its test NLL), where a ratio is undefined",
            also={common_name: (_ablation(common, cfg), ablation_test)},
            id="dropout_units_independent",
        ),
        claim(
            "Dropout makes the hidden ReLU activations sparser: a larger share of them is "
            "exactly 0 on test images",
            _stats.paired_difference(tuned["dropout"]["zeros"], tuned["plain"]["zeros"]),
            test(
                "share of hidden outputs at 0, dropout - plain",
                ">",
                cfg.min_zero_share_gain,
                f"pre-stated effect size: {cfg.min_zero_share_gain:g} of the outputs",
            ),
            S["sparse"],
            rate_evidence | both("zeros"),
            also={
                common_name: (
                    _stats.paired_difference(common["dropout"]["zeros"], common["plain"]["zeros"]),
                    test(
                        "share of hidden outputs at 0, dropout - plain",
                        ">",
                        cfg.min_zero_share_gain,
                        f"pre-stated effect size: {cfg.min_zero_share_gain:g}",
                    ),
                )
            },
            id="dropout_sparser",
        ),
        claim(
            f"The dropout net's weight-scaled test pass is an ensemble's prediction: its test "
            f"NLL matches the average of {cfg.mc_samples} sampled masks' probabilities, and "
            "both beat one sampled mask",
            mc_parts(tuned),
            mc_tests,
            S["ensemble"],
            rate_evidence
            | {
                "test NLL, weight-scaled": _stats.mean(tuned["mc"]["scaled"]),
                f"test NLL, {cfg.mc_samples} masks averaged": _stats.mean(
                    np.asarray(tuned["mc"]["ensemble"])[:, -1]
                ),
                "test NLL, one mask": _stats.mean(tuned["mc"]["single"]),
                "test accuracy, weight-scaled": _stats.mean(tuned["mc"]["acc_scaled"]),
                f"test accuracy, {cfg.mc_samples} masks averaged": _stats.mean(
                    tuned["mc"]["acc_ensemble"]
                ),
                "test accuracy, one mask": _stats.mean(tuned["mc"]["acc_single"]),
            },
            note="Srivastava et al.'s figure 11 compares test error, not NLL; the accuracies "
            "are in the evidence. Where part 1 fails with a ratio below the band, the "
            "weight-scaled pass is better than the average of the sampled masks, not worse",
            also={
                f"{common_name}, part {i + 1}": (e, t)
                for i, (e, t) in enumerate(zip(mc_parts(common), mc_tests, strict=True))
            },
            id="dropout_is_an_ensemble",
        ),
    ]


def _rate_text(arm: dict) -> str:
    where = "its best score is also reached at the grid's edge" if arm["edge"] else "inside"
    return f"{arm['rate']:.3g} ({where})"


# --- figure and entry point --------------------------------------------------------------------


def _paired(ax, metrics: dict, key: str, label: str) -> None:
    """One line per seed from plain to dropout, at the tuned rates and at the common rate."""
    for j, setting in enumerate(("tuned", "common")):
        m = metrics[setting]
        v0, v1 = np.asarray(m["plain"][key], float), np.asarray(m["dropout"][key], float)
        x0 = 2.5 * j
        for a, b in zip(v0, v1, strict=True):
            ax.plot([x0, x0 + 1], [a, b], "-", color="0.6", lw=0.8)
        ax.plot(np.full(len(v0), x0), v0, "o", color="C0")
        ax.plot(np.full(len(v1), x0 + 1), v1, "o", color="C1")
    ax.set_xticks([0, 1, 2.5, 3.5], ["plain", "dropout", "plain", "dropout"])
    ax.set(
        xlim=(-0.5, 4),
        ylabel=label,
        title=f"{label}\nleft: chosen rates; right: common rate {metrics['common_rate']:.3g}",
    )


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, axes = plt.subplots(2, 4, figsize=(20, 9), layout="constrained")
    tuned = metrics["tuned"]
    colours = {"plain": "C0", "dropout": "C1"}
    ax = axes[0, 0]
    for i, a in enumerate(ARMS):
        score = np.asarray(metrics["val_end_mean"][i], float)
        ax.semilogy(np.log2(metrics["rates"]), score, "o-", color=colours[a], label=a)
        ax.plot(np.log2(metrics["chosen"][a]["rate"]), np.nanmin(score), "k*", ms=12)
    ax.set_xticks(np.log2(metrics["rates"]), [f"{r:.3g}" for r in metrics["rates"]])
    ax.set(
        xlabel="learning rate",
        ylabel="final validation NLL (mean over seeds)",
        title=f"rate choice on validation (* chosen), dropout {cfg.dropout:g}",
    )
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    epochs = np.arange(1, cfg.epochs + 1)
    for a in ARMS:
        tl = np.asarray(tuned[a]["train_loss"], float)
        ax.semilogy(epochs, np.median(tl, 0), color=colours[a], label=f"{a}: training")
        ax.fill_between(epochs, tl.min(0), tl.max(0), color=colours[a], alpha=0.2)
        va = np.median(np.asarray(tuned[a]["val_loss"], float), 0)
        ax.semilogy(epochs, va, "--", color=colours[a], label=f"{a}: validation")
    ax.axhline(cfg.target_loss, color="k", ls=":", label=f"target {cfg.target_loss:g}")
    ax.set(
        xlabel="epoch",
        ylabel="NLL, test mode",
        title="each arm at its chosen rate (median; band: min-max over seeds)",
    )
    ax.legend(fontsize=8)
    ax = axes[0, 2]
    mc = tuned["mc"]
    ens = np.asarray(mc["ensemble"], float)
    ax.semilogx(np.arange(1, ens.shape[1] + 1), ens.mean(0), "C1-", label="average of k masks")
    ax.axhline(np.mean(mc["scaled"]), color="k", ls="--", label="weight-scaled pass")
    ax.axhline(np.mean(mc["single"]), color="r", ls=":", label="one mask (mean)")
    ax.set(
        xlabel="sampled masks averaged, k",
        ylabel="test NLL (mean over seeds)",
        title="the dropout net (chosen rate) as an ensemble",
    )
    ax.legend(fontsize=8)
    panels = [
        ("epochs_to_target", f"epochs to training NLL < {cfg.target_loss:g}"),
        ("jacobian", "mean |d logits / d x|_F (test)"),
        ("corr", "mean |corr| between hidden units (test)"),
        ("ablation_nll", "test-NLL rise, one unit removed"),
        ("zeros", "share of hidden outputs at 0 (test)"),
    ]
    for ax, (key, label) in zip([axes[0, 3], *axes[1]], panels, strict=True):
        _paired(ax, metrics, key, label)
    axes[0, 3].axhline(cfg.epochs + 1, color="k", ls=":", label="never reached (counted)")
    axes[0, 3].legend(fontsize=8)
    return save_figure(fig, out_dir, "dropout_effects")


def main(cfg: Config, out_dir: Path) -> dict:
    from jaxopt_notes.experiments import _plot

    d = load(cfg)
    run = train(cfg, d)
    with threadpoolctl.threadpool_limits(1):  # small matrices: BLAS threads only spin
        metrics = measure(cfg, d, run)
    metrics["data"] = d["describe"]
    return {
        "metrics": metrics,
        "claims": claims(metrics, cfg),
        "figures": [draw(_plot.stored(metrics), cfg, out_dir)],
    }
