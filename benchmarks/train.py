"""LeNet train-step throughput: our scanned epoch vs a plain Flax+optax loop vs torch eager.

All train the same LeNet (``modern``: ReLU, max-pool; ``classic``: sigmoid, average pool) with
Adam on the same images, in the same process, one after another for each repeat so that a busy
machine slows all of them alike. Throughput is samples per second over one pass of the images,
the median over repeats.

- ``scan``: :func:`jaxopt_notes.train.make_epoch_fn`, one jitted call per pass (data on device).
- ``flax``: the Flax example's loop, an ``nnx.jit`` step per batch fed from host NumPy arrays,
  on our :class:`~jaxopt_notes.models.LeNet` (so it differs from ``scan`` by the loop alone).
- ``flax_stock``: the same loop on a LeNet of stock Flax layers (``nnx.Conv``,
  ``nnx.max_pool``/``nnx.avg_pool``): what the Flax example would have a user write.
- ``torch``: eager PyTorch on the CPU, only when ``import torch`` works.

A benchmark, never a test: ``jaxopt-notes bench`` calls :func:`bench_train`.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from jaxopt_notes import data as data_lib
from jaxopt_notes import models, train


def _time(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def _scan_runner(ds: data_lib.Dataset, batch_size: int, variant: str) -> Callable[[], Any]:
    cfg = train.TrainConfig(model="lenet", variant=variant, batch_size=batch_size, epochs=1)
    mesh = train.make_mesh(1)
    tx = optax.adam(1e-3)
    model, state = train.init_state(cfg, ds, tx, mesh)
    x, y = jax.device_put((ds.x_train, ds.y_train))
    epoch = train.make_epoch_fn(model, tx, ds, cfg, mesh)
    box = {"state": state, "key": jax.random.key(0)}

    def run():
        box["key"], key = jax.random.split(box["key"])
        box["state"], metrics = epoch(box["state"], x, y, key)
        return metrics

    return run


class _StockLeNet(nnx.Module):
    """LeNet-5 from stock Flax layers, the baseline a Flax user would write."""

    def __init__(self, channels: int, flat: int, variant: str, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(channels, 6, kernel_size=(5, 5), padding=2, rngs=rngs)
        self.conv2 = nnx.Conv(6, 16, kernel_size=(5, 5), padding="VALID", rngs=rngs)
        self.fcs = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in ((flat, 120), (120, 84), (84, 10))]
        )
        self.variant = variant

    def __call__(self, x):
        classic = self.variant == "classic"
        act, pool = (jax.nn.sigmoid, nnx.avg_pool) if classic else (jax.nn.relu, nnx.max_pool)
        for conv in (self.conv1, self.conv2):
            x = pool(act(conv(x)), window_shape=(2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for fc in self.fcs[:-1]:
            x = act(fc(x))
        return self.fcs[-1](x)


def _flat(ds: data_lib.Dataset) -> int:
    return 16 * ((ds.image_shape[0] // 2 - 4) // 2) ** 2


def _flax_runner(
    ds: data_lib.Dataset, batch_size: int, variant: str, stock: bool = False
) -> Callable[[], Any]:
    if stock:
        model = _StockLeNet(ds.image_shape[2], _flat(ds), variant, nnx.Rngs(0))
    else:
        model = models.LeNet(in_shape=ds.image_shape, variant=variant, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    x = np.asarray(data_lib.normalize(ds.x_train, ds.mean, ds.std))
    y = ds.y_train

    @nnx.jit
    def step(model, optimizer, xb, yb):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(xb), yb).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(0)

    def run():
        order = rng.permutation(len(y))
        for i in range(len(y) // batch_size):
            idx = order[i * batch_size : (i + 1) * batch_size]
            loss = step(model, optimizer, x[idx], y[idx])
        return loss

    return run


def _torch_runner(ds: data_lib.Dataset, batch_size: int, variant: str) -> Callable[[], Any] | None:
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    nn = torch.nn
    act, pool = (nn.Sigmoid, nn.AvgPool2d) if variant == "classic" else (nn.ReLU, nn.MaxPool2d)
    net = nn.Sequential(
        nn.Conv2d(ds.image_shape[2], 6, 5, padding=2),
        act(),
        pool(2),
        nn.Conv2d(6, 16, 5),
        act(),
        pool(2),
        nn.Flatten(),
        nn.Linear(_flat(ds), 120),
        act(),
        nn.Linear(120, 84),
        act(),
        nn.Linear(84, 10),
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.from_numpy(np.array(data_lib.normalize(ds.x_train, ds.mean, ds.std)))
    x, y = x.permute(0, 3, 1, 2).contiguous(), torch.from_numpy(ds.y_train.astype(np.int64))

    def run():
        order = torch.randperm(len(y))
        for i in range(len(y) // batch_size):
            idx = order[i * batch_size : (i + 1) * batch_size]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
        return np.float32(loss.item())

    return run


def bench_train(out_dir: str | None = None, quick: bool = False) -> dict:
    """Samples/s of a LeNet train step, both variants, batch 256 and 64, for each loop (medians).

    ``quick`` uses 1,024 images and 2 repeats instead of the 4,000 mnist5k training images and 5.
    With ``out_dir`` the result is also written to ``out_dir/train_bench.json``.
    """
    ds = data_lib.load("mnist5k")
    n, repeats = (1024, 2) if quick else (len(ds.y_train), 5)
    ds = data_lib.Dataset(ds.name, ds.source, ds.x_train[:n], ds.y_train[:n], ds.x_test, ds.y_test)
    results: dict[str, Any] = {}
    for variant in ("modern", "classic"):
        for batch_size in (256, 64):
            key = f"{variant}_batch_{batch_size}"
            results[key] = _race(ds, batch_size, variant, repeats)
            print(
                key,
                {k: round(v["samples_per_s"]) for k, v in results[key].items() if k != "scan_over"},
                flush=True,
            )
    report = {
        "benchmark": "LeNet + Adam train-step throughput",
        "dataset": ds.describe(),
        "repeats": repeats,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "results": results,
    }
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "train_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _race(ds: data_lib.Dataset, batch_size: int, variant: str, repeats: int) -> dict:
    runners = {
        "scan": _scan_runner(ds, batch_size, variant),
        "flax": _flax_runner(ds, batch_size, variant),
        "flax_stock": _flax_runner(ds, batch_size, variant, stock=True),
        "torch": _torch_runner(ds, batch_size, variant),
    }
    runners = {k: v for k, v in runners.items() if v is not None}
    times: dict[str, list[float]] = {k: [] for k in runners}
    for run in runners.values():
        run()  # compile and warm up
    for _ in range(repeats):
        for name, run in runners.items():
            times[name].append(_time(run))
    samples = (len(ds.y_train) // batch_size) * batch_size
    row: dict[str, Any] = {
        name: {"samples_per_s": samples / statistics.median(t), "times_s": t}
        for name, t in times.items()
    }
    row["scan_over"] = {
        name: row["scan"]["samples_per_s"] / row[name]["samples_per_s"]
        for name in runners
        if name != "scan"
    }
    return row


# ----- the lab: curvature's cost (the landscape's benchmark is benchmarks/landscape.py) -----


def _machine() -> dict:
    import platform

    from jaxopt_notes.benchmarks import cpu_model

    return {
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
        "jax": jax.__version__,
    }


def bench_curvature(
    out_dir: str | None = None,
    *,
    epochs: int = 4,
    settings: tuple = ((50, 32, 4, 2), (50, 64, 4, 2), (50, 256, 8, 4)),
) -> dict:
    """LeNet + Adam on mnist5k (``train``'s defaults otherwise) with ``--track-curvature 50``:
    the measurements' time as a fraction of the training steps' time, per (every, examples,
    Lanczos steps, probes); the first row is ``train``'s default."""
    rows = []
    for every, n, iters, probes in settings:
        cfg = train.TrainConfig(
            epochs=epochs,
            track_curvature=every,
            curvature_examples=n,
            curvature_iters=iters,
            curvature_probes=probes,
        )
        result = train.train(cfg, progress=False)
        summary = result["summary"]
        c = summary["curvature"]
        rows.append(
            {
                "every": every,
                "examples": n,
                "lanczos_steps": iters,
                "probes": probes,
                "measurements": c["measurements"],
                "curvature_s": c["seconds_this_session"],
                "train_steps_s": summary["train_time_s"],
                "fraction_of_training_time": c["fraction_of_training_time"],
                "last_top_residual": (c["last"] or {}).get("top_residual"),
                "load_average": list(os.getloadavg()),
            }
        )
    cfg = train.TrainConfig()
    report = {
        "model": f"LeNet {cfg.variant} + Adam, mnist5k, batch {cfg.batch_size}, `train` defaults",
        "epochs": epochs,
        "rows": rows,
        "machine": _machine(),
    }
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "curvature_bench.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    import sys

    if len(sys.argv) < 3:  # the step race alone, as before
        bench = bench_train(quick=False)
        print(json.dumps({k: v["scan_over"] for k, v in bench["results"].items()}, indent=2))
    else:
        which, out = sys.argv[1], sys.argv[2]
        result = {"curvature": bench_curvature}[which](out)
        print(json.dumps(result, indent=2))
