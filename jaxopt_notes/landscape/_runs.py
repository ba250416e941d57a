"""The runs a landscape is drawn from: read, checked against each other and against the
number of images asked for, and the training path the PCA slice comes from."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxopt_notes.landscape._progress import Stages


def read_runs(
    paths: Sequence[str | Path],
    load: Callable[[str | Path], Any],
    split: str,
    counts: dict[str, int],
    stages: Stages,
):
    """The runs at ``paths`` read by ``load`` (``train.load_run``), each checked to hold at
    least ``counts[name]`` images of ``split``; two runs must be one network."""
    runs = []
    for path in paths:
        with stages.waiting(f"reading run {path}"), _no_read_only_notice():
            runs.append(load(path))
    for run in runs:
        size = len(run.arrays(split)[1])
        for name, value in counts.items():
            if value > size:
                raise ValueError(
                    f"`{name}` must be at most the {size} images of split {split!r} of "
                    f"{str(run.path)!r}, got {value}"
                )
    if len(runs) == 2:
        _same_network(*runs)
    return runs


class _ReadOnlyNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Given directory is read only")


@contextlib.contextmanager
def _no_read_only_notice():
    """Drops orbax's one absl warning that a checkpoint manager opened read-only is read-only
    (it says so for every run read: ``read_only=True`` is what reading asks for), and nothing
    else, while a run is read."""
    absl, notice = logging.getLogger("absl"), _ReadOnlyNotice()
    absl.addFilter(notice)
    try:
        yield
    finally:
        absl.removeFilter(notice)


def _same_network(a, b) -> None:
    rule = "`runs` must be two runs of the same network"
    if jax.tree.structure(a.params) != jax.tree.structure(b.params):
        raise ValueError(f"{rule}; {str(a.path)!r} and {str(b.path)!r} have different layers")
    for (where, p), q in zip(
        jax.tree_util.tree_leaves_with_path(a.params), jax.tree.leaves(b.params), strict=True
    ):
        if p.shape != q.shape or p.dtype != q.dtype:
            raise ValueError(
                f"{rule}; {str(a.path)!r} and {str(b.path)!r} differ at "
                f"{jax.tree_util.keystr(where)}: "
                f"{p.dtype}{list(p.shape)} vs {q.dtype}{list(q.shape)}"
            )


def training_path(run) -> list:
    """The run's parameters after each epoch (init first) from its ``trajectory/``, each file
    checked before the PCA uses any: present for every epoch, plain float32 arrays (never
    unpickled) of the run's size, finite, starting at the run's own initialisation and
    passing through its selected parameters."""
    folder = run.path / "trajectory"
    found = {f.name: f for f in folder.glob("epoch_*.npy")} if folder.is_dir() else {}
    names = [f"epoch_{e:04d}.npy" for e in range(run.epoch + 1)]
    missing = [n for n in names if n not in found]
    rule = "`kinds` pca needs the run's training path"
    if run.epoch < 2:  # init, epoch 1 and the selected parameters: the fewest that span a plane
        raise ValueError(
            f"{rule} over at least 2 epochs, got {run.epoch}; leave pca out of `kinds`"
        )
    if missing:
        raise ValueError(
            f"{rule}, but {str(folder)!r} lacks {missing[:3]} ({len(missing)} of its "
            f"{len(names)} files); leave pca out of `kinds`"
        )
    start, unravel = ravel_pytree(run.init_params)
    points = [_epoch_file(found[name], start, rule) for name in names]
    selected = np.asarray(ravel_pytree(run.params)[0])
    if not np.allclose(points[0], start, rtol=1e-5, atol=1e-6) or not any(
        np.allclose(p, selected, rtol=1e-6, atol=1e-7) for p in points
    ):
        raise ValueError(
            f"{rule}; {str(folder)!r} is not this run's path (it does not start at the run's "
            "initialisation and pass through its selected parameters): a foreign trajectory?"
        )
    return [unravel(jnp.asarray(v)) for v in points]


def _epoch_file(path: Path, start: jax.Array, rule: str) -> np.ndarray:
    try:
        v = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise ValueError(f"{rule}; {str(path)!r} cannot be read: {error}") from None
    if v.dtype != np.float32 or v.shape != start.shape or not np.isfinite(v).all():
        raise ValueError(
            f"{rule}; {str(path)!r} must hold the run's {start.size} finite float32 "
            f"parameters, got {v.dtype} of shape {v.shape}"
            + ("" if v.shape != start.shape else " with non-finite values")
        )
    return v
