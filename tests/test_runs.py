"""Run directories: one run each, a config that repeats it, checkpoints that cannot be silently
corrupted or mixed up, and ``load_run`` reading a run back without writing into it."""

import dataclasses
import json
import logging
import os
import re

import jax
import numpy as np
import pytest

from jaxopt_notes import cli, train
from jaxopt_notes.train import TrainConfig, runs

TINY = ["--model", "mlp", "--depth", "1", "--width", "16", "--dataset", "digits"]
TINY += ["--batch-size", "64", "--learning-rate", "0.01", "--no-progress"]
# no warps (made for 28x28) and no label smoothing, so the recorded loss is load_run's loss
TINY += ["--rotate", "0", "--scale", "0", "--elastic", "0", "--label-smoothing", "0"]
TINY += ["--tta-shift", "0"]  # accuracy of the images as they are, as load_run computes it
CFG = TrainConfig(
    model="mlp",
    depth=1,
    width=16,
    dataset="digits",
    batch_size=64,
    learning_rate=0.01,
    epochs=2,
    rotate=0.0,
    scale=0.0,
    elastic=0.0,
    label_smoothing=0.0,
    tta_shift=0,
)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_leaves(a), _leaves(b), strict=True))


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "a"
    assert cli.main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    return out


def test_config_toml_round_trips_and_repeats_the_run(run_dir, tmp_path):
    cfg = train.read_toml(run_dir / "config.toml")
    assert cfg == CFG.resolved() and train.from_toml(train.to_toml(cfg)) == cfg
    assert (
        cli.main(
            [
                "train",
                "--config",
                str(run_dir / "config.toml"),
                "--out",
                str(tmp_path / "b"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert train.read_toml(tmp_path / "b" / "config.toml") == cfg
    a, b = train.load_run(run_dir), train.load_run(tmp_path / "b")
    assert _same(a.last_params, b.last_params) and _same(a.params, b.params)


def test_load_run_gives_model_params_data_and_loss_without_writing(run_dir):
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    run = train.load_run(run_dir)
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before
    assert run.epoch == 2 and run.config.select == "best"
    assert len(run.data.y_train) == 1293 and len(run.data.y_val) == 144
    summary = json.loads((run_dir / "summary.json").read_text())
    best = summary["best_epoch"]
    val = [r["val_loss"] for r in run.history if r["epoch"] == best][0]
    # the loss over the validation split is the one the run recorded for the selected epoch
    assert float(run.loss_fn("val")(run.params)) == pytest.approx(val, rel=1e-5)
    assert float(run.loss_fn("train", 100)(run.init_params)) > float(
        run.loss_fn("train", 100)(run.params)
    )
    logits = run.model(run.data.x_test[:3].astype(np.float32) * 0)  # the module is usable
    assert logits.shape == (3, 10)
    with pytest.raises(ValueError, match="`num_examples` must be in 1..144"):
        run.loss_fn("val", 1000)


def test_reusing_a_run_directory_is_refused_and_overwrite_clears_it(run_dir, tmp_path, capsys):
    first = (run_dir / "run.json").read_text()
    assert cli.main(["train", *TINY, "--epochs", "1", "--out", str(run_dir)]) == 2
    assert "already holds files" in _error(capsys)
    assert (run_dir / "run.json").read_text() == first  # nothing of the run was touched
    out = tmp_path / "c"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli.main(["train", *TINY, "--overwrite", "--out", str(out)]) == 2
    assert "also holds ['notes.txt']" in _error(capsys)
    (out / "notes.txt").unlink()
    for _ in range(2):
        assert cli.main(["train", *TINY, "--epochs", "1", "--overwrite", "--out", str(out)]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_bad_run_directories_are_one_error_line(run_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    cases = [
        (["--out", str(tmp_path / "file")], "must be a directory, got the file"),
        (["--out", str(tmp_path / "file" / "sub")], "cannot be created"),
        (["--out", str(tmp_path / "none"), "--resume"], "`resume` needs a run directory"),
        (
            ["--out", str(run_dir), "--resume", "--learning-rate", "0.5"],
            r"these differ: \['learning_rate'\]",
        ),
        (["--out", str(run_dir), "--resume", "--epochs", "1"], "`epochs` must be >= the 2"),
    ]
    for extra, match in cases:
        assert cli.main(["train", *TINY, *extra]) == 2, extra
        assert re.search(match, _error(capsys)), extra
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2


def test_read_only_out_is_one_error_line(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as root: a read-only mode does not stop writes")
        assert cli.main(["train", *TINY, "--out", str(out)]) == 2
        assert "must be writable" in _error(capsys)
    finally:
        out.chmod(0o700)


def _flip_a_bit(step_dir):
    target = max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x10
    target.write_bytes(bytes(data))


def test_a_flipped_bit_falls_back_to_the_previous_checkpoint_then_refuses(tmp_path, capsys):
    out = tmp_path / "run"
    first = train.train(CFG, out_dir=out, progress=False)
    _flip_a_bit(out / "checkpoints" / "2")
    with pytest.warns(UserWarning, match="epoch 2 skipped: its files do not match"):
        resumed = train.train(CFG, out_dir=out, resume=True, progress=False)
    assert resumed["summary"]["resumed_from_epoch"] == 1
    assert _same(resumed["state"], first["state"])  # epoch 2 taken again, the same steps
    _flip_a_bit(out / "checkpoints" / "1")
    _flip_a_bit(out / "checkpoints" / "2")
    assert cli.main(["train", *TINY, "--out", str(out), "--resume"]) == 2
    assert "no intact checkpoint" in _error(capsys)


def test_a_checkpoint_of_another_run_is_not_restored(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    train.train(CFG, out_dir=a, progress=False)
    train.train(CFG, out_dir=b, progress=False)
    (b / "run.json").write_text((a / "run.json").read_text())  # b now claims to be run a
    with (
        pytest.raises(ValueError, match="no intact checkpoint"),
        pytest.warns(UserWarning, match="belongs to run"),
    ):
        train.train(CFG, out_dir=b, resume=True, progress=False)


def test_no_nan_in_json_we_write(tmp_path):
    assert (
        runs.dumps({"a": float("nan"), "b": [float("inf"), 1.0]}) == '{"a": null, "b": [null, 1.0]}'
    )
    out = tmp_path / "run"
    cfg = TrainConfig(**{**CFG.__dict__, "learning_rate": 1e9, "epochs": 1})  # diverges to NaN
    train.train(cfg, out_dir=out, progress=False)
    summary = json.loads((out / "summary.json").read_text(), parse_constant=pytest.fail)
    assert summary["train_accuracy"] is not None
    for line in (out / "metrics.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=pytest.fail)


def test_an_edited_config_is_refused_on_resume_and_on_read(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    text = (out / "config.toml").read_text()
    edited = re.sub(r"(?m)^learning_rate = .*$", "learning_rate = 0.5", text)
    assert edited != text
    (out / "config.toml").write_text(edited)
    code = cli.main(["train", "--resume", "--epochs", "2", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "was edited after the run was created (learning_rate: 0.01 -> 0.5)" in err[0]
    with pytest.raises(ValueError, match="was edited after the run was created"):
        train.load_run(out)
    (out / "config.toml").write_text(text)  # restored: readable again
    assert train.load_run(out).epoch == 1


def test_resuming_past_a_cosine_horizon_is_refused_saying_why(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0  # cosine to 0
    capsys.readouterr()
    code = cli.main(["train", "--resume", "--epochs", "3", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "runs past the run's cosine horizon of 1 epochs" in err[0]
    assert "epochs 2-3 would not train" in err[0]


def _snapshot(out) -> dict:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_overwrite_checks_everything_before_deleting(tmp_path, capsys):
    """A seed of 2**64 and a symlinked trajectory both deleted the old run, then failed."""
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    before = _snapshot(out)
    for seed in (str(2**64), str(2**63)):
        assert cli.main(["train", *TINY, "--overwrite", "--seed", seed, "--out", str(out)]) == 2
        assert f"`seed` must be an integer in [-2**63, 2**63), got {seed}" in _error(capsys)
        assert _snapshot(out) == before
    toml = tmp_path / "seed.toml"
    toml.write_text(f"seed = {2**64}\n")  # Python's TOML reader takes any integer
    assert cli.main(["train", "--config", str(toml), "--overwrite", "--out", str(out)]) == 2
    assert "`seed` must be an integer in [-2**63, 2**63)" in _error(capsys)
    toml.write_text("val_seed = -1\n")
    assert cli.main(["train", "--config", str(toml), "--overwrite", "--out", str(out)]) == 2
    assert "`val_seed` must be an integer in [0, 2**63), got -1" in _error(capsys)
    elsewhere = tmp_path / "elsewhere"
    (out / "trajectory").rename(elsewhere)
    (out / "trajectory").symlink_to(elsewhere, target_is_directory=True)
    assert cli.main(["train", *TINY, "--epochs", "1", "--overwrite", "--out", str(out)]) == 2
    assert "trajectory' is a symbolic link" in _error(capsys)
    assert (out / "trajectory").is_symlink() and len(list(elsewhere.iterdir())) == 2
    kept = {f"trajectory/{k}": v for k, v in _snapshot(elsewhere).items()}
    assert {**_snapshot(out), **kept} == before
    (out / "trajectory").unlink()
    (out / ".overwritten-0123").mkdir()  # the leftover of a clearing killed half way
    assert cli.main(["train", *TINY, "--epochs", "1", "--overwrite", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole") / "run"
    train.train(dataclasses.replace(CFG, epochs=3), out_dir=out, progress=False)
    return out


class _Killed(BaseException):
    """kill -9 stands in: nothing after it runs, no handler catches it."""


def _kill_at(monkeypatch, where: str) -> None:
    save_point, save = runs.save_point, runs.Checkpoints.save

    def point(out, epoch, params):
        if where == "before the init's point" and epoch == 0:
            raise _Killed
        save_point(out, epoch, params)

    def checkpoint(self, epoch, trees, run):
        if where == "after the point, before the checkpoint" and epoch == 2:
            raise _Killed
        save(self, epoch, trees, run)
        if where == "after the checkpoint" and epoch == 2:
            # the order before: the checkpoint, then the point; the point never written
            (self.out / "trajectory" / "epoch_0002.npy").unlink()
            raise _Killed

    monkeypatch.setattr(runs, "save_point", point)
    monkeypatch.setattr(runs.Checkpoints, "save", checkpoint)


@pytest.mark.parametrize(
    "where",
    ["before the init's point", "after the point, before the checkpoint", "after the checkpoint"],
)
def test_a_kill_between_files_resumes_to_the_same_run_with_every_file(
    where, whole_run, tmp_path, monkeypatch
):
    out, cfg = tmp_path / "run", dataclasses.replace(CFG, epochs=3)
    with monkeypatch.context() as patch:
        _kill_at(patch, where)
        with pytest.raises(_Killed):
            train.train(cfg, out_dir=out, progress=False)
    train.train(cfg, out_dir=out, resume=True, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole_run.iterdir())
    names = [f"epoch_{e:04d}.npy" for e in range(4)]
    assert sorted(p.name for p in (out / "trajectory").iterdir()) == names
    for name in names:
        assert np.array_equal(
            np.load(out / "trajectory" / name), np.load(whole_run / "trajectory" / name)
        )

    def untimed(path):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        return [{k: v for k, v in r.items() if "time" not in k and "per_s" not in k} for r in lines]

    assert untimed(out / "metrics.jsonl") == untimed(whole_run / "metrics.jsonl")
    a, b = train.load_run(out), train.load_run(whole_run)
    assert _same(a.last_params, b.last_params) and _same(a.params, b.params)


def test_reading_a_run_logs_no_read_only_notice(run_dir, caplog):
    """orbax warned "Given directory is read only" on every read of a run."""
    with caplog.at_level(logging.INFO):
        train.load_run(run_dir)
    assert not [r for r in caplog.records if "read only" in r.getMessage()]


@pytest.mark.parametrize("text", ["{}", "[]", "not json", '{"run_id": 3}'])
def test_a_broken_run_json_is_one_line_everywhere(tmp_path, capsys, text):
    """`{}` and `[]` ended in a KeyError or AttributeError traceback."""
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    (out / "run.json").write_text(text)
    assert cli.main(["train", "--resume", "--out", str(out), "--no-progress"]) == 2
    assert "run.json" in _error(capsys)
    assert cli.main(["doctor", "--run", str(out), "--out", str(tmp_path / "d")]) == 2
    assert "run.json" in _error(capsys)
    with pytest.raises(ValueError, match="run.json"):
        train.load_run(out)


@pytest.mark.parametrize(
    "option, value", [("--schedule-epochs", "100000000000"), ("--warmup-epochs", "1e12")]
)
def test_a_schedule_past_the_int32_step_count_is_one_line(tmp_path, capsys, option, value):
    """It ended in an OverflowError traceback from inside the jitted schedule."""
    code = cli.main(["train", *TINY, "--epochs", "1", option, value, "--out", str(tmp_path / "r")])
    assert code == 2
    assert f"`{option[2:].replace('-', '_')}` must span under 2**31 steps" in _error(capsys)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("text", ["[]", '"done"'])
def test_a_summary_json_that_is_not_an_object_is_refused_by_load_run(tmp_path, text):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    (out / "summary.json").write_text(text)
    with pytest.raises(ValueError, match="summary.json that is not an object"):
        train.load_run(out)
