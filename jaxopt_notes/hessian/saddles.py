"""A trained run's nearest critical point: found, classified, escaped if a saddle, drawn.

:func:`saddles_run` is what ``jaxopt-notes saddles --run RUN --out DIR`` does: it writes
``saddles.json`` and the figures ``search.png`` (``|g|`` along the search), ``spectrum.png``
(the eigenvalues, negative part marked) and, at a saddle, ``escape.png`` (the loss along the
negative-curvature direction against a random direction and the gradient).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._extras import require
from jaxopt_notes.hessian.critical import Classification, classify
from jaxopt_notes.hessian.escape import EscapeComparison, escape_compare
from jaxopt_notes.hessian.find import CriticalPoint, find_critical
from jaxopt_notes.hessian.report import json_safe

STAGES = ("load run", "find critical point", "classify", "escape", "figures")


def _out_dir(out: str | Path, run_path: Path, overwrite: bool) -> Path:
    out = Path(out)
    if out.resolve() == run_path.resolve() or run_path.resolve() in out.resolve().parents:
        raise ValueError(f"`out` must lie outside the run directory, got {str(out)!r}")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"`out` {str(out)!r} exists and is not empty: pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def saddles_run(
    run: Any,
    out: str | Path,
    *,
    split: str = "train",
    num_examples: int | None = None,
    float64: bool = True,
    rtol: float | None = None,
    max_iter: int = 50,
    max_hvps: int = 5000,
    k: int = 5,
    lanczos_steps: int = 60,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Finds the critical point nearest a run's parameters, classifies it, escapes a saddle.

    ``run`` is a trained run as ``jaxopt_notes.train.load_run(RUN)`` gives it back (its
    ``path``, ``params``, ``config.model``, ``arrays`` and ``loss_fn`` are used; this room does
    not import ``train``, which imports it).

    The loss is the run's mean loss over ``split`` (its first ``num_examples``), in float64
    unless ``float64=False``. :func:`~jaxopt_notes.hessian.find_critical` runs from the run's
    parameters (``rtol``, ``max_iter``, ``max_hvps``); the point it stops at is classified
    with the gradient tolerance relative to the gradient norm at the start; where it has
    negative curvature, :func:`~jaxopt_notes.hessian.escape.escape_compare` steps out. Returns
    the JSON written to ``out/saddles.json``; refuses a non-empty ``out`` unless ``overwrite``.
    Beyond ``DENSE_MAX`` parameters the spectrum's ends come from at most ``lanczos_steps``
    Lanczos steps and the minimum ratio from two SLQ probes of half as many.
    """
    _checks.flag("overwrite", overwrite)
    _checks.flag("float64", float64)
    tqdm = require("tqdm.auto", "train").tqdm
    start = time.perf_counter()
    out = _out_dir(out, run.path, overwrite)  # refusals before the bar: one line each
    bar = tqdm(total=len(STAGES), disable=not progress, unit="stage", desc=STAGES[0])
    with jax.enable_x64(float64):
        limits = (rtol, max_iter, max_hvps, k, lanczos_steps)
        result = _analyse(run, split, num_examples, float64, limits, seed, bar)
    _stage(bar, "figures")
    result["figures"] = _figures(result.pop("_objects"), out)
    result["seconds"] = time.perf_counter() - start
    bar.update(1)
    bar.close()
    safe = json_safe(result)
    (out / "saddles.json").write_text(_dumps(safe))
    return safe


def _stage(bar, name: str) -> None:
    bar.update(1)
    bar.set_description(name)


def _analyse(run, split, num_examples, float64, limits, seed, bar) -> dict:
    rtol, max_iter, max_hvps, k, steps = limits
    dtype = jnp.float64 if float64 else jnp.float32
    loss_fn = run.loss_fn(split, num_examples)
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), run.params)
    _stage(bar, "find critical point")
    found = find_critical(
        loss_fn,
        params,
        rtol=rtol,
        max_iter=max_iter,
        max_hvps=max_hvps,
        callback=lambda step, g: bar.set_postfix(step=step, grad_norm=f"{g:.2e}"),
    )
    _stage(bar, "classify")
    key = jax.random.PRNGKey(seed)
    c = classify(
        loss_fn,
        found.params,
        k=k,
        grad_scale=found.grad_norm_start,
        key=key,
        max_iter=max(steps, 2 * k),
        density_probes=2,
        density_iter=max(steps // 2, 1),
    )
    _stage(bar, "escape")
    escape = None
    if c.num_negative:
        escape = escape_compare(
            loss_fn, found.params, key=jax.random.fold_in(key, 1), max_iter=max(steps, 2)
        )
    source = {"run": str(run.path), "model": run.config.model, "split": split}
    source["num_examples"] = int(len(run.arrays(split, num_examples)[1]))
    return {
        "source": source,
        "dtype": np.dtype(dtype).name,
        "search": _search_json(found),
        "classification": _classification_json(c),
        "escape": None if escape is None else _escape_json(escape),
        "summary": f"{found}; {c}" + ("" if escape is None else f"; {escape}"),
        "_objects": (found, c, escape),
    }


def _search_json(found: CriticalPoint) -> dict:
    keys = ("status", "loss", "grad_norm", "grad_norm_start", "rtol", "tol", "iterations")
    keys += ("num_hvps", "num_grads", "residual_ratio", "grad_curvature", "hessian_scale")
    out = {key: getattr(found, key) for key in keys}
    out["grad_norm_history"] = found.grad_norm_history.tolist()
    out["seconds"] = found.seconds
    out["sentence"] = str(found)
    return out


def _classification_json(c: Classification) -> dict:
    keys = ("kind", "grad_norm", "grad_tol", "grad_rule", "eig_tol", "scale", "size", "method")
    keys += ("num_positive", "num_negative", "num_near_zero", "minimum_ratio")
    keys += ("minimum_ratio_error", "minimum_ratio_source", "complete", "converged")
    keys += ("model_radius", "gradient_decrease", "curvature_decrease", "better_step")
    out = {key: getattr(c, key) for key in keys}
    out["most_negative"] = c.most_negative.tolist()
    out["eigenvalues"] = c.eigenvalues.tolist() if c.complete else None
    out["largest"], out["smallest"] = c.eigenvalues[:5].tolist(), c.eigenvalues[-5:].tolist()
    out["explanation"] = c.explain()
    return out


def _escape_json(e: EscapeComparison) -> dict:
    keys = ("loss", "eigenvalue", "length", "gradient_decrease", "model_decrease", "escapes")
    out = {key: getattr(e, key) for key in keys}
    out["escape_decrease"] = list(e.escape_decrease)
    out["random_decrease"] = e.random_decrease.tolist()
    out["line"] = {name: np.asarray(v).tolist() for name, v in e.line.items()}
    out["sentence"] = str(e)
    return out


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, indent=1, allow_nan=False) + "\n"


def _figures(objects, out: Path) -> list[str]:
    from jaxopt_notes.hessian.sharpness import _figure

    found, c, escape = objects
    fig, ax = _figure()
    ax.semilogy(found.grad_norm_history, marker="o")
    ax.axhline(found.tol, color="red", ls="--", label=f"tolerance ({found.rtol:.1g} x start)")
    ax.set(xlabel="Newton-MR step", ylabel="|grad L|", title=f"search: {found.status}")
    ax.legend()
    fig.savefig(out / "search.png", dpi=100)
    names = ["search.png", _spectrum(c, out)]
    if escape is not None:
        names.append(_escape_figure(escape, out))
    return names


def _spectrum(c: Classification, out: Path) -> str:
    from jaxopt_notes.hessian.sharpness import _figure

    fig, ax = _figure()
    lam = c.eigenvalues
    if c.complete:  # every eigenvalue: a histogram, the negative ones in red
        bins = np.linspace(lam.min(), lam.max(), 60)
        ax.hist(lam[lam >= -c.eig_tol], bins=bins, color="tab:blue", label="positive or zero")
        ax.hist(lam[lam < -c.eig_tol], bins=bins, color="tab:red", label="negative")
        ax.set_yscale("log")
    else:  # Lanczos: both ends as sticks; the middle of the spectrum is not computed
        ax.vlines(lam, 0, 1, colors=np.where(lam < -c.eig_tol, "tab:red", "tab:blue"))
        ax.set_yticks([])
    ax.axvline(0.0, color="gray", lw=0.5)
    ratio = "?" if c.minimum_ratio is None else f"{c.minimum_ratio:.3f}"
    if c.minimum_ratio_error:
        ratio += f" +- {c.minimum_ratio_error:.2g} (SLQ)"
    what = "all" if c.complete else f"{len(lam)} extreme"
    title = f"{c.kind}: {c.num_negative} of {what} eigenvalues negative; min. ratio {ratio}"
    ax.set(xlabel="eigenvalue", ylabel="count" if c.complete else "")
    ax.set_title(title, fontsize=9)
    if c.complete:
        ax.legend()
    fig.savefig(out / "spectrum.png", dpi=100)
    return "spectrum.png"


def _escape_figure(e: EscapeComparison, out: Path) -> str:
    from jaxopt_notes.hessian.sharpness import _figure

    fig, ax = _figure()
    t = e.line["t"]
    ax.plot(t, e.line["escape"], label=f"negative curvature ({e.eigenvalue:.2g})", color="tab:red")
    ax.plot(t, e.line["random"], label="a random direction", color="tab:gray")
    ax.plot(t, e.line["gradient"], label="-gradient", color="tab:blue")
    ax.axvline(e.length, color="k", ls=":", lw=0.8, label="model's step length")
    ax.axvline(-e.length, color="k", ls=":", lw=0.8)
    ax.set(xlabel="step length", ylabel="loss", title="loss along the escape and the controls")
    ax.legend()
    fig.savefig(out / "escape.png", dpi=100)
    return "escape.png"
