"""``jaxopt-notes hessian`` on built-in functions and on trained runs (``--run``)."""

import json
import os

import numpy as np
import pytest

from jaxopt_notes import cli

ERROR = "jaxopt-notes hessian: error: "  # every bad input: this prefix, one line, exit 2


@pytest.mark.parametrize(
    "function, kind, largest",
    [
        ("saddle", "saddle", [2.0, -2.0]),
        ("monkey", "degenerate", [0.0, 0.0]),
        ("rosenbrock", "minimum", [1001.6006, 0.3994]),
    ],
)
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
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["kind"] == "not_critical" and "not a critical point yet" in result["explanation"]
    assert (
        cli.main(["hessian", "--function", "bowl", "--point", "1;2", "--out", str(tmp_path)]) == 2
    )
    assert capsys.readouterr().err == f"{ERROR}`--point` must be two numbers 'x,y', got '1;2'\n"


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    from jaxopt_notes import train

    out = str(tmp_path_factory.mktemp("runs") / "mlp")
    cfg = train.TrainConfig(model="mlp", width=4, depth=1, dataset="digits", epochs=2)
    train.train(cfg, out_dir=out, progress=False)
    return out


def _snapshot(path):
    return {
        name: os.path.getmtime(os.path.join(root, name))
        for root, _, files in os.walk(path)
        for name in files
    }


def test_run_on_the_whole_training_split(mlp_run, tmp_path, capsys):
    from jaxopt_notes import hessian, train

    before = _snapshot(mlp_run)
    argv = ["hessian", "--run", mlp_run, "--batch-size", "300", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    run = train.load_run(mlp_run)
    n_train = len(run.data.y_train)
    assert result["source"]["num_examples"] == n_train and result["source"]["split"] == "train"
    assert result["size"] == 64 * 4 + 4 + 4 * 10 + 10 and result["method"] == "dense"
    full = run.loss_fn("train")  # the closed-over full batch: the same mean loss
    assert result["loss"] == pytest.approx(float(full(run.params)), rel=1e-5)
    top = hessian.eigenvalues(full, run.params, k=1).values[0]
    assert result["largest"][0] == pytest.approx(float(top), rel=1e-4)
    assert result["trace"]["std_error"] > 0 and 0 <= result["minimum_ratio"] <= 1
    assert result["nulls"] == {} and "gradient norm" in result["explanation"]
    assert (tmp_path / "spectral_density.png").read_bytes()[:4] == b"\x89PNG"
    assert "trace:" in capsys.readouterr().out
    assert _snapshot(mlp_run) == before  # nothing in the run directory was written


def test_run_split_and_num_examples(mlp_run, tmp_path):
    argv = [
        "hessian",
        "--run",
        mlp_run,
        "--split",
        "test",
        "--num-examples",
        "50",
        "--out",
        str(tmp_path),
    ]
    assert cli.main(argv) == 0
    source = json.loads((tmp_path / "result.json").read_text())["source"]
    assert (source["split"], source["num_examples"]) == ("test", 50)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--k", "0"], "`--k` must be >= 1, got 0"),
        (["--k", "-3"], "`--k` must be >= 1, got -3"),
        (["--num-examples", "many"], "`--num-examples` must be a positive integer or"),
        (["--num-examples", "0"], "`--num-examples` must be a positive integer or"),
        (["--num-examples", "100000"], "`num_examples` must be in 1.."),
        (["--trace-samples", "1"], "`--trace-samples` must be >= 2, got 1"),
    ],
)
def test_run_bad_options_are_one_error_line(mlp_run, tmp_path, capsys, extra, message):
    assert cli.main(["hessian", "--run", mlp_run, *extra, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(ERROR + message) and err.count("\n") == 1 and "Traceback" not in err


def test_missing_or_half_written_run_is_refused(mlp_run, tmp_path, capsys):
    import shutil

    half = tmp_path / "half"
    shutil.copytree(mlp_run, half)
    shutil.rmtree(half / "checkpoints")
    for run_dir in (tmp_path / "nope", half):
        assert cli.main(["hessian", "--run", str(run_dir), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{ERROR}`--run`") and err.count("\n") == 1
    for out in (os.path.join(mlp_run, "h"), mlp_run, mlp_run + "/"):  # in it, or the run itself
        assert cli.main(["hessian", "--run", mlp_run, "--out", out]) == 2
        assert "`--out` must lie outside the run directory" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("model", ["lenet", "mlp"])
def test_train_then_hessian_on_mnist5k_end_to_end(tmp_path, model):
    """`jaxopt-notes train ... --out R && jaxopt-notes hessian --run R` on the whole mnist5k
    training split, for LeNet and an MLP."""
    run = str(tmp_path / model)
    argv = [
        "train",
        "--out",
        run,
        "--model",
        model,
        "--dataset",
        "mnist5k",
        "--epochs",
        "1",
        "--no-progress",
    ]
    assert cli.main(argv) == 0
    assert cli.main(["hessian", "--run", run, "--out", str(tmp_path / "h")]) == 0
    result = json.loads((tmp_path / "h" / "result.json").read_text())
    assert result["source"]["num_examples"] == 3600 and np.isfinite(result["largest"][0])
    assert result["method"] == "lanczos" and result["kind"] in ("not_critical", "saddle")
