"""Momentum's memory: how many past gradients does a momentum buffer remember?

The notes say the effective window of momentum with decay beta is 1/(1 - beta) steps: ~2 at
0.5, ~10 at 0.9, ~100 at 0.99. We measure it on the library's own links, three ways:

* the impulse response of ``jn.trace(beta)`` (a unit gradient, then zeros): its total mass is
  the gain on a steady gradient, and its e-folding time is how long one gradient is remembered;
* the mean age of the weights ``jn.first_moment(beta)`` (Adam's EMA) puts on past gradients,
  counting the current gradient as age 1;
* the lag of the EMA behind a step change in a noisy gradient stream (the figure).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import jaxopt_notes as jn
from experiments._common import claim, save_figure

SUMMARY = "momentum remembers about 1/(1-beta) past gradients: ~2 at 0.5, ~10 at 0.9, ~100 at 0.99"
DATA = "synthetic gradient streams: a unit impulse, and a noisy step signal (no data set)"

BETAS = (0.5, 0.9, 0.99)


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    steps: int = 3000  # long enough for 0.99**steps to vanish in float32
    noise_std: float = 0.5  # noise on the step signal of the figure
    step_at: int = 200  # where the noisy signal jumps from 0 to 1
    window_tolerance: float = 0.1  # "~1/(1-beta)": a measure within 10% of it

    @classmethod
    def quick(cls) -> Config:
        return cls()

    @classmethod
    def tiny(cls) -> Config:
        return cls(steps=1500)


def respond(tx, signal: jax.Array) -> np.ndarray:
    """The updates a transform outputs when fed ``signal`` as its gradient stream (jitted scan)."""

    def body(state, g):
        u, state = tx.update(g[None], state)
        u = u.mu if isinstance(u, jn.Moments) else u  # first_moment opens a Moments stream
        return state, u[0]

    _, out = jax.jit(lambda s: jax.lax.scan(body, tx.init(jnp.zeros(1)), s))(signal)
    return np.asarray(out, np.float64)


def window_measures(beta: float, steps: int) -> dict:
    """Three measured windows of momentum with decay ``beta``."""
    impulse = jnp.zeros(steps).at[0].set(1.0)
    h = respond(jn.trace(beta), impulse)  # heavy-ball buffer: beta**t
    w = respond(jn.first_moment(beta), impulse)  # EMA weights: (1 - beta) beta**t
    age = np.arange(1, steps + 1)
    below = np.nonzero(h < h[0] / np.e)[0]
    # the e-folding time, interpolated in log space between the two steps around 1/e
    k = int(below[0])
    e_fold = (k - 1) + (np.log(h[k - 1]) + 1) / (np.log(h[k - 1]) - np.log(h[k]))
    return {
        "target": 1 / (1 - beta),
        "steady_gain": float(h.sum()),  # u on a constant gradient 1, after many steps
        "ema_mean_age": float((age * w).sum() / w.sum()),
        "e_folding_steps": float(e_fold),
        "impulse": h,
    }


def ema_of_step(beta: float, cfg: Config, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    n = cfg.step_at + 500  # the same stream (same key) for every beta
    clean = (jnp.arange(n) >= cfg.step_at).astype(jnp.float32)
    noisy = clean + cfg.noise_std * jax.random.normal(key, (n,))
    return np.asarray(noisy), respond(jn.first_moment(beta), noisy)


def draw(measures: dict, cfg: Config, out_dir: Path, key: jax.Array) -> str:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    for (beta, m), color in zip(
        measures.items(), ("tab:blue", "tab:orange", "tab:green"), strict=True
    ):
        t = np.arange(len(m["impulse"]))
        a.semilogx(t + 1, m["impulse"] / m["impulse"][0], color=color, label=f"beta = {beta}")
        a.axvline(m["target"], color=color, ls="--", lw=0.8)
        _, ema = ema_of_step(beta, cfg, key)
        b.plot(ema, color=color, label=f"EMA, beta = {beta}")
        b.axvline(cfg.step_at + m["target"], color=color, ls="--", lw=0.8)
    a.axhline(1 / np.e, color="grey", lw=0.6)
    a.set(xlabel="steps since the gradient (log)", ylabel="weight left in the buffer",
          title="impulse response of jn.trace; dashes at 1/(1-beta), grey at 1/e")  # fmt: skip
    noisy, _ = ema_of_step(0.99, cfg, key)
    b.plot(noisy, color="grey", lw=0.4, alpha=0.6, zorder=0, label="noisy gradient")
    b.set(xlabel="step", ylabel="value", ylim=(-1, 2),
          title="EMA of a noisy step: lag ~ 1/(1-beta) (dashes)")  # fmt: skip
    a.legend()
    b.legend(fontsize=8)
    return save_figure(fig, out_dir, "momentum_window")


def main(cfg: Config, out_dir: Path) -> dict:
    key = jax.random.key(cfg.seed)
    measures = {beta: window_measures(beta, cfg.steps) for beta in BETAS}
    table = {str(b): {k: v for k, v in m.items() if k != "impulse"} for b, m in measures.items()}
    rel = {
        name: {str(b): abs(m[name] / m["target"] - 1) for b, m in measures.items()}
        for name in ("steady_gain", "ema_mean_age", "e_folding_steps")
    }
    tol = cfg.window_tolerance
    close = {name: all(e <= tol for e in errs.values()) for name, errs in rel.items()}
    figures = [draw(measures, cfg, out_dir, key)]
    claims = [
        claim(
            "Momentum's window is 1/(1-beta): jn.trace's impulse response sums to 1/(1-beta) "
            "(its gain on a steady gradient) and the EMA's mean age of the gradients it weights "
            f"is 1/(1-beta), within {tol:.0%}, at beta = 0.5, 0.9, 0.99",
            close["steady_gain"] and close["ema_mean_age"],
            {"measured": table, "relative_error": rel},
            reason="a measured window is off 1/(1-beta) by more than the tolerance",
        ),
        claim(
            "One gradient's weight in the buffer decays to 1/e after ~1/(1-beta) steps "
            f"(within {tol:.0%}) at beta = 0.9 and 0.99; at 0.5 after "
            f"{table['0.5']['e_folding_steps']:.2f} steps, the same order as 2",
            all(rel["e_folding_steps"][b] <= tol for b in ("0.9", "0.99"))
            and rel["e_folding_steps"]["0.5"] <= 0.5,
            {
                "e_folding_steps": {b: t["e_folding_steps"] for b, t in table.items()},
                "relative_error": rel["e_folding_steps"],
            },  # fmt: skip
            reason="the e-folding time -1/ln(beta) strays from 1/(1-beta) beyond the tolerance",
        ),
    ]
    return {"metrics": {"windows": table, "relative_error": rel}, "claims": claims,
            "figures": figures}  # fmt: skip
