"""Run directories: one run per directory, checksummed checkpoints, and :func:`load_run`.

A run directory holds ``config.toml`` (the resolved :class:`~jaxopt_notes.train.TrainConfig`),
``run.json`` (the run's id and its validation split), ``metrics.jsonl``, ``summary.json``, curve
PNGs, ``checkpoints/`` (orbax, one step per epoch, the last two kept) and ``checksums.json`` (the
SHA-256 of every checkpoint's files, written after the checkpoint is complete). A checkpoint
without a matching checksum is never restored: restore falls back to the previous intact one
with a warning, or refuses.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxopt_notes._extras import require
from jaxopt_notes.train import config as config_lib

_ASIDE = ".overwritten-"  # where --overwrite moves the old run's files before deleting them
RUN_FILES = (
    "config.toml",
    "run.json",
    "metrics.jsonl",
    "summary.json",
    "checksums.json",
    "checkpoints",
    "loss.png",
    "accuracy.png",
    "curvature.png",
    "curvature.json",
    "trajectory",
)


def check_out(out: str | Path, *, resume: bool, overwrite: bool) -> Path:
    """Checks that ``out`` may hold this run and changes nothing (:func:`prepare` without its
    clearing): a fresh run needs ``out`` absent or empty, ``overwrite`` a directory of run
    files only (:data:`RUN_FILES`, plain files and directories, no symbolic links), ``resume``
    a run."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"`out` must be a directory, got the file {str(out)!r}")
    if resume and overwrite:
        raise ValueError("`resume` and `overwrite` exclude each other, got both")
    if resume:
        if not (out / "run.json").is_file() or not (out / "config.toml").is_file():
            raise ValueError(f"`resume` needs a run directory with run.json, got {str(out)!r}")
        _check_writable(out)
    elif out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(
                f"`out` {str(out)!r} already holds files (a run?); pass --resume to continue "
                f"it or --overwrite to clear it"
            )
        _check_clearable(out)
        _check_writable(out)
    return out


def _check_clearable(out: Path) -> None:
    """What ``overwrite`` would remove is run files alone, each a plain file or directory: a
    symbolic link (to a folder elsewhere, say) made the clearing fail half way."""
    others = sorted(p.name for p in out.iterdir() if not _run_file(p.name))
    if others:
        raise ValueError(f"`overwrite` clears only run files, and {str(out)!r} also holds {others}")
    for path in (p for p in out.iterdir() if _run_file(p.name)):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise ValueError(
                f"`overwrite` clears only plain files and directories, and {str(path)!r} is "
                f"{'a symbolic link' if path.is_symlink() else 'neither'}; remove it yourself"
            )


def _run_file(name: str) -> bool:
    """A name ``overwrite`` may clear: a run file, or an earlier clearing's leftover."""
    return name in RUN_FILES or name.startswith(_ASIDE)


def prepare(out: str | Path, *, resume: bool, overwrite: bool) -> Path:
    """Checks ``out`` (:func:`check_out`), then clears it where ``overwrite`` asks, then makes
    it. The run files are first moved aside together (renames within ``out``), so a failure
    leaves the old run whole; only then are they deleted."""
    out = check_out(out, resume=resume, overwrite=overwrite)
    if resume:
        return out
    if out.is_dir() and any(out.iterdir()):
        _clear(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"`out` {str(out)!r} cannot be created: {error.strerror}") from None
    _check_writable(out)
    return out


def _clear(out: Path) -> None:
    aside = out / f"{_ASIDE}{uuid.uuid4().hex}"
    aside.mkdir()
    moved = []
    try:
        for name in sorted(p.name for p in out.iterdir() if _run_file(p.name) and p != aside):
            os.replace(out / name, aside / name)
            moved.append(name)
    except OSError as error:
        for name in moved:  # put the old run back as it was
            os.replace(aside / name, out / name)
        aside.rmdir()
        raise ValueError(f"`overwrite` cannot clear {str(out)!r}: {error.strerror}") from None
    shutil.rmtree(aside)


def _check_writable(out: Path) -> None:
    probe = out / f".write-test-{uuid.uuid4().hex}"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"`out` {str(out)!r} must be writable: {error.strerror}") from None


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file and a rename: never half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def start(out: Path, cfg: config_lib.TrainConfig, split: dict[str, Any]) -> str:
    """Writes ``config.toml`` and ``run.json`` of a new run; returns its id."""
    run_id = uuid.uuid4().hex
    write_atomic(out / "config.toml", config_lib.to_toml(cfg))
    identity = {"run_id": run_id, "split": split, "config": _plain(cfg)}
    write_atomic(out / "run.json", json.dumps(identity, indent=2))
    return run_id


def read_identity(out: Path) -> dict[str, Any]:
    """The run's ``run.json``: a JSON object with its ``run_id``, or a ValueError saying so."""
    path = out / "run.json"
    try:
        identity = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"`run` {str(out)!r} has no readable run.json: {error}") from None
    if not isinstance(identity, dict) or not isinstance(identity.get("run_id"), str):
        raise ValueError(
            f"`run` {str(out)!r} must have a run.json object with a `run_id`, got "
            f"{str(identity)[:60]!r}"
        )
    return identity


def _plain(cfg: config_lib.TrainConfig) -> dict[str, Any]:
    """The config as JSON values (tuples as lists), as run.json records it."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def read_config(out: Path) -> config_lib.TrainConfig:
    """The run's ``config.toml``, refused if it was edited after the run was created (run.json
    records the config it started with): an edited learning rate or loss would be claimed for
    epochs, checkpoints and analyses that never used it."""
    cfg = config_lib.read_toml(out / "config.toml")
    recorded = read_identity(out).get("config")
    if recorded is None:  # a run from before run.json recorded its config
        return cfg
    now = _plain(cfg)
    changed = sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k))
    if changed:
        shown = ", ".join(f"{k}: {recorded.get(k)!r} -> {now.get(k)!r}" for k in changed)
        raise ValueError(
            f"`config.toml` of the run {str(out)!r} was edited after the run was created "
            f"({shown}); restore it, or start a new run with --config"
        )
    return cfg


def keep_horizon(out: Path, cfg: config_lib.TrainConfig) -> config_lib.TrainConfig:
    """On resume, an unset ``schedule_epochs`` is the run's: raising ``epochs`` continues the
    same schedule (past its horizon cosine stays at its floor) instead of stretching it."""
    path = out / "config.toml"
    if cfg.schedule_epochs or not path.is_file():
        return cfg
    return dataclasses.replace(cfg, schedule_epochs=read_config(out).schedule_epochs)


def check_resumable(out: Path, cfg: config_lib.TrainConfig, done: int) -> None:
    """``cfg`` must be the run's config, except ``epochs``, which may only stay or grow."""
    saved = dataclasses.asdict(read_config(out))
    wanted = dataclasses.asdict(cfg)
    changed = sorted(k for k in wanted if k != "epochs" and saved.get(k) != wanted[k])
    if changed:
        raise ValueError(
            f"`resume` needs the configuration of the checkpointed run; these differ: {changed}"
        )
    if cfg.epochs < done:
        raise ValueError(f"`epochs` must be >= the {done} epochs already run, got {cfg.epochs}")
    horizon = cfg.schedule_epochs or cfg.epochs
    if cfg.schedule == "cosine" and cfg.lr_alpha == 0 and cfg.epochs > horizon:
        # stretching the horizon would change the epochs already run; past it the rate is 0
        raise ValueError(
            f"`epochs` {cfg.epochs} runs past the run's cosine horizon of {horizon} epochs, "
            f"where its learning rate is 0: epochs {horizon + 1}-{cfg.epochs} would not train; "
            f"start a new run with --epochs {cfg.epochs} instead"
        )


def save_point(out: Path, epoch: int, params: Any) -> None:
    """The parameters after ``epoch`` (0: the init) as one flat float32 vector in
    ``trajectory/``: the training path the landscape's PCA directions come from."""
    from jax.flatten_util import ravel_pytree

    folder = out / "trajectory"
    folder.mkdir(exist_ok=True)
    tmp = folder / f".epoch_{epoch:04d}.npy"
    np.save(tmp, np.asarray(ravel_pytree(params)[0], np.float32))
    os.replace(tmp, folder / f"epoch_{epoch:04d}.npy")


def save_missing_points(out: Path, points: dict[int, Any]) -> None:
    """Writes each ``epoch -> params`` of ``points`` whose file ``trajectory/`` lacks (on
    resume: the init, and the epoch of the restored checkpoint)."""
    for epoch, params in points.items():
        if not (out / "trajectory" / f"epoch_{epoch:04d}.npy").is_file():
            save_point(out, epoch, params)


def read_path(out: Path) -> list[np.ndarray]:
    """The flat parameter vectors of ``trajectory/``, by epoch (init first)."""
    return [np.load(p) for p in sorted((out / "trajectory").glob("epoch_*.npy"))]


# ----- checkpoints -----


def _manager(out: Path, *, read_only: bool = False):
    ocp = require("orbax.checkpoint", "train")

    several = jax.process_count() > 1
    if not read_only:
        (out / "checkpoints").mkdir(exist_ok=True)
    # process 0 alone writes: the others never join the checkpoint's barriers
    alone = ocp.options.MultiprocessingOptions(primary_host=0, active_processes={0})
    options = ocp.CheckpointManagerOptions(  # read-only: the values orbax would warn it forces
        max_to_keep=None if read_only else 2,
        save_interval_steps=0 if read_only else 1,
        enable_async_checkpointing=False,
        read_only=read_only,
        create=False,
        multiprocessing_options=alone if several else ocp.options.MultiprocessingOptions(),
    )
    # a reader asked for read-only on purpose: orbax's warning that it is says nothing
    notice = logging.getLogger("absl")
    notice.addFilter(_drop_read_only_notice)
    try:
        return ocp.CheckpointManager((out / "checkpoints").absolute(), options=options)
    finally:
        notice.removeFilter(_drop_read_only_notice)


def _drop_read_only_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Given directory is read only")


def _digest(step_dir: Path) -> str:
    sha = hashlib.sha256()
    for path in sorted(p for p in step_dir.rglob("*") if p.is_file()):
        sha.update(str(path.relative_to(step_dir)).encode() + b"\0")
        sha.update(path.read_bytes())
    return sha.hexdigest()


class Checkpoints:
    """Save and verified restore of ``{"state", "best", "run"}`` per epoch in ``out``."""

    def __init__(self, out: Path, *, read_only: bool = False):
        self.out, self.manager = out, _manager(out, read_only=read_only)

    def _sums(self) -> dict[str, str]:
        path = self.out / "checksums.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def save(self, epoch: int, trees: dict[str, Any], run: dict) -> None:
        ocp = require("orbax.checkpoint", "train")

        items = {k: ocp.args.StandardSave({"leaves": jax.tree.leaves(v)}) for k, v in trees.items()}
        self.manager.save(epoch, args=ocp.args.Composite(**items, run=ocp.args.JsonSave(run)))
        self.manager.wait_until_finished()
        kept = {str(s) for s in self.manager.all_steps()}
        sums = {k: v for k, v in self._sums().items() if k in kept}
        sums[str(epoch)] = _digest(self.out / "checkpoints" / str(epoch))
        write_atomic(self.out / "checksums.json", json.dumps(sums, indent=1))

    def restore(self, targets: dict[str, Any], run_id: str) -> tuple[dict[str, Any], dict] | None:
        """The newest intact checkpoint of run ``run_id`` as (trees like ``targets``, run).

        ``None`` when there is no checkpoint at all; a checkpoint whose files do not match their
        checksum is skipped with a warning; if none is intact, a ``ValueError``.
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        sums = self._sums()
        for step in steps:
            problem = self._problem(step, sums)
            if problem is None:
                trees, run = self._read(step, targets)
                if run.get("run_id") == run_id:
                    return trees, run
                problem = f"belongs to run {run.get('run_id')!r}, not {run_id!r}"
            warnings.warn(f"checkpoint of epoch {step} skipped: {problem}", stacklevel=2)
        if steps:
            raise ValueError(
                f"`resume` found no intact checkpoint in {str(self.out / 'checkpoints')!r} "
                f"(epochs {steps}); start again with --overwrite"
            )
        return None

    def _problem(self, step: int, sums: dict[str, str]) -> str | None:
        if str(step) not in sums:
            return "it has no checksum (interrupted while saving?)"
        if _digest(self.out / "checkpoints" / str(step)) != sums[str(step)]:
            return "its files do not match their SHA-256 checksum (corrupted)"
        return None

    def _read(self, step: int, targets: dict[str, Any]) -> tuple[dict[str, Any], dict]:
        ocp = require("orbax.checkpoint", "train")

        structs = {}
        for name, tree in targets.items():
            leaves = [ocp.utils.to_shape_dtype_struct(x) for x in jax.tree.leaves(tree)]
            structs[name] = ocp.args.StandardRestore({"leaves": leaves})
        got = self.manager.restore(
            step, args=ocp.args.Composite(**structs, run=ocp.args.JsonRestore())
        )
        trees = {
            name: jax.tree.unflatten(jax.tree.structure(tree), got[name]["leaves"])
            for name, tree in targets.items()
        }
        return trees, dict(got["run"])


def clean_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None``: strict JSON, no NaN/Infinity."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    return value


def dumps(value: Any, **kwargs) -> str:
    return json.dumps(clean_json(value), allow_nan=False, **kwargs)
