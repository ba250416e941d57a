"""The doctor: each of the notes' five cases on curves built to show it, healthy curves called
healthy, the numbers cited, and bad run directories refused in one line."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from jaxopt_notes import cli
from jaxopt_notes.train import TrainConfig, to_toml
from jaxopt_notes.tune import CASES, diagnose, diagnose_run, read_metrics
from jaxopt_notes.tune.doctor import CURVES

LN10 = math.log(10)
HEALTHY_RECORD = Path(__file__).parents[1] / "bench_results" / "doctor" / "healthy.json"


def curves(train_loss, val_loss, train_acc, val_acc, **extra):
    n = len(train_loss)
    return [
        {
            "epoch": e + 1,
            "train_loss": float(train_loss[e]),
            "val_loss": float(val_loss[e]),
            "train_accuracy": float(train_acc[e]),
            "val_accuracy": float(val_acc[e]),
            **{k: float(v[e]) for k, v in extra.items()},
        }
        for e in range(n)
    ]


def healthy(n=10, rate=0.8):
    e = np.arange(1, n + 1)
    loss = 0.05 + 2.0 * np.exp(-rate * e)
    acc = 1 - 0.9 * np.exp(-rate * e) - 0.02
    return curves(loss, loss * 1.3, acc, acc - 0.02)


def built(case):
    e = np.arange(1, 11)
    if case == "lr_too_high":
        loss = np.array([2.5, 9.0, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan])
        return curves(loss, loss, np.full(10, 0.1), np.full(10, 0.1))
    if case == "bad_init":  # flat at ln C for four epochs, then learning
        loss = np.where(e <= 4, LN10 + 0.001 * np.sin(e), 0.1 + 2.2 * np.exp(-(e - 4.0)))
        acc = np.where(e <= 4, 0.11, 0.95 - 0.8 * np.exp(-(e - 4.0)))
        return curves(loss, loss, acc, acc - 0.01)
    if case == "decayed_too_early":  # the rate cut 20x after epoch 2, the loss stalls at 0.9
        loss = np.array([1.8, 1.3, 0.95, 0.92, 0.91, 0.905, 0.903, 0.902, 0.901, 0.9])
        lr = np.where(e <= 2, 0.1, 0.005)
        acc = 1 - loss / 3
        return curves(loss, loss, acc, acc - 0.01, learning_rate=lr)
    if case == "overfitting":  # train to 1, validation flat then falling, val loss rising
        train_acc = np.minimum(1.0, 0.5 + 0.07 * e)
        val_acc = np.array([0.55, 0.62, 0.68, 0.72, 0.73, 0.73, 0.72, 0.71, 0.71, 0.70])
        train_loss = 1.5 * np.exp(-0.4 * e)
        val_loss = np.array([1.3, 1.0, 0.85, 0.8, 0.82, 0.86, 0.9, 0.95, 1.0, 1.05])
        return curves(train_loss, val_loss, train_acc, val_acc)
    if case == "underfitting":  # a tiny model: both curves low and together
        loss = 1.6 + 0.5 * np.exp(-e)
        acc = 0.42 - 0.2 * np.exp(-e)
        return curves(loss, loss + 0.02, acc, acc - 0.01)
    raise AssertionError(case)


@pytest.mark.parametrize("case", CASES)
def test_each_built_case_is_named_and_no_other(case):
    diagnosis = diagnose(built(case))
    assert diagnosis.cases == [case]  # every other rule fails on it
    assert not diagnosis.healthy


@pytest.mark.parametrize("case", CASES)
def test_every_finding_states_its_epochs_curves_and_rule(case):
    (finding,) = diagnose(built(case)).findings
    assert 1 <= finding.epochs[0] <= finding.epochs[1] <= 10
    assert finding.curves and set(finding.curves) <= {*CURVES, "learning_rate"}
    assert finding.rule
    line = diagnose(built(case)).report().splitlines()[0]
    assert f"(epochs {finding.epochs[0]}-{finding.epochs[1]} of " in line
    assert f"rule: {finding.rule}" in line


RECORDED = Path(__file__).parents[1] / "bench_results" / "tune" / "doctor_runs"


@pytest.mark.parametrize("name", [*CASES, "healthy", "healthy_sgd"])
def test_recorded_runs_name_their_case_and_no_other(name):
    """Real runs on the 8x8 digits, each trained to show one case (tune.acceptance --doctor)."""
    expected = "healthy" if name.startswith("healthy") else name
    assert diagnose_run(RECORDED / name).cases == [expected]


# the README's 2-epoch sigmoid LeNet run (train --model lenet --variant classic --epochs 2)
README_RUN = curves([2.3203, 2.2350], [2.2744, 2.1641], [0.0943, 0.2681], [0.1000, 0.4075])


def test_two_epochs_are_not_enough_to_tell():
    """It was called lr_too_high, while its validation accuracy rose 0.10 -> 0.41."""
    diagnosis = diagnose(README_RUN)
    assert diagnosis.cases == ["not_enough_epochs"] and not diagnosis.healthy
    assert diagnosis.report().startswith("not enough epochs to tell")
    assert diagnose(healthy(3)).cases == ["not_enough_epochs"]
    assert diagnose(healthy(4)).cases == ["healthy"]
    # an explosion needs no trend: named after one epoch
    assert diagnose(built("lr_too_high")[:2]).cases == ["lr_too_high"]


def test_a_slow_start_whose_accuracy_rises_is_not_lr_too_high_or_bad_init():
    """The sigmoid LeNet's early plateau: the loss near ln C, creeping down, accuracy rising."""
    slow = curves(
        [2.335, 2.305, 2.25, 2.20, 1.9, 1.4],
        [2.30, 2.28, 2.2, 2.0, 1.6, 1.0],
        [0.10, 0.12, 0.25, 0.40, 0.55, 0.70],
        [0.10, 0.11, 0.30, 0.45, 0.60, 0.75],
    )
    cases = diagnose(slow).cases
    assert "lr_too_high" not in cases and "bad_init" not in cases, cases
    # the same curves with the accuracy at chance and the loss bouncing: too high a rate
    bouncing = curves(
        [2.32, 2.29, 2.35, 2.28, 2.33, 2.30], [2.3] * 6, [0.1] * 6, [0.1, 0.11, 0.1, 0.09, 0.1, 0.1]
    )
    assert diagnose(bouncing).cases == ["lr_too_high"]


def test_curvature_records_are_set_aside():
    records = built("overfitting")
    mixed = []
    for r in records:
        mixed += [{"kind": "curvature", "epoch": r["epoch"], "step": 3, "lambda_max": 40.0}, r]
    assert diagnose(mixed).cases == ["overfitting"]
    assert len(diagnose(mixed).history) == len(records)


def test_a_diverged_run_with_null_losses_is_lr_too_high(tmp_path, capsys):
    records = built("lr_too_high")
    for r in records[2:]:
        r.update(train_loss=None, val_loss=None, train_accuracy=None, val_accuracy=None)
    assert diagnose(records).cases == ["lr_too_high"]
    run = write_run(tmp_path, records)
    code, out, err = run_cli(["doctor", "--run", str(run), "--out", str(tmp_path / "d")], capsys)
    assert code == 0 and out.startswith("lr_too_high") and err == "", err


def test_recorded_healthy_runs_stay_healthy():
    """bench_results/doctor/healthy.json (scripts/doctor_healthy.py): real runs of every model,
    re-read: each healthy one is healthy or too short to tell, the control as recorded."""
    record = json.loads(HEALTHY_RECORD.read_text())
    assert record["healthy_runs"] >= 10 and record["confident_wrong"] == 0
    for name, result in record["results"].items():
        cases = diagnose(**result["inputs"]).cases
        assert cases == result["cases"] and set(cases) <= set(result["expected"]), name


@pytest.mark.parametrize("n, rate", [(10, 0.8), (6, 1.5), (30, 0.3)])
def test_healthy_curves_are_called_healthy(n, rate):
    diagnosis = diagnose(healthy(n, rate))
    assert diagnosis.healthy and diagnosis.cases == ["healthy"]
    assert "healthy" in diagnosis.report()


def test_explanations_cite_the_deciding_numbers():
    over = diagnose(built("overfitting")).findings[0]
    assert f"{over.evidence['final_gap']:.3f}" in over.explanation
    assert f"{over.evidence['val_loss_min']:.3f}" in over.explanation
    decay = diagnose(built("decayed_too_early")).findings[0]
    assert decay.evidence["decay_epoch"] == 3
    assert f"{decay.evidence['fall_before_per_epoch']:.1%}" in decay.explanation
    assert f"{decay.evidence['fall_after_per_epoch']:.1%}" in decay.explanation
    boom = diagnose(built("lr_too_high")).findings[0]
    assert boom.evidence["epoch"] == 2 and "9" in boom.explanation


def test_a_decay_after_the_loss_has_flattened_is_not_too_early():
    # the same cut, but the loss had already stopped falling before it
    records = built("decayed_too_early")
    flat = [1.0, 0.99, 0.985, 0.98, 0.978, 0.977, 0.976, 0.975, 0.975, 0.975]
    for r, loss in zip(records, flat, strict=True):
        r["train_loss"] = loss
    assert "decayed_too_early" not in diagnose(records).cases


def test_no_rates_no_decay_case():
    records = built("decayed_too_early")
    for r in records:
        del r["learning_rate"]
    assert "decayed_too_early" not in diagnose(records).cases


def write_run(tmp_path, records, *, cfg=None, partial=""):
    run = tmp_path / "run"
    run.mkdir()
    text = "".join(json.dumps(r) + "\n" for r in records) + partial
    (run / "metrics.jsonl").write_text(text)
    if cfg is not None:
        (run / "config.toml").write_text(to_toml(cfg.resolved()))
        info = {"dataset": {"num_classes": 10, "train_size": 320}}
        (run / "summary.json").write_text(json.dumps(info))
    return run


def test_rates_come_from_the_run_config(tmp_path):
    # step decay x0.05 every epoch: the doctor recomputes each epoch's rate from config.toml
    records = built("decayed_too_early")
    for r in records:
        del r["learning_rate"]
    cfg = TrainConfig(
        optimizer="sgd",
        learning_rate=0.1,
        schedule="step",
        lr_every=2,
        lr_gamma=0.05,
        epochs=10,
        batch_size=32,
    )
    diagnosis = diagnose_run(write_run(tmp_path, records, cfg=cfg))
    assert diagnosis.learning_rates[:3] == pytest.approx([0.1, 0.1, 0.005])
    assert diagnosis.cases[0] == "decayed_too_early"


def test_a_running_run_half_written_last_line_is_left_out(tmp_path):
    run = write_run(tmp_path, healthy(6), partial='{"epoch": 7, "train_lo')
    assert len(read_metrics(run)) == 6


def run_cli(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_the_figure_and_json(tmp_path, capsys):
    run = write_run(tmp_path, built("overfitting"))
    code, out, _ = run_cli(["doctor", "--run", str(run), "--out", str(tmp_path / "d")], capsys)
    assert code == 0 and out.startswith("overfitting")
    assert (tmp_path / "d" / "doctor.png").stat().st_size > 0
    assert json.loads((tmp_path / "d" / "doctor.json").read_text())["cases"] == ["overfitting"]


@pytest.mark.parametrize("what", ["missing", "no_metrics", "empty", "garbage"])
def test_cli_bad_run_directory_is_one_error_line(tmp_path, capsys, what):
    run = tmp_path / "run"
    if what != "missing":
        run.mkdir()
    if what == "empty":
        (run / "metrics.jsonl").write_text("")
    if what == "garbage":
        (run / "metrics.jsonl").write_text("not json\n")
    code, out, err = run_cli(["doctor", "--run", str(run)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert len(lines) == 1 and "error:" in lines[0] and str(run) in lines[0]


@pytest.mark.slow
def test_real_runs_built_for_each_case(tmp_path):
    # seven short trainings on the 8x8 digits (a few minutes on two loaded cores)
    from jaxopt_notes.tune.acceptance import doctor_cases

    named = doctor_cases(tmp_path)
    for name, cases in named.items():
        assert cases[0] == ("healthy" if name.startswith("healthy") else name), (name, cases)
    # the checkpoints tell how far each weight matrix moved: a dead run's barely did
    moved = {n: diagnose_run(tmp_path / n).weights for n in ("healthy", "bad_init")}
    assert [w["layer"] for w in moved["healthy"]] == ["hidden.0.kernel", "out.kernel"]
    assert max(w["moved"] for w in moved["bad_init"]) < min(w["moved"] for w in moved["healthy"])


@pytest.mark.parametrize("where", ["a file", "the run", "inside the run"])
def test_cli_out_must_be_a_directory_outside_the_run(tmp_path, capsys, where):
    run = write_run(tmp_path, healthy(6))
    out = {"a file": tmp_path / "f", "the run": run, "inside the run": run / "d"}[where]
    (tmp_path / "f").write_text("")
    before = sorted(p.name for p in run.iterdir())
    code, out_text, err = run_cli(["doctor", "--run", str(run), "--out", str(out)], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out_text == "" and len(lines) == 1, err
    assert lines[0].startswith("jaxopt-notes doctor: error: `out` must")
    assert sorted(p.name for p in run.iterdir()) == before


def test_an_mse_run_is_refused_in_one_line(tmp_path, capsys):
    run = write_run(tmp_path, healthy(6), cfg=TrainConfig(loss="mse", label_smoothing=0.0))
    code, _, err = run_cli(["doctor", "--run", str(run)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "loss = 'mse'" in err
