"""The ``jn.adam`` chain step on 100M float32 parameters, jitted with donation, as a fraction
of the device's memory-bandwidth floor (never in CI; meant for a GPU, runs in a few minutes).

Adam must read the parameters, the gradient and both moments and write the parameters and
both moments: 7 float32 arrays, 28 bytes per parameter, per step. At a bandwidth B the step
cannot take less than ``28 * n / B``; this script reports that floor over the measured step
time, against two bandwidths:

- the device's nominal peak (a table of common GPUs below, or ``--peak-gbs``), and
- a measured streaming bandwidth: a donated ``x + y`` over arrays of the same size (12 bytes
  per element, what a well-written elementwise kernel reaches on this device).

    python scripts/gpu_adam_bandwidth.py [--params 100_000_000] [--leaves 10] \\
        [--out bench_results/interop/gpu_adam_bandwidth.json]

On the CPU it runs too (with ``--params 10_000_000`` to keep it short), as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxopt_notes as jn

# nominal memory bandwidth in GB/s, by substrings of jax's device_kind
NOMINAL_GBS = {
    "H200": 4800.0,
    "H100 SXM": 3350.0,
    "H100 PCIe": 2000.0,
    "H100": 3350.0,
    "A100-SXM4-80GB": 2039.0,
    "A100-SXM4-40GB": 1555.0,
    "A100": 1555.0,
    "L4": 300.0,
    "V100": 900.0,
    "T4": 320.0,
}
BYTES_PER_PARAM = 28  # read theta, g, m, v; write theta, m, v (float32)


def nominal_gbs(kind: str) -> float | None:
    return next((v for k, v in NOMINAL_GBS.items() if k in kind), None)


def timed(fn, args, steps: int) -> float:
    """Seconds per call of ``fn``, which returns its donated arguments' successors."""
    args = fn(*args)  # compile and warm up
    jax.block_until_ready(args)
    start = time.perf_counter()
    for _ in range(steps):
        args = fn(*args)
    jax.block_until_ready(args)
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=100_000_000, help="parameters (100M)")
    parser.add_argument("--leaves", type=int, default=10, help="leaves they are split into")
    parser.add_argument("--steps", type=int, default=50, help="timed steps (50)")
    parser.add_argument("--peak-gbs", type=float, default=None, help="nominal GB/s override")
    parser.add_argument("--out", default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    device = jax.devices()[0]
    kind = device.device_kind
    print(f"device: {kind} ({device.platform}), jax {jax.__version__}", flush=True)

    size = args.params // args.leaves
    n = size * args.leaves
    key = jax.random.key(0)
    params = {
        f"w{i}": jax.random.normal(jax.random.fold_in(key, i), (size,)) for i in range(args.leaves)
    }
    grads = jax.tree.map(lambda p: 1e-3 * p, params)
    tx = jn.adam(1e-3)
    state = tx.init(params)

    def adam_step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return jn.apply_updates(params, updates), state, grads

    step = jax.jit(adam_step, donate_argnums=(0, 1))
    adam_s = timed(step, (params, state, grads), args.steps)
    del params, state

    def stream(x, y):  # read x, y; write x: 12 bytes per element
        return jax.tree.map(jnp.add, x, y), y

    x = {f"x{i}": jnp.ones((size,)) for i in range(args.leaves)}
    y = jax.tree.map(jnp.ones_like, x)
    stream_s = timed(jax.jit(stream, donate_argnums=(0,)), (x, y), args.steps)
    stream_gbs = 12 * n / stream_s / 1e9
    adam_gbs = BYTES_PER_PARAM * n / adam_s / 1e9
    peak = args.peak_gbs or nominal_gbs(kind)
    record = {
        "device": kind,
        "platform": device.platform,
        "params": n,
        "leaves": args.leaves,
        "adam_step_ms": round(adam_s * 1e3, 3),
        "adam_effective_gbs": round(adam_gbs, 1),
        "stream_gbs_measured": round(stream_gbs, 1),
        "fraction_of_measured_stream": round(adam_gbs / stream_gbs, 3),
        "nominal_peak_gbs": peak,
        "fraction_of_nominal_peak": round(adam_gbs / peak, 3) if peak else None,
        "bytes_per_param": BYTES_PER_PARAM,
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
        "command": "python scripts/gpu_adam_bandwidth.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    for k, v in record.items():
        print(f"{k}: {v}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
