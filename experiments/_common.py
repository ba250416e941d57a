"""What every experiment shares: JSON-safe values, trajectories, figures, result.json, timers."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxopt_notes._extras import require

matplotlib = require("matplotlib", "experiments")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxopt_notes as jn  # noqa: E402


def to_json(value: Any) -> Any:
    """Turns NumPy/JAX scalars and arrays (nested in dicts/lists) into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if dataclasses.is_dataclass(value):
        return to_json(dataclasses.asdict(value))
    if hasattr(value, "tolist"):
        return to_json(np.asarray(value).tolist())
    if isinstance(value, float):
        return value if np.isfinite(value) else str(value)
    return value


def trajectory(tx, f, x0: jax.Array, steps: int, record=None):
    """``record(x)`` at the iterates x_0..x_steps of the transform ``tx`` descending ``f``.

    One ``lax.scan``; traceable, so ``jit`` and ``vmap`` over ``x0`` work. ``record`` defaults
    to the iterate itself and may return any pytree (stacked along a new first axis).
    """
    record = record or (lambda x: x)

    def body(carry, _):
        x, s = carry
        u, s = tx.update(jax.grad(f)(x), s, x)
        x = jn.apply_updates(x, u)
        return (x, s), record(x)

    _, later = jax.lax.scan(body, (x0, tx.init(x0)), None, length=steps)
    return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), record(x0), later)


def save_figure(fig, out_dir: Path, name: str) -> str:
    path = out_dir / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


def write_result(out_dir: Path, result: dict) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "result.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_json(result), indent=2))
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


class Timer:
    """Wall time and CPU time (all threads of the process) of a ``with`` block."""

    def __enter__(self):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start
