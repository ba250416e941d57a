"""The machine a measurement ran on: platform, CPU and its vector extensions, versions, memory."""

from __future__ import annotations

import importlib
import os
import platform

import jax


def machine() -> dict:
    """Where a result was measured: written beside every benchmark's numbers."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_model(),
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "versions": {m: importlib.import_module(m).__version__ for m in ("jax", "optax", "numpy")}
        | _torch_version(),
    }


def cpu_model() -> dict:
    """The CPU's name and its widest vector extensions (Linux's /proc/cpuinfo; empty where it
    is absent): timings, the conv kernels' above all, differ between AVX2 and AVX-512."""
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return {}
    fields = dict(
        line.split(":", 1) for line in text.splitlines() if ":" in line and line[0] != " "
    )
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    wanted = ("avx2", "fma", "avx512f", "avx512vl", "avx512_bf16", "amx_tile")
    return {"model": fields.get("model name"), "vector": [f for f in wanted if f in flags]}


def _torch_version() -> dict:
    try:
        import torch
    except ImportError:
        return {}
    return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def peak_rss_mb() -> float:
    """The peak resident memory of this process so far (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
