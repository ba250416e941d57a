"""Critical points of digit-classifying networks, reached from points along training.

Li Hongyi's experiment, done with distinct points as the unit. Many small networks (tanh MLPs of
several widths on several numbers of real digits, several seeds) are trained, and from two
points of each run ``hessian.find_critical`` (Newton-MR in float64, which converges to saddles
as to minima; where the gradient lies in the Hessian's near-null space it walks downhill along
it and resumes) drives the gradient to zero: the *trained* point, where descent stops (Adam,
then L-BFGS, which goes on downhill to where the gradient vanishes), and an *early* point (a
few Adam steps: still on the plateau around the start). The claims are about the trained points
(the lecture's question: where training gets stuck, is it a minimum or a saddle?); the early
ones fill in the high-loss end of the scatter and are counted beside. Each critical point is
classified from its full Hessian spectrum (``hessian.classify``, dense: the minimum ratio, the
share of positive eigenvalues, is exact) and placed on the scatter of training loss against the
minimum ratio. Searches that do not reach a critical point are shown apart and count for
nothing. Networks of one width on one data size share one loss, whatever the seed: their points
count once when losses agree to ``distinct_rtol`` with the same number of negative eigenvalues
(mirror images under the network's symmetries share both).

A third start plants saddles where training ends. Swapping two hidden units leaves the loss
unchanged, so a network trained from an initialisation whose first and last hidden units are
equal keeps them equal (its gradient is tied too), and where its training stops is a critical
point of the whole loss: the best of a network one unit narrower, which may curve down across
the tie (Fukumizu & Amari 2000). These *tied* points are saddles by construction when they are
saddles at all, so they are left out of the shares below; they give the escape comparison
saddles at the loss where training ends, beside the plateau saddles of the early starts.

The loss is cross-entropy plus ``weight_decay / 2 |theta|^2``: on separable data cross-entropy
alone has no minimum at all (it falls towards 0 as the weights grow), so without the L2 term a
"minimum" could never be found and "minima are rare" could not fail.

Two positive controls come first. (1) A function whose critical points are all known,
f(theta) = sum_i c_i ((Q theta)_i^2 - 1)^2 / 4 with a random rotation Q and weights c_i: its
critical points are z = Q theta in {-1, 0, 1}^d, a minimum where no z_i is 0, the maximum at
z = 0, saddles elsewhere; the same search from random starts must find minima and saddles and
call each right. (2) Width 0, softmax regression on the same data and loss: strictly convex, so
its one critical point is the minimum, and every point the search reaches must be called a
minimum. Only if both pass are the network's counts a test. Width 0 for the networks too is the
sabotage under which "minima are rare" must fail.

At each distinct saddle, a step along the most negative curvature (the better sign) is compared
with random directions and with the gradient direction at the same length
(``hessian.escape_compare``: the quadratic model's length for a fall of ``escape_drop`` of the
loss, capped at ``escape_cap`` times |theta|, then halved until the loss falls by at least
``escape_trust`` of the model's fall). Gradient descent then trains on from the escape
and from a random step of the same length, and the steps each needs to leave the saddle are
compared (``train_on``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from pathlib import Path

import jax
import jax.flatten_util
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from jaxopt_notes.experiments import _plot, _stats
from jaxopt_notes.experiments._claims import INCONCLUSIVE, Source, Test, check, claim
from jaxopt_notes.experiments._common import save_figure
from jaxopt_notes.experiments._config import param

from jaxopt_notes import data as data_lib
from jaxopt_notes import hessian

SUMMARY = (
    "Critical points of tanh MLPs on the digits, reached from points along training and "
    "counted once each: minima, saddles and escapes"
)
DATA = (
    "scikit-learn's 8x8 digits (real images): the first n of the 1,437 training images, "
    "pixels / 255; the positive control is a synthetic function with known critical points"
)
QUICK_NOTE = (
    "Quick runs 2 widths x 2 data sizes x 2 seeds (default 3 x 2 x 4) with a smaller budget "
    "per search: fewer distinct points, wider intervals; a claim may stay inconclusive where "
    "the default decides it."
)
KINDS = ("minimum", "saddle", "degenerate", "maximum", "not_critical")
PLURAL = {"minimum": "minima", "saddle": "saddles"}
STARTS = ("early", "trained", "tied")

LI = "002_3498af5075c2b1b1.txt"
LI_REF = "Li Hongyi, ML 2021 lecture 'When gradient is small' (minimum ratio experiment)"
SRC_RARE = Source(
    LI,
    "局部最小与鞍点",
    "先给出答案 saddle point更常见，local minima 很少很少",
    "The answer first: saddle points are more common, local minima are very, very rare",
    LI_REF,
)
SRC_KINDS = Source(
    LI,
    "局部最小与鞍点",
    "Hessian矩阵**正定**(特征值全大于0):**极小值点**",
    "Hessian positive definite (all eigenvalues > 0): a local minimum",
    LI_REF,
)
SRC_ESCAPE = Source(
    LI,
    "局部最小与鞍点",
    "**找出负的特征值**（saddle point 特征值有正有负）顺着 u 的方向更新，就可以让loss变小。",
    "Find a negative eigenvalue (a saddle's eigenvalues have both signs) and update along its "
    "eigenvector u: the loss goes down",
    LI_REF,
)


@dataclasses.dataclass(frozen=True)
class Config:
    seed: int = 0
    widths: tuple = param((4, 8, 16), low=0, help="hidden tanh units; 0: softmax regression")
    sizes: tuple = param((100, 400), low=10, high=1437, help="training digits per network")
    seeds: int = param(4, low=1, help="networks (initialisations) per width and size")
    early_steps: int = param(10, low=0, help="Adam steps of the 'early' start (the plateau)")
    adam_steps: int = param(1000, low=0, help="Adam steps of the 'trained' start")
    lbfgs_steps: int = param(500, low=0, help="L-BFGS steps after Adam: where descent stops")
    adam_lr: float = 1e-2
    weight_decay: float = param(1e-3, low=0.0, low_open=True, help="L2 term: minima exist")
    rtol: float = param(1e-8, low=0.0, low_open=True, help="critical: |g| <= rtol |g_init|")
    max_hvps: int = param(5000, low=1, help="Hessian-vector products per search")
    flat_descents: int = param(10, low=0, help="downhill walks out of gradient-flat regions")
    tied: bool = param(True, help="also train networks whose first and last hidden units are tied")
    eig_rtol: float = param(1e-6, low=0.0, help="|eigenvalue| below this x max: zero")
    control_dim: int = 3
    control_seeds: int = 32
    max_minimum_share: float = param(0.2, low=0.0, high=1.0)
    min_saddle_share: float = param(0.5, low=0.0, high=1.0)
    distinct_rtol: float = param(1e-6, low=0.0, help="losses this close: one critical point")
    escape_drop: float = param(0.01, low=0.0, low_open=True, help="model fall, share of loss")
    escape_cap: float = param(0.05, low=0.0, low_open=True, help="longest step, x |theta|")
    escape_trust: float = param(
        0.5, low=0.0, high=1.0, low_open=True, high_open=True, help="fall / model's, at least"
    )
    escape_random: int = param(8, low=1, help="random directions per saddle")
    train_on_steps: int = param(1000, low=1, help="gradient steps after each escape")
    plateau_drop: float = param(
        0.5, low=0.0, low_open=True, high=1.0, help="share of the fall to the lower end loss"
    )
    min_saddles: int = param(5, low=1, help="fewer saddles: the escape claim is inconclusive")

    @classmethod
    def quick(cls) -> Config:
        return cls(widths=(4, 8), seeds=2, max_hvps=3000, control_seeds=16)

    @classmethod
    def tiny(cls) -> Config:
        return cls(
            widths=(4,),
            sizes=(100,),
            seeds=2,
            max_hvps=1500,
            control_seeds=12,
            escape_random=4,
        )


def batch_loss(params: dict, batch: tuple, weight_decay: float) -> jax.Array:
    """Cross-entropy of a 64-width-10 tanh MLP (no hidden layer when there is no ``w1``) plus
    ``weight_decay / 2 |params|^2``."""
    x, y = batch
    h = jnp.tanh(x @ params["w1"] + params["b1"]) if "w1" in params else x
    logits = h @ params["w2"] + params["b2"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return ce + 0.5 * weight_decay * sum(jnp.sum(v**2) for v in jax.tree.leaves(params))


def init_params(key: jax.Array, width: int) -> dict:
    """LeCun-normal weights, zero biases (width 0: the linear model's weights only)."""
    k1, k2 = jax.random.split(key)
    fan = width or 64
    params = {
        "w2": jax.random.normal(k2, (fan, 10), jnp.float64) / math.sqrt(fan),
        "b2": jnp.zeros(10, jnp.float64),
    }
    if width:
        params["w1"] = jax.random.normal(k1, (64, width), jnp.float64) / 8.0
        params["b1"] = jnp.zeros(width, jnp.float64)
    return params


def digits(n: int) -> tuple[jax.Array, jax.Array]:
    d = data_lib.load_digits()
    x = d.x_train[:n].reshape(n, -1).astype(np.float64) / 255.0
    return jnp.asarray(x), jnp.asarray(d.y_train[:n])


TIED = (("w1", 1), ("b1", 0), ("w2", 0))  # (leaf, axis of the hidden units)


def tie(params: dict) -> dict:
    """The last hidden unit made a copy of the first (incoming weights, bias, outgoing weights).
    Swapping two hidden units leaves the loss unchanged, so the gradient at a tied network is
    tied too: training from here stays in the subspace of networks with the two units equal,
    and where it stops is a critical point of the whole loss whose Hessian may curve down
    across the subspace (Fukumizu & Amari 2000: the saddles a narrower network embeds)."""
    out = dict(params)
    for leaf, axis in TIED:
        first = jnp.take(params[leaf], jnp.array([0]), axis=axis)
        out[leaf] = jnp.concatenate([jnp.delete(params[leaf], -1, axis=axis), first], axis=axis)
    return out


def symmetrise(params: dict) -> dict:
    """The tied units both set to their mean: rounding can part them by ~1e-16, and the search
    should start exactly on the subspace."""
    out = dict(params)
    for leaf, axis in TIED:
        ends = jnp.array([0, params[leaf].shape[axis] - 1])
        mean = jnp.take(params[leaf], ends, axis=axis).mean(axis=axis, keepdims=True)
        index = (slice(None),) * axis + (ends,)
        out[leaf] = params[leaf].at[index].set(jnp.repeat(mean, 2, axis=axis))
    return out


def start_points(batch, fn, cfg: Config):
    """``starts(params) -> {"early": ..., "trained": ...}`` for one data set, compiled once:
    early is ``cfg.early_steps`` of full-batch Adam (still on the plateau of the start);
    trained is ``cfg.adam_steps`` of Adam and then ``cfg.lbfgs_steps`` of L-BFGS, which goes
    on downhill to where descent stops (Adam at a constant rate keeps hovering around it)."""
    loss = functools.partial(fn, batch=batch)
    adam, lbfgs = optax.adam(cfg.adam_lr), optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def adam_run(carry, steps):
        def body(c, _):
            u, s = adam.update(jax.grad(loss)(c[0]), c[1])
            return (optax.apply_updates(c[0], u), s), None

        return jax.lax.scan(body, carry, None, steps)[0]

    def lbfgs_body(c, _):
        v, g = value_and_grad(c[0], state=c[1])
        u, s = lbfgs.update(g, c[1], c[0], value=v, grad=g, value_fn=loss)
        return (optax.apply_updates(c[0], u), s), None

    @jax.jit
    def starts(p):
        early = adam_run((p, adam.init(p)), cfg.early_steps)
        q = adam_run(early, max(cfg.adam_steps - cfg.early_steps, 0))[0]
        q = jax.lax.scan(lbfgs_body, (q, lbfgs.init(q)), None, cfg.lbfgs_steps)[0][0]
        return {"early": early[0], "trained": q}

    return starts


def classify_found(loss, found, scale: float, cfg: Config) -> dict:
    """One search's end: its kind from the full spectrum (``not_critical`` unless its gradient
    is within ``cfg.rtol * scale``), loss, minimum ratio."""
    row = {
        "status": found.status,
        "loss": found.loss,
        "grad_norm": found.grad_norm,
        "grad_scale": scale,
        "num_hvps": found.num_hvps,
        "flat_descents": found.flat_descents,
        "seconds": found.seconds,
    }
    c = hessian.classify(
        loss,
        found.params,
        grad_scale=scale,
        grad_rtol=cfg.rtol,
        eig_rtol=cfg.eig_rtol,
        density_probes=0,
    )
    return row | {
        "kind": c.kind,
        "minimum_ratio": c.minimum_ratio,
        "num_negative": c.num_negative,
        "num_near_zero": c.num_near_zero,
        "smallest_eigenvalue": float(c.eigenvalues.min()),
        "largest_eigenvalue": float(c.eigenvalues.max()),
    }


def grad_norm(loss, params) -> float:
    return float(optax.global_norm(jax.grad(loss)(params)))


def search(loss, params, scale: float, cfg: Config) -> tuple[dict, dict]:
    """Newton-MR from ``params`` to ``|g| <= cfg.rtol * scale``: the scale is the gradient at
    the network's initialisation, not at the start of the search (after L-BFGS that is already
    tiny, and a tolerance relative to it falls below float64's floor)."""
    found = hessian.find_critical(
        loss,
        params,
        rtol=cfg.rtol,
        atol=cfg.rtol * scale,
        max_iter=300,
        max_hvps=cfg.max_hvps,
        inner_max_iter=300,
        flat_descents=cfg.flat_descents,
    )
    return classify_found(loss, found, scale, cfg), found.params


def network_survey(cfg: Config, widths: tuple | None = None) -> tuple[list[dict], list]:
    """Every network of ``widths`` x ``cfg.sizes`` x ``cfg.seeds``, searched from its early
    and its trained point, and (``cfg.tied``) from where its tied twin's training stops."""
    rows, params_found = [], []
    fn = functools.partial(batch_loss, weight_decay=cfg.weight_decay)  # one: compiled once
    for width in cfg.widths if widths is None else widths:
        for n in cfg.sizes:
            batch = digits(n)
            loss = hessian.over_dataset(fn, batch, batch_size=n)
            starts = start_points(batch, fn, cfg)
            for s in range(cfg.seeds):
                key = jax.random.fold_in(jax.random.key(cfg.seed), 1000 * width + s)
                init = init_params(key, width)
                scale = grad_norm(loss, init)
                points = starts(init)
                if cfg.tied and width >= 2:
                    points["tied"] = symmetrise(starts(tie(init))["trained"])
                for start, params in points.items():
                    row, found = search(loss, params, scale, cfg)
                    where = {"width": width, "examples": n, "seed": s, "start": start}
                    rows.append(row | where | {"problem": f"width {width}, {n} digits"})
                    params_found.append((loss, found, functools.partial(fn, batch=batch)))
    return rows, params_found


def make_control(cfg: Config):
    """The known-critical-point function (module docstring): ``(loss, to_z, c)``."""
    kq, kc = jax.random.split(jax.random.key(cfg.seed + 7))
    q, _ = jnp.linalg.qr(jax.random.normal(kq, (cfg.control_dim, cfg.control_dim), jnp.float64))
    c = jax.random.uniform(kc, (cfg.control_dim,), jnp.float64, 0.5, 2.0)

    def loss(theta: jax.Array) -> jax.Array:
        return jnp.sum(c * ((q @ theta) ** 2 - 1) ** 2) / 4

    return loss, lambda theta: q @ theta


def true_kind(z: np.ndarray) -> str:
    """The kind of the control's critical point at the lattice point z in {-1, 0, 1}^d."""
    zeros = int(np.sum(np.round(z) == 0))
    return "minimum" if zeros == 0 else "maximum" if zeros == len(z) else "saddle"


def distinct(points: list[dict], rtol: float) -> list[dict]:
    """The critical points once each: one representative per group of points of one loss
    (``problem``) with one kind, one count of negative eigenvalues and losses equal to
    ``rtol``; ``searches`` says how many searches reached the group."""
    groups: list[dict] = []
    for p in sorted(points, key=lambda p: p["loss"]):
        if p["kind"] == "not_critical":
            continue
        for g in groups:
            same = g["kind"] == p["kind"] and g["num_negative"] == p["num_negative"]
            same = same and g.get("problem") == p.get("problem")  # one loss function
            if same and abs(g["loss"] - p["loss"]) <= rtol * max(abs(g["loss"]), 1e-12):
                g["searches"] += 1
                break
        else:
            groups.append(p | {"searches": 1})
    return groups


def every_saddle(points: list[dict], cfg: Config) -> list[dict]:
    """The distinct saddles of every start, tied ones included: where escapes() steps."""
    return [u for u in distinct(points, cfg.distinct_rtol) if u["kind"] == "saddle"]


def counts(points: list[dict]) -> dict[str, int]:
    return {k: sum(p["kind"] == k for p in points) for k in KINDS}


def share(k: int, n: int) -> _stats.Estimate:
    """A Wilson share, not finite when there is nothing to share (no critical point)."""
    if n == 0:
        return _stats.Estimate(math.nan, math.nan, math.nan, 0, math.nan, "no critical point")
    return _stats.proportion(k, n)


def control_survey(cfg: Config) -> list[dict]:
    """The search from random starts on the known function; each point with the truth at its
    nearest lattice point."""
    loss, to_z = make_control(cfg)
    keys = jax.random.split(jax.random.key(cfg.seed + 2), cfg.control_seeds)
    points = []
    for k in keys:
        theta = jax.random.normal(k, (cfg.control_dim,), jnp.float64)
        row, theta = search(loss, theta, grad_norm(loss, theta), cfg)
        z = np.asarray(to_z(jnp.asarray(theta)))
        lattice = np.clip(np.round(z), -1, 1)
        row["distance_to_lattice"] = float(np.abs(z - lattice).max())
        row["true_kind"] = true_kind(lattice)
        row["problem"] = "control"
        points.append(row)
    return points


def control_result(points: list[dict]) -> dict:
    """Does the search find minima and saddles of the known function, and call each right?"""
    critical = [p for p in points if p["kind"] != "not_critical"]
    wrong = [p for p in critical if p["distance_to_lattice"] >= 1e-6 or p["kind"] != p["true_kind"]]
    at_known = [p for p in points if p["distance_to_lattice"] < 1e-6]
    missed = [p for p in at_known if p["kind"] == "not_critical"]
    c = counts(critical)
    return {
        "starts": len(points),
        "critical": len(critical),
        "minima_found": c["minimum"],
        "saddles_found": c["saddle"],
        "maxima_found": c["maximum"],
        "misclassified": len(wrong),
        "at_a_known_point_but_not_critical": len(missed),
        "passed": c["minimum"] > 0 and c["saddle"] > 0 and not wrong and not missed,
    }


def convex_result(points: list[dict]) -> dict:
    """Softmax regression (strictly convex): every point reached must be called a minimum."""
    critical = [p for p in points if p["kind"] != "not_critical"]
    c = counts(critical)
    return {
        "searches": len(points),
        "critical": len(critical),
        "minima_found": c["minimum"],
        "other_kinds": len(critical) - c["minimum"],
        "passed": len(critical) > 0 and c["minimum"] == len(critical),
    }


def gated(entry: dict, controls: dict) -> dict:
    """A claim whose positive controls failed is not a test: inconclusive, saying why."""
    failed = [name for name, c in controls.items() if not c["passed"]]
    if not failed:
        return entry
    why = (
        f"the positive control(s) {', '.join(failed)} failed, so the survey has not shown it "
        "can find and tell minima and saddles; measured: "
    )
    return entry | {"verdict": INCONCLUSIVE, "reason": why + entry["reason"]}


def escapes(saddles: list, cfg: Config) -> list[dict]:
    """At each distinct saddle: the loss fall along negative curvature and along the controls,
    all at one length; then gradient descent from the escape and from a random step of the
    same length (``train_on``)."""
    out = []
    for i, (loss, params, plain) in enumerate(saddles):
        norm = float(optax.global_norm(params))
        key = jax.random.fold_in(jax.random.key(cfg.seed + 3), i)
        e = hessian.escape_compare(
            loss,
            params,
            model_drop=cfg.escape_drop,
            num_random=cfg.escape_random,
            key=key,
            eig_rtol=cfg.eig_rtol,
            max_length=cfg.escape_cap * norm,
            trust=cfg.escape_trust,
        )
        best_control = max(float(e.random_decrease.max()), e.gradient_decrease)
        out.append(
            {
                "loss": e.loss,
                "eigenvalue": e.eigenvalue,
                "length": e.length,
                "halvings": e.halvings,
                "escape": max(e.escape_decrease),
                "best_random": float(e.random_decrease.max()),
                "gradient": e.gradient_decrease,
                "margin": max(e.escape_decrease) - best_control,
                "line": {k: np.asarray(v).tolist() for k, v in e.line.items()},
                **train_on(plain, params, e, key, cfg),
            }
        )
    return out


def train_on(plain, params, e, key, cfg: Config) -> dict:
    """Gradient descent (rate 0.5 / lambda_max at the saddle) from the escape point and from
    a random step of the same length: the steps until the loss has made ``plateau_drop`` of
    its way from the saddle's down to the lower of the two runs' final losses (the plateau
    ends; ``train_on_steps + 1`` when it never does, or when neither run falls below the
    saddle). The goal is one for both runs: a saddle beside a minimum a little lower has a
    plateau as short as that fall."""
    sign = 1.0 if e.escape_decrease[0] >= e.escape_decrease[1] else -1.0
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    v = jax.flatten_util.ravel_pytree(e.direction)[0]
    u = jax.random.normal(jax.random.fold_in(key, 11), flat.shape, flat.dtype)
    lr = 0.5 / e.largest_eigenvalue  # half the saddle's stable rate: curvature grows away

    @jax.jit
    def descend(x):
        def body(x, _):
            return x - lr * jax.grad(lambda y: plain(unravel(y)))(x), plain(unravel(x))

        return jax.lax.scan(body, x, None, cfg.train_on_steps)[1]

    curves = {
        "escape": descend(flat + sign * e.length * v),
        "random": descend(flat + e.length * u / jnp.linalg.norm(u)),
    }

    end = min(float(c[-1]) for c in curves.values())
    target = e.loss - cfg.plateau_drop * (e.loss - end) if end < e.loss else -np.inf

    def steps(curve):
        below = np.flatnonzero(np.asarray(curve) <= target)
        return int(below[0]) if below.size else cfg.train_on_steps + 1

    return {
        "steps_escape": steps(curves["escape"]),
        "steps_random": steps(curves["random"]),
        "curves": {
            k: np.asarray(c)[:: max(1, cfg.train_on_steps // 200)].tolist()
            for k, c in curves.items()
        },
    }


def rare_test(cfg: Config, n: int) -> Test:
    return Test(
        "share of minima among critical points",
        "<",
        cfg.max_minimum_share,
        "pre-stated: one in five, for 'very, very rare'",
        n,
        unit="distinct critical points",
    )


def common_test(cfg: Config, n: int) -> Test:
    return Test(
        "share of saddles among critical points",
        ">",
        cfg.min_saddle_share,
        "pre-stated: a majority, for 'more common'",
        n,
        unit="distinct critical points",
    )


def claims(metrics: dict, cfg: Config) -> list[dict]:
    """The two positive controls, the two shares (gated on the controls), the escape."""
    escape = escape_claim(metrics, cfg)
    return control_checks(metrics, cfg) + share_claims(metrics, cfg) + escape


def control_checks(metrics: dict, cfg: Config) -> list[dict]:
    return [
        check(
            f"Positive control: on sum c_i((Q theta)_i^2 - 1)^2/4 in {cfg.control_dim} dimensions "
            "(known minima, saddles, maximum) the search finds minima and saddles and "
            "hessian.classify calls every critical point it reaches what it is",
            metrics["control"]["passed"],
            {k: v for k, v in metrics["control"].items() if k != "passed"},
            SRC_KINDS,
            id="control_finds_both",
        ),
        check(
            "Positive control: on softmax regression with the same data and loss (strictly "
            "convex) every critical point the search reaches is called a minimum",
            metrics["convex"]["passed"],
            {k: v for k, v in metrics["convex"].items() if k != "passed"},
            SRC_KINDS,
            id="convex_control",
        ),
    ]


def share_claims(metrics: dict, cfg: Config) -> list[dict]:
    """ "Minima are rare" and "saddles are common" over the distinct points where training
    stops; beside them, with the early starts' points too (never the planted tied ones)."""
    controls = {"known function": metrics["control"], "convex model": metrics["convex"]}
    trained = [p for p in metrics["points"] if p.get("start", "trained") == "trained"]
    free = [p for p in metrics["points"] if p.get("start") != "tied"]
    unique, every = distinct(trained, cfg.distinct_rtol), distinct(free, cfg.distinct_rtol)
    c, n = counts(unique), len(unique)  # the unit: distinct critical points, not searches
    c_all, n_all = counts(every), len(every)
    evidence = {
        "distinct critical points where training stops": n,
        "distinct, by kind": {k: v for k, v in c.items() if k != "not_critical"},
        "searches from trained points": len(trained),
        "of them ending at a critical point": len(trained) - counts(trained)["not_critical"],
        "networks": f"widths {list(cfg.widths)} x digits {list(cfg.sizes)} x {cfg.seeds} seeds",
        "distinct critical points, early starts included": n_all,
        "controls passed": {k: v["passed"] for k, v in controls.items()},
    }
    where = (
        "among the distinct critical points that Newton-MR reaches from where training stops "
        "(Adam, then L-BFGS) on tanh MLPs on the digits"
    )
    with_early = (
        "counting the critical points reached from the early (plateau) starts too (not the "
        "tied starts: their saddles are planted)"
    )
    out = []
    for kind, sentence, test, id_ in (
        ("minimum", f"Local minima are rare: {where}, at most {cfg.max_minimum_share:.0%} are "
         "minima", rare_test, "minima_rare"),
        ("saddle", f"Saddle points are common: {where}, more than {cfg.min_saddle_share:.0%} "
         "are saddles", common_test, "saddles_common"),
    ):  # fmt: skip
        also = {with_early: (share(c_all[kind], n_all), test(cfg, n_all))}
        entry = claim(sentence, share(c[kind], n), test(cfg, n), SRC_RARE, evidence, id=id_,
                      also=also)  # fmt: skip
        out.append(gated(entry, controls))
    return out


def escape_claim(metrics: dict, cfg: Config) -> list[dict]:
    """At every distinct saddle (tied ones too): does the escape lower the loss, and more
    than every control? Inconclusive under ``cfg.min_saddles`` saddles; none without one."""
    esc = metrics["escapes"]
    if not esc:
        return []
    # positive only where the escape lowers the loss *and* lowers it more than every control
    margins = [min(e["escape"], e["margin"]) for e in esc]
    found = [u.get("start") for u in every_saddle(metrics["points"], cfg)]
    median = {k: float(np.median([e[k] for e in esc])) for k in ("steps_escape", "steps_random")}
    entry = claim(
        "At a saddle of a network, a step along the eigenvector of the most negative "
        "eigenvalue lowers the loss more than a step of the same length along random "
        "directions or along the gradient",
        _stats.bootstrap(margins),
        Test(
            "min(escape fall, escape fall - best control's fall), mean over saddles",
            ">",
            0.0,
            "the sentence: the step along u lowers the loss (more than not knowing u)",
            len(margins),
            unit="distinct saddles",
        ),
        SRC_ESCAPE,
        {
            "saddles": len(margins),
            "saddles by start": {st: found.count(st) for st in STARTS},
            "escape beats every control": int(sum(e["margin"] > 0 for e in esc)),
            "escape step lowers the loss": int(sum(e["escape"] > 0 for e in esc)),
            "step length rule": f"model fall {cfg.escape_drop:g} x loss, capped at "
            f"{cfg.escape_cap:g} x |theta|, halved until the loss falls by "
            f"{cfg.escape_trust:g} x the model's fall",
            f"GD steps to {cfg.plateau_drop:.0%} of the fall (median), from the escape": median[
                "steps_escape"
            ],
            "... from a random step of the same length": median["steps_random"],
            "saddles where the escape ends the plateau sooner": int(
                sum(e["steps_escape"] < e["steps_random"] for e in esc)
            ),
        },
        id="escape_beats_controls",
    )
    if len(margins) < cfg.min_saddles:
        entry |= {
            "verdict": INCONCLUSIVE,
            "reason": f"only {len(margins)} distinct saddles (fewer than the pre-stated "
            f"{cfg.min_saddles}): too few to tell; measured: " + entry["reason"],
        }
    return [entry]


COLORS = {
    "minimum": "tab:green",
    "saddle": "tab:red",
    "degenerate": "tab:blue",
    "maximum": "tab:purple",
    "not_critical": "lightgrey",
}


def draw(metrics: dict, cfg: Config, out_dir: Path) -> str:
    fig, (ax, bx, cx, dx) = plt.subplots(1, 4, figsize=(24, 5))
    unique = metrics["distinct"]
    for kind in KINDS[:4]:
        for start, marker in zip(STARTS, ("^", "o", "s"), strict=True):
            pts = [p for p in unique if p["kind"] == kind and p["start"] == start]
            if pts:
                ax.scatter(
                    [p["minimum_ratio"] for p in pts],
                    [p["loss"] for p in pts],
                    s=26,
                    marker=marker,
                    color=COLORS[kind],
                    edgecolor="k",
                    lw=0.3,
                    label=f"{PLURAL.get(kind, kind)} from {start} starts ({len(pts)})",
                )
    ax.axvline(1.0, color="tab:green", ls=":", lw=0.8, label="ratio 1: a minimum")
    ax.set_yscale("log")
    ax.set(
        xlabel="minimum ratio = share of positive Hessian eigenvalues (exact)",
        ylabel="training loss (cross-entropy + L2)",
        title=f"{len(unique)} distinct critical points of tanh MLPs on the digits",
    )
    ax.legend(fontsize=8)
    starts = [st for st in STARTS if any(p["start"] == st for p in metrics["points"])]
    pos = np.arange(len(starts))
    bottom = np.zeros(len(starts))
    for kind in KINDS:
        h = np.array(
            [
                sum(p["kind"] == kind and p["start"] == st for p in metrics["points"])
                for st in starts
            ]
        )
        label = "no critical point reached" if kind == "not_critical" else PLURAL.get(kind, kind)
        bx.bar(pos, h, bottom=bottom, color=COLORS[kind], edgecolor="k", lw=0.3, label=label)
        bottom += h
    names = {
        "early": f"early:\n{cfg.early_steps} Adam steps",
        "trained": f"trained:\n{cfg.adam_steps} Adam\n+ {cfg.lbfgs_steps} L-BFGS",
        "tied": "tied: trained with\ntwo hidden units\nequal",
    }
    bx.set_xticks(pos, [names[st] for st in starts])
    bx.set(
        xlabel="where each search started",
        ylabel="searches (before counting points once)",
        title="where each search ended",
    )
    bx.legend(fontsize=8)
    esc = metrics["escapes"]
    if esc:
        i = np.arange(len(esc))
        cx.scatter(i, [e["escape"] for e in esc], color="tab:red", label="along negative curvature")
        cx.scatter(
            i,
            [e["best_random"] for e in esc],
            color="tab:gray",
            marker="x",
            label=f"best of {cfg.escape_random} random directions",
        )
        cx.scatter(
            i, [e["gradient"] for e in esc], color="tab:blue", marker="+", label="along -gradient"
        )
        cx.axhline(0, color="k", lw=0.6)
        cx.set_xticks(i)
        cx.margins(y=0.2)
        cx.set_yscale("symlog", linthresh=1e-6)
    cx.set(
        xlabel="distinct saddle",
        ylabel="loss fall at one step length (positive: down)",
        title="escaping each saddle, against controls at the same length",
    )
    if esc:
        cx.legend(fontsize=8)
    never = cfg.train_on_steps + 1
    for k, (key, color, marker, label) in enumerate(
        (
            ("steps_escape", "tab:red", "o", "from the escape step"),
            ("steps_random", "tab:gray", "x", "from a random step of the same length"),
        )
    ):
        dx.scatter(
            np.arange(len(esc)) + 0.15 * (k - 0.5),
            [e[key] for e in esc],
            color=color,
            marker=marker,
            label=label,
        )
    dx.axhline(never, color="k", lw=0.6, ls=":", label=f"not within {cfg.train_on_steps} steps")
    dx.set_yscale("symlog", linthresh=1)
    dx.set_ylim(0, 2 * never)  # room above the "never" line for its markers
    dx.set(
        xlabel="distinct saddle",
        ylabel=f"steps to {cfg.plateau_drop:.0%} of the fall to the lower end loss",
        title="training on: when the plateau ends (rate 0.5 / lambda_max at the saddle)",
    )
    if esc:
        dx.set_xticks(np.arange(len(esc)))
        dx.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, out_dir, "critical_points")


def main(cfg: Config, out_dir: Path) -> dict:
    with jax.enable_x64(True):
        control = control_survey(cfg)  # first: can the pipeline see minima and saddles at all?
        convex = network_survey(cfg, widths=(0,))[0]
        points, found = network_survey(cfg)
        points = [p | {"index": i} for i, p in enumerate(points)]
        unique = distinct(points, cfg.distinct_rtol)
        saddles = [found[u["index"]] for u in every_saddle(points, cfg)]
        escape_rows = escapes(saddles, cfg)
    keep = ("kind", "loss", "minimum_ratio", "num_negative", "searches", "problem", "start")
    metrics = {
        "distinct": [{k: u[k] for k in keep} for u in unique],
        "control": control_result(control),
        "convex": convex_result(convex),
        "points": points,
        "control_points": control,
        "convex_points": convex,
        "escapes": escape_rows,
    }
    figures = [draw(_plot.stored(metrics), cfg, out_dir)]  # as `experiments plot` redraws
    return {"metrics": metrics, "claims": claims(metrics, cfg), "figures": figures}
