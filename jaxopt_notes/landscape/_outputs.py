"""The folder a landscape is written into, owned like a run's: checked before any work,
written only once everything is computed, old outputs replaced only with ``overwrite``."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxopt_notes.landscape._figures import plot_line, plot_pair, plot_surface
from jaxopt_notes.landscape._grid import Surface

# the files a landscape writes; a folder holding only these is one of its outputs
OUTPUTS = re.compile(
    r"landscape\.json|line\.png|pair\.png"
    r"|(random|eigen|pca|random_run[01])(\.npz|_contour\.png|_surface\.png)"
)

TITLES = {
    "random": "random slice (filter-normalised, Li et al.)",
    "eigen": "eigen slice: top-2 Hessian eigenvectors",
    "pca": "PCA slice: the training path's top-2 directions",
}


def check_out(out: str | Path, runs: Sequence[str | Path], overwrite: bool) -> Path:
    """``out`` checked, not yet created: outside every run, a folder (or nothing yet) that is
    empty or holds landscape outputs only, which only ``overwrite`` replaces."""
    given, out = str(out), Path(out)
    where = out.resolve()
    for run in runs:
        run_dir = Path(run).resolve()
        if where == run_dir or run_dir in where.parents:
            raise ValueError(
                f"`out` must lie outside the run directory {str(run)!r}, got {given!r}"
            )
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out` must be a directory, got the file {given!r}")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    foreign = [e.name for e in entries if not (OUTPUTS.fullmatch(e.name) and e.is_file())]
    if foreign:
        raise ValueError(
            f"`out` must be new, empty or hold landscape outputs only; {given!r} also "
            f"holds {foreign[:3]}"
        )
    if entries and not overwrite:
        raise ValueError(
            f"`out` {given!r} already holds landscape outputs ({entries[0].name}, ...): "
            "pass `overwrite` to replace them"
        )
    parent = next(p for p in (where, *where.parents) if p.exists())
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"`out` {given!r} cannot be written: {str(parent)!r} is read-only")
    return out


def write(out: Path, report: dict, lines, grids: dict[str, Surface], pair) -> None:
    """The outputs, once everything is computed: drawn into a folder beside ``out``, then
    moved in, the old outputs removed only then (a file the new run does not write would be
    mistaken for one of its own; a failed write leaves the old ones whole)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        plot_line(lines, new / "line.png", title="1-D interpolation (Goodfellow et al.)")
        for name, grid in grids.items():
            report["slices"][name] = _save(grid, new / name)
        if pair is not None:
            plot_pair([grids["random_run0"], grids["random_run1"]], pair, new / "pair.png")
        (new / "landscape.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
        out.mkdir(exist_ok=True)
        for old in out.iterdir():  # check_out let through landscape outputs alone
            old.unlink()
        for made in new.iterdir():
            os.replace(made, out / made.name)
    finally:
        shutil.rmtree(new, ignore_errors=True)


def _save(grid: Surface, prefix: Path) -> dict:
    grid.save(f"{prefix}.npz")
    title = TITLES[grid.kind] + (f", {grid.info['run']}" if "run" in grid.info else "")
    pngs = plot_surface(grid, prefix, title=title)
    finite = grid.values[np.isfinite(grid.values)]
    return {
        **grid.info,
        "axes": list(grid.labels),
        "npz": f"{prefix.name}.npz",
        "png": [Path(p).name for p in pngs],
        "min": float(np.min(finite)) if finite.size else None,
        "max": float(np.max(finite)) if finite.size else None,
        "center": _finite(grid.values[len(grid.ys) // 2, len(grid.xs) // 2]),
    }


def _finite(value) -> float | None:
    return float(value) if np.isfinite(value) else None
