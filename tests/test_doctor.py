"""The doctor: each of the notes' five cases on curves built to show it, healthy curves called
healthy, the numbers cited, and bad run directories refused in one line."""

import json
import math

import numpy as np
import pytest

from jaxopt_notes import cli
from jaxopt_notes.train import TrainConfig, to_toml
from jaxopt_notes.tune import CASES, diagnose, diagnose_run, read_metrics

LN10 = math.log(10)


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
def test_each_built_case_is_named_first(case):
    diagnosis = diagnose(built(case))
    assert diagnosis.cases[0] == case
    assert not diagnosis.healthy


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
