"""Compile time of ``jn.skip_nonfinite(jn.adam)`` against ``optax.apply_if_finite(optax.adam)``
on many small leaves (the issue's case: 1,000 leaves of 8 float32 each).

Times ``jax.jit(tx.update).lower(...).compile()`` (trace + lower + XLA compile) for each, a
fresh transform per repeat so nothing is cached, and the plain Adams beside them for scale.
Writes a JSON record with the machine and versions. Not a test: no wall-clock assertions.

    python scripts/skip_nonfinite_compile.py --leaves 1000 \
        --out bench_results/interop/skip_nonfinite_compile.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax

import jaxopt_notes as jn

VARIANTS = {
    "jn.skip_nonfinite(jn.adam)": lambda: jn.skip_nonfinite(jn.adam(1e-3)),
    "optax.apply_if_finite(optax.adam)": lambda: optax.apply_if_finite(optax.adam(1e-3), 10),
    "jn.adam": lambda: jn.adam(1e-3),
    "optax.adam": lambda: optax.adam(1e-3),
}


def compile_seconds(make, leaves: int, size: int) -> float:
    params = {f"p{i:04d}": jnp.zeros(size, jnp.float32) for i in range(leaves)}
    tx = make()
    state = tx.init(params)
    start = time.perf_counter()
    jax.jit(tx.update).lower(params, state, params).compile()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leaves", type=int, default=1000, help="number of leaves (1000)")
    parser.add_argument("--size", type=int, default=8, help="floats per leaf (8)")
    parser.add_argument("--repeats", type=int, default=2, help="compiles per variant (2)")
    parser.add_argument("--out", default=None, help="JSON file to write (default: print only)")
    args = parser.parse_args(argv)
    times = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits all
        for name, make in VARIANTS.items():
            times[name].append(round(compile_seconds(make, args.leaves, args.size), 3))
            print(f"{name}: {times[name][-1]:.2f} s", flush=True)
    best = {name: min(ts) for name, ts in times.items()}
    ratio = best["jn.skip_nonfinite(jn.adam)"] / best["optax.apply_if_finite(optax.adam)"]
    record = {
        "what": "seconds to trace, lower and compile jax.jit(tx.update) once",
        "command": "python scripts/skip_nonfinite_compile.py " + " ".join(argv or sys.argv[1:]),
        "leaves": args.leaves,
        "floats_per_leaf": args.size,
        "seconds": times,
        "best_seconds": best,
        "ratio_skip_nonfinite_to_apply_if_finite": round(ratio, 3),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "backend": jax.default_backend(),
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jax.lib.__version__,
            "optax": optax.__version__,
        },
    }
    print(f"ratio (best of {args.repeats}): {ratio:.2f}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
