"""What every experiment shares: claims decided from numbers, result.json, figures, REPORT.md."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxopt_notes as jn  # noqa: E402


def claim(text: str, holds: bool, evidence: dict[str, Any], reason: str = "") -> dict:
    """A claim of the notes with the verdict its measured ``evidence`` gives.

    ``holds`` must be computed from the evidence by the caller; ``reason`` says, when it does
    not hold, what the numbers showed instead.
    """
    entry = {
        "claim": text,
        "verdict": "reproduced" if bool(holds) else "not_reproduced",
        "evidence": to_json(evidence),
    }
    if not holds and reason:
        entry["reason"] = reason
    return entry


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
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def write_report(out: Path, results: list[dict], title: str = "jaxopt_notes experiments") -> Path:
    """REPORT.md: one section per experiment with its figures, claims and verdicts."""
    total = sum(len(r["claims"]) for r in results)
    held = sum(c["verdict"] == "reproduced" for r in results for c in r["claims"])
    lines = [f"# {title}", "", f"{held} of {total} claims reproduced by the numbers measured.", ""]
    lines += ["| experiment | data | claims reproduced | wall time (s) |", "|---|---|---|---|"]
    for r in results:
        ok = sum(c["verdict"] == "reproduced" for c in r["claims"])
        wall = r.get("wall_time_s", float("nan"))
        lines.append(f"| [{r['name']}](#{r['name']}) | {r.get('data', '')} | "
                     f"{ok}/{len(r['claims'])} | {wall:.1f} |")  # fmt: skip
    for r in results:
        lines += ["", f"## {r['name']}", "", r.get("summary", ""), ""]
        lines.append(f"Data: {r.get('data', 'not stated')}. Quick mode: {r.get('quick', False)}.")
        lines.append("")
        for fig in r.get("figures", []):
            lines.append(f"![{r['name']}: {fig}]({r['name']}/{fig})")
        lines += ["", "| claim | verdict | evidence |", "|---|---|---|"]
        for c in r["claims"]:
            evidence = json.dumps(c["evidence"])
            if len(evidence) > 300:
                evidence = evidence[:297] + "..."
            note = f" ({c['reason']})" if "reason" in c else ""
            lines.append(f"| {c['claim']} | **{c['verdict']}**{note} | `{evidence}` |")
    path = out / "REPORT.md"
    path.write_text("\n".join(lines) + "\n")
    return path
