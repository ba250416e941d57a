"""Time ``hessian.find_critical`` on an MLP of >= 10k parameters on the 8x8 digits, float64.

One tanh MLP (64-150-10, 11,260 parameters) per seed on the 1,437 training digits, loss
cross-entropy + 5e-4 |theta|^2 (weight decay gives the loss finite minima), driven to
``|g| <= 1e-8 |g_init|`` (``g_init``: the gradient at the seed's initialisation) by Newton-MR
with a budget of 20,000 Hessian-vector products and up to 10 downhill walks out of
gradient-flat regions, from two starts: "trained" (full-batch Adam, lr 1e-2, 4,000 steps from
the seed's init, then 1,000 L-BFGS steps: where descent stops; Adam at a constant rate only
hovers around it) and "near_zero" (the seed's init times 1e-2: beside the saddle of the zero
network, as in docs/saddles.md).
Each point is then classified from both ends of its spectrum (Lanczos). Writes
``find_critical.json`` beside this script.

    python bench_results/saddles/find_critical.py [num_seeds] [note on the machine's load]
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_notes import data, hessian

HIDDEN, STEPS, LBFGS_STEPS, DECAY, RTOL, MAX_HVPS = 150, 4000, 4000, 5e-4, 1e-8, 20000


def problem(seed: int):
    d = data.load_digits()
    x = jnp.asarray(d.x_train.reshape(len(d.y_train), -1) / 255.0)
    y = jnp.asarray(d.y_train)

    def loss(p):
        h = jnp.tanh(x @ p["w1"] + p["b1"])
        ce = optax.softmax_cross_entropy_with_integer_labels(h @ p["w2"] + p["b2"], y).mean()
        return ce + DECAY * sum(jnp.sum(v**2) for v in jax.tree.leaves(p))

    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    params = {
        "w1": jax.random.normal(k1, (64, HIDDEN)) / 8,
        "b1": jnp.zeros(HIDDEN),
        "w2": jax.random.normal(k2, (HIDDEN, 10)) / HIDDEN**0.5,
        "b2": jnp.zeros(10),
    }
    return loss, params


def trained(loss, params):
    opt, lbfgs = optax.adam(1e-2), optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def adam_body(c, _):
        u, s = opt.update(jax.grad(loss)(c[0]), c[1])
        return (optax.apply_updates(c[0], u), s), None

    def lbfgs_body(c, _):
        v, g = value_and_grad(c[0], state=c[1])
        u, s = lbfgs.update(g, c[1], c[0], value=v, grad=g, value_fn=loss)
        return (optax.apply_updates(c[0], u), s), None

    @jax.jit
    def run(p):
        p = jax.lax.scan(adam_body, (p, opt.init(p)), None, STEPS)[0][0]
        return jax.lax.scan(lbfgs_body, (p, lbfgs.init(p)), None, LBFGS_STEPS)[0][0]

    return run(params)


def grad_norm(loss, params) -> float:
    return float(optax.global_norm(jax.grad(loss)(params)))


def one(seed: int, start: str) -> dict:
    loss, params = problem(seed)
    scale = grad_norm(loss, params)
    t = time.perf_counter()
    if start == "trained":
        params = trained(loss, params)
    else:
        params = jax.tree.map(lambda a: 1e-2 * a, params)
    train_s = time.perf_counter() - t
    found = hessian.find_critical(
        loss,
        params,
        rtol=RTOL,
        atol=RTOL * scale,
        max_iter=200,
        max_hvps=MAX_HVPS,
        flat_descents=10,
    )
    t = time.perf_counter()
    c = hessian.classify(
        loss,
        found.params,
        k=2,
        grad_scale=scale,
        grad_rtol=RTOL,
        tol=1e-4,
        max_iter=200,
        density_probes=0,
    )
    return {
        "seed": seed,
        "start": start,
        "train_seconds": train_s,
        "status": found.status,
        "reached": found.reached,
        "seconds": found.seconds,
        "iterations": found.iterations,
        "num_hvps": found.num_hvps,
        "grad_norm_init": scale,
        "grad_norm_start": found.grad_norm_start,
        "flat_descents": found.flat_descents,
        "grad_norm": found.grad_norm,
        "loss": found.loss,
        "residual_ratio": found.residual_ratio,
        "kind": c.kind,
        "smallest_eigenvalues": c.eigenvalues[-2:].tolist(),
        "largest_eigenvalue": float(c.eigenvalues[0]),
        "classify_seconds": time.perf_counter() - t,
    }


def hvp_seconds(repeats: int = 20) -> float:
    """One jitted Hessian-vector product on this MLP, median of ``repeats`` (compiled first)."""
    loss, params = problem(0)
    v = jax.tree.map(jnp.ones_like, params)
    product = jax.jit(lambda p, u: hessian.hvp(loss, p, u))
    jax.block_until_ready(product(params, v))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(product(params, v))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(num_seeds: int) -> dict:
    jax.config.update("jax_enable_x64", True)
    rows = []
    for seed in range(num_seeds):
        for start in ("near_zero", "trained"):
            rows.append(one(seed, start))
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for start in ("near_zero", "trained"):
        part = [r for r in rows if r["start"] == start]
        secs = np.array([r["seconds"] for r in part])
        summary[start] = {
            "reached": int(sum(r["reached"] for r in part)),
            "seeds": len(part),
            "statuses": [r["status"] for r in part],
            "kinds": [r["kind"] for r in part],
            "seconds_per_point": {"median": float(np.median(secs)), "max": float(secs.max())},
            "hvps_per_point": float(np.median([r["num_hvps"] for r in part])),
        }
    return {
        "what": "find_critical on a 64-150-10 tanh MLP (11,260 parameters), digits, float64",
        "setup": {
            "hidden": HIDDEN,
            "adam_steps": STEPS,
            "lbfgs_steps": LBFGS_STEPS,
            "weight_decay": DECAY,
            "rtol": RTOL,
            "max_hvps": MAX_HVPS,
            "examples": 1437,
        },
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores; "
        + (sys.argv[2] if len(sys.argv) > 2 else "no note on the load"),
        "jax": jax.__version__,
        "seconds_per_hvp": hvp_seconds(),
        "summary": summary,
        "runs": rows,
    }


if __name__ == "__main__":
    result = main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
    path = Path(__file__).with_name("find_critical.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"]), f"wrote {path}")
