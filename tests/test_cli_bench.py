"""``jaxopt-notes bench``: where it writes, and bad input as one error line."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path

from jaxopt_notes import cli
from jaxopt_notes.cli import bench as bench_cli

REPO = Path(__file__).resolve().parents[1]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_default_output_is_fresh_and_update_is_the_committed_folder(tmp_path):
    fresh = bench_cli.output_dir(parse("step"))
    assert fresh.parts[:2] == ("runs", "bench") and fresh.name.startswith("step-")
    assert bench_cli.output_dir(parse("hessian", "--update")).as_posix() == "bench_results/hessian"
    assert bench_cli.output_dir(parse("train", "--out", str(tmp_path))) == tmp_path


def test_bad_optimizer_and_unwritable_out_end_in_one_error_line(tmp_path, capsys):
    assert cli.main(["bench", "step", "--optimizers", "adam,nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0] and "'nope'" in err[0]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["bench", "step", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error:" in err[0]


def test_a_misspelt_name_is_one_prefixed_error_line_with_the_nearest_name(capsys):
    """argparse's own errors too: one line, ``jaxopt-notes CMD: error:``, no usage block."""
    cases = [
        (["bench", "stpe"], "jaxopt-notes bench: error: ", "did you mean 'step'?"),
        (["bench", "step", "--optimizers", "adma"], "jaxopt-notes bench: error: ", "'adam'?"),
        (["bench", "step", "--qiuck"], "jaxopt-notes bench: error: ", "--qiuck"),
        (["trian"], "jaxopt-notes: error: ", "did you mean 'train'?"),
    ]
    for argv, prefix, words in cases:
        try:
            code = cli.main(argv)
        except SystemExit as stop:
            code = stop.code
        first, *rest = capsys.readouterr().err.splitlines()
        assert code == 2 and first.startswith(prefix) and words in first, (argv, first)
        assert argv == ["trian"] or rest == []  # an unknown command also lists the commands
    assert "did you mean" not in cli._options.did_you_mean("lbfgs", ["step", "train"])


def test_each_kind_writes_one_file_set(tmp_path, monkeypatch, capsys):
    """The measuring functions get no folder, so only ``benchmarks.run``'s file set is written."""
    import importlib

    def fake(out_dir=None, quick=False):
        if out_dir is not None:  # what the library does with a folder: its own copy
            (tmp_path / "copy_written").write_text("x")
        return {"quick": quick}

    expected = {"train": {"train.json"}, "hessian": {"hessian.json", "hessian.md"}}
    for kind, files in expected.items():
        module = importlib.import_module(f"jaxopt_notes.benchmarks.{kind}")
        monkeypatch.setattr(module, f"bench_{kind}", fake)
        monkeypatch.setattr(module, "markdown", lambda result: "| table |", raising=False)
        out = tmp_path / kind
        assert cli.main(["bench", kind, "--quick", "--out", str(out)]) == 0
        assert {p.name for p in out.iterdir()} == files
    assert not (tmp_path / "copy_written").exists()
    capsys.readouterr()


def test_the_benchmarks_sit_beside_the_library_and_install_under_its_name(tmp_path):
    """``benchmarks/`` is a room of the lab, like ``experiments/``; the library never loads it."""
    import jaxopt_notes.benchmarks as benchmarks

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools["package-dir"]["jaxopt_notes.benchmarks"] == "benchmarks"
    assert "jaxopt_notes.benchmarks" in setuptools["packages"]
    assert Path(benchmarks.__file__).parent == REPO / "benchmarks"
    assert not (REPO / "jaxopt_notes" / "bench").exists()
    loaded = "print(json.dumps([m for m in sys.modules if 'bench' in m]))"
    code = f"import sys, json, jaxopt_notes\n{loaded}"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_no_docstring_of_the_library_or_the_benchmarks_points_at_the_readme():
    """Measured numbers live in the docs (benchmarks page) and ``bench_results/``; the README is
    the front door and quotes none of them (two docstrings once sent readers there)."""
    sources = [*(REPO / "jaxopt_notes").rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]
    pointing = [str(p.relative_to(REPO)) for p in sources if "README" in p.read_text()]
    assert pointing == []


def test_seeds_outside_the_range_are_one_error_line(capsys):
    """tune, hessian and saddles take --seed through one type: [0, 2**63), else one line."""
    for argv in (
        ["tune", "search", "--seed", str(2**64)],
        ["hessian", "--run", "r", "--out", "o", "--seed", "-1"],
        ["saddles", "--run", "r", "--out", "o", "--seed", "2**64"],
    ):
        try:
            code = cli.main(argv)
        except SystemExit as stop:
            code = stop.code
        lines = capsys.readouterr().err.splitlines()
        assert code == 2 and len(lines) == 1 and "a seed must be" in lines[0], (argv, lines)
        assert lines[0].startswith(f"jaxopt-notes {argv[0]}: error: ")
    assert cli._options.seed(str(2**63 - 1)) == 2**63 - 1
