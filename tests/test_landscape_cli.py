"""``jaxopt-notes landscape`` as a user meets it: progress on stderr, outputs owned like runs
(refused without ``--overwrite``), every bad input one error line with exit 2 and nothing
written, eigen axes that name their eigenvalues, no third-party warning.

Two tiny MLP runs (digits, widths 8 and 16, 2 epochs) and 3x3 grids keep it to seconds a call.
"""

import dataclasses
import io
import json
import os
import shutil
import sys

import numpy as np
import pytest

from jaxopt_notes import cli, train
from jaxopt_notes.landscape._runs import training_path

FAST = ["--grid", "3", "--examples", "40", "--hessian-examples", "40"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for width in (8, 16):
        cfg = train.TrainConfig(model="mlp", width=width, depth=1, dataset="digits", epochs=2)
        train.train(cfg, out_dir=str(root / f"w{width}"), progress=False)
    return root / "w8", root / "w16"


@pytest.fixture(scope="module")
def drawn(runs, tmp_path_factory):
    """One landscape of the width-8 run (random and PCA slices) and what it wrote on stderr."""
    out = tmp_path_factory.mktemp("drawn") / "ls"
    capture, err = pytest.MonkeyPatch(), io.StringIO()
    capture.setattr(sys, "stderr", err)
    try:
        code = cli.main(
            ["landscape", "--run", str(runs[0]), "--out", str(out), "--kinds", "random,pca", *FAST]
        )
    finally:
        capture.undo()
    assert code == 0, err.getvalue()
    return out, err.getvalue()


def _files(path):
    return {
        os.path.relpath(os.path.join(root, name), path): os.path.getmtime(os.path.join(root, name))
        for root, _, names in os.walk(path)
        for name in names
    }


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("jaxopt-notes landscape: error: "), err
    return err[0]


def test_each_stage_shows_a_progress_bar_with_its_grid_and_time_left(drawn):
    out, err = drawn
    for stage in ("reading run", "interpolation init -> final", "random slice 3x3", "pca slice"):
        assert stage in err
    assert "9/9 points" in err and "41/41 points" in err and "left" in err
    assert "WARNING" not in err and "read only" not in err  # orbax's notice is silenced
    report = json.loads((out / "landscape.json").read_text())
    assert set(report["slices"]) == {"random", "pca"} and report["grid"] == 3


def test_a_second_landscape_into_out_is_refused_unless_overwrite(runs, drawn, tmp_path, capsys):
    out = tmp_path / "ls"
    shutil.copytree(drawn[0], out)
    (out / "eigen.npz").write_bytes(b"stale")  # an output this run will not write again
    before = _files(out)
    argv = ["landscape", "--run", str(runs[0]), "--out", str(out), "--kinds", "random", *FAST]
    assert cli.main([*argv, "--no-progress"]) == 2
    assert "pass `--overwrite`" in _one_error_line(capsys)
    assert _files(out) == before
    assert cli.main([*argv, "--overwrite", "--no-progress"]) == 0
    assert not (out / "eigen.npz").exists() and not (out / "pca.npz").exists()
    assert json.loads((out / "landscape.json").read_text())["slices"].keys() == {"random"}


@pytest.mark.parametrize(
    "case, extra, words",
    [
        ("inside the run", [], "`--out` must lie outside the run directory"),
        ("a file", [], "`--out` must be a directory"),
        ("foreign files", [], "holds ['notes.txt']"),
        ("grid", ["--grid", "1"], "`--grid` must be an integer in 2..401, got 1"),
        ("kinds", ["--kinds", "random,hills"], "`--kinds` must be a comma-separated subset"),
        ("span", ["--span", "nan"], "`--span` must be a finite number in (0, 1e6], got nan"),
        ("seed", ["--seed", str(2**64)], f"`--seed` must be an integer in 0..{2**32 - 1}"),
        ("examples", ["--examples", "100000"], "`--examples` must be at most the"),
    ],
)
def test_bad_input_is_one_error_line_and_nothing_is_written(
    runs, tmp_path, capsys, case, extra, words
):
    run = runs[0]
    out = {"inside the run": run / "landscape", "a file": tmp_path / "f"}.get(case, tmp_path / "o")
    if case == "a file":
        out.write_text("")
    if case == "foreign files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    before, elsewhere = _files(run), _files(tmp_path)
    argv = ["landscape", "--run", str(run), "--out", str(out), "--no-progress", *FAST, *extra]
    assert cli.main(argv) == 2
    assert words in _one_error_line(capsys)
    assert _files(run) == before and _files(tmp_path) == elsewhere
    assert case == "a file" or case == "foreign files" or not out.exists()


def test_two_runs_of_different_widths_are_one_error_line(runs, tmp_path, capsys):
    argv = ["landscape", "--run", str(runs[0]), "--run", str(runs[1]), "--no-progress"]
    assert cli.main([*argv, "--out", str(tmp_path / "o"), *FAST]) == 2
    line = _one_error_line(capsys)
    assert "two runs of the same network" in line and "float32[8] vs float32[16]" in line
    assert not (tmp_path / "o").exists()


def _spoil(folder, case, other):
    first, second = folder / "epoch_0000.npy", folder / "epoch_0001.npy"
    if case == "missing":
        second.unlink()
    elif case == "corrupt":
        second.write_bytes(second.read_bytes()[:60])
    elif case == "pickled":
        np.save(second, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif case == "another network's":
        shutil.copy(other / "trajectory" / "epoch_0001.npy", second)
    else:  # the same size, another start: a path from another run of this network
        np.save(first, np.load(first) + 1.0)


@pytest.mark.parametrize(
    "case, words",
    [
        ("missing", "lacks ['epoch_0001.npy']"),
        ("corrupt", "cannot be read"),
        ("pickled", "cannot be read: Object arrays cannot be loaded"),
        ("another network's", "must hold the run's"),
        ("another run's", "is not this run's path"),
    ],
)
def test_a_bad_training_path_is_named_before_anything_is_written(runs, tmp_path, case, words):
    run_dir = tmp_path / "run"
    shutil.copytree(runs[0], run_dir)
    _spoil(run_dir / "trajectory", case, runs[1])
    run = dataclasses.replace(_loaded(runs[0]), path=run_dir)
    with pytest.raises(ValueError, match="`kinds` pca needs the run's training path") as error:
        training_path(run)
    assert words in str(error.value)


_LOADED = {}


def test_a_path_of_one_epoch_is_too_short_for_the_pca(runs):
    run = dataclasses.replace(_loaded(runs[0]), epoch=1)
    with pytest.raises(ValueError, match="over at least 2 epochs, got 1; leave pca out"):
        training_path(run)


def _loaded(path):
    if path not in _LOADED:
        _LOADED[path] = train.load_run(path)
    return _LOADED[path]


def test_a_corrupt_training_path_ends_the_command_before_any_write(runs, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(runs[0], run_dir)
    _spoil(run_dir / "trajectory", "pickled", runs[1])
    argv = ["landscape", "--run", str(run_dir), "--out", str(tmp_path / "o"), "--no-progress"]
    assert cli.main([*argv, *FAST]) == 2
    assert "cannot be read" in _one_error_line(capsys)
    assert not (tmp_path / "o").exists()  # line.png was once written before this check


def test_the_eigen_slice_names_each_axis_by_its_eigenvalue(runs, tmp_path):
    out = tmp_path / "o"
    argv = ["landscape", "--run", str(runs[0]), "--out", str(out), "--kinds", "eigen"]
    assert cli.main([*argv, *FAST, "--no-progress"]) == 0
    eigen = json.loads((out / "landscape.json").read_text())["slices"]["eigen"]
    v1, v2 = eigen["eigenvalues"]
    assert v1 >= v2 and eigen["axes"] == [f"v1 (λ={v1:.3g})", f"v2 (λ={v2:.3g})"]
    assert (out / "eigen_contour.png").stat().st_size > 0
