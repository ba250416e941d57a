"""A late burst of Adam: a long stretch of tiny gradients shrinks v, then a normal one jumps.

Adam divides by sqrt(v), an EMA of squared gradients with a memory of ~1/(1 - b2) = 1000 steps.
If one parameter's gradients become tiny for much longer than that (a feature that goes rare in
the data stream), v forgets their normal size; when normal gradients return, v lags behind m and
the step m/sqrt(v) is several times its usual size. The stream: least squares on 2 Gaussian
features where feature 2 is scaled by ``quiet_scale`` for ``quiet`` steps in the middle (one
random stream per seed, shared by every arm). The yardstick is a control: the same stream
without the stretch. A burst is the largest step of w_2 in the ``window`` steps after the
return over the largest step of constant-rate Adam in the same window of the control stream
(a window before the stretch would not do: v still remembers the first large gradients for
thousands of steps, so Adam's usual step keeps growing slowly). Arms: Adam at a constant rate,
with a cosine decay over the run, and with a linear warm-up. The regime map: the burst against
its own control, over the length of the stretch in units of Adam's memory.

The remedies are claims about a burst: each holds only where there is a burst to remedy
(the constant-rate step after the return above its control's) *and* the remedy's step there is
``burst_factor`` times smaller. Without the first part a cosine schedule would "keep the step
small" on any stream, burst or not, by its rate alone (its rate at the return is ~2% of the
constant one).

Sabotage: ``quiet_scale=1`` removes the stretch (feature 2 never goes rare): no burst, and no
remedy claim can hold.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jaxopt_notes.experiments import _plot, _stats
from jaxopt_notes.experiments._claims import Source, Test, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn

SUMMARY = "after a long stretch of tiny gradients Adam bursts; a decaying schedule keeps it small"
DATA = (
    "synthetic stream: per seed, least squares on 2 Gaussian features (batch 16, noise sd 0.1), "
    "feature 2 scaled by 1e-3 for a long middle stretch"
)
QUICK_NOTE = (
    "quick keeps the stream's lengths (the stretch must stay many times Adam's 1,000-step "
    "memory) and uses 10 seeds instead of 20: wider intervals only"
)
ARMS = ("constant lr", "cosine decay", "warm-up, then constant")


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    seeds: int = 20
    before: int = 1000  # normal steps
    quiet: int = 8000  # the stretch of the claims (8x Adam's memory); must be on quiet_grid
    after: int = 1000
    quiet_grid: tuple[int, ...] = (250, 500, 1000, 2000, 4000, 8000)  # the regime map
    quiet_scale: float = param(
        1e-3, low=0.0, high=1.0, low_open=True, help="feature 2's scale in the stretch; 1: none"
    )
    batch: int = 16
    noise_std: float = 0.1
    learning_rate: float = 0.01
    warmup_steps: int = 100
    window: int = 200  # the two windows compared
    burst_factor: float = param(3.0, help="a largest step this many times the usual: a burst")

    def validate(self) -> None:
        if self.quiet not in self.quiet_grid or max(self.quiet_grid) != self.quiet:
            raise ValueError(
                f"`quiet` must be the largest value of `quiet_grid` {self.quiet_grid}, "
                f"got {self.quiet}"
            )
        if not self.window <= min(self.before - self.warmup_steps, self.after):
            raise ValueError(
                "`window` must fit after the warm-up before the stretch and after the return, "
                f"got window={self.window}"
            )

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=10)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=3, quiet_grid=(1000, 8000))  # the stretch cannot shrink: see quick()


SECTION = "优化器"
SOURCES = {
    "burst": Source(
        note="002_3498af5075c2b1b1.txt",
        section=SECTION,
        quote="累计到一定程度后，step（左下红框部分）就变得很大，然后就暴走喷出去了。",
        english="once enough has accumulated [of gradients that were large at first and small "
        "later], the step becomes very large and it bursts out",
        reference="Li Hongyi, ML 2021 lecture 'adaptive learning rate' (the burst near the end "
        "of training, and its remedies)",
    ),
    "schedule": Source(
        note="002_3498af5075c2b1b1.txt",
        section=SECTION,
        quote="Learning Rate Scheduling：让 η 与时间有关。随着时间增加 让 η 越来越小",
        english="learning-rate scheduling: make eta depend on time, smaller and smaller as "
        "time goes on [the remedy for the burst]",
        reference="Li Hongyi, ML 2021 lecture 'adaptive learning rate'",
    ),
    "warmup": Source(
        note="002_3498af5075c2b1b1.txt",
        section=SECTION,
        quote="另一个方法：Warm Up",
        english="another method [against the burst]: warm-up",
        reference="Li Hongyi, ML 2021 lecture; Liu et al. 2020 (RAdam) on why warm-up helps "
        "early training",
    ),
}


def total_steps(cfg: Config) -> int:
    return cfg.before + cfg.quiet + cfg.after


def schedule(name: str, cfg: Config):
    lr = cfg.learning_rate
    if name == "cosine decay":
        return jn.schedules.cosine_decay(lr, decay_steps=total_steps(cfg))
    if name == "warm-up, then constant":
        return jn.schedules.linear_warmup(jn.schedules.constant(lr), warmup_steps=cfg.warmup_steps)
    return jn.schedules.constant(lr)


def stream(key: jax.Array, quiet: jax.Array, cfg: Config):
    """Batches (steps, batch, 2) with feature 2 rare for ``quiet`` steps, and their targets."""
    kx, kn = jax.random.split(key)
    total = total_steps(cfg)
    x = jax.random.normal(kx, (total, cfg.batch, 2))
    t = jnp.arange(total)
    rare = (t >= cfg.before) & (t < cfg.before + quiet)
    x = x.at[:, :, 1].multiply(jnp.where(rare, cfg.quiet_scale, 1.0)[:, None])
    y = x @ jnp.array([1.0, -2.0]) + cfg.noise_std * jax.random.normal(kn, (total, cfg.batch))
    return x, y


def run(tx, key: jax.Array, quiet: jax.Array, cfg: Config) -> dict:
    """|step of w_2| and |w_2 - w_2*| at every step of Adam on one stream."""

    def body(carry, batch):
        w, s = carry
        xb, yb = batch
        g = jax.grad(lambda v: 0.5 * jnp.mean((xb @ v - yb) ** 2))(w)
        u, s = tx.update(g, s, w)
        w = jn.apply_updates(w, u)
        return (w, s), (jnp.abs(u[1]), jnp.abs(w[1] + 2.0))

    w0 = jnp.zeros(2)
    _, (step, err) = jax.lax.scan(body, (w0, tx.init(w0)), stream(key, quiet, cfg))
    return {"step": step, "error": err}


def after_return(r: dict, quiet: int, cfg: Config) -> dict:
    """Largest step and error of w_2 in the ``window`` steps after the return at before+quiet."""
    post = slice(cfg.before + quiet, cfg.before + quiet + cfg.window)
    return {"peak_step": r["step"][..., post].max(-1), "peak_error": r["error"][..., post].max(-1)}


def measure(cfg: Config) -> dict:
    keys = jax.random.split(jax.random.key(cfg.seed), cfg.seeds)
    arms = {name: jn.adam(schedule(name, cfg)) for name in ARMS}
    # stretch 0 is the control: the same stream and schedule without the rare stretch
    quiets = {ARMS[0]: (*cfg.quiet_grid, 0), ARMS[1]: (*cfg.quiet_grid, 0), ARMS[2]: (cfg.quiet, 0)}

    @jax.jit  # one program for every arm, stretch length and seed
    def simulate(keys):
        return {
            name: jax.vmap(lambda q, tx=arms[name]: jax.vmap(lambda k: run(tx, k, q, cfg))(keys))(
                jnp.asarray(quiets[name])
            )
            for name in ARMS
        }

    runs = jax.tree.map(np.asarray, simulate(keys))  # (stretches, seeds, steps)
    pick = lambda name, i: {k: v[i] for k, v in runs[name].items()}  # noqa: E731
    out = {"quiet_grid": cfg.quiet_grid, "map": {}, "claim": {}}
    for name in ARMS:
        control = pick(name, -1)
        per_q = {
            q: (after_return(pick(name, i), q, cfg), after_return(control, q, cfg))
            for i, q in enumerate(quiets[name][:-1])
        }
        out["map"][name] = {  # the burst against its own control, per stretch: (quiets, seeds)
            "burst_over_control": [a["peak_step"] / c["peak_step"] for a, c in per_q.values()]
        }
        stretch, own_control = per_q[cfg.quiet]
        out["claim"][name] = {
            **stretch,
            "control_step": own_control["peak_step"],
            "control_error": own_control["peak_error"],
        }
    # the yardstick of every claim: constant-rate Adam's largest step there, without a stretch
    out["usual_step"] = out["claim"][ARMS[0]]["control_step"]
    out["trace"] = {name: runs[name]["step"][-2, 0, ::10] for name in ARMS}  # seed 0
    out["trace_error"] = {name: runs[name]["error"][-2, 0, ::10] for name in ARMS}
    return out


def claims(m: dict, cfg: Config) -> list[dict]:
    k = cfg.burst_factor
    usual = m["usual_step"]
    const = m["claim"][ARMS[0]]["peak_step"]
    burst = _stats.paired_ratio(const, usual)
    remedy = {name: _stats.paired_ratio(m["claim"][name]["peak_step"], const) for name in ARMS[1:]}
    seeds = len(usual)
    quantity = "largest step of w_2 after the return / usual largest step there"
    origin = (
        f"pre-stated: {k:g}x the usual largest step (constant-rate Adam, the same window of the "
        "same stream without the stretch: 1x when nothing happens)"
    )
    remedy_quantity = "largest step after the return, with the remedy / at a constant rate"
    remedy_origin = f"pre-stated: the remedy must take back a burst's {k:g}x"
    # a remedy needs a burst to remedy: the constant-rate step must exceed its own control's
    exists = Test(
        "constant-rate largest step after the return / its control's",
        ">",
        1.0,
        "no burst: the same stream without the stretch gives exactly 1x",
        seeds,
        paired=True,
    )

    def evidence(name):
        w = m["claim"][name]
        return {
            "largest step after the return (median)": float(np.median(w["peak_step"])),
            "usual largest step (median)": float(np.median(usual)),
            "against the usual largest step": _stats.paired_ratio(w["peak_step"], usual),
            "burst against this schedule's own control": _stats.paired_ratio(
                w["peak_step"], w["control_step"]
            ),
            "largest error of w_2 after the return / control's": _stats.paired_ratio(
                w["peak_error"], w["control_error"]
            ),
            "stretch": f"{cfg.quiet} steps, feature 2 x {cfg.quiet_scale:g}",
        }

    return [
        claim(
            f"At a constant rate Adam bursts late: after {cfg.quiet} steps of tiny gradients a "
            f"normal gradient makes a step over {k:g}x the usual largest one",
            burst,
            Test(quantity, ">", k, origin, seeds, paired=True),
            SOURCES["burst"],
            evidence=evidence("constant lr"),
            note="the notes' figure is AdaGrad-like (sigma accumulates); Adam's EMA forgets the "
            "normal gradients the same way over a stretch much longer than 1/(1-b2) steps, but "
            "its bias-corrected step is bounded by about lr (1-b1)/sqrt(1-b2) = 3.2 lr (Kingma "
            "& Ba, sec. 2.1), so its burst cannot grow without limit",
            id="adam_bursts_late",
        ),
        claim(
            "Where Adam bursts, a decaying schedule (cosine over the run) keeps the late step "
            f"small: at least {k:g}x smaller than at a constant rate, on the same stream",
            [burst, remedy["cosine decay"]],
            [exists, Test(remedy_quantity, "<", 1 / k, remedy_origin, seeds, paired=True)],
            SOURCES["schedule"],
            evidence=evidence("cosine decay"),
            note="the schedule shrinks the rate at the return; it does not remove the cause (v "
            "still lags: see the burst against this schedule's own control)",
            id="decay_keeps_it_small",
        ),
        claim(
            f"Where Adam bursts, warm-up ({cfg.warmup_steps} steps, then the constant rate) keeps "
            f"the late step small: at least {k:g}x smaller than at a constant rate",
            [burst, remedy["warm-up, then constant"]],
            [exists, Test(remedy_quantity, "<", 1 / k, remedy_origin, seeds, paired=True)],
            SOURCES["warmup"],
            evidence=evidence("warm-up, then constant"),
            note="warm-up shapes only the first steps (when v rests on few gradients); at a "
            "late return the rate is the constant one again",
            id="warmup_keeps_it_small",
        ),
    ]


def draw(m: dict, cfg: Config, out_dir: Path) -> str:
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(18, 4.6))
    t = np.arange(0, total_steps(cfg), 10)
    for name in ARMS:
        a.semilogy(t, m["trace"][name], lw=0.6, alpha=0.8, label=name)
        b.semilogy(t, m["trace_error"][name], lw=0.8, label=name)
    for ax in (a, b):
        ax.axvspan(
            cfg.before,
            cfg.before + cfg.quiet,
            color="grey",
            alpha=0.15,
            label=f"feature 2 rare (x{cfg.quiet_scale:g})",
        )
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    a.set(
        ylabel="|step of w_2| (every 10th step)",
        title=f"Adam, lr {cfg.learning_rate:g} (seed 0): steps of the rare weight",
    )
    b.set(ylabel="|w_2 - w_2*|", title="where the weight goes (seed 0)")
    q = np.asarray(cfg.quiet_grid) * 1e-3
    for name in ARMS[:2]:
        ratios = np.asarray(m["map"][name]["burst_over_control"])  # (quiets, seeds)
        est = [_stats.paired_ratio(r, np.ones_like(r)) for r in ratios]
        err = [[e.value - e.low for e in est], [e.high - e.value for e in est]]
        c.errorbar(
            q,
            [e.value for e in est],
            yerr=err,
            fmt="o-",
            capsize=3,
            label=f"{name} (same stream without the stretch: 1x)",
        )
    c.axhline(cfg.burst_factor, color="k", ls=":", label=f"burst threshold {cfg.burst_factor:g}x")
    c.axhline(1.0, color="grey", lw=0.8)
    c.set(
        xscale="log",
        yscale="log",
        xlabel="length of the stretch (x 1000 steps = 1/(1-b2))",
        ylabel="largest step after the return / control's",
        title="regime map: the burst against its own control (95% CI)",
    )
    c.set_xticks(q, [f"{v:g}" for v in q])
    c.set_yticks([0.5, 1, 2, 3, 5, 10], ["0.5", "1", "2", "3", "5", "10"])
    c.minorticks_off()
    c.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "late_burst")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics = measure(cfg)
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
