"""experiments plot: figures redrawn from result.json alone, the same files as the run's."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from jaxopt_notes.experiments import _plot, basins, momentum_window

from jaxopt_notes import cli, experiments

FAST = ("momentum_window", "basins")  # seconds each on their tiny settings


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An --all-like folder holding tiny runs of two experiments."""
    out = tmp_path_factory.mktemp("runs")
    for name in FAST:
        experiments.run(name, out, quick="tiny")
    return out


def test_plot_redraws_every_figure_of_a_folder_of_runs(runs):
    before = {}
    for name in FAST:
        figures = json.loads((runs / name / "result.json").read_text())["figures"]
        assert figures
        for f in figures:
            before[f"{name}/{f}"] = (runs / name / f).read_bytes()
            (runs / name / f).unlink()
    written = _plot.plot(runs)
    assert sorted(str(p) for p in written) == sorted(str(runs / k) for k in before)
    for key, old in before.items():
        new = (runs / key).read_bytes()
        assert new[:4] == b"\x89PNG" and len(new) > 1000
        assert new == old, f"{key} redrawn differently from the run's own figure"


def test_plot_takes_one_experiments_folder(runs):
    assert [p.rsplit("/", 1)[-1] for p in _plot.plot(runs / "basins")] == ["basins.png"]


def test_the_command_prints_the_paths(runs, capsys):
    assert cli.main(["experiments", "plot", str(runs / "momentum_window")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(runs / "momentum_window" / "momentum_window.png")
    assert out[-1].startswith("redrew 1 figure(s)")


def _result(folder, text):
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(text)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda d: None, "`DIR` must be an existing folder"),
        (lambda d: d.mkdir(), "found none"),
        (lambda d: _result(d / "x", '{"name": "nope", "config": {}, "metrics": {}}'), "'nope'"),
        (lambda d: _result(d / "x", "[1, 2]"), "must hold a JSON object, got list"),
        (lambda d: _result(d / "x", "{"), "must be JSON"),
        (
            lambda d: _result(d / "x", '{"name": "basins", "config": {}, "metrics": []}'),
            "`metrics`",
        ),
        (lambda d: _result(d / "x", '{"name": "basins", "config": {}, "metrics": {}}'), "again"),
        (lambda d: _result(d / "x", '{"name": "basins", "metrics": {}}'), "'config'"),
        (
            lambda d: _result(d / "x", '{"name": "basins", "config": {"zz": 1}, "metrics": {}}'),
            "'zz'",
        ),
    ],
)
def test_bad_input_ends_in_one_error_line(tmp_path, capsys, make, words):
    target = tmp_path / "runs"
    make(target)
    assert cli.main(["experiments", "plot", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxopt-notes experiments: error: ")
    assert words in err[0]


def test_config_comes_back_with_its_tuples():
    cfg = basins.Config.tiny()
    stored = json.loads(json.dumps(dataclasses.asdict(cfg)))
    assert _plot.config(basins, stored) == cfg
    cfg = momentum_window.Config()
    assert _plot.config(momentum_window, json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg


def test_stored_metrics_keep_non_finite_numbers():
    got = _plot.stored({"a": np.array([1.0, np.nan, np.inf, -np.inf]), "b": {"c": (1, 2)}})
    assert got["b"] == {"c": [1, 2]}
    assert got["a"][0] == 1.0 and math.isnan(got["a"][1]) and got["a"][2:] == [math.inf, -math.inf]


def test_a_kept_curve_is_short_and_keeps_its_spikes_and_gaps():
    v = np.sin(np.arange(5000) / 300.0)
    v[1234], v[3000] = 40.0, np.nan
    c = _plot.curve(v, 400)
    assert len(c["index"]) <= 2 * 400 and c["index"][0] == 0 and c["index"][-1] == 4999
    assert 1234 in c["index"] and 3000 in c["index"]
    assert np.nanmax(c["value"]) == 40.0 and math.isnan(c["value"][c["index"].index(3000)])
    assert _plot.curve([1.0, 2.0])["index"] == [0, 1]
    assert list(_plot.thin(10, 4)) == [0, 3, 6, 9]
    assert list(_plot.thin(3, log=True)) == [0, 1, 2]
