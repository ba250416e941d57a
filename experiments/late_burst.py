"""A late burst of Adam: a long stretch of tiny gradients shrinks v, then a normal one jumps.

Adam divides by sqrt(v), an EMA of squared gradients with a memory of ~1/(1 - b2) = 1000 steps.
If one parameter's gradients become tiny for much longer than that (a feature that goes rare in
the data stream), v forgets their normal size; when normal gradients return, v lags behind m and
the step m/sqrt(v) is several times its usual size. We build it honestly as a data stream:
least squares on 2 features where feature 2 is scaled by 1e-3 for a long middle stretch. We
measure the largest step of w_2 after the return against its usual step before the stretch,
for Adam at a constant rate, with a cosine decay over the run, and with a linear warm-up.
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

SUMMARY = "after a long stretch of tiny gradients Adam bursts; a decaying schedule keeps it small"
DATA = "synthetic stream: least squares on 2 Gaussian features, feature 2 rare (x1e-3) mid-run"


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    before: int = 1000  # normal steps
    quiet: int = 8000  # steps with feature 2 scaled by quiet_scale (8x Adam's 1000-step memory)
    after: int = 1000
    quiet_scale: float = 1e-3
    batch: int = 16
    noise_std: float = 0.1
    learning_rate: float = 0.01
    warmup_steps: int = 100  # ends before the "usual step" window
    window: int = 200  # "usual step": median over the last window steps before the stretch
    burst_factor: float = 3.0  # a step this many times the usual one is a burst

    @classmethod
    def quick(cls) -> Config:
        # the stretch must stay many times Adam's 1000-step memory, or v still remembers the
        # normal gradients (0.999**4000 = 0.018): 10,000 2-d steps take a second anyway
        return cls()

    @classmethod
    def tiny(cls) -> Config:
        return cls(before=300, quiet=1500, after=300, window=100)


def optimizers(cfg: Config) -> dict:
    total = cfg.before + cfg.quiet + cfg.after
    lr = cfg.learning_rate
    return {
        "constant lr": jn.adam(lr),
        "cosine decay": jn.adam(jn.schedules.cosine_decay(lr, decay_steps=total)),
        "warm-up, then constant": jn.adam(
            jn.schedules.linear_warmup(jn.schedules.constant(lr), warmup_steps=cfg.warmup_steps)
        ),
    }


def stream(cfg: Config, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-step batches (steps, batch, 2) with feature 2 quiet in the middle, and targets."""
    total = cfg.before + cfg.quiet + cfg.after
    kx, kn = jax.random.split(key)
    x = jax.random.normal(kx, (total, cfg.batch, 2))
    t = jnp.arange(total)
    quiet = (t >= cfg.before) & (t < cfg.before + cfg.quiet)
    x = x.at[:, :, 1].multiply(jnp.where(quiet, cfg.quiet_scale, 1.0)[:, None])
    y = x @ jnp.array([1.0, -2.0]) + cfg.noise_std * jax.random.normal(kn, (total, cfg.batch))
    return x, y


def run(tx, data: tuple[jax.Array, jax.Array]) -> dict:
    """Steps |dw_2| and the error |w_2 - w_2*| at every step."""

    def body(carry, batch):
        w, s = carry
        xb, yb = batch
        g = jax.grad(lambda v: 0.5 * jnp.mean((xb @ v - yb) ** 2))(w)
        u, s = tx.update(g, s, w)
        w = jn.apply_updates(w, u)
        return (w, s), (jnp.abs(u[1]), jnp.abs(w[1] + 2.0))

    w0 = jnp.zeros(2)
    _, (step, err) = jax.jit(lambda c: jax.lax.scan(body, c, data))((w0, tx.init(w0)))
    return {"step": np.asarray(step), "error": np.asarray(err)}


def measure(r: dict, lr: np.ndarray, cfg: Config) -> dict:
    back = cfg.before + cfg.quiet
    usual = float(np.median(r["step"][cfg.before - cfg.window : cfg.before]))
    peak_at = back + int(np.argmax(r["step"][back:]))
    return {
        "usual_step": usual,
        "largest_step_after_return": float(r["step"][peak_at]),
        "burst_ratio": float(r["step"][peak_at] / usual),
        "steps_after_return_of_peak": peak_at - back,
        # the same in units of the rate at the time: what the schedule does not change
        "normalized_burst_ratio": float(
            (r["step"][peak_at] / lr[peak_at]) / (usual / lr[cfg.before - 1])
        ),  # fmt: skip
        "largest_step_over_lr": float(r["step"][peak_at] / lr[peak_at]),
        "usual_error": float(np.median(r["error"][cfg.before - cfg.window : cfg.before])),
        "largest_error_after_return": float(np.max(r["error"][back:])),
        # how far the burst throws the converged weight, against its usual distance
        "error_spike": float(
            np.max(r["error"][back:]) / np.median(r["error"][cfg.before - cfg.window : cfg.before])
        ),
    }


def draw(runs: dict, lrs: dict, cfg: Config, out_dir: Path) -> str:
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 4.5))
    for name, r in runs.items():
        a.semilogy(r["step"], lw=0.5, alpha=0.8, label=name)
        b.semilogy(r["error"], lw=0.8, label=name)
    for ax in (a, b):
        ax.axvspan(cfg.before, cfg.before + cfg.quiet, color="grey", alpha=0.15,
                   label="feature 2 rare (gradients x1e-3)")  # fmt: skip
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    a.set(ylabel="|step of w_2|", title=f"Adam, lr {cfg.learning_rate}: steps of the rare weight")
    b.set(ylabel="|w_2 - w_2*|", title="what the burst costs: the converged weight is thrown off")
    fig.tight_layout()
    return save_figure(fig, out_dir, "late_burst")


def main(cfg: Config, out_dir: Path) -> dict:
    data = stream(cfg, jax.random.key(cfg.seed))
    txs = optimizers(cfg)
    t = jnp.arange(cfg.before + cfg.quiet + cfg.after)
    schedules = {
        "constant lr": np.full(len(t), cfg.learning_rate),
        "cosine decay": np.asarray(jn.schedules.cosine_decay(cfg.learning_rate,
                                                             decay_steps=len(t))(t)),
        "warm-up, then constant": np.asarray(jn.schedules.linear_warmup(
            jn.schedules.constant(cfg.learning_rate), warmup_steps=cfg.warmup_steps)(t)),
    }  # fmt: skip
    runs = {name: run(tx, data) for name, tx in txs.items()}
    m = {name: measure(r, schedules[name], cfg) for name, r in runs.items()}
    figures = [draw(runs, schedules, cfg, out_dir)]
    k = cfg.burst_factor
    ratio = {name: v["burst_ratio"] for name, v in m.items()}
    shrink = (
        m["constant lr"]["largest_step_after_return"]
        / m["cosine decay"]["largest_step_after_return"]
    )
    normalized = m["cosine decay"]["normalized_burst_ratio"]
    claims = [
        claim(
            f"Without a schedule Adam bursts late: after {cfg.quiet} steps of tiny gradients, a "
            f"normal gradient makes a step over {k:g}x the usual one",
            ratio["constant lr"] > k,
            {"burst_ratio": ratio["constant lr"], **m["constant lr"]},
            reason="the largest step after the return stayed within the factor",
        ),
        claim(
            f"A decaying schedule (cosine over the run) prevents it: the largest step after the "
            f"return is under {k:g}x the usual one",
            ratio["cosine decay"] <= k,
            {"burst_ratio": ratio["cosine decay"], **m["cosine decay"]},
            reason=f"the decay shrank the largest step {shrink:.0f}x and the error spike of w_2 "
            f"from {m['constant lr']['error_spike']:.0f}x to "
            f"{m['cosine decay']['error_spike']:.1f}x, but the step was still "
            f"{ratio['cosine decay']:.1f}x the usual one: a small rate hides the cause "
            f"(in units of the rate the burst is {normalized:.0f}x)",
        ),
        claim(
            f"Warm-up prevents it: with {cfg.warmup_steps} warm-up steps the largest step after "
            f"the return is under {k:g}x the usual one",
            ratio["warm-up, then constant"] <= k,
            {"burst_ratio": ratio["warm-up, then constant"], **m["warm-up, then constant"]},
            reason="warm-up only shapes the first steps: at the late return the rate is the "
            f"constant one again and the burst is {ratio['warm-up, then constant']:.1f}x; "
            "warm-up guards the start, when v is also still unreliable, not a late return",
        ),
    ]
    return {"metrics": m, "claims": claims, "figures": figures}
