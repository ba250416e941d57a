"""Every experiment smoke-runs on tiny settings and writes the contract of API.md."""

from __future__ import annotations

import json

import pytest

import experiments
from jaxopt_notes import cli


@pytest.mark.parametrize("name", experiments.NAMES)
def test_experiment_writes_result_and_figures(tmp_path, name):
    result = experiments.run(name, tmp_path, quick="tiny")
    on_disk = json.loads((tmp_path / name / "result.json").read_text())
    assert on_disk["name"] == name and on_disk["data"]
    assert {"name", "config", "metrics", "claims"} <= set(on_disk)
    assert result["claims"], "an experiment must test at least one claim"
    for c in on_disk["claims"]:
        assert c["verdict"] in ("reproduced", "not_reproduced") and c["evidence"]
    for fig in on_disk["figures"]:
        assert (tmp_path / name / fig).read_bytes()[:4] == b"\x89PNG"


def test_cli_lists_and_runs_all(tmp_path, capsys):
    assert cli.main(["experiments", "list"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in experiments.NAMES)
    # --all on the real quick settings would take minutes; one experiment through the CLI:
    code = cli.main(["experiments", "run", "optimizer_paths", "--quick", "--out", str(tmp_path),
                     "--set", "rosenbrock_steps=20"])  # fmt: skip
    assert code == 0 and (tmp_path / "optimizer_paths" / "result.json").exists()
    assert cli.main(["experiments", "run", "--out", str(tmp_path)]) == 2  # neither NAME nor --all
    with pytest.raises(ValueError, match="is not a field"):
        experiments.run("optimizer_paths", tmp_path, overrides={"nope": "1"})


def test_report_has_a_section_per_experiment(tmp_path):
    from experiments import _common

    results = [experiments.run("optimizer_paths", tmp_path, quick="tiny")]
    text = _common.write_report(tmp_path, results).read_text()
    assert "## optimizer_paths" in text and "bowl_paths.png" in text and "reproduced" in text
