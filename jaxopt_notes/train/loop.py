"""The training loop: epochs on the device, validation after each, the test set once at the end."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxopt_notes import data as data_lib
from jaxopt_notes import models
from jaxopt_notes._extras import require
from jaxopt_notes.train import distributed, runs
from jaxopt_notes.train._io import plot_curves, write_jsonl
from jaxopt_notes.train.config import TrainConfig, make_optimizer, to_toml
from jaxopt_notes.train.curvature import CurvatureTracker, make_tracked_epoch, plot_curvature
from jaxopt_notes.train.steps import (
    check_fit,
    eval_params,
    init_state,
    make_epoch_fn,
    make_eval_fn,
    make_mesh,
)

tqdm = require("tqdm.auto", "train").tqdm


def with_validation(cfg: TrainConfig, data: data_lib.Dataset | None, **load_kwargs):
    """``data`` (default: ``cfg.dataset``) with the validation split of ``cfg`` carved out."""
    data = data if data is not None else data_lib.load(cfg.dataset, **load_kwargs)
    if data.y_val is not None:
        return data
    return data_lib.split_validation(data, fraction=cfg.val_fraction, seed=cfg.val_seed)


def train(
    cfg: TrainConfig,
    data: data_lib.Dataset | None = None,
    *,
    tx: optax.GradientTransformation | None = None,
    out_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    devices: int = 1,
    test_data: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = True,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> dict[str, Any]:
    """Trains ``cfg`` on ``data`` (default: ``cfg.dataset``); returns state, history and summary.

    The validation split (``cfg.val_fraction``, ``cfg.val_seed``) is carved from the training
    data unless ``data`` already has one; early stopping and best-epoch selection read it, and the
    test split is evaluated once, at the end, on the selected parameters (``cfg.select``).
    ``tx`` replaces the optimizer named in ``cfg``. With ``out_dir`` the run owns that directory
    (see :mod:`jaxopt_notes.train.runs`): ``resume=True`` continues it (``cfg.epochs`` may be
    raised), ``overwrite=True`` clears it first. ``test_data`` (uint8 images N x H x W x C,
    labels) is an outside test set. ``on_epoch_end(epoch, record)`` runs after each checkpoint.
    """
    start = time.perf_counter()
    if resume and out_dir is not None:
        cfg = runs.keep_horizon(Path(out_dir), cfg)
    cfg = cfg.resolved()
    data = with_validation(cfg, data)
    if test_data is not None and tuple(np.shape(test_data[0])[1:]) != data.image_shape:
        raise ValueError(
            f"`test_data` must hold images of the training data's shape {data.image_shape} "
            f"(`dataset` {cfg.dataset!r}), got {tuple(np.shape(test_data[0])[1:])}"
        )
    job = {"data": data.describe(), "resume": resume, "devices": devices, "tx": tx is not None}
    distributed.check_same_job({**dataclasses.asdict(cfg), **job})
    mesh = make_mesh(devices)
    check_fit(cfg, data, mesh)
    tx = tx if tx is not None else make_optimizer(cfg, len(data.y_train) // cfg.batch_size)
    model, state = init_state(cfg, data, tx, mesh)
    best = (eval_params(state), state.batch_stats)
    run: dict[str, Any] = {"config": dataclasses.asdict(cfg), "history": [], "stopped": False}
    store = None
    if out_dir is not None and distributed.is_writer():
        store, state, best, run = _open_run(
            out_dir, cfg, data, (state, best, run), resume, overwrite
        )
    if resume and jax.process_count() > 1:  # process 0 read the run: the others take its state
        replicated = NamedSharding(mesh, P())
        trees = distributed.share_from_writer({"state": state, "best": best})
        state, best = distributed.place((trees["state"], trees["best"]), replicated)
        run = distributed.share_json_from_writer(run)
    resumed_from = len(run["history"])
    t = time.perf_counter()
    arrays = (
        *distributed.shard_training(data.x_train, data.y_train, cfg.data_shards, mesh),
        *distributed.place((data.x_val, data.y_val), NamedSharding(mesh, P())),
    )
    epoch_fn, tracker = _epoch_runner(model, tx, data, cfg, mesh, state, arrays)
    eval_fn = make_eval_fn(model, data, mesh, loss=cfg.loss, tta_shift=cfg.tta_shift)
    eval_fn(state, *arrays[2:])  # compiles, so epoch times are compute only
    compile_time = time.perf_counter() - t
    loop = dict(progress=progress, on_epoch_end=on_epoch_end, store=store, tracker=tracker)
    state, best, run = _loop(cfg, state, best, run, epoch_fn, eval_fn, arrays, **loop)
    chosen = best if cfg.select == "best" else (eval_params(state), state.batch_stats)
    final = _final_metrics(eval_fn, chosen, data, test_data, mesh)
    summary = _summary(
        cfg,
        data,
        model,
        run,
        mesh=mesh,
        start=start,
        compile_time=compile_time,
        resumed_from=resumed_from,
        final=final,
    )
    if tracker is not None:
        summary["curvature"] = _curvature_summary(cfg, run, tracker)
    if store is not None:
        (store.out / "summary.json").write_text(runs.dumps(summary, indent=2) + "\n")
        plot_curves(run["history"], store.out)
        if run.get("curvature"):
            plot_curvature(run["curvature"], store.out / "curvature.png")
    return {
        "state": state,
        "best": best,
        "model": model,
        "history": run["history"],
        "summary": summary,
        "data": data,
    }


def _open_run(out_dir, cfg, data, trained, resume, overwrite):
    """The run directory made (a new run) or read back (``resume``): its store, and the
    ``(state, best, run)`` to continue from (``trained`` as it is, unless restored)."""
    state, best, run = trained
    out = runs.prepare(out_dir, resume=resume, overwrite=overwrite)
    run_id = None
    if resume:
        run_id = runs.read_identity(out)["run_id"]
        runs.check_resumable(out, cfg, 0)
    store = runs.Checkpoints(out)
    init_point = distributed.fetch(eval_params(state))
    restored = store.restore({"state": state, "best": best}, run_id) if resume else None
    if restored is not None:
        trees, run = restored
        state, best = trees["state"], trees["best"]
        runs.check_resumable(out, cfg, len(run["history"]))
        run = {**run, "config": dataclasses.asdict(cfg)}  # an early stop stays stopped
    if resume:
        runs.write_atomic(out / "config.toml", to_toml(cfg))  # records a raised --epochs
        # a kill between files can have left the init's or the checkpoint's point unwritten
        points = {0: init_point, len(run["history"]): distributed.fetch(eval_params(state))}
        runs.save_missing_points(out, points)
    else:
        run_id = runs.start(out, cfg, data.split or {})
        runs.save_point(out, 0, init_point)
    return store, state, best, {**run, "run_id": run_id}


def _epoch_runner(model, tx, data, cfg, mesh, state, arrays):
    """``run(state, x, y, key, epoch) -> (state, metrics, train seconds or None)`` and the
    curvature tracker (``None`` unless ``cfg.track_curvature``)."""
    if cfg.track_curvature:
        tracker = CurvatureTracker(model, data, cfg)
        tracked = make_tracked_epoch(model, tx, data, cfg, mesh, tracker)
        per_epoch = len(data.y_train) // cfg.batch_size
        return (lambda s, x, y, k, e: tracked(s, x, y, k, first_step=e * per_epoch)), tracker
    compiled = make_epoch_fn(model, tx, data, cfg, mesh)
    compiled = compiled.lower(state, *arrays[:2], jax.random.key(0)).compile()
    return (lambda s, x, y, k, e: (*compiled(s, x, y, k), None)), None


def _curvature_summary(cfg, run, tracker) -> dict[str, Any]:
    train_s = sum(r["train_time_s"] for r in run["history"])
    records = run.get("curvature", [])
    return {
        "every": cfg.track_curvature,
        "examples": cfg.curvature_examples or None,
        "measurements": len(records),
        "seconds_this_session": tracker.seconds,
        "compile_seconds_this_session": tracker.compile_seconds,
        "fraction_of_training_time": tracker.seconds / train_s if train_s else None,
        "last": records[-1] if records else None,
    }


def _final_metrics(eval_fn, chosen, data, test_data, mesh) -> dict[str, Any]:
    """The test split (and the outside test set), read once, on the chosen parameters."""
    put = lambda a: distributed.place(a, NamedSharding(mesh, P()))  # noqa: E731
    test = distributed.fetch(eval_fn(chosen, put(data.x_test), put(data.y_test)))
    final = {"test_accuracy": float(test["accuracy"]), "test_loss": float(test["loss"])}
    if test_data is not None:
        outside = distributed.fetch(eval_fn(chosen, *put(test_data)))
        final["outside_test_accuracy"] = float(outside["accuracy"])
        final["outside_test_size"] = len(test_data[1])
    return final


def _loop(
    cfg, state, best, run, epoch_fn, eval_fn, arrays, *, progress, on_epoch_end, store, tracker
):
    """The epochs: one compiled call each, then one host sync for the metrics."""
    x_tr, y_tr, x_val, y_val = arrays
    steps_per_epoch = y_tr.size // cfg.batch_size  # y_tr is (N,) or its shards (S, N // S)
    k_data = jax.random.split(jax.random.key(cfg.seed))[1]
    done = len(run["history"])
    if store is not None:
        write_jsonl(store.out / "metrics.jsonl", _lines(run))  # drops lines past the checkpoint
    bar = tqdm(total=cfg.epochs, initial=done, disable=not progress, unit="epoch")
    for epoch in range(done, done if run["stopped"] else cfg.epochs):
        t = time.perf_counter()
        key = jax.random.fold_in(k_data, epoch)
        state, metrics, t_steps = epoch_fn(state, x_tr, y_tr, key, epoch)
        metrics = distributed.fetch(metrics)
        t_train = time.perf_counter() - t if t_steps is None else t_steps
        measured = [] if tracker is None else [{**r, "epoch": epoch + 1} for r in tracker.records]
        if tracker is not None:
            tracker.records.clear()
        evaluated = distributed.fetch(eval_fn(state, x_val, y_val))
        record = {
            "epoch": epoch + 1,
            **{f"train_{k}": float(v) for k, v in metrics.items()},
            **{f"val_{k}": float(v) for k, v in evaluated.items()},
            "train_time_s": t_train,
            "epoch_time_s": time.perf_counter() - t,
            "train_samples_per_s": steps_per_epoch * cfg.batch_size / t_train,
        }
        run = _update_run(run, record, cfg.patience)
        if measured:
            run["curvature"] = run.get("curvature", []) + runs.clean_json(measured)
        if run["best_epoch"] == epoch + 1:
            best = jax.tree.map(jnp.copy, (eval_params(state), state.batch_stats))
        if store is not None:
            trees = distributed.fetch({"state": state, "best": best})
            # the trajectory's point first: the checkpoint commits the epoch, and a kill
            # before it redoes the epoch, writing the same point again
            runs.save_point(store.out, epoch + 1, eval_params(trees["state"]))
            store.save(epoch + 1, trees, runs.clean_json(run))
            lines = runs.clean_json(measured) + [runs.clean_json(record)]
            write_jsonl(store.out / "metrics.jsonl", lines, mode="a")
        bar.update(1)
        bar.set_postfix(loss=f"{record['train_loss']:.3f}", val=f"{record['val_accuracy']:.4f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)
        if run["stopped"]:
            break
    bar.close()
    return state, best, run


def _lines(run: dict) -> list[dict]:
    """The JSONL lines of ``run``: each epoch's curvature records, then its epoch record."""
    by_epoch: dict[int, list] = {}
    for r in run.get("curvature", []):
        by_epoch.setdefault(r["epoch"], []).append(r)
    return [line for r in run["history"] for line in [*by_epoch.get(r["epoch"], []), r]]


def _update_run(run: dict, record: dict, patience: int) -> dict:
    """Appends ``record``; the best epoch by validation accuracy, ties by the lower validation
    loss (a few hundred validation images tie often, and the first of a tie is often an early,
    unconverged epoch), then the earlier; NaN never. Early stopping when ``patience`` > 0
    epochs have passed without a better one."""
    history = run["history"] + [record]
    scored = [r for r in history if np.isfinite(r["val_accuracy"] or np.nan)]

    def rank(r):
        loss = r.get("val_loss")
        return r["val_accuracy"], -loss if loss is not None and np.isfinite(loss) else -np.inf

    best = max(scored, key=rank)["epoch"] if scored else record["epoch"]
    stale = record["epoch"] - best
    return {
        **run,
        "history": history,
        "best_epoch": best,
        "stopped": bool(patience and stale >= patience),
    }


def _summary(cfg, data, model, run, *, mesh, start, compile_time, resumed_from, final) -> dict:
    history = run["history"]
    last = history[-1] if history else {}
    best = next((r for r in history if r["epoch"] == run.get("best_epoch")), {})
    return {
        "dataset": data.describe(),
        "config": dataclasses.asdict(cfg),
        "run_id": run.get("run_id"),
        "num_params": models.count_params(model),
        "selected": cfg.select,
        "selected_epoch": best.get("epoch") if cfg.select == "best" else last.get("epoch"),
        **final,
        "val_accuracy": last.get("val_accuracy"),
        "val_loss": last.get("val_loss"),
        "train_accuracy": last.get("train_accuracy"),
        "best_val_accuracy": best.get("val_accuracy"),
        "best_epoch": best.get("epoch"),
        "epochs_run": len(history),
        "stopped_early": run["stopped"],
        "resumed_from_epoch": resumed_from,
        "wall_time_s": time.perf_counter() - start,
        "compile_time_s": compile_time,
        "train_time_s": sum(r["train_time_s"] for r in history),
        "epoch_times_s": [r["epoch_time_s"] for r in history],
        "devices": mesh.size,
        "processes": jax.process_count(),
        "backend": jax.default_backend(),
    }
