"""Benchmark of the Hessian tools: the cost of one HVP, and Lanczos against power iteration.

Two losses: a tanh MLP (64-128-10) on the scikit-learn digits, and a LeNet-5-like conv net
(conv 5x5x6, avg-pool, conv 5x5x16, avg-pool, 120, 84, 10; tanh) on synthetic 28x28 inputs
with random labels (timing and spectra need no real images). For each:

* ``hvp_over_grad``: median time of a jitted forward-over-reverse HVP over that of a jitted
  gradient (theory: about 2-3x, one jvp through the backward pass);
* ``lanczos_hvps`` and ``power_hvps``: HVPs until the top eigenvalue estimate is within
  ``1e-3`` relative of a reference (150 fully reorthogonalized Lanczos steps, 100 with
  ``quick``), from the same Gaussian start vector, at the initial params and after some
  full-batch Adam steps. Power iteration is PyHessian's method (Rayleigh quotient of ``H v``).

Both timed functions take the params as arguments: closing over them lets XLA constant-fold
part of the forward pass, which made the HVP look 2-3x cheaper than it is on the conv net.

A benchmark, never a test: times depend on the machine, recorded in the result.
"""

from __future__ import annotations

import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_notes import _hessian_core as core
from jaxopt_notes.hessian_cli import digits_loss, init_mlp

TARGET = 1e-3


def _lenet_problem(num_examples: int, seed: int = 0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 7)
    x = jax.random.normal(keys[0], (num_examples, 28, 28, 1))
    y = jax.random.randint(keys[1], (num_examples,), 0, 10)
    shapes = {"c1": (5, 5, 1, 6), "c2": (5, 5, 6, 16), "f1": (256, 120), "f2": (120, 84),
              "f3": (84, 10)}  # fmt: skip
    params = {}
    for key, (name, shape) in zip(keys[2:], shapes.items(), strict=True):
        fan_in = int(np.prod(shape[:-1]))
        params[name] = {
            "w": jax.random.normal(key, shape) / np.sqrt(fan_in),
            "b": jnp.zeros(shape[-1]),
        }

    def conv_pool(h, p):
        dims = ("NHWC", "HWIO", "NHWC")
        h = jax.lax.conv_general_dilated(h, p["w"], (1, 1), "VALID", dimension_numbers=dims)
        h = jnp.tanh(h + p["b"][None, None, None, :])
        n, hh, ww, c = h.shape
        return h.reshape(n, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))

    def loss_fn(p):
        h = conv_pool(conv_pool(x, p["c1"]), p["c2"]).reshape(num_examples, -1)
        h = jnp.tanh(h @ p["f1"]["w"] + p["f1"]["b"][None, :])
        h = jnp.tanh(h @ p["f2"]["w"] + p["f2"]["b"][None, :])
        logp = jax.nn.log_softmax(h @ p["f3"]["w"] + p["f3"]["b"][None, :])
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    return loss_fn, params


def _median_ms(fn, *args, reps: int) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def _first_within(estimates: np.ndarray, reference: float) -> int | None:
    ok = np.nonzero(np.abs(estimates - reference) <= TARGET * abs(reference))[0]
    return int(ok[0]) + 1 if len(ok) else None


def _lanczos_curve(loss_fn, params, v0, num_iter: int) -> np.ndarray:
    """Top Ritz value after 1..num_iter steps (Lanczos is nested: one run gives all)."""
    tri = _run_lanczos(params, v0, loss_fn=loss_fn, num_iter=num_iter)
    a, b = np.asarray(tri.alpha, np.float64), np.asarray(tri.beta, np.float64)
    tops = []
    for j in range(1, num_iter + 1):
        t = np.diag(a[:j]) + np.diag(b[: j - 1], 1) + np.diag(b[: j - 1], -1)
        tops.append(np.linalg.eigvalsh(t)[-1])
    return np.array(tops)


@jax.jit(static_argnames=("loss_fn", "num_iter"))
def _run_lanczos(params, v0, *, loss_fn, num_iter):
    x, f, _ = core.flat_problem(loss_fn, params, (True,) * len(jax.tree.leaves(params)))
    return core.lanczos_traced(
        lambda v: core.hvp_flat(f, x, v), v0, num_iter, jax.random.PRNGKey(1)
    )


def _power_curve(hvp, v0, max_iter: int) -> np.ndarray:
    v, out = v0 / jnp.linalg.norm(v0), []
    for _ in range(max_iter):
        hv = hvp(v)
        out.append(float(jnp.vdot(v, hv)))  # Rayleigh quotient, one HVP per step
        v = hv / jnp.linalg.norm(hv)
    return np.array(out)


def _train(loss_fn, params, steps: int):
    """Adam (lr 1e-2) for ``steps`` full-batch steps: a trained point has a flatter top end."""
    opt = optax.adam(1e-2)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        updates, state = opt.update(jax.grad(loss_fn)(params), state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return params


def _spectrum_race(loss_fn, params, *, max_power: int, ref_iter: int) -> dict:
    x, f, _ = core.flat_problem(loss_fn, params, (True,) * len(jax.tree.leaves(params)))
    hvp = jax.jit(lambda x, v: core.hvp_flat(f, x, v))  # params traced: no constant folding
    v0 = jax.random.normal(jax.random.PRNGKey(0), x.shape, x.dtype)
    curve = _lanczos_curve(loss_fn, params, v0, ref_iter)
    reference = float(curve[-1])
    lanczos_hvps = _first_within(curve, reference)
    power_hvps = _first_within(_power_curve(lambda v: hvp(x, v), v0, max_power), reference)
    return {
        "loss": float(loss_fn(params)), "top_eigenvalue": reference,
        "lanczos_hvps": lanczos_hvps, "power_hvps": power_hvps,
        "lanczos_over_power": (lanczos_hvps / power_hvps) if lanczos_hvps and power_hvps else None,
    }  # fmt: skip


def _measure(name: str, loss_fn, params, *, reps: int, max_power: int, ref_iter: int,
             train_steps: int) -> dict:  # fmt: skip
    x, f, _ = core.flat_problem(loss_fn, params, (True,) * len(jax.tree.leaves(params)))
    grad = jax.jit(jax.grad(f))
    hvp = jax.jit(lambda x, v: core.hvp_flat(f, x, v))  # both take the params as arguments
    grad_ms, hvp_ms = _median_ms(grad, x, reps=reps), _median_ms(hvp, x, x, reps=reps)
    race = {"max_power_iter": max_power, "reference_lanczos_steps": ref_iter}
    return {
        "model": name, "num_params": int(x.size), "grad_ms": grad_ms, "hvp_ms": hvp_ms,
        "hvp_over_grad": hvp_ms / grad_ms, **race,
        "at_init": _spectrum_race(loss_fn, params, max_power=max_power, ref_iter=ref_iter),
        f"after_{train_steps}_adam_steps": _spectrum_race(
            loss_fn, _train(loss_fn, params, train_steps), max_power=max_power, ref_iter=ref_iter),
    }  # fmt: skip


def bench_hessian(out_dir: str | None = None, quick: bool = False) -> dict:
    """Runs both measurements on both models; writes ``hessian_bench.json`` into ``out_dir``."""
    n = 256 if quick else 1024
    mlp_loss = digits_loss(n, jnp.float32)
    mlp_params = {k: jnp.asarray(v) for k, v in init_mlp([64, 128, 10], seed=0).items()}
    lenet_examples = 64 if quick else 128
    lenet_loss, lenet_params = _lenet_problem(lenet_examples)
    settings = {"reps": 5 if quick else 20, "max_power": 300 if quick else 500,
                "ref_iter": 100 if quick else 150,
                "train_steps": 100 if quick else 300}  # fmt: skip
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "device": str(jax.devices()[0]),
                    "jax": jax.__version__},
        "target_relative_error": TARGET, "quick": quick, "dtype": "float32",
        "mlp": {"examples": n, **_measure("mlp 64-128-10 tanh, digits", mlp_loss, mlp_params,
                                          **settings)},
        "lenet": {"examples": lenet_examples,
                  **_measure("lenet-5 tanh, synthetic 28x28", lenet_loss, lenet_params,
                             **settings)},
    }  # fmt: skip
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "hessian_bench.json"), "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    print(json.dumps(bench_hessian(quick=True), indent=2))
