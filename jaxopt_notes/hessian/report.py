"""One analysis of a point: classification, both ends, trace, density, minimum ratio, in words.

:func:`analyse` is what ``jaxopt-notes hessian`` prints and saves; it returns a JSON-safe dict
(:func:`json_safe`: a NaN or infinity becomes ``null`` with its reason under ``"nulls"``).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jaxopt_notes._types import PyTree
from jaxopt_notes.hessian import _core as core
from jaxopt_notes.hessian.critical import classify
from jaxopt_notes.hessian.density import from_nodes, spectral_density, trace, tridiagonal_nodes
from jaxopt_notes.hessian.sharpness import plot_spectral_density


def json_safe(value: Any, nulls: dict | None = None, where: str = "") -> Any:
    """``value`` with numpy types as Python ones and non-finite floats as None, each recorded
    in ``nulls[where] = reason`` (JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {k: json_safe(v, nulls, f"{where}/{k}".lstrip("/")) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v, nulls, f"{where}/{i}") for i, v in enumerate(list(value))]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        if nulls is not None:
            nulls[where] = f"was {value} (not representable in JSON)"
        return None
    return value


def analyse(
    loss_fn: core.LossFn,
    params: PyTree,
    key: jax.Array,
    *,
    out_dir: str | None = None,
    k: int = 2,
    tol: float = 1e-2,
    max_iter: int = 40,
    num_probes: int = 1,
    num_iter: int = 24,
    trace_samples: int = 10,
    loss_info: Mapping | None = None,
    method: str = "auto",
) -> dict:
    """Classifies ``params``, with both ends of the spectrum, the trace and the density.

    ``tol`` is Lanczos' relative residual (each eigenvalue's error is at most ``tol`` times the
    largest, usually far less); ``out_dir`` gets ``spectral_density.png``.

    The Lanczos run of the classification starts from a Rademacher probe and runs at least
    ``num_iter`` steps, so it is also the first SLQ probe, and the trace is taken exactly on
    its Krylov space, the ``trace_samples`` probes estimating only the rest (``trace``'s
    ``deflate``): it costs about ``max(steps to tol, num_iter) + (num_probes - 1) * num_iter +
    trace_samples`` products (dense: ``n + num_probes * num_iter + trace_samples``).
    """
    k1, k2, k3 = jax.random.split(key, 3)
    start = time.perf_counter()
    c = classify(
        loss_fn,
        params,
        k=k,
        key=k1,
        tol=tol,
        max_iter=max_iter,
        loss_info=loss_info,
        method=method,
        min_iter=num_iter,
        start="rademacher",
        density_probes=0,  # the density below shares this run instead
    )
    tri = c.tridiagonal
    steps = min(num_iter, c.size)
    shared = tri is not None and len(tri.alpha) >= steps
    deflate = tri if shared and tri.basis is not None else 0
    tr = trace(loss_fn, params, trace_samples, k2, check_finite=False, deflate=deflate)
    if shared:
        nodes, weights = tridiagonal_nodes(tri, steps)
        if num_probes > 1:
            more = spectral_density(
                loss_fn, params, k3, num_probes=num_probes - 1, num_iter=steps, check_finite=False
            )
            nodes, weights = np.r_[nodes, more.nodes], np.r_[weights, more.weights]
        dens = from_nodes(nodes, weights, c.size, info=loss_info, num_hvps=(num_probes - 1) * steps)
    else:
        dens = spectral_density(
            loss_fn, params, k3, num_probes=num_probes, num_iter=num_iter, check_finite=False
        )
    ratio = c.minimum_ratio if c.complete else dens.fraction_positive(c.eig_tol)
    result = {
        "kind": c.kind,
        "size": c.size,
        "method": c.method,
        "loss": c.loss,
        "grad_norm": c.grad_norm,
        "grad_tol": c.grad_tol,
        "eig_tol": c.eig_tol,
        "largest": c.eigenvalues[: min(k, len(c.eigenvalues))].tolist(),
        "smallest": c.eigenvalues[-min(k, len(c.eigenvalues)) :].tolist(),
        "eigenvalues_converged": c.converged,
        "lanczos_tol": tol,
        "num_positive": c.num_positive,
        "num_negative": c.num_negative,
        "num_near_zero": c.num_near_zero,
        "complete": c.complete,
        "minimum_ratio": ratio,
        "minimum_ratio_source": "all eigenvalues"
        if c.complete
        else f"density estimate ({num_probes} probe(s) x {steps} Lanczos steps)",
        "trace": {
            "estimate": tr.estimate,
            "std_error": tr.std_error,
            "samples": tr.num_samples,
            "krylov_dimension": tr.deflated,  # the trace on that space is exact
            "exact_part": tr.exact_part,
        },
        "density": {"sigma": dens.sigma, "num_probes": num_probes, "num_iter": steps},
        "num_hvps": c.num_hvps + tr.num_samples + dens.num_hvps,
        "shared_lanczos_run": shared,
        "explanation": _words(c, tr, ratio),
        "info": dict(loss_info or {}),
    }
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
        png = plot_spectral_density(dens, os.path.join(out_dir, "spectral_density.png"))
        result["density"]["png"] = os.path.basename(png)
    result["seconds"] = time.perf_counter() - start
    nulls: dict = {}
    safe = json_safe(result, nulls)
    safe["nulls"] = nulls
    return safe


def _words(c, tr, ratio) -> str:
    text = c.explain()
    krylov = f" off the {tr.deflated}-step Krylov space, taken exactly" if tr.deflated else ""
    text += (
        f"; trace {tr.estimate:.4g} +- {tr.std_error:.2g} (Hutchinson, {tr.num_samples} "
        f"probes{krylov}): the summed curvature over all directions"
    )
    if ratio is not None:
        text += (
            f"; minimum ratio {ratio:.3f}: the fraction of eigenvalues above +{c.eig_tol:.3g}"
            " (the rest are near zero or negative)"
        )
    return text
