"""Momentum's memory: how many past gradients does a momentum buffer with decay beta average?

The notes give three answers: 1/(1-beta) ("the effective gradient is 1/(1-beta)"), "about the
last two or three gradients" at beta 0.5, and "about the last fifty" at beta 0.99, beyond which
the terms "are negligible". The geometric-series facts are checks of the library's links:

* ``jn.trace(beta)``'s impulse response sums to 1/(1-beta) (its gain on a steady gradient);
* the weights of ``jn.first_moment(beta)`` (Adam's EMA) have mean age 1/(1-beta), counting the
  current gradient as age 1, and decay to 1/e after -1/ln(beta) steps (1.44 at 0.5, not 2).

The claims are the notes' window lengths, measured as what "averaging n gradients" does to
noise: the variance of a plain mean of n independent gradients is sigma^2 / n, so the EMA of a
white-noise gradient stream (one stream per seed) averages n_noise = Var(g) / Var(EMA)
gradients. A plain mean of n gradients also has mean age (n+1)/2, so the EMA's mean age
1/(1-beta) gives the same n: both readings say (1+beta)/(1-beta). The bands are stated from the
notes' words, not from that: "two or three" and "about fifty", each widened by the same
pre-stated +-20% for "about". ``momentum_off`` (the sabotage) sets beta to 0: the buffer is
then the last gradient alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jaxopt_notes.experiments import _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, check, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn

SUMMARY = "how many past gradients momentum averages: the notes' 2-3 at beta 0.5, 50 at 0.99"
DATA = "synthetic gradient streams: a unit impulse, white noise, a noisy step (no data set)"

NOTE = "000_07e945f9227ab975.txt"
SECTION = "优化算法 / 冲量法（momentum）"
REFERENCE = "d2l.ai sec. 12.6 (Momentum), 'effective sample weight' 1/(1-beta)"


@dataclasses.dataclass(frozen=True)
class Config:
    betas: tuple = (0.5, 0.9, 0.99)  # the checks
    sweep_betas: tuple = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)  # the noise map
    impulse_steps: int = 3000  # long enough for 0.99**steps to vanish in float32
    seeds: int = 20  # white-noise streams
    stream_steps: int = 20000
    burn_in: float = param(10.0, low=1.0, help="skip this many 1/(1-beta) at the start")
    momentum_off: bool = param(False, help="True: sabotage, beta set to 0")
    about: float = param(0.2, low=0.0, high=1.0, help="'about' read as +-20%")
    noisy_step_std: float = 0.5  # the figure's noisy step
    seed: int = 0

    def validate(self) -> None:
        for name in ("betas", "sweep_betas"):
            if any(not 0 <= b < 1 for b in getattr(self, name)):
                raise ValueError(f"`{name}` must lie in [0, 1), got {getattr(self, name)}")
        for b in (0.5, 0.99):
            if b not in self.sweep_betas:
                raise ValueError(
                    f"`sweep_betas` must hold {b} (a claim's beta), got {self.sweep_betas}"
                )
        need = int(self.burn_in / (1 - max(self.sweep_betas))) * 10
        if self.stream_steps < need:
            raise ValueError(
                f"`stream_steps` must be >= {need} (10x the burn-in), got {self.stream_steps}"
            )

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=10)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=4, sweep_betas=(0.5, 0.9, 0.99), impulse_steps=1500)


QUICK_NOTE = "Quick runs 10 noise streams instead of 20: wider intervals, the same measurement."


def used(beta: float, cfg: Config) -> float:
    return 0.0 if cfg.momentum_off else float(beta)


def impulse_responses(cfg: Config) -> dict:
    """jn.trace's and jn.first_moment's response to a unit gradient, then zeros, per beta."""
    impulse = np.zeros(cfg.impulse_steps, np.float32)
    impulse[0] = 1.0
    betas = [used(b, cfg) for b in cfg.betas]
    trace = respond(jn.trace, betas, impulse)
    ema = respond(jn.first_moment, betas, impulse)
    return {str(b): {"trace": t, "ema": e} for b, t, e in zip(cfg.betas, trace, ema, strict=True)}


def respond(make, betas: list[float], signal: np.ndarray) -> np.ndarray:
    """(betas, steps): the updates ``make(beta)`` outputs fed ``signal`` as its gradients.

    One compiled program for all betas (beta is traced), a scan over the stream.
    """

    def one(beta):
        tx = make(beta)

        def body(state, g):
            u, state = tx.update(g[None], state)
            return state, (u.mu if isinstance(u, jn.Moments) else u)[0]

        return jax.lax.scan(body, tx.init(np.zeros(1, np.float32)), signal)[1]

    return np.asarray(jax.jit(jax.vmap(one))(np.asarray(betas, np.float32)), np.float64)


def noise_windows(cfg: Config) -> np.ndarray:
    """Var(EMA) / Var(g) for each (seed, beta): one white-noise stream per seed.

    The ratio, not its inverse n_noise, is averaged over seeds: it is the unbiased one (the
    mean of inverses would be pulled up by the noisier streams at beta near 1)."""
    betas = np.asarray([used(b, cfg) for b in cfg.sweep_betas], np.float32)
    seeds = np.arange(cfg.seeds, dtype=np.uint32) + np.uint32(1000 * cfg.seed)

    def one(seed, beta):
        g = jax.random.normal(jax.random.key(seed), (cfg.stream_steps,))
        tx = jn.first_moment(beta)
        m = respond_traced(tx, g)
        skip = (cfg.burn_in / (1 - beta)).astype(jnp.int32)
        keep = jnp.arange(cfg.stream_steps) >= skip
        # the stream's mean is 0 by construction: subtracting a sample mean instead would
        # absorb part of the slow EMA's variance and bias n_noise upwards at beta near 1
        var_m = jnp.sum(jnp.where(keep, m**2, 0)) / keep.sum()
        return var_m / jnp.mean(g**2)

    run = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))
    return np.asarray(run(seeds, betas), np.float64)


def respond_traced(tx, g: jax.Array) -> jax.Array:
    """The EMA of a 1-d stream ``g`` (traceable: used inside the vmapped noise runs)."""

    def body(state, gi):
        u, state = tx.update(gi[None], state)
        return state, u.mu[0]

    return jax.lax.scan(body, tx.init(jnp.zeros(1)), g)[1]


def noisy_step(cfg: Config) -> dict:
    """The EMA of a gradient that steps from 0 to 1 at step 200, with noise: the figure."""
    n, at = 900, 200
    clean = (np.arange(n) >= at).astype(np.float32)
    rng = np.random.default_rng(cfg.seed + 1)
    noisy = (clean + cfg.noisy_step_std * rng.standard_normal(n)).astype(np.float32)
    emas = respond(jn.first_moment, [used(b, cfg) for b in cfg.betas], noisy)
    return {"noisy": noisy, "at": at, **{str(b): e for b, e in zip(cfg.betas, emas, strict=True)}}


def impulse_measures(h: np.ndarray, w: np.ndarray) -> dict:
    """Gain, EMA mean age and e-folding time of an impulse response (h: trace, w: EMA)."""
    age = np.arange(1, len(w) + 1)
    below = np.nonzero(h < h[0] / np.e)[0]
    if len(below) == 0 or below[0] == 0:
        e_fold = 0.0 if len(below) else float("inf")
    else:  # interpolated in log space between the two steps around 1/e
        k = int(below[0])
        lo = np.log(max(h[k], 1e-300))
        e_fold = (k - 1) + (np.log(h[k - 1]) + 1) / (np.log(h[k - 1]) - lo)
    return {
        "steady_gain": float(h.sum()),
        "ema_mean_age": float((age * w).sum() / w.sum()),
        "e_folding_steps": float(e_fold),
    }


def measure(cfg: Config) -> tuple[dict, dict]:
    """The metrics, and the impulse responses themselves (for the figure)."""
    responses = impulse_responses(cfg)
    windows = noise_windows(cfg)
    metrics = {
        "impulse": {b: impulse_measures(r["trace"], r["ema"]) for b, r in responses.items()},
        "beta_used": {str(b): used(b, cfg) for b in cfg.betas},
        "sweep_betas": list(cfg.sweep_betas),
        "variance_ratio": windows,  # Var(EMA) / Var(g), (seeds, sweep_betas)
    }
    return metrics, responses


SOURCES = {
    "gain": Source(
        NOTE,
        SECTION,
        "由于对过去的数据进行了指数降权，**有效梯度为 1/(1-β)**",
        "Since past data are down-weighted exponentially, the effective gradient is 1/(1-beta).",
        REFERENCE,
    ),
    "half": Source(
        NOTE,
        SECTION,
        "假设 β 取 0.5 的话，"
        "vt 中历史时刻的梯度项会衰减得特别快（大概是计算过去两三个时刻的梯度取平均）",
        "With beta 0.5 the past gradients in v_t decay very fast (roughly an average of the "
        "last two or three gradients).",
        REFERENCE,
    ),
    "099": Source(
        NOTE,
        SECTION,
        "大概是计算过去五十个时刻的梯度取平均，超过 50 "
        "个以外的那些梯度项就变得很小了，几乎可以忽略不计",
        "With beta 0.99: roughly an average of the last fifty gradients; the terms beyond 50 "
        "become very small and can almost be ignored.",
        REFERENCE,
    ),
}


def n_noise(metrics: dict) -> dict[float, _stats.Estimate]:
    """Per swept beta: n_noise = 1 / mean variance ratio, its interval inverted likewise."""
    ratio = np.asarray(metrics["variance_ratio"], np.float64)
    out = {}
    for j, b in enumerate(float(b) for b in metrics["sweep_betas"]):
        m = _stats.mean(ratio[:, j])
        low, high = (1 / m.high, 1 / m.low) if m.low > 0 else (1 / m.high, np.inf)
        out[b] = _stats.Estimate(
            1 / m.value,
            low,
            high,
            m.n,
            m.spread / m.value**2,
            f"1 / (mean variance ratio), t-interval inverted, {m.n} seeds",
        )
    return out


def claims(metrics: dict, cfg: Config) -> list[dict]:
    imp = metrics["impulse"]
    sweep = [float(b) for b in metrics["sweep_betas"]]
    est = n_noise(metrics)
    bu = {b: float(v) for b, v in metrics["beta_used"].items()}
    tol = cfg.about

    def rel(name, b, target):
        return abs(imp[b][name] / target - 1)

    target = {b: 1 / (1 - bu[b]) for b in imp}
    e_target = {b: (-1 / np.log(bu[b]) if bu[b] > 0 else 0.0) for b in imp}
    gain_err = {b: rel("steady_gain", b, target[b]) for b in imp}
    age_err = {b: rel("ema_mean_age", b, target[b]) for b in imp}
    efold_err = {b: abs(imp[b]["e_folding_steps"] - e_target[b]) / max(e_target[b], 1) for b in imp}
    theory = {
        b: (1 + (0.0 if cfg.momentum_off else b)) / (1 - (0.0 if cfg.momentum_off else b))
        for b in sweep
    }
    noise_err = {str(b): abs(est[b].value / theory[b] - 1) for b in sweep}
    b99 = used(0.99, cfg)
    return [
        check(
            "jn.trace's impulse response sums to 1/(1-beta), its gain on a steady gradient "
            "(the notes' 'effective gradient 1/(1-beta)'), within 1e-3",
            all(e < 1e-3 for e in gain_err.values()),
            {"steady_gain": {b: imp[b]["steady_gain"] for b in imp}, "relative_error": gain_err},
            SOURCES["gain"],
            id="steady_gain",
        ),
        check(
            "The weights of jn.first_moment (Adam's EMA) have mean age 1/(1-beta), counting "
            "the current gradient as age 1, within 1e-3",
            all(e < 1e-3 for e in age_err.values()),
            {"ema_mean_age": {b: imp[b]["ema_mean_age"] for b in imp}, "relative_error": age_err},
            id="ema_mean_age",
        ),
        check(
            "One gradient's weight falls to 1/e after -1/ln(beta) steps (1.44 at beta 0.5, "
            "9.49 at 0.9, 99.5 at 0.99: under 1/(1-beta) by about half a step), within 1e-2",
            all(e < 1e-2 for e in efold_err.values()),
            {
                "e_folding_steps": {b: imp[b]["e_folding_steps"] for b in imp},
                "closed_form": e_target,
            },
            id="e_folding",
        ),
        check(
            "Positive control of the noise measurement: at every swept beta the measured "
            "n_noise is within 10% of (1+beta)/(1-beta), the variance ratio of an EMA of white "
            "noise",
            all(e < 0.1 for e in noise_err.values()),
            {"relative_error": noise_err, "seeds": cfg.seeds},
            id="noise_window_closed_form",
        ),
        claim(
            "With beta 0.5 the buffer averages about the last two or three gradients: an EMA "
            "of white-noise gradients is as quiet as the mean of 2 to 3 of them (+-20%)",
            est[0.5],
            Test(
                "n_noise = Var(g) / Var(EMA) at beta 0.5",
                "within",
                (2 * (1 - tol), 3 * (1 + tol)),
                "the note's 'two or three', widened by the pre-stated +-20% for 'about'",
                cfg.seeds,
            ),
            SOURCES["half"],
            {
                "beta_used": used(0.5, cfg),
                "mean length with the same mean age, 2/(1-beta) - 1": 2 / (1 - used(0.5, cfg)) - 1,
            },
            id="window_beta_0.5",
        ),
        claim(
            "With beta 0.99 the buffer averages about the last fifty gradients: an EMA of "
            "white-noise gradients is as quiet as the mean of about 50 of them (+-20%)",
            est[0.99],
            Test(
                "n_noise = Var(g) / Var(EMA) at beta 0.99",
                "within",
                (50 * (1 - tol), 50 * (1 + tol)),
                "the note's 'fifty', widened by the pre-stated +-20% for 'about'",
                cfg.seeds,
            ),
            SOURCES["099"],
            {
                "beta_used": b99,
                "1/(1-beta) (mean age)": 1 / (1 - b99),
                "weight left after 50 steps, beta^50": b99**50,
                "mean length with the same mean age, 2/(1-beta) - 1": 2 / (1 - b99) - 1,
            },
            note=(
                f"the terms beyond 50 steps are not negligible: {b99**50:.0%} of the buffer's "
                "weight lies there"
            )
            if b99 > 0
            else "",
            id="window_beta_0.99",
        ),
    ]


def drawn(responses: dict, step: dict) -> dict:
    """What the figure draws beyond the metrics: jn.trace's impulse responses (on a log grid
    of steps) and the EMAs of the noisy step."""
    out = {
        "impulse": {},
        "noisy_step": {k: v if k == "at" else _plot.compact(v) for k, v in step.items()},
    }
    for beta, r in responses.items():
        index = _plot.thin(len(r["trace"]), log=True)
        out["impulse"][beta] = {
            "step": (index + 1).tolist(),
            "trace": _plot.compact(r["trace"][index]),
        }
    return out


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(18, 4.8), layout="constrained")
    sweep = np.asarray(metrics["sweep_betas"])
    ests = list(n_noise(metrics).values())
    mid = np.array([e.value for e in ests])
    err = np.clip(np.array([[e.value - e.low, e.high - e.value] for e in ests]).T, 0, None)
    grid = np.linspace(0.0, 0.995, 200)
    a.semilogy(grid, (1 + grid) / (1 - grid), color="grey", lw=1, label="(1+beta)/(1-beta)")
    a.semilogy(grid, 1 / (1 - grid), color="grey", ls="--", lw=1, label="1/(1-beta)")
    a.errorbar(
        sweep,
        mid,
        yerr=err,
        fmt="o",
        color="tab:red",
        capsize=3,
        label=f"measured n_noise, {cfg.seeds} streams, 95% CI",
    )
    t = cfg.about
    for beta, lo, hi, text in ((0.5, 2, 3, "note: 2-3"), (0.99, 50, 50, "note: ~50")):
        a.fill_between(
            [beta - 0.02, beta + 0.02], lo * (1 - t), hi * (1 + t), color="tab:green", alpha=0.35
        )
        a.text(beta - 0.02, hi * (1 + t) * 1.15, text, fontsize=8, ha="right", color="darkgreen")
    a.set(
        xlabel="beta",
        ylabel="gradients averaged (n_noise)",
        title="noise-equivalent window; green: the notes' bands (+-20%)",
    )
    a.legend(fontsize=8, loc="upper left")
    for beta, color in zip(cfg.betas, ("tab:blue", "tab:orange", "tab:green"), strict=False):
        bu = used(beta, cfg)
        h = metrics["drawn"]["impulse"][str(beta)]
        b.semilogx(h["step"], h["trace"], color=color, label=f"beta {beta:g}")
        if bu > 0:
            b.axvline(1 / (1 - bu), color=color, ls="--", lw=0.8)
    b.axhline(1 / np.e, color="grey", lw=0.6, label="1/e")
    b.set(
        xlabel="steps since the gradient (log)",
        ylabel="its weight left in jn.trace",
        title="impulse response of jn.trace; dashes at 1/(1-beta)",
    )
    b.legend(fontsize=8)
    step = metrics["drawn"]["noisy_step"]
    c.plot(step["noisy"], color="grey", lw=0.4, alpha=0.6, label="noisy gradient")
    for beta, color in zip(cfg.betas, ("tab:blue", "tab:orange", "tab:green"), strict=False):
        c.plot(step[str(beta)], color=color, label=f"EMA, beta {beta:g}")
        bu = used(beta, cfg)
        c.axvline(step["at"] + 1 / (1 - bu), color=color, ls="--", lw=0.8)
    c.set(
        xlabel="step",
        ylabel="value",
        ylim=(-1, 2),
        title="EMA of a noisy step at 200; dashes: 200 + 1/(1-beta)",
    )
    c.legend(fontsize=8)
    return save_figure(fig, out_dir, "momentum_window")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics, responses = measure(cfg)
    metrics["drawn"] = drawn(responses, noisy_step(cfg))
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
