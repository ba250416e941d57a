"""Benchmark of the Hessian tools against PyHessian, at matched true accuracy. Never a test.

Losses (mean softmax cross-entropy, float32, the same weights in every implementation):

* ``classic_lenet``: LeCun's LeNet-5 (sigmoid, 2x2 average pooling) written by hand with
  ``lax.conv_general_dilated``, as a Flax user would, on the first ``lenet_examples`` mnist5k
  training images; its weights are those of ``models.LeNet(rngs=nnx.Rngs(0))``;
* ``models_lenet``: :class:`jaxopt_notes.models.LeNet` itself (its own conv kernel) on the same
  images and weights: the two are one function, so one float64 reference serves both;
* ``mlp``: a tanh MLP 64-35-10 (2,635 parameters) on the 1,797 scikit-learn digits.

PyHessian 0.1 (torch, CPU) gets a ``torch.nn`` twin with the same weights (checked: equal loss).
For the top eigenvalue each side runs a ladder of its own stopping tolerances and the loosest
one whose answer is within ``TARGET`` (relative) of a converged float64 Lanczos reference is
timed: matched *true* accuracy, since neither side's ``tol`` is its error. The trace is timed
per Hutchinson probe (same estimator: matched standard error at equal probes); PyHessian's
``density`` is tried and its failure recorded; ours (SLQ, 1 probe x 100 steps, as PyHessian's
default) is timed against 100 of our jitted HVPs. ``loops`` times Lanczos steps driven from the
host against one compiled ``while_loop``. Every time is the median of ``reps`` interleaved
repeats (each side once per round), taken after a warm-up call with *other* parameters, so no
compilation is timed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxopt_notes.benchmarks.hessian_losses import (
    classic_lenet_apply,
    cross_entropy,
    digits,
    lenet_weights,
    mlp_batch_loss,
    mlp_loss_in,
    mlp_problem,
    mnist_batch,
)
from jaxopt_notes.benchmarks.hessian_peer import Peer, pyhessian_version
from jaxopt_notes.benchmarks.hessian_peer import torch_lenet as torch_lenet  # bench.train's import

from jaxopt_notes import hessian, models

TARGET = 1e-3  # relative error of the top eigenvalue against the float64 reference
OUR_TOLS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 1e-4)
PEER_TOLS = (1e-3, 1e-4, 1e-5, 1e-6)
POWER_TOLS = (1e-3, 1e-4, 1e-5, 1e-6)
TRACE_RTOLS = (0.1, 0.05, 0.02)  # standard errors, relative to the trace, to reach


def _settings(quick: bool) -> dict:
    if quick:
        return {
            "lenet_examples": 16,
            "reps": 1,
            "trace_probes": 4,
            "trace_pilot": 10,
            "deflate": 4,
            "trace_cap": 100,
            "density_iter": 8,
            "loop_steps": 4,
            "mlp_examples": 64,
        }
    return {
        "lenet_examples": 256,
        "reps": 3,
        "trace_probes": 20,
        "trace_pilot": 60,
        "deflate": 20,
        "trace_cap": 2000,
        "density_iter": 100,
        "loop_steps": 20,
        "mlp_examples": 1797,
    }


# ------------------------------------------------------------------------------ the timing
def median_time(fn: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def interleaved(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Median seconds of each function over ``reps`` rounds, each function once per round."""
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def power_iteration(
    loss_fn: Callable, params, key: jax.Array, *, tol: float, max_iter: int = 1000
) -> tuple[float, int]:
    """PyHessian's method in JAX: Rayleigh quotients of ``H v``, stopping when one changes by
    less than ``tol`` (relative). Returns ``(eigenvalue, HVPs)``.

    A fair baseline: each iteration is one jitted call (product, Rayleigh quotient, next
    vector) and products reuse one linearisation of the point, as PyHessian keeps its
    gradient's graph; only the quotient crosses to the host, for the test."""
    linearize, step = _power_fns(loss_fn)
    lin = linearize(params)
    v = jax.tree.map(lambda a: jax.random.normal(key, a.shape, a.dtype), params)
    v = jax.tree.map(lambda a: a / jnp.sqrt(_vdot(v, v)), v)
    value = None
    for i in range(max_iter):
        quotient, v = step(params, lin, v)
        new = float(quotient)
        if value is not None and abs(value - new) / (abs(value) + 1e-6) < tol:
            return new, i + 1
        value = new
    return value, max_iter


_POWER: dict = {}


def _power_fns(loss_fn: Callable) -> tuple[Callable, Callable]:
    """Jitted ``linearize(params) -> arrays`` and ``step(params, arrays, v)``; the step traces
    the linearisation only for its structure and takes its arrays from the argument (XLA
    drops the recomputation), so each product is the linear map alone."""
    if loss_fn not in _POWER:

        def linear_map(p):
            return jax.linearize(jax.grad(loss_fn), p)[1]

        def step(p, arrays, v):
            hv = jax.tree.unflatten(jax.tree.structure(linear_map(p)), arrays)
            w = hv(v)
            return _vdot(w, v), jax.tree.map(lambda a: a / jnp.sqrt(_vdot(w, w)), w)

        _POWER[loss_fn] = (jax.jit(lambda p: jax.tree.leaves(linear_map(p))), jax.jit(step))
    return _POWER[loss_fn]


_HVPS: dict = {}


def _jitted_hvp(loss_fn: Callable) -> Callable:
    if loss_fn not in _HVPS:  # params traced: closing over them would constant-fold the net
        _HVPS[loss_fn] = jax.jit(lambda p, v: hessian.hvp(loss_fn, p, v))
    return _HVPS[loss_fn]


@jax.jit  # one call where the baseline normalises its start outside its jitted step
def _vdot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def reference_top(make_loss: Callable[[object], Callable], params) -> float:
    """The top eigenvalue in float64 (``make_loss(jnp.float64)``) by Lanczos to a residual of
    1e-10 of the scale."""
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        res = hessian.eigenvalues(
            make_loss(jnp.float64), p64, k=1, method="lanczos", tol=1e-10, max_iter=300
        )
        return float(res.values[0])


def ladder(run: Callable[[float], float], tols, reference: float) -> list[dict]:
    """Each tolerance's answer and true relative error, stopping at the first within TARGET."""
    rows = []
    for tol in tols:
        value = run(tol)
        rows.append({"tol": tol, "value": value, "error": abs(value - reference) / abs(reference)})
        if rows[-1]["error"] <= TARGET:
            break
    return rows


# ----------------------------------------------------------------------------- the sections
def _ours_top(loss_fn, params, tol):
    return hessian.eigenvalues(
        loss_fn, params, k=1, tol=tol, method="lanczos", key=jax.random.PRNGKey(0)
    )


def _top_section(loss_fn, params, warm, reference, peer, reps) -> dict:
    ours = ladder(lambda t: float(_ours_top(loss_fn, params, t).values[0]), OUR_TOLS, reference)
    theirs = ladder(peer.top, PEER_TOLS, reference)
    our_tol, peer_tol = ours[-1]["tol"], theirs[-1]["tol"]
    _ours_top(loss_fn, warm, our_tol)  # other params: everything compiled, nothing reused
    t = interleaved(
        {
            "ours": lambda: _ours_top(loss_fn, params, our_tol),
            "pyhessian": lambda: peer.top(peer_tol),
        },
        reps,
    )
    res = _ours_top(loss_fn, params, our_tol)
    return {
        "reference_float64": reference,
        "ours_ladder": ours,
        "pyhessian_ladder": theirs,
        "ours_tol": our_tol,
        "pyhessian_tol": peer_tol,
        "ours_reached": ours[-1]["error"] <= TARGET,
        "pyhessian_reached": theirs[-1]["error"] <= TARGET,
        "ours_iterations": res.iterations,
        "ours_hvps": res.num_hvps,
        "ours_s": t["ours"],
        "pyhessian_s": t["pyhessian"],
        "ours_over_pyhessian": t["ours"] / t["pyhessian"],
    }


def _trace_section(loss_fn, params, warm, peer, s: dict) -> dict:
    probes, reps = s["trace_probes"], s["reps"]
    key = jax.random.PRNGKey(3)
    hessian.trace(loss_fn, warm, probes, key)
    t = interleaved(
        {
            "ours": lambda: hessian.trace(loss_fn, params, probes, key),
            "pyhessian": lambda: peer.trace(probes),
        },
        reps,
    )
    ours, theirs = hessian.trace(loss_fn, params, probes, key), np.asarray(peer.trace(probes))
    return {
        "probes": probes,
        "ours_estimate": ours.estimate,
        "ours_std_error": ours.std_error,
        "pyhessian_estimate": float(theirs.mean()),
        "pyhessian_std_error": float(theirs.std(ddof=1) / np.sqrt(len(theirs))),
        "ours_s_per_probe": t["ours"] / probes,
        "pyhessian_s_per_probe": t["pyhessian"] / probes,
        "ours_over_pyhessian": t["ours"] / t["pyhessian"],
        "matched_standard_error": _matched_trace(loss_fn, params, warm, t["pyhessian"] / probes, s),
    }


def _matched_trace(loss_fn, params, warm, peer_s_per_probe: float, s: dict) -> dict:
    """Wall time to a standard error of ``r |trace|``: ours deflated, stopping by ``rtol=r``
    (timed), against plain Hutchinson (PyHessian's estimator) needing ``(sigma / (r |tr|))^2``
    probes at PyHessian's measured time per probe (its probes are identical steps), ``sigma``
    the per-probe standard deviation of plain Hutchinson on this H, from a pilot run."""
    key, cap, m = jax.random.PRNGKey(11), s["trace_cap"], s["deflate"]
    pilot = hessian.trace(loss_fn, params, s["trace_pilot"], jax.random.PRNGKey(12))
    sigma = float(np.std(pilot.samples, ddof=1))
    runs = {
        r: (lambda p, r=r: hessian.trace(loss_fn, p, cap, key, rtol=r, deflate=m))
        for r in TRACE_RTOLS
    }
    for run in runs.values():
        run(warm)
    t = interleaved({r: (lambda run=run: run(params)) for r, run in runs.items()}, s["reps"])
    ours = {r: run(params) for r, run in runs.items()}
    scale = abs(ours[min(TRACE_RTOLS)].estimate)  # the most precise estimate sets the target
    rows = []
    for r in TRACE_RTOLS:
        needed = max(2, int(np.ceil((sigma / (r * scale)) ** 2)))  # a std error needs 2
        res = ours[r]
        rows.append(
            {
                "relative_standard_error": r,
                "ours_estimate": res.estimate,
                "ours_std_error": res.std_error,
                "ours_probes": res.num_samples,
                "ours_hvps": res.num_samples + res.deflated,
                "ours_s": t[r],
                "plain_probes_needed": needed,
                "pyhessian_s": needed * peer_s_per_probe,
                "ours_over_pyhessian": t[r] / (needed * peer_s_per_probe),
            }
        )
    return {
        "deflate": m,
        "pilot_probes": s["trace_pilot"],
        "plain_sigma_per_probe": sigma,
        "deflated_sigma_per_probe": float(np.std(ours[min(TRACE_RTOLS)].samples, ddof=1)),
        "targets": rows,
    }


def _density_section(loss_fn, params, warm, peer, iters, reps) -> dict:
    key = jax.random.PRNGKey(4)
    hv = _jitted_hvp(loss_fn)
    run = lambda p: hessian.spectral_density(loss_fn, p, key, num_probes=1, num_iter=iters)  # noqa: E731
    run(warm), hv(warm, warm)
    t = interleaved({"density": lambda: run(params), "hvp": lambda: hv(params, params)}, reps)
    failure = peer.density(iters) if peer is not None else "not run"
    return {
        "num_iter": iters,
        "ours_s": t["density"],
        "one_hvp_s": t["hvp"],
        "ours_over_hvps": t["density"] / (iters * t["hvp"]),
        "pyhessian_error": failure,
    }


def _loops_section(loss_fn, params, warm, steps, reps) -> dict:
    runs = {
        loop: (
            lambda p, loop=loop: hessian.eigenvalues(
                loss_fn, p, k=1, method="lanczos", num_iter=steps, loop=loop, residuals=False
            )
        )
        for loop in ("host", "device")
    }
    for run in runs.values():
        run(warm)
    t = interleaved({loop: (lambda run=run: run(params)) for loop, run in runs.items()}, reps)
    return {
        "steps": steps,
        "host_s_per_step": t["host"] / steps,
        "device_s_per_step": t["device"] / steps,
        "device_over_host": t["device"] / t["host"],
    }


def _lenet(name: str, s: dict) -> dict:
    x, y = mnist_batch(s["lenet_examples"])
    weights, warm_weights = lenet_weights(0), lenet_weights(1)

    def make_classic(dtype):
        xd = x.astype(dtype)
        return lambda p: cross_entropy(classic_lenet_apply(p, xd), y)

    if name == "classic_lenet":
        loss_fn, params, warm = make_classic(jnp.float32), weights, warm_weights
    else:
        apply, params = models.functional(models.LeNet(rngs=nnx.Rngs(0)))
        warm = models.functional(models.LeNet(rngs=nnx.Rngs(1)))[1]
        loss_fn = lambda p: cross_entropy(apply(p, x), y)  # noqa: E731
    peer = Peer(weights, x, y) if pyhessian_version() else None
    out = {
        "examples": s["lenet_examples"],
        "num_params": 61706,
        "loss": float(loss_fn(params)),
        "torch_loss": None if peer is None else peer.loss,
    }
    reference = reference_top(make_classic, weights)
    if peer is not None:
        out["top_eigenvalue"] = _top_section(loss_fn, params, warm, reference, peer, s["reps"])
        out["trace"] = _trace_section(loss_fn, params, warm, peer, s)
    out["density"] = _density_section(loss_fn, params, warm, peer, s["density_iter"], s["reps"])
    if name == "classic_lenet":
        out["loops"] = _loops_section(loss_fn, params, warm, s["loop_steps"], s["reps"])
    return out


def _mlp(s: dict) -> dict:
    loss_fn, params = mlp_problem(s["mlp_examples"], seed=1)
    warm_loss, warm = mlp_problem(s["mlp_examples"], seed=0)
    del warm_loss  # same data, other params: the warm-up call compiles what the timed one uses

    def make(dtype):
        with jax.enable_x64(dtype == jnp.float64):
            return mlp_loss_in(dtype, s["mlp_examples"])

    reference = reference_top(make, params)
    key = jax.random.PRNGKey(0)
    lanczos = ladder(lambda t: float(_ours_top(loss_fn, params, t).values[0]), OUR_TOLS, reference)
    power = ladder(lambda t: power_iteration(loss_fn, params, key, tol=t)[0], POWER_TOLS, reference)
    lt, pt = lanczos[-1]["tol"], power[-1]["tol"]
    _ours_top(loss_fn, warm, lt), power_iteration(loss_fn, warm, key, tol=pt)
    t = interleaved(
        {
            "lanczos": lambda: _ours_top(loss_fn, params, lt),
            "power": lambda: power_iteration(loss_fn, params, key, tol=pt),
        },
        max(s["reps"], 5) if not s["quick"] else 1,
    )
    size = 16 if s["quick"] else 128
    spread = hessian.batch_spread(
        hessian.over_dataset(mlp_batch_loss, digits(s["mlp_examples"]), batch_size=size),
        params,
        num_batches=4,
    )
    return {
        "examples": s["mlp_examples"],
        "num_params": 2635,
        "reference_float64": reference,
        "lanczos_ladder": lanczos,
        "power_ladder": power,
        "lanczos_tol": lt,
        "power_tol": pt,
        "lanczos_hvps": _ours_top(loss_fn, params, lt).num_hvps,
        "power_hvps": power_iteration(loss_fn, params, key, tol=pt)[1],
        "lanczos_s": t["lanczos"],
        "power_s": t["power"],
        "lanczos_over_power": t["lanczos"] / t["power"],
        "batch_spread": {
            "batch_size": size,
            "dataset_top": spread.dataset,
            "per_batch_top": spread.per_batch.tolist(),
            "relative_spread": spread.relative_spread,
        },
    }


def markdown(result: dict) -> str:
    """The headline table of a :func:`bench_hessian` result."""
    rows = ["| loss | task | ours | PyHessian / power | ours / theirs |", "|---" * 5 + "|"]
    for name in ("classic_lenet", "models_lenet"):
        r = result.get(name, {})
        if "top_eigenvalue" in r:
            t = r["top_eigenvalue"]
            rows.append(
                f"| {name} | top eigenvalue to {TARGET:g} (true) | {t['ours_s']:.3g} s "
                f"(tol {t['ours_tol']:g}, {t['ours_hvps']} HVPs) | {t['pyhessian_s']:.3g} "
                f"s (tol {t['pyhessian_tol']:g}) | {t['ours_over_pyhessian']:.2f} |"
            )
            t = r["trace"]
            rows.append(
                f"| {name} | trace, per probe | {1e3 * t['ours_s_per_probe']:.3g} ms | "
                f"{1e3 * t['pyhessian_s_per_probe']:.3g} ms | "
                f"{t['ours_over_pyhessian']:.2f} |"
            )
            matched = t.get("matched_standard_error", {"targets": []})
            for row in matched["targets"]:
                rows.append(
                    f"| {name} | trace to a standard error of "
                    f"{100 * row['relative_standard_error']:g}% | {row['ours_s']:.3g} s "
                    f"({matched['deflate']} Lanczos + {row['ours_probes']} probes) | "
                    f"{row['pyhessian_s']:.3g} s ({row['plain_probes_needed']} probes) | "
                    f"{row['ours_over_pyhessian']:.2f} |"
                )
        if "density" in r:
            d = r["density"]
            rows.append(
                f"| {name} | density (SLQ, {d['num_iter']} steps) | {d['ours_s']:.3g} s "
                f"({d['ours_over_hvps']:.2f}x {d['num_iter']} HVPs) | "
                f"{'fails' if d['pyhessian_error'] else 'works'} | - |"
            )
    m = result["mlp"]
    rows.append(
        f"| mlp | Lanczos vs power, top-1 to {TARGET:g} | {m['lanczos_s']:.3g} s "
        f"({m['lanczos_hvps']} HVPs) | {m['power_s']:.3g} s ({m['power_hvps']} HVPs) | "
        f"{m['lanczos_over_power']:.2f} |"
    )
    return "\n".join(rows)


def bench_hessian(out_dir: str | None = None, quick: bool = False) -> dict:
    """Runs every section; writes ``hessian/hessian.json`` and ``hessian/hessian.md`` into
    ``out_dir``."""
    from jaxopt_notes.benchmarks import machine

    s = {**_settings(quick), "quick": quick}
    result = {
        "machine": machine(),
        "pyhessian": pyhessian_version(),
        "quick": quick,
        "settings": s,
        "target_relative_error": TARGET,
        "dtype": "float32",
    }
    for name in ("classic_lenet", "models_lenet"):
        result[name] = _lenet(name, s)
    result["mlp"] = _mlp(s)
    result = hessian.json_safe(result, nulls := {})
    result["nulls"] = nulls
    if out_dir is not None:
        folder = os.path.join(out_dir, "hessian")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "hessian.json"), "w") as fh:
            json.dump(result, fh, indent=2, allow_nan=False)
        with open(os.path.join(folder, "hessian.md"), "w") as fh:
            fh.write(markdown(result) + "\n")
    return result


if __name__ == "__main__":
    print(json.dumps(bench_hessian(quick=True), indent=2))
