"""``jaxopt-notes bench step``: an optimizer step's speed against its peers in the same run.

It times one jitted optimizer step (parameters and state donated) for 1M and 10M
float32 parameters split into 1, 10 or 100 leaves, ours against optax's optimizer of the same
name and, when torch is installed, torch.optim (fused and foreach). Rounds are interleaved
(every implementation once per round) and the median over rounds is reported, with the
machine and the versions. Never a test.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxopt_notes.benchmarks._machine import peak_rss_mb

import jaxopt_notes as jn
from jaxopt_notes import fused
from jaxopt_notes._extras import require


def _peers(
    factory: str,
    kw: dict | None = None,
    *,
    torch: tuple[str, dict],
    optax_kw: dict | None = None,
    fused_factory: str | None = None,
    fused_kw: dict | None = None,
) -> tuple:
    """One row of :data:`PAIRS`: ``factory`` of ours and of optax with the keywords ``kw``
    (optax's own: ``optax_kw``), torch.optim's ``(class, keywords)``, and our fused
    ``fused_factory`` (default: the same name) with ``kw`` (or ``fused_kw``)."""
    kw = kw or {}
    optax_kw = kw if optax_kw is None else optax_kw
    fused_kw = kw if fused_kw is None else fused_kw
    ours_fused = getattr(fused, fused_factory or factory)
    return (
        lambda: getattr(jn, factory)(1e-3, **kw),
        lambda: getattr(optax, factory)(1e-3, **optax_kw),
        torch,
        lambda **more: ours_fused(1e-3, **fused_kw, **more),
    )


PAIRS = {  # name: (ours, optax's, torch.optim factory name and keywords, our fused one(**kw))
    "adam": _peers("adam", torch=("Adam", {})),
    "momentum": _peers("sgd", {"momentum": 0.9}, torch=("SGD", {"momentum": 0.9})),
    "rmsprop": _peers("rmsprop", torch=("RMSprop", {})),
    "adagrad": _peers("adagrad", torch=("Adagrad", {})),
    "amsgrad": _peers(
        "amsgrad",
        torch=("Adam", {"amsgrad": True}),
        fused_factory="adam",
        fused_kw={"amsgrad": True},
    ),
    "adamw": _peers(
        "adamw",
        {"weight_decay": 1e-2},
        torch=("AdamW", {"weight_decay": 1e-2}),
        fused_factory="adam",
    ),
    # opt-in bfloat16 moments (optax can store only mu in bfloat16)
    "adam_bf16": _peers(
        "adam",
        {"moment_dtype": jnp.bfloat16},
        optax_kw={"mu_dtype": jnp.bfloat16},
        torch=("Adam", {}),
    ),
}


FUSED_VARIANTS = {  # runner: (the row's field of its ratios, its table label, its console label)
    "jaxopt_notes_fused": ("fused_ratio_vs", "fused", "fused"),
    "jaxopt_notes_fused_flat": ("flat_ratio_vs", "fused flat", "flat"),
}


def _split(n_params: int, n_leaves: int) -> list[int]:
    base = n_params // n_leaves
    return [base + (1 if i < n_params % n_leaves else 0) for i in range(n_leaves)]


def jax_stepper(tx, sizes: list[int]):
    """A jitted, donated ``params, state <- step(params, state, grads)`` and its first inputs;
    ``tx`` is a GradientTransformation or a :class:`jaxopt_notes.fused.FusedOptimizer`."""
    params = [jnp.full((s,), 0.5, jnp.float32) for s in sizes]
    grads = [jnp.full((s,), 1e-3, jnp.float32) for s in sizes]
    state = tx.init(params)

    def step(params, state, grads):
        if isinstance(tx, fused.FusedOptimizer):
            return tx.step(params, state, grads)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(step, donate_argnums=(0, 1))
    carry = {"params": params, "state": state}

    def run_once() -> float:
        t0 = time.perf_counter()
        carry["params"], carry["state"] = step(carry["params"], carry["state"], grads)
        # one program makes all its outputs ready together: wait on one array, since waiting
        # on (or flattening) every leaf would add a host cost per array to the timed step
        carry["params"][0].block_until_ready()
        return time.perf_counter() - t0

    run_once()  # compile
    run_once.state_bytes = sum(x.nbytes for x in jax.tree.leaves(carry["state"]))
    return run_once


def torch_stepper(name: str, keywords: dict, sizes: list[int], mode: str):
    import torch

    params = [torch.nn.Parameter(torch.full((s,), 0.5)) for s in sizes]
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    try:
        opt = getattr(torch.optim, name)(params, lr=1e-3, **{mode: True}, **keywords)
    except (TypeError, RuntimeError):  # e.g. torch.optim.RMSprop has no fused kernel
        return None

    def run_once() -> float:
        t0 = time.perf_counter()
        opt.step()
        return time.perf_counter() - t0

    run_once()
    return run_once


def bench_step(
    optimizers=("adam",),
    sizes=(1_000_000, 10_000_000),
    leaves=(1, 10, 100),
    rounds: int = 15,
    calls: int = 5,
) -> list[dict]:
    """Median milliseconds per step for every (optimizer, size, leaves) row."""
    try:
        import torch  # noqa: F401

        torch_modes = ("fused", "foreach")
    except ImportError:
        torch_modes = ()
    rows = []
    for name in optimizers:
        ours, theirs, (torch_name, torch_kw), ours_fused = PAIRS[name]
        for n in sizes:
            for k in leaves:
                split = _split(n, k)
                runners = {
                    "jaxopt_notes": jax_stepper(ours(), split),
                    "optax": jax_stepper(theirs(), split),
                }
                if ours_fused is not None and fused.available():
                    runners["jaxopt_notes_fused"] = jax_stepper(ours_fused(), split)
                    if k > 1:  # the moments in one buffer each: fewer arrays to dispatch
                        flat = ours_fused(flat_state=True)
                        runners["jaxopt_notes_fused_flat"] = jax_stepper(flat, split)
                for mode in torch_modes:
                    runner = torch_stepper(torch_name, torch_kw, split, mode)
                    if runner is not None:
                        runners[f"torch_{mode}"] = runner
                times = {key: [] for key in runners}
                for _ in range(rounds):  # interleaved: each implementation once per round
                    for key, run_once in runners.items():
                        times[key].append(np.median([run_once() for _ in range(calls)]))
                ms = {key: 1e3 * float(np.median(v)) for key, v in times.items()}
                row = {
                    "optimizer": name,
                    "params": n,
                    "leaves": k,
                    "median_ms": ms,
                    "state_bytes_per_param": {
                        key: r.state_bytes / n
                        for key, r in runners.items()
                        if hasattr(r, "state_bytes")
                    },
                    "peak_rss_mb": peak_rss_mb(),
                }
                row["ratio_vs"] = {
                    key: ms["jaxopt_notes"] / v for key, v in ms.items() if key != "jaxopt_notes"
                }
                for variant, (field, _, _) in FUSED_VARIANTS.items():
                    if variant in ms:
                        row[field] = {
                            key: ms[variant] / v
                            for key, v in ms.items()
                            if key not in FUSED_VARIANTS
                        }
                rows.append(row)
                print(format_row(row), flush=True)
                del runners
    return rows


def format_row(row: dict) -> str:
    ms = "  ".join(f"{k}={v:.2f}ms" for k, v in row["median_ms"].items())
    ratios = "  ".join(f"ours/{k}={v:.2f}x" for k, v in row["ratio_vs"].items())
    for field, _, who in FUSED_VARIANTS.values():
        ratios += "".join(f"  {who}/{k}={v:.2f}x" for k, v in row.get(field, {}).items())
    size = f"{row['params']:>10,d} params {row['leaves']:>3d} leaves"
    return f"{row['optimizer']:>8s} {size}  {ms}  {ratios}"


def markdown_table(rows: list[dict]) -> str:
    """Milliseconds of every implementation, then ours (chain) / optax and fused / each peer."""
    ours = ["jaxopt_notes", *FUSED_VARIANTS]
    peers = sorted({k for r in rows for k in r["median_ms"]} - set(ours))
    names = [k for k in ours if any(k in r["median_ms"] for r in rows)] + peers
    ratios = [("ratio_vs", "ours", "optax")]
    for field, who, _ in FUSED_VARIANTS.values():
        if any(field in r for r in rows):
            ratios += [(field, who, p) for p in peers]
    head = "| optimizer | params | leaves | " + " | ".join(f"{k} (ms)" for k in names)
    head += " | " + " | ".join(f"{who} / {p}" for _, who, p in ratios) + " |"
    lines = [head, "|" + "---|" * (3 + len(names) + len(ratios))]
    for r in rows:
        cells = [r["optimizer"], f"{r['params']:,}", str(r["leaves"])]
        cells += [f"{r['median_ms'][k]:.2f}" if k in r["median_ms"] else "" for k in names]
        cells += [f"{r[key][p]:.2f}x" if p in r.get(key, {}) else "" for key, _, p in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_rows(rows: list[dict], path: Path) -> None:
    matplotlib = require("matplotlib", "experiments")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['optimizer']}\n{r['params'] // 1_000_000}M/{r['leaves']}" for r in rows]
    keys = list(dict.fromkeys(k for r in rows for k in r["median_ms"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows)), 4))
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        ax.bar(
            np.arange(len(rows)) + i * width,
            [r["median_ms"].get(key, np.nan) for r in rows],
            width,
            label=key,
        )
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, labels, fontsize=8)
    ax.set_ylabel("median ms per step")
    ax.set_yscale("log")
    ax.legend()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
