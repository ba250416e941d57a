"""``jaxopt-notes hessian`` on built-in functions and on a saved MLP checkpoint."""

import json

import pytest

from jaxopt_notes import cli
from jaxopt_notes.cli.hessian import init_mlp, save_checkpoint


@pytest.mark.parametrize(
    "function, kind, largest",
    [("saddle", "saddle", [2.0, -2.0]), ("monkey", "degenerate", [0.0, 0.0]),
     ("rosenbrock", "minimum", [1001.6006, 0.3994])],
)  # fmt: skip
def test_builtin_function_writes_json_and_png(tmp_path, capsys, function, kind, largest):
    assert cli.main(["hessian", "--function", function, "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["kind"] == kind and result["size"] == 2
    assert result["largest"] == pytest.approx(largest, abs=1e-4)
    assert (tmp_path / "spectral_density.png").read_bytes()[:4] == b"\x89PNG"
    assert capsys.readouterr().out.startswith(kind)


def test_point_away_from_critical_and_bad_point(tmp_path, capsys):
    argv = ["hessian", "--function", "bowl", "--point", "1,2", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    assert json.loads((tmp_path / "result.json").read_text())["kind"] == "not_critical"
    assert (
        cli.main(["hessian", "--function", "bowl", "--point", "1;2", "--out", str(tmp_path)]) == 2
    )
    assert "`--point` must be two numbers 'x,y', got '1;2'" in capsys.readouterr().err


def test_checkpoint_mlp_on_digits(tmp_path):
    path = save_checkpoint(str(tmp_path / "mlp.npz"), init_mlp([64, 4, 10], seed=0))
    argv = ["hessian", "--checkpoint", path, "--num-examples", "100", "--x64", "--num-iter", "16",
            "--out", str(tmp_path / "out")]  # fmt: skip
    assert cli.main(argv) == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["size"] == 64 * 4 + 4 + 4 * 10 + 10 and result["method"] == "dense"
    assert result["source"]["num_examples"] == 100 and result["source"]["reduction"] == "mean"
    assert result["num_near_zero"] >= 4 + 1  # softmax shift symmetry of the last layer
