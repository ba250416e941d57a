"""The experiments: each turns claims of the notes into measured, plotted verdicts.

An experiment is a module here with ``SUMMARY`` (one line), ``DATA`` (which data it uses), a
frozen ``Config`` dataclass (defaults: the source's settings; ``quick()``: minutes for all
experiments together; ``tiny()``: seconds, for the tests), a pure ``claims(metrics, cfg)`` that
decides every claim and check from the measured numbers, and ``main(cfg, out_dir) ->
{"metrics", "claims", "figures"}``. Optionally ``QUICK_NOTE`` says whether a miss under the
quick budget could be down to the budget. This module finds them, validates their configs, runs
each into a fresh directory that replaces the old one only when the run has finished, and writes
``result.json``, ``REPORT.md`` beside the figures and, for ``--all``, ``REPORT.md`` and
``REPORT.html`` over all of them.
"""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import tempfile
import threading
from pathlib import Path

from jaxopt_notes.experiments import _claims, _common, _config, _report
from jaxopt_notes.experiments._plot import plot  # noqa: F401  (public: `experiments plot`)
from tqdm import tqdm

NAMES = [
    "optimizer_paths",
    "learning_rate_range",
    "momentum_window",
    "momentum_flat_region",
    "adaptive_rates",
    "late_burst",
    "clipping",
    "newton",
    "gradient_noise",
    "basins",
    "mnist_optimizers",
    "schedules_and_switch",
    "init_and_activations",
    "batchnorm",
    "zero_init",
    "dropout_scaling",
    "regularisation",
    "batch_size",
    "complexity_curve",
    "snapshot_ensemble",
    "lenet_vs_mlp",
    "saddle_escape",
    "critical_points",
    "convexity",
    "edge_of_stability",
    "conv_arithmetic",
    "autoregressive",
    "relu_gradients",
    "rate_decay",
    "adam_scaling",
    "note_arithmetic",
    "toy_dynamics",
    "dropout_effects",
]


def load(name: str):
    if name not in NAMES:
        raise ValueError(f"`name` must be one of the experiments {NAMES}, got {name!r}")
    return importlib.import_module(f"jaxopt_notes.experiments.{name}")


def base_config(module, quick: bool | str):
    """``quick`` is False (the source's settings), True (quick) or "tiny" (the tests)."""
    if quick == "tiny":
        return module.Config.tiny()
    return module.Config.quick() if quick else module.Config()


def make_config(module, quick: bool | str, overrides: dict[str, str] | None = None):
    """The config with ``overrides`` (``--set`` texts) parsed and every field validated."""
    cfg = base_config(module, quick)
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for key, text in (overrides or {}).items():
        if key not in fields:
            raise ValueError(
                f"`--set {key}=...`: {key!r} is not a field of {module.__name__}'s Config "
                f"(fields: {', '.join(sorted(fields))})"
            )
        changes[key] = _config.parse(cfg, key, text)
    cfg = dataclasses.replace(cfg, **changes)
    _config.validate(cfg, module.Config())
    return cfg


def run(name: str, out: str | Path, quick: bool | str = False, overrides=None) -> dict:
    """Runs one experiment into ``out/name`` (result.json, REPORT.md, figures); returns the result.

    The run is written into a fresh directory beside it and moved into place only when it has
    finished, so an interrupted run leaves the previous result whole and nothing of its own.
    """
    module = load(name)
    cfg = make_config(module, quick, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.running-", dir=out))
    try:
        with _common.Timer() as timer:
            found = module.main(cfg, work)
        for c in found["claims"]:
            if c.get("kind") not in _claims.KINDS or c["verdict"] not in _claims.VERDICTS:
                raise ValueError(f"{name}: every entry must be a claim, check or beyond, got {c}")
        result = {
            "name": name,
            "summary": module.SUMMARY,
            "data": module.DATA,
            "quick": quick,
            "config": dataclasses.asdict(cfg),
            "changed_from_default": {
                k: {"default": a, "used": b}
                for k, (a, b) in _config.changed(cfg, module.Config()).items()
            },
            "quick_note": getattr(module, "QUICK_NOTE", ""),
            "metrics": found["metrics"],
            "claims": found["claims"],
            "tally": _claims.tally(found["claims"]),
            "figures": found["figures"],
            "wall_time_s": timer.seconds,
            "cpu_time_s": timer.cpu_seconds,
            "header": _report.run_header(),
        }
        _common.write_result(work, result)
        _report.write_experiment_report(work, result)
        _replace_dir(work, out / name)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return result


def _replace_dir(new: Path, final: Path) -> None:
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{new.name.rsplit('-', 1)[-1]}")
        final.rename(old)
    new.rename(final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def split_overrides(overrides: dict[str, str]) -> dict[str, dict[str, str]]:
    """Per experiment, the ``--set`` fields its Config has; a field no experiment has is refused."""
    per = {}
    known = set()
    for name in NAMES:
        fields = {f.name for f in dataclasses.fields(load(name).Config)}
        known |= fields
        per[name] = {k: v for k, v in overrides.items() if k in fields}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"`--set {unknown[0]}=...`: no experiment has a field {unknown[0]!r}")
    return per


def run_all(out: str | Path, quick: bool | str = False, overrides=None) -> list[dict]:
    """Every experiment, then ``out/REPORT.md`` and ``REPORT.html`` over all of them.

    An experiment that fails does not stop the others: the report covers those that ran, and
    the failures are raised together at the end.
    """
    per = split_overrides(overrides or {})
    for name in NAMES:  # refuse a bad value before anything runs
        make_config(load(name), quick, per[name])
    results, failed = run_many(NAMES, out, quick, per, keep_going=True)
    _report.write_report(Path(out), results)
    if failed:
        raise RuntimeError(
            f"{len(failed)} experiment(s) failed (the report covers the other "
            f"{len(results)}): " + "; ".join(f"{n}: {e!r}" for n, e in failed.items())
        )
    return results


def run_many(
    names: list[str],
    out: str | Path,
    quick: bool | str,
    per: dict[str, dict],
    *,
    keep_going: bool = False,
) -> tuple[list[dict], dict[str, Exception]]:
    """Runs ``names`` in order under one progress bar that names the experiment running and
    keeps its clock moving (an experiment is one long call with nothing to count inside).
    With ``keep_going`` a failing experiment is reported and the next one runs."""
    results, failed = [], {}
    bar = tqdm(names, desc="experiments", unit="exp")
    stop = threading.Event()

    def tick():  # redraws the bar every second so its elapsed time shows progress
        while not stop.wait(1.0):
            bar.refresh()

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        for name in bar:
            bar.set_postfix_str(f"running {name}")
            try:
                results.append(run(name, out, quick, per.get(name)))
            except Exception as error:
                if not keep_going:
                    raise
                failed[name] = error
                bar.write(f"experiment {name} failed: {error!r}")
    finally:
        stop.set()
        ticker.join()
        bar.close()
    return results, failed


def fields_help(module) -> list[str]:
    """One line per field of ``module.Config``: its default and the rule it must keep."""
    return _config.fields_help(module.Config())


def quick_changes(module) -> dict:
    """The fields ``--quick`` changes: name -> (full value, quick value)."""
    return _config.changed(module.Config.quick(), module.Config())


def coverage(results: list[dict]) -> str | None:
    """The one-line coverage of the map of the notes by ``results`` (None without a map)."""
    cov = _report.coverage(results)
    return None if cov is None else _report.coverage_line(cov["total"])


def tally_line(claims: list[dict]) -> str:
    """The one-line count of claims by verdict and of checks passed."""
    return _report.tally_line(claims)
