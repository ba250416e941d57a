"""A loss-landscape slice against loss-landscapes 3.0.6 (torch), and where a grid point's time
goes. Never a test.

The classic LeNet (sigmoid, 2x2 average pooling; the models' own convolutions, the CPU kernels
of ``models.conv`` where they are built) at fixed small random biases on the first ``examples``
mnist5k images, one filter-normalised random plane:

- ``full``: the ``grid`` x ``grid`` slice, ``landscape.surface`` as ``jaxopt-notes landscape``
  runs it (one compiled call per point) against ``loss_landscapes.random_plane`` on the torch
  twin of the network (2 threads), in ``rounds`` interleaved rounds; the ratio of medians.
- ``variants``: a ``probe`` x ``probe`` slice, each way of computing it interleaved with the
  peer on the same slice: one point per call, 4 points per call under ``vmap``, the first-layer
  split, a direct jitted loop over the points; each one's largest relative difference to the
  one-point-per-call grid.
- ``stages``: one point's forward pass, stage by stage, each stage its own compiled call (so
  their sum is not the whole), ours and torch's layers interleaved.

Run as ``python -m jaxopt_notes.benchmarks.landscape DIR`` (writes ``DIR/landscape_bench.json``).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxopt_notes import data as data_lib
from jaxopt_notes import landscape, models


def bench_landscape(
    out_dir: str | None = None,
    *,
    grid: int = 41,
    examples: int = 1000,
    rounds: int = 2,
    probe: int = 11,
    probe_rounds: int = 5,
) -> dict:
    """The three measurements of the module's docstring; writes ``landscape_bench.json`` into
    ``out_dir`` when one is given."""
    setup = _setup(examples)
    peer = _torch_plane(setup)
    report: dict[str, Any] = {
        "network": "LeNet classic (sigmoid, average pooling), float32",
        "examples": examples,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "command": "python -m jaxopt_notes.benchmarks.landscape DIR "
        f"(grid {grid}, rounds {rounds}, probe {probe}, probe_rounds {probe_rounds})",
        "machine": _machine(),
        "conv_kernels": models.conv.kernels_available(),
        "center_loss": float(setup["batch_loss"](setup["params"], setup["x"], setup["y"])),
        "load_average_start": list(os.getloadavg()),
    }
    if peer is None:
        report["skipped"] = "loss-landscapes or torch not installed"
        return _write(report, out_dir)
    report["peer_center_loss"] = peer["center_loss"]
    report["variants"] = _variants(setup, peer, probe, probe_rounds)
    report["stages"] = _stages(setup, peer)
    report["full"] = _full(setup, peer, grid, rounds)
    report["load_average_end"] = list(os.getloadavg())
    return _write(report, out_dir)


def _setup(examples: int) -> dict:
    from jaxopt_notes.train import cross_entropy

    ds = data_lib.load("mnist5k")
    x, y = jnp.asarray(ds.x_train[:examples]), jnp.asarray(ds.y_train[:examples])
    net = models.LeNet(variant="classic", rngs=nnx.Rngs(0))
    # loss-landscapes 3.0.6 divides by a zero norm on an all-zero bias vector (the init's):
    # small random biases, the same in both networks, avoid it
    keys = iter(jax.random.split(jax.random.key(1), 16))
    params = jax.tree.map(
        lambda p: p if p.ndim > 1 else 0.01 * jax.random.normal(next(keys), p.shape),
        nnx.state(net, nnx.Param),
    )
    nnx.update(net, params)
    pure = models.split(net, train=False)
    prepare = lambda xb: data_lib.normalize(xb, ds.mean, ds.std)  # noqa: E731
    loss = lambda logits, yb: cross_entropy(logits, jax.nn.one_hot(yb, 10))[0].mean()  # noqa: E731
    batch_loss = lambda p, xb, yb: loss(pure.merge(p)(prepare(xb)), yb)  # noqa: E731
    return {
        "ds": ds,
        "x": x,
        "y": y,
        "net": net,
        "pure": pure,
        "params": params,
        "prepare": prepare,
        "loss": loss,
        "batch_loss": batch_loss,
        "dirs": landscape.random_directions(params, jax.random.key(0)),
    }


def _torch_plane(setup: dict) -> dict | None:
    try:
        import loss_landscapes
        import loss_landscapes.metrics
        import torch
    except ImportError:
        return None
    from jaxopt_notes.benchmarks.hessian import torch_lenet  # the same torch twin as the peers'

    ds, n = setup["ds"], len(setup["y"])
    net = torch_lenet(setup["params"])
    xs = (ds.x_train[:n].astype(np.float32) / 255.0 - ds.mean) / ds.std
    x = torch.from_numpy(np.ascontiguousarray(xs.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(ds.y_train[:n].astype(np.int64))
    metric = loss_landscapes.metrics.Loss(torch.nn.CrossEntropyLoss(), x, y)

    def plane(steps: int) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(
                loss_landscapes.random_plane(
                    net,
                    metric,
                    distance=1,
                    steps=steps,
                    normalization="filter",
                    deepcopy_model=True,
                )
            )

    with torch.no_grad():
        center = float(torch.nn.functional.cross_entropy(net(x), y))
    return {"plane": plane, "net": net, "x": x, "y": y, "center_loss": center, "torch": torch}


def _ours(setup: dict, n: int, **options) -> Callable[[], np.ndarray]:
    coords = np.linspace(-1, 1, n)
    args = (setup["batch_loss"], setup["params"], setup["dirs"], setup["x"], setup["y"])
    return lambda: landscape.surface(*args, xs=coords, ys=coords, **options).values


def _direct(setup: dict, n: int) -> Callable[[], np.ndarray]:
    params, (d1, d2), x, y = setup["params"], setup["dirs"], setup["x"], setup["y"]
    loss_at = jax.jit(
        lambda a, b: setup["batch_loss"](
            jax.tree.map(lambda c, u, v: c + a * u + b * v, params, d1, d2), x, y
        )
    )
    coords = np.linspace(-1, 1, n)
    return lambda: np.array([[float(loss_at(a, b)) for a in coords] for b in coords])


def _interleaved(runs: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run())
            times[name].append(time.perf_counter() - start)
    return times


def _variants(setup: dict, peer: dict, n: int, rounds: int) -> dict:
    split = landscape.first_layer_split(
        setup["net"], "conv1", setup["loss"], prepare=setup["prepare"]
    )
    runs = {
        "one point per call (the command)": _ours(setup, n),
        "4 points per call (vmap)": _ours(setup, n, block=4),
        "first-layer split": _ours(setup, n, split=split),
        "direct jitted loop": _direct(setup, n),
        "loss-landscapes": lambda: peer["plane"](n),
    }
    base = runs["one point per call (the command)"]()  # compiles; every other is warmed too
    # the peer draws its own directions: only its centre is comparable (report["center"])
    diffs = {name: _max_rel(run(), base) for name, run in runs.items() if name != "loss-landscapes"}
    times = _interleaved(runs, rounds)
    peer_s = statistics.median(times["loss-landscapes"])
    return {
        "grid": n,
        "rounds": rounds,
        "rows": {
            name: {
                "ms_per_point": 1e3 * statistics.median(t) / n**2,
                "over_loss_landscapes": statistics.median(t) / peer_s,
                "max_rel_diff": diffs.get(name),
                "times_s": t,
            }
            for name, t in times.items()
        },
        "load_average": list(os.getloadavg()),
    }


def _max_rel(values: np.ndarray, base: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(values) - base) / np.abs(base)))


def _stages(setup: dict, peer: dict, rounds: int = 15) -> dict:
    pool_2x2 = models.pool_2x2  # the pooling LeNet runs
    pure, p, x, y = setup["pure"], setup["params"], setup["x"], setup["y"]
    layer = lambda name: lambda q, h: getattr(pure.merge(q), name)(h)  # noqa: E731
    sig_pool = lambda h: pool_2x2(jax.nn.sigmoid(h), "avg")  # noqa: E731
    jit = jax.jit
    h1 = jit(layer("conv1"))(p, setup["prepare"](x))
    s1 = jax.nn.sigmoid(h1)
    p1 = pool_2x2(s1, "avg")
    h2 = jit(layer("conv2"))(p, p1)
    z = sig_pool(h2).reshape(len(y), -1)

    def head(q, z):
        net = pure.merge(q)
        logits = net.fc3(jax.nn.sigmoid(net.fc2(jax.nn.sigmoid(net.fc1(z)))))
        return setup["loss"](logits, y)

    ours = {
        "whole point (one compiled call)": (jit(setup["batch_loss"]), (p, x, y)),
        "conv1 (5x5, 1 -> 6 channels)": (jit(layer("conv1")), (p, setup["prepare"](x))),
        "sigmoid + avg pool after conv1, fused (as compiled in the point)": (jit(sig_pool), (h1,)),
        "sigmoid after conv1 alone": (jit(jax.nn.sigmoid), (h1,)),
        "avg pool after conv1 alone": (jit(lambda s: pool_2x2(s, "avg")), (s1,)),
        "conv2 (5x5, 6 -> 16 channels)": (jit(layer("conv2")), (p, p1)),
        "sigmoid + avg pool after conv2": (jit(sig_pool), (h2,)),
        "fc1, fc2, fc3 and the loss": (jit(head), (p, z)),
    }
    runs = {name: (lambda f=f, a=a: f(*a)) for name, (f, a) in ours.items()}
    runs.update(_torch_stages(peer))
    for run in runs.values():
        jax.block_until_ready(run())
    times = _interleaved(runs, rounds)
    return {
        "what": "milliseconds of one grid point's stages on the whole evaluation set, each its "
        "own call (ours jitted, torch's layers under no_grad), interleaved, median of rounds",
        "ms": {name: 1e3 * statistics.median(t) for name, t in times.items()},
        "rounds": rounds,
        "load_average": list(os.getloadavg()),
    }


def _torch_stages(peer: dict) -> dict[str, Callable[[], Any]]:
    torch, net = peer["torch"], peer["net"]
    with torch.no_grad():
        inputs = [peer["x"]]
        for module in net:
            inputs.append(module(inputs[-1]))

    def call(i, j):  # layers i..j-1 on their input
        def run():
            with torch.no_grad():
                h = inputs[i]
                for module in net[i:j]:
                    h = module(h)
                return None

        return run

    def whole():
        with torch.no_grad():
            torch.nn.functional.cross_entropy(net(peer["x"]), peer["y"])

    return {
        "torch: whole point": whole,
        "torch: conv1": call(0, 1),
        "torch: sigmoid + avg pool after conv1": call(1, 3),
        "torch: conv2": call(3, 4),
        "torch: sigmoid + avg pool after conv2": call(4, 6),
        "torch: fc1, fc2, fc3": call(6, 12),
    }


def _full(setup: dict, peer: dict, n: int, rounds: int) -> dict:
    ours = _ours(setup, n)
    cold = time.perf_counter()
    values = ours()  # the grid program is compiled by _variants already: this call reuses it
    cold = time.perf_counter() - cold
    theirs = peer["plane"](n)
    times = _interleaved(
        {"landscape.surface": ours, "loss-landscapes": lambda: peer["plane"](n)}, rounds
    )
    med = {name: statistics.median(t) for name, t in times.items()}
    return {
        "grid": n,
        "rounds": rounds,
        "first_call_s": cold,
        "seconds": med,
        "times_s": times,
        "ours_over_loss_landscapes": med["landscape.surface"] / med["loss-landscapes"],
        "center": {
            "ours": float(values[n // 2, n // 2]),
            "loss-landscapes": float(theirs[n // 2, n // 2]),
        },
        "load_average": list(os.getloadavg()),
    }


def _machine() -> dict:
    from jaxopt_notes.benchmarks import cpu_model

    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        lscpu = ""
    name = next(
        (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), None
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in lscpu.splitlines() if ln.startswith("Flags")), []
    )
    try:
        import torch

        versions = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    except ImportError:
        versions = {}
    return {
        "lscpu_model_name": name,
        "avx512": sorted(f for f in flags if f.startswith("avx512")),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "jax": jax.__version__,
        **versions,
    }


def _write(report: dict, out_dir: str | None) -> dict:
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "landscape_bench.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    sizes = dict(arg.split("=") for arg in sys.argv[2:])
    result = bench_landscape(sys.argv[1], **{k: int(v) for k, v in sizes.items()})
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
