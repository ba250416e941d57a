"""Training: one scanned epoch learns, outputs are written, bad input is refused before training,
a killed run resumes bit-identically, and 4 devices match 1."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxopt_notes import cli, data, models, train
from jaxopt_notes.train import TrainConfig, loop
from jaxopt_notes.train.curvature import edge_ratios

NO_AUGMENT = dict(shift=0, rotate=0.0, scale=0.0, elastic=0.0, tta_shift=0)  # 8x8: warps are large
TINY = dict(
    model="mlp",
    depth=1,
    width=32,
    dataset="digits",
    batch_size=64,
    schedule="constant",
    **NO_AUGMENT,
)


def _run_script(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_one_tiny_epoch_on_digits_improves_accuracy():
    cfg = TrainConfig(**TINY, epochs=1, learning_rate=1e-2)
    ds = data.load("digits")
    mesh = train.make_mesh(1)
    model, state = train.init_state(cfg, ds, optax.adam(1e-2), mesh)
    before = train.make_eval_fn(model, ds, mesh)(state, ds.x_test, ds.y_test)["accuracy"]
    result = train.train(cfg, ds, progress=False)
    after = result["history"][-1]["val_accuracy"]
    assert after > float(before) + 0.4 and after > 0.8
    # the optimizer's step count lives in its state: one epoch = 1293 // 64 steps, the 1,437
    # training digits less the 144 of the validation split
    counts = [x for x in jax.tree.leaves(result["state"].opt_state) if x.dtype == np.int32]
    assert counts and all(int(c) == 1293 // 64 for c in counts)


def test_any_optax_transformation_plugs_in():
    cfg = TrainConfig(**TINY, epochs=1)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, momentum=0.9))
    result = train.train(cfg, tx=tx, progress=False)
    assert result["history"][-1]["val_accuracy"] > 0.5


def test_optimizers_by_name_use_ours_and_reject_unknown_names():
    assert set(train.available_optimizers()) >= set(train.OPTIMIZER_NAMES)
    tx = train.make_optimizer(TrainConfig(optimizer="amsgrad", schedule="cosine"), 10)
    assert hasattr(tx, "init") and hasattr(tx, "update")
    with pytest.raises(ValueError, match="`optimizer` must be one of .* got 'adamm'"):
        TrainConfig(optimizer="adamm")


def test_early_stopping_counts_epochs_without_improvement():
    run = {"history": [], "stopped": False}
    for epoch, acc in enumerate([0.5, 0.7, 0.6, 0.65], start=1):
        run = loop._update_run(run, {"epoch": epoch, "val_accuracy": acc}, patience=2)
    assert run["stopped"] and len(run["history"]) == 4 and run["best_epoch"] == 2


def test_best_epoch_breaks_accuracy_ties_by_validation_loss():
    run = {"history": [], "stopped": False}
    records = [(0.9, 0.5), (0.95, 0.40), (0.95, 0.30), (0.95, 0.35), (0.93, 0.2)]
    for epoch, (acc, loss) in enumerate(records, start=1):
        record = {"epoch": epoch, "val_accuracy": acc, "val_loss": loss}
        run = loop._update_run(run, record, patience=0)
    assert run["best_epoch"] == 3  # not the first of the tie (2), nor the lowest loss (5)
    tied = {"history": [], "stopped": False}
    for epoch in (1, 2):  # an exact tie: the earlier
        tied = loop._update_run(tied, {"epoch": epoch, "val_accuracy": 0.9, "val_loss": 0.1}, 0)
    assert tied["best_epoch"] == 1


def test_test_time_shifts_average_the_softmax_of_the_shifted_images():
    ds = data.load("digits")
    cfg = TrainConfig(model="lenet", dataset="digits", epochs=1)
    mesh = train.make_mesh(1)
    model, state = train.init_state(cfg, ds, optax.adam(1e-2), mesh)
    x, y = ds.x_test[:150], ds.y_test[:150]
    plain = train.make_eval_fn(model, ds, mesh)(state, x, y)
    tta = train.make_eval_fn(model, ds, mesh, tta_shift=1)(state, x, y)
    net = models.split(model, train=False).merge(train.eval_params(state), state.batch_stats)

    def probs(images):
        return np.asarray(jax.nn.softmax(net(data.normalize(jnp.asarray(images), ds.mean, ds.std))))

    def moved(dy, dx):  # numpy reference: zero-filled shift
        out = np.zeros_like(x)
        h, w = x.shape[1:3]
        out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
            :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
        ]
        return out

    total = probs(x) + sum(probs(moved(*s)) for s in ((1, 0), (-1, 0), (0, 1), (0, -1)))
    np.testing.assert_allclose(float(tta["accuracy"]), np.mean(total.argmax(1) == y), atol=1e-6)
    assert float(tta["loss"]) == pytest.approx(float(plain["loss"]))  # loss: images as they are
    assert float(tta["accuracy"]) != pytest.approx(float(plain["accuracy"]))  # the shifts count


def test_cli_writes_jsonl_summary_curves_and_outside_accuracy(tmp_path, capsys):
    ds = data.load("mnist5k")
    np.savez(tmp_path / "outside.npz", x=ds.x_test[:50, ..., 0], y=ds.y_test[:50])
    out = tmp_path / "run"
    argv = ["train", "--model", "mlp", "--width", "32", "--depth", "1", "--optimizer", "adam"]
    argv += ["--learning-rate", "0.003", "--epochs", "2", "--dataset", "mnist5k", "--out", str(out)]
    argv += ["--test-data", str(tmp_path / "outside.npz"), "--no-progress"]
    assert cli.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["name"] == "mnist5k"
    assert summary["dataset"]["train_size"] == 3600 and summary["dataset"]["test_size"] == 1000
    assert summary["dataset"]["val_size"] == 400 and summary["dataset"]["split"]["seed"] == 0
    assert summary["test_accuracy"] > 0.8 and summary["outside_test_accuracy"] > 0.8
    assert summary["outside_test_size"] == 50 and summary["wall_time_s"] > 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2] and "epoch_time_s" in lines[0]
    assert (out / "loss.png").stat().st_size > 0 and (out / "accuracy.png").stat().st_size > 0
    assert "outside_test_accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--optimizer", "adamm"], "`optimizer` must be one of"),
        (["--dataset", "imagenet"], "`dataset` must be one of"),
        (["--test-data", "no/such/file.npz"], "must be an existing .npz file"),
        (["--test-data", "{wrong}"], r"shape \(N, 28, 28\)"),
        (
            ["--test-data", "{ok}", "--dataset", "digits"],
            "must hold images of the training data.s shape",
        ),
        (["--batch-size", "5000"], "`batch_size` must be <= the 1293"),
        (["--learning-rate", "-1"], "`learning_rate` must be a finite number in \\(0"),
        (["--learning-rate", "inf"], "`learning_rate` must be a finite number"),
        (["--patience", "-1"], "`patience` must be an integer >= 0, got -1"),
        (["--test-data", "{empty}"], "must hold at least one example, got 0"),
        (["--variant", "quantum"], "`variant` must be one of \\('classic', 'modern'\\)"),
        (["--width", "0"], "`width` must be an integer >= 1, got 0"),
        (["--dropout", "1.5"], r"`dropout` must be a finite number in \[0.0, 1.0\)"),
        (["--optimizer", "sgd", "--b1", "0.9"], "`b1` is not a hyperparameter of optimizer 'sgd'"),
        (["--optimizer", "adamw", "--weight-decay-mode", "coupled"], "must be 'decoupled'"),
        (["--config", "no/such.toml"], "`config` must be an existing TOML file"),
        (["--config", "{badkey}"], "has unknown keys \\['lr'\\]"),
        (["--val-fraction", "0.999"], "at least one example per class"),
    ],
)
def test_cli_refuses_bad_input_before_training(tmp_path, capsys, extra, match):
    np.savez(tmp_path / "wrong.npz", x=np.zeros((3, 8, 8), np.uint8), y=np.zeros(3, int))
    np.savez(tmp_path / "ok.npz", x=np.zeros((3, 28, 28), np.uint8), y=np.zeros(3, int))
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 28, 28), np.uint8), y=np.zeros(0, int))
    (tmp_path / "bad.toml").write_text("lr = 0.1\n")
    files = {"wrong": "wrong.npz", "ok": "ok.npz", "empty": "empty.npz", "badkey": "bad.toml"}
    extra = [e.format(**{k: tmp_path / v for k, v in files.items()}) for e in extra]
    argv = ["train", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path / "run")]
    assert cli.main(argv + extra) == 2
    err = capsys.readouterr().err
    assert pytest.importorskip("re").search(match, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


RESUME = {**TINY, "schedule": "cosine", "shift": 1, "epochs": 4, "dropout": 0.2}


def test_killed_run_resumes_to_bit_identical_params(tmp_path):
    killed = _run_script(
        f"""
        import os, signal
        from jaxopt_notes.train import TrainConfig, train
        def kill(epoch, record):
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        train(TrainConfig(**{RESUME!r}), out_dir={str(tmp_path / "a")!r},
              progress=False, on_epoch_end=kill)
        """
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    cfg = TrainConfig(**RESUME)
    resumed = train.train(cfg, out_dir=tmp_path / "a", resume=True, progress=False)
    straight = train.train(cfg, out_dir=tmp_path / "b", progress=False)
    assert resumed["summary"]["resumed_from_epoch"] == 2
    for a, b in zip(
        jax.tree.leaves(resumed["state"]), jax.tree.leaves(straight["state"]), strict=True
    ):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    lines = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"these differ: \[.learning_rate., .schedule.\]"):
        other = TrainConfig(**{**RESUME, "learning_rate": 0.5, "schedule": "constant"})
        train.train(other, out_dir=tmp_path / "b", resume=True, progress=False)


def test_four_devices_match_one_device():
    result = _run_script(
        f"""
        import jax, numpy as np
        from jaxopt_notes.train import TrainConfig, train
        assert jax.device_count() == 4, jax.devices()
        cfg = TrainConfig(**{{**{TINY}, "shift": 1}}, epochs=1)
        one = train(cfg, devices=1, progress=False)
        four = train(cfg, devices=4, progress=False)
        leaf = jax.tree.leaves(four["state"].params)[0]
        assert len(leaf.sharding.device_set) == 4 and leaf.sharding.is_fully_replicated
        for a, b in zip(jax.tree.leaves(one["state"]), jax.tree.leaves(four["state"])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
        print("ok", four["summary"]["devices"])
        """,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok 4" in result.stdout


def test_curvature_tracking_records_every_n_steps_and_matches_dense_eigenvalues(tmp_path):
    cfg = TrainConfig(
        **{**TINY, "width": 8},
        epochs=2,
        track_curvature=7,
        curvature_examples=200,
        curvature_iters=30,
        optimizer="adam",
    )
    result = train.train(cfg, out_dir=tmp_path / "run", progress=False)
    plain = train.train(dataclasses.replace(cfg, track_curvature=0), progress=False)
    for a, b in zip(jax.tree.leaves(result["state"]), jax.tree.leaves(plain["state"]), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    curv = [r for r in lines if r.get("kind") == "curvature"]
    steps = 1293 // 64
    assert [r["step"] for r in curv] == list(range(0, 2 * steps, 7))
    assert all(r["top"] >= r["bottom"] and r["edge"] == pytest.approx(2 / r["lr"]) for r in curv)
    assert all(r["adaptive_edge"] == pytest.approx(38 / r["lr"]) for r in curv)
    assert np.isnan(curv[0].get("preconditioned") or np.nan)  # no second moment before step 1
    assert all(r["preconditioned"] > 0 for r in curv[1:])
    summary = result["summary"]["curvature"]
    assert summary["measurements"] == len(curv) and summary["fraction_of_training_time"] > 0
    assert (tmp_path / "run" / "curvature.png").stat().st_size > 0
    # the last measurement against a dense eigendecomposition at the state it was taken at:
    # replay the run up to that step is costly, so measure the final state afresh instead
    from jaxopt_notes import hessian
    from jaxopt_notes.train.curvature import CurvatureTracker

    run = train.load_run(tmp_path / "run")
    tracker = CurvatureTracker(result["model"], run.data, cfg.resolved())
    final = train.TrainState(*(result["state"][:3]))
    for _ in range(3):  # warm starts converge
        got = tracker(final, 2 * steps, 1e-3)
    loss = run.loss_fn("train", 200)
    dense = hessian.eigenvalues(loss, final.params, k=1, which="both", method="dense").values
    assert got["top"] == pytest.approx(float(dense[0]), rel=1e-3)
    assert got["bottom"] == pytest.approx(float(dense[-1]), rel=0.05, abs=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("lr, at_edge", [(0.3, True), (0.03, False)])
def test_full_batch_gd_rises_to_the_edge_from_below_and_hovers(tmp_path, lr, at_edge):
    # the band [0.8, 1.2] x 2/lr, the start below 0.75 x 2/lr: experiments/edge_of_stability's
    # at lr 0.03 the edge (66.7) is far out of reach in 300 steps: the verdict must flip
    cfg = TrainConfig(
        model="mlp",
        dataset="digits",
        activation="tanh",
        width=128,
        init="normal",
        init_std=0.03,
        batch_size=1293,
        epochs=300,
        optimizer="sgd",
        momentum=0.0,
        learning_rate=lr,
        schedule="constant",
        loss="mse",
        **NO_AUGMENT,
        track_curvature=10,
        curvature_examples=0,
        curvature_iters=12,
    )
    loop.train(cfg, out_dir=tmp_path / "run", progress=False)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    records = [r for r in map(json.loads, lines) if r.get("kind") == "curvature"]
    ratios = edge_ratios(records)
    assert ratios["measurements"] == 30
    verdict = ratios["first"] < 0.75 and 0.8 <= ratios["second_half_median"] <= 1.2
    assert verdict is at_edge, ratios
