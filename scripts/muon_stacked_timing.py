"""Muon's step on L same-shape matrices: one stacked leaf (``stacked=True``, one batched
Newton-Schulz iteration) against L separate leaves (L iterations), jitted, with donation.

Meant for a GPU (the per-leaf form launches L times the kernels; a 3.3x step-time hit was
reported in goodfire-ai/spd PR #978); on the CPU it runs as a smoke test with small sizes.
Writes a JSON record with the device, the sizes and both median step times. Not a test.

    python scripts/muon_stacked_timing.py [--layers 24] [--rows 1024] [--cols 1024] \\
        [--repeats 20] [--out bench_results/interop/muon_stacked_timing.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp

import jaxopt_notes as jn


def step_time(params: dict, stacked: bool, repeats: int) -> float:
    """The median seconds of one jitted, donated Muon step on ``params`` (after a warm-up)."""
    tx = jn.muon(0.02, stacked=stacked)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)

    def step(params, state):
        u, state = tx.update(grads, state, params)
        return jn.apply_updates(params, u), state

    run = jax.jit(step, donate_argnums=(0, 1))
    params, state = run(params, tx.init(params))
    jax.block_until_ready(params)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        params, state = run(params, state)
        jax.block_until_ready(params)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--cols", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    key = jax.random.key(0)
    shape = (args.layers, args.rows, args.cols)
    stack = {"layers": 0.02 * jax.random.normal(key, shape, jnp.float32)}
    leaves = {f"layer{i}": stack["layers"][i] for i in range(args.layers)}
    stacked = step_time(stack, True, args.repeats)
    per_leaf = step_time(leaves, False, args.repeats)
    record = {
        "device": jax.devices()[0].device_kind,
        "platform": platform.platform(),
        "jax": jax.__version__,
        "shape": list(shape),
        "stacked_s": stacked,
        "per_leaf_s": per_leaf,
        "per_leaf_over_stacked": per_leaf / stacked,
    }
    print(json.dumps(record, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
