"""Saddle points: GD stalls beside them; the Hessian's negative direction, noise and momentum leave.

f(x, y) = x^2 - y^2 + y^4 / 4 has a saddle at (0, 0) (f = 0) and minima at (0, +-sqrt(2))
(f = -1). Each seed starts GD at a random point close to the saddle's stable line y = 0:
x0 ~ U(0.5, 1.5), |y0| = 10^U(-8, -5) with a random sign. GD first slides along x into the
saddle, where the gradient is tiny for many steps, and only then slips off along y. The claims
(over seeds, paired: every arm starts from the seed's point):

- GD stalls: it spends many steps with |grad| below a small level before escaping, and a
  control start off the stable line (|y0| = 0.5, same x0) does not;
- one step along ``hessian.escape_direction`` (most negative curvature) at the stall point lowers
  the loss, and by more than a step of the same length along the gradient;
- gradient noise escapes in fewer steps than GD;
- momentum escapes in fewer steps than GD at the same learning rate, and (the control for its
  larger effective step) than GD at lr / (1 - beta).

"Escaped" means f <= -0.5, halfway from the saddle's value to the minima's: a loss level, not
a ball around (0, 0), since momentum overshoots along x and leaves a ball without escaping.
A run that never escapes counts as taking steps + 1 (censored; the evidence says how many).
``hessian.classify`` on the textbook saddle and on the origin of a two-layer linear network are
checks. Regime maps sweep the momentum beta and the noise level.
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
from jaxopt_notes.experiments._common import save_figure, trajectory
from jaxopt_notes.experiments._config import param

import jaxopt_notes as jn
from jaxopt_notes import hessian

SUMMARY = "GD stalls near a saddle; the Hessian's negative direction, noise and momentum escape"
DATA = "synthetic: f(x, y) = x^2 - y^2 + y^4/4, and a 2-layer linear net on 32 Gaussian points"
QUICK_NOTE = "Quick runs half the seeds; steps and rates are the defaults'."

LI = "002_3498af5075c2b1b1.txt"
LI_REF = "Li Hongyi, ML 2021 lecture 'When gradient is small: local minimum and saddle point'"
SRC_STALL = Source(
    "000_07e945f9227ab975.txt",
    "优化算法",
    "除局部最小值之外，鞍点是梯度消失的另外一个原因",
    "Besides local minima, saddle points are the other reason gradients vanish",
    "Zhang et al., Dive into Deep Learning, sec. 12.1.2.2 (saddle points)",
)
SRC_HESSIAN = Source(
    LI,
    "局部最小与鞍点",
    "顺着 u 的方向更新，就可以让loss变小",
    "(find a negative eigenvalue of the Hessian;) updating along its eigenvector u makes the "
    "loss smaller",
    LI_REF,
)
SRC_CLASSIFY = Source(
    LI,
    "局部最小与鞍点",
    "Hessian矩阵(**特征值有正有负**):**鞍点**",
    "Hessian with eigenvalues of both signs: a saddle point",
    LI_REF,
)
SRC_NOISE = Source(
    LI,
    "局部最小与鞍点",
    "后续会谈到其他的逃离saddle point的方法 他们的运算量都要比算H小的多",
    "Other ways of escaping a saddle point come later, all far cheaper than computing H",
    "Ge et al. 2015, 'Escaping from saddle points: online stochastic gradient for tensor "
    "decomposition'; Jin et al. 2017, 'How to escape saddle points efficiently'",
)
SRC_MOMENTUM = Source(
    "003_9f3980f7ef3a062d.txt",
    "Momentum",
    "设想，在plateau或者local minima或者saddle point鞍点附近，当前的原始梯度为0或接近0，"
    "但是还有momentum的惯性，同样可以进行参数的更新。",
    "Near a plateau, a local minimum or a saddle point the raw gradient is zero or nearly so, "
    "but momentum's inertia still updates the parameters.",
    "Qian 1999; Goh, 'Why momentum really works', Distill 2017",
)


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    seeds: int = 20  # random starts near the stable line, each with its own noise key
    steps: int = 400
    learning_rate: float = 0.05
    momentum: float = param(0.9, low=0.0, high=1.0, high_open=True)
    noise_std: float = param(0.01, low=0.0, help="std of the Gaussian added to each gradient")
    start_log10_y: tuple = (-8.0, -5.0)  # |y0| = 10^U(low, high)
    escape_loss: float = param(-0.5, low=-1.0, high=0.0, low_open=True, high_open=True)
    stall_grad: float = 1e-2  # a step with |grad| below this counts as stalled
    stall_steps: float = 50.0  # claimed: GD stalls this many steps more than the control
    escape_step: float = 0.5  # length of the one-step escapes compared at the stall point
    speedup: float = param(0.8, low=0.0, high=1.0, low_open=True)  # "fewer steps": ratio below
    beta_map: tuple = param((0.0, 0.5, 0.8, 0.9, 0.95), low=0.0, high=1.0, high_open=True)
    noise_map: tuple = param((0.0, 1e-4, 1e-3, 1e-2, 1e-1), low=0.0)

    @classmethod
    def quick(cls) -> Config:
        return cls(seeds=10)

    @classmethod
    def tiny(cls) -> Config:
        return cls(seeds=8, beta_map=(0.0, 0.9), noise_map=(0.0, 1e-2))

    def validate(self) -> None:
        low, high = self.start_log10_y
        if len(self.start_log10_y) != 2 or not low < high <= -1:
            raise ValueError(
                f"`start_log10_y` must be (low, high) with low < high <= -1, "
                f"got {self.start_log10_y}"
            )


def saddle(p: jax.Array) -> jax.Array:
    return p[0] ** 2 - p[1] ** 2 + p[1] ** 4 / 4


def starts(cfg: Config) -> np.ndarray:
    """(seeds, 2) random starts: x0 ~ U(0.5, 1.5), |y0| = 10^U(low, high), random sign."""
    kx, ky, ks = jax.random.split(jax.random.key(cfg.seed), 3)
    x0 = jax.random.uniform(kx, (cfg.seeds,), minval=0.5, maxval=1.5)
    low, high = cfg.start_log10_y
    y0 = 10.0 ** jax.random.uniform(ky, (cfg.seeds,), minval=low, maxval=high)
    y0 = y0 * jnp.where(jax.random.bernoulli(ks, shape=(cfg.seeds,)), 1.0, -1.0)
    return np.stack([np.asarray(x0), np.asarray(y0)], axis=1)


def heavy_ball(arm: jax.Array, x0: jax.Array, key: jax.Array, steps: int) -> jax.Array:
    """(steps + 1, 2) iterates of heavy-ball GD on :func:`saddle` for ``arm`` = (lr, beta, noise).

    v <- beta v + g + noise, p <- p - lr v: ``jn.sgd(lr, momentum=beta)``'s update, written out
    so that the rates are traced and every arm runs in one compiled program (the check
    ``runner_matches_library`` compares it with ``jn.sgd``).
    """
    lr, beta, noise_std = arm[0], arm[1], arm[2]

    def body(carry, k):
        p, v = carry
        v = beta * v + jax.grad(saddle)(p) + noise_std * jax.random.normal(k, p.shape)
        p = p - lr * v
        return (p, v), p

    _, ps = jax.lax.scan(body, (x0, jnp.zeros_like(x0)), jax.random.split(key, steps))
    return jnp.concatenate([x0[None], ps])


@jax.jit(static_argnames="steps")
def all_paths(arms: jax.Array, x0: jax.Array, keys: jax.Array, steps: int) -> jax.Array:
    """(arms, seeds, steps + 1, 2): every arm from every start; seed i uses key i in every arm."""
    per_seed = jax.vmap(heavy_ball, (None, 0, 0, None))
    return jax.vmap(per_seed, (0, None, None, None))(arms, x0, keys, steps)


def library_paths(tx, x0: np.ndarray, steps: int) -> np.ndarray:
    """(seeds, steps + 1, 2) noiseless iterates of a ``jaxopt_notes`` transform, for the check."""
    run = jax.vmap(lambda p: trajectory(tx, saddle, p, steps))
    return np.asarray(jax.jit(run)(jnp.asarray(x0, jnp.float32)))


def escape_times(ps: np.ndarray, level: float) -> np.ndarray:
    """Per run, the first step with f <= ``level``; ``steps + 1`` if never (censored)."""
    below = np.asarray(jax.vmap(jax.vmap(saddle))(jnp.asarray(ps))) <= level
    return np.where(below.any(axis=1), below.argmax(axis=1), ps.shape[1]).astype(int)


def grad_norms(ps: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(jax.vmap(jax.vmap(jax.grad(saddle)))(jnp.asarray(ps))), axis=2)


def stalled_steps(ps: np.ndarray, times: np.ndarray, level: float) -> np.ndarray:
    """Per run, the steps before its escape whose exact gradient norm is below ``level``."""
    before = np.arange(ps.shape[1])[None, :] < times[:, None]
    return ((grad_norms(ps) < level) & before).sum(axis=1)


def one_step_escapes(ps: np.ndarray, times: np.ndarray, cfg: Config) -> dict:
    """At each GD run's stall point (least |grad| before escaping): f there, after a step of
    ``escape_step`` along ``hessian.escape_direction``, and after one as long along -grad."""
    grads = grad_norms(ps)
    out = {"stall_point": [], "loss_there": [], "after_hessian_step": [], "after_gradient_step": []}
    for path, g, t in zip(ps, grads, times, strict=True):
        p = jnp.asarray(path[int(np.argmin(g[: max(int(t), 1)]))])
        v = hessian.escape_direction(saddle, p)
        d = -jax.grad(saddle)(p)
        d = d / jnp.linalg.norm(d)
        out["stall_point"].append(np.asarray(p))
        out["loss_there"].append(float(saddle(p)))
        out["after_hessian_step"].append(
            float("nan") if v is None else float(saddle(p + cfg.escape_step * v))
        )
        out["after_gradient_step"].append(float(saddle(p + cfg.escape_step * d)))
    return {k: np.asarray(v) for k, v in out.items()}


def linear_net_saddle(seed: int) -> dict:
    """The origin of y = W2 W1 x (3 -> 2 -> 2): zero gradient, curvature of both signs."""
    kx, kw = jax.random.split(jax.random.key(seed))
    x = jax.random.normal(kx, (32, 3))
    y = x @ jax.random.normal(kw, (3, 2))

    def loss(p):
        return jnp.mean(jnp.sum((x @ p["w1"] @ p["w2"] - y) ** 2, axis=1))

    zero = {"w1": jnp.zeros((3, 2)), "w2": jnp.zeros((2, 2))}
    c = hessian.classify(loss, zero)
    step = hessian.escape_step(loss, zero, step_size=0.5)
    return {
        "kind": c.kind,
        "grad_norm": c.grad_norm,
        "num_negative": c.num_negative,
        "num_positive": c.num_positive,
        "loss_before": step.loss_before,
        "loss_after_escape_step": step.loss_after,
    }


def arm_table(cfg: Config) -> dict[str, tuple[float, float, float]]:
    """Every (lr, beta, noise) arm of the claims and the regime maps, by name."""
    lr, b = cfg.learning_rate, cfg.momentum
    arms = {
        "gd": (lr, 0.0, 0.0),
        "noise": (lr, 0.0, cfg.noise_std),
        "momentum": (lr, b, 0.0),
        "gd_matched": (lr / (1 - b), 0.0, 0.0),
    }
    for beta in cfg.beta_map:
        arms[f"momentum {beta:g}"] = (lr, beta, 0.0)
        arms[f"gd_matched {beta:g}"] = (lr / (1 - beta), 0.0, 0.0)
    for s in cfg.noise_map:
        arms[f"noise {s:g}"] = (lr, 0.0, s)
    return arms


def measure(cfg: Config) -> tuple[dict, dict]:
    """Escape times of every arm and map point (paired by seed), and example paths to draw."""
    x0 = starts(cfg)
    control = np.stack([x0[:, 0], np.sign(x0[:, 1]) * 0.5], axis=1)
    arms = arm_table(cfg)
    keys = jax.random.split(jax.random.key(cfg.seed + 1), cfg.seeds)
    table = jnp.asarray(list(arms.values()), jnp.float32)
    ps = dict(
        zip(
            arms,
            np.asarray(all_paths(table, jnp.asarray(x0, jnp.float32), keys, cfg.steps)),
            strict=True,
        )
    )
    control_ps = np.asarray(
        all_paths(table[:1], jnp.asarray(control, jnp.float32), keys, cfg.steps)
    )[0]
    times = {k: escape_times(p, cfg.escape_loss) for k, p in ps.items()}
    control_times = escape_times(control_ps, cfg.escape_loss)
    m = {name: times[name] for name in ("gd", "noise", "momentum", "gd_matched")}
    m |= {
        "starts": x0,
        "stalled_gd": stalled_steps(ps["gd"], times["gd"], cfg.stall_grad),
        "stalled_control": stalled_steps(control_ps, control_times, cfg.stall_grad),
        "one_step": one_step_escapes(ps["gd"], times["gd"], cfg),
        "beta_map": {
            "beta": list(cfg.beta_map),
            "momentum": [times[f"momentum {b:g}"] for b in cfg.beta_map],
            "gd_matched": [times[f"gd_matched {b:g}"] for b in cfg.beta_map],
        },
        "noise_map": {
            "noise_std": list(cfg.noise_map),
            "noise": [times[f"noise {s:g}"] for s in cfg.noise_map],
        },
        "runner_vs_library": runner_vs_library(cfg, x0, ps),
    }
    return m, {"GD": ps["gd"][0], "momentum": ps["momentum"][0], "control start": control_ps[0]}


def runner_vs_library(cfg: Config, x0: np.ndarray, ps: dict) -> dict:
    """Largest gap between the written-out runner and ``jn.sgd`` on the noiseless arms."""
    gd = library_paths(jn.sgd(cfg.learning_rate), x0, cfg.steps)
    mom = library_paths(jn.sgd(cfg.learning_rate, momentum=cfg.momentum), x0, cfg.steps)
    return {
        "gd": float(np.abs(gd - ps["gd"]).max()),
        "momentum": float(np.abs(mom - ps["momentum"]).max()),
    }


def claims(metrics: dict, cfg: Config) -> list[dict]:
    gd, noise, mom = (np.asarray(metrics[k], float) for k in ("gd", "noise", "momentum"))
    matched = np.asarray(metrics["gd_matched"], float)
    one = {k: np.asarray(v, float) for k, v in metrics["one_step"].items()}
    cls, net = metrics["classify_origin"], metrics["linear_net"]
    censored = {k: int(np.sum(np.asarray(metrics[k]) > cfg.steps)) for k in ("gd", "noise")}
    ratio = f"< {cfg.speedup:g}: pre-stated, at least {1 - cfg.speedup:.0%} fewer steps"
    return [
        check(
            "hessian.classify calls (0, 0) of x^2 - y^2 + y^4/4 a saddle (eigenvalues 2, -2) and "
            "the origin of a two-layer linear network a saddle; hessian.escape_step lowers the "
            "network's loss there",
            cls["kind"] == "saddle"
            and np.allclose(cls["eigenvalues"], [2.0, -2.0])
            and net["kind"] == "saddle"
            and net["loss_after_escape_step"] < net["loss_before"],
            {
                "toy_kind": cls["kind"],
                "toy_eigenvalues": [float(v) for v in cls["eigenvalues"]],
                "net_kind": net["kind"],
                "net_negative_eigenvalues": int(net["num_negative"]),
                "net_loss_before": float(net["loss_before"]),
                "net_loss_after_escape_step": float(net["loss_after_escape_step"]),
            },
            SRC_CLASSIFY,
            id="classify_saddles",
        ),
        check(
            "The written-out heavy-ball runner follows jn.sgd (GD and momentum) to 1e-5",
            max(metrics["runner_vs_library"].values()) < 1e-5,
            metrics["runner_vs_library"],
            id="runner_matches_library",
        ),
        claim(
            f"GD started near the saddle's stable line stalls: it spends more than "
            f"{cfg.stall_steps:g} steps more with |grad| < {cfg.stall_grad:g} before escaping "
            "than GD from the same x0 but off the line (|y0| = 0.5)",
            _stats.paired_difference(metrics["stalled_gd"], metrics["stalled_control"]),
            Test(
                "stalled steps: near-saddle start minus control start",
                ">",
                cfg.stall_steps,
                f"pre-stated: {cfg.stall_steps:g} steps, an eighth of the default budget, "
                "for 'stops for a long time'",
                len(gd),
                paired=True,
            ),
            SRC_STALL,
            {
                "stalled_gd": _stats.mean(metrics["stalled_gd"]),
                "stalled_control": _stats.mean(metrics["stalled_control"]),
            },
            id="gd_stalls",
        ),
        claim(
            f"At GD's stall point a step of {cfg.escape_step:g} along hessian.escape_direction "
            "lowers the loss, and lowers it more than a step as long along the gradient",
            [
                _stats.paired_difference(one["loss_there"], one["after_hessian_step"]),
                _stats.paired_difference(one["after_gradient_step"], one["after_hessian_step"]),
            ],
            [
                Test(
                    "loss decrease of the Hessian step",
                    ">",
                    0.0,
                    "the note: 'makes the loss smaller'",
                    len(gd),
                    paired=True,
                ),
                Test(
                    "loss after the gradient step minus after the Hessian step",
                    ">",
                    0.0,
                    "the lecture: at a saddle the gradient does not show the way, the Hessian does",
                    len(gd),
                    paired=True,
                ),
            ],
            SRC_HESSIAN,
            {"loss_at_stall_point": _stats.mean(one["loss_there"])},
            id="hessian_escape",
            kind="check",
        ),
        claim(
            f"Gradient noise (std {cfg.noise_std:g}) escapes the saddle in fewer steps than GD",
            _stats.paired_ratio(noise, gd),
            Test("escape steps: noisy GD / GD", "<", cfg.speedup, ratio, len(gd), paired=True),
            SRC_NOISE,
            {
                "steps_gd": _stats.mean(gd),
                "steps_noise": _stats.mean(noise),
                "never_escaped": censored,
            },
            id="noise_escape",
            kind="beyond",
        ),
        claim(
            f"Momentum ({cfg.momentum:g}) escapes in fewer steps than GD at the same lr "
            f"({cfg.learning_rate:g}), and than GD at lr / (1 - beta) = "
            f"{cfg.learning_rate / (1 - cfg.momentum):.3g}, its steady-state step",
            [_stats.paired_ratio(mom, gd), _stats.paired_ratio(mom, matched)],
            [
                Test(
                    "escape steps: momentum / GD at lr",
                    "<",
                    cfg.speedup,
                    ratio,
                    len(gd),
                    paired=True,
                ),
                Test(
                    "escape steps: momentum / GD at lr/(1-beta)",
                    "<",
                    1.0,
                    "the control: faster than GD taking momentum's larger effective step",
                    len(gd),
                    paired=True,
                ),
            ],
            SRC_MOMENTUM,
            {
                "steps_momentum": _stats.mean(mom),
                "steps_gd": _stats.mean(gd),
                "steps_gd_matched": _stats.mean(matched),
            },
            note="The second part is the control: it asks whether momentum gains more than "
            "GD given momentum's larger steady-state step lr/(1-beta); the regime map draws "
            "both ratios over beta",
            id="momentum_escape",
        ),
    ]


def geo_ratio(a, b) -> float:
    """Geometric mean over seeds of a / b (escape steps of two arms)."""
    return float(np.exp(np.mean(np.log(np.asarray(a, float) / np.asarray(b, float)))))


def drawn_path(points: np.ndarray) -> dict:
    """A path kept for the figure: to 1e-4 (a fraction of a pixel), each point that repeats
    the one before it left out (a path sitting in a minimum), as x and y lists."""
    q = np.round(np.asarray(points, float), 4)
    keep = np.r_[True, np.any(q[1:] != q[:-1], axis=1)]
    return {"x": q[keep, 0].tolist(), "y": q[keep, 1].tolist()}


def draw_paths(ax, examples: dict, cfg: Config) -> None:
    xs, ys = np.meshgrid(np.linspace(-1.6, 1.6, 200), np.linspace(-2, 2, 200))
    zs = xs**2 - ys**2 + ys**4 / 4
    ax.contour(xs, ys, zs, levels=25, cmap="Greys", linewidths=0.6)
    ax.contour(xs, ys, zs, levels=[cfg.escape_loss], colors="k", linestyles="--", linewidths=1)
    for label, pts in examples.items():
        ax.plot(pts["x"], pts["y"], ".-", ms=2, lw=0.8, label=f"{label}, seed 0")
    ax.plot(0, 0, "rx", ms=9, label="saddle (0, 0)")
    ax.plot([0, 0], [-np.sqrt(2), np.sqrt(2)], "rv", ms=8, label="minima (0, +-sqrt 2)")
    ax.set(xlim=(-1.6, 1.6), ylim=(-2, 2), xlabel="x", ylabel="y")
    ax.set_title(f"paths at lr {cfg.learning_rate:g} (dashed: f = {cfg.escape_loss:g}, escaped)")
    ax.legend(fontsize=8, loc="lower left")


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, ((ax, bx), (cx, dx)) = plt.subplots(2, 2, figsize=(13, 9))
    draw_paths(ax, metrics["drawn"]["paths"], cfg)
    lr, matched_lr = cfg.learning_rate, cfg.learning_rate / (1 - cfg.momentum)
    labels = (
        f"GD lr {lr:g}",
        f"GD lr {matched_lr:.3g}\n= lr/(1-beta)",
        f"GD lr {lr:g}\n+ noise {cfg.noise_std:g}",
        f"momentum {cfg.momentum:g}\nlr {lr:g}",
    )
    runs = [metrics[k] for k in ("gd", "gd_matched", "noise", "momentum")]
    bx.boxplot(runs, tick_labels=labels)
    bx.axhline(cfg.steps + 1, color="grey", ls=":", lw=0.8, label="never escaped (censored)")
    bx.set(ylabel="steps to escape", title=f"escape steps over {cfg.seeds} random starts")
    bx.legend(fontsize=8)
    bm, nm, gd = metrics["beta_map"], metrics["noise_map"], metrics["gd"]
    cx.plot(
        bm["beta"],
        [geo_ratio(t, gd) for t in bm["momentum"]],
        "o-",
        label=f"momentum / GD at lr {lr:g}",
    )
    cx.plot(
        bm["beta"],
        [geo_ratio(a, b) for a, b in zip(bm["momentum"], bm["gd_matched"], strict=True)],
        "s-",
        label="momentum / GD at lr/(1-beta) (the control)",
    )
    cx.axhline(cfg.speedup, color="k", ls="--", lw=0.8, label=f"claimed ratio {cfg.speedup:g}")
    cx.axhline(1.0, color="grey", ls=":", lw=0.8, label="1: as fast")
    cx.set(
        xlabel="momentum beta",
        ylabel="escape steps, ratio (geometric mean)",
        title=f"regime map over beta, lr {lr:g} (a drop: GD at lr/(1-beta) unstable)",
    )
    cx.legend(fontsize=8)
    stds = nm["noise_std"]
    xs = [max(s, min(v for v in stds if v > 0) / 10) for s in stds] if any(stds) else stds
    dx.semilogx(
        xs,
        [geo_ratio(t, gd) for t in nm["noise"]],
        "^-",
        color="tab:green",
        label=f"GD + noise / GD, lr {lr:g}",
    )
    dx.axhline(cfg.speedup, color="k", ls="--", lw=0.8, label=f"claimed ratio {cfg.speedup:g}")
    dx.axvline(
        max(cfg.noise_std, xs[0]),
        color="k",
        ls=":",
        lw=0.8,
        label=f"claims' noise {cfg.noise_std:g}",
    )
    dx.set(
        xlabel="gradient noise std (leftmost point: no noise)",
        ylabel="escape steps, ratio (geometric mean)",
        title="regime map over the noise level",
    )
    dx.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "saddle_escape")


def main(cfg: Config, out_dir: Path) -> dict:
    metrics, examples = measure(cfg)
    c = hessian.classify(saddle, jnp.zeros(2))
    metrics["classify_origin"] = {
        "kind": c.kind,
        "eigenvalues": c.eigenvalues,
        "grad_norm": c.grad_norm,
    }
    metrics["linear_net"] = linear_net_saddle(cfg.seed)
    metrics["drawn"] = {"paths": {k: drawn_path(p) for k, p in examples.items()}}
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
