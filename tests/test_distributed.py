"""Two local CPU processes (``jax.distributed``, gloo collectives) train to the parameters of one
process, and process 0 alone writes the run."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxopt_notes import train
from jaxopt_notes.train import TrainConfig, distributed

CFG = dict(
    model="mlp",
    depth=1,
    width=16,
    dataset="digits",
    batch_size=64,
    epochs=2,
    learning_rate=0.01,
    dropout=0.1,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


WORKER = """
import sys, numpy as np, jax
from jaxopt_notes.train import TrainConfig, distributed, train
pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
distributed.initialize(f"127.0.0.1:{port}", 2, pid)
assert jax.process_count() == 2 and jax.device_count() == 2, jax.devices()
result = train(TrainConfig(**CFG), out_dir=out + "/run", progress=False)
leaves = distributed.fetch(jax.tree.leaves(result["state"].params))
np.savez(out + f"/params{pid}.npz", *leaves)
print("summary", result["summary"]["processes"], result["summary"]["devices"])
"""


@pytest.mark.slow  # the sharded, resumed two-process test below runs by default
def test_two_processes_match_one_and_only_process_0_writes(tmp_path):
    code = "CFG = " + repr(CFG) + "\n" + textwrap.dedent(WORKER)
    for out in _two_processes(code, tmp_path):
        assert "summary 2 2" in out
    one = train.train(TrainConfig(**CFG), progress=False)
    ref = [np.asarray(x) for x in jax.tree.leaves(one["state"].params)]
    _assert_both_processes_hold(ref, tmp_path)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["devices"] == 2
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2
    run = train.load_run(tmp_path / "run")  # the run process 0 wrote reads back in one process
    np.testing.assert_allclose(
        np.asarray(jax.tree.leaves(run.last_params)[0]), ref[0], rtol=2e-5, atol=2e-6
    )


SHARDED_WORKER = """
import sys, numpy as np, jax
from jaxopt_notes import data as data_lib
from jaxopt_notes.train import TrainConfig, distributed, make_mesh, train
pid, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
epochs, resume = int(sys.argv[4]), sys.argv[5] == "1"
distributed.initialize(f"127.0.0.1:{port}", 2, pid)
ds = data_lib.load("digits")
x, y = distributed.shard_training(ds.x_train, ds.y_train, 2, make_mesh())
(mine,) = x.addressable_shards  # this process holds its own shard of the images, no other
assert mine.index[0] == slice(pid, pid + 1), mine.index
per = len(ds.y_train) // 2
assert np.array_equal(np.asarray(mine.data)[0], ds.x_train[pid : 2 * per : 2])
cfg = TrainConfig(**{**CFG, "epochs": epochs, "data_shards": 2, "schedule_epochs": 2})
result = train(cfg, out_dir=out + "/run", resume=resume, progress=False)
leaves = distributed.fetch(jax.tree.leaves(result["state"].params))
np.savez(out + f"/params{pid}.npz", *leaves)
"""


def _assert_both_processes_hold(ref: list[np.ndarray], tmp_path) -> None:
    """Each process's saved parameters equal ``ref`` up to float32 rounding."""
    for pid in (0, 1):
        with np.load(tmp_path / f"params{pid}.npz") as got:
            for i, want in enumerate(ref):
                np.testing.assert_allclose(got[f"arr_{i}"], want, rtol=2e-5, atol=2e-6)


def _two_processes(code: str, tmp_path, *args: str) -> list[str]:
    """Runs ``code`` as processes 0 and 1 of one ``jax.distributed`` job; their stdouts."""
    procs, outs = _run_two(code, tmp_path, *args)
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in outs]


def _run_two(code: str, tmp_path, *args: str) -> tuple[list, list[tuple[str, str]]]:
    """The two processes of ``code`` and their (stdout, stderr), whatever their exit status."""
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(pid), str(port), str(tmp_path), *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in (0, 1)
    ]
    return procs, [p.communicate(timeout=600) for p in procs]


def test_each_process_holds_its_shard_and_a_resumed_two_process_run_matches_one(tmp_path):
    code = "CFG = " + repr(CFG) + "\n" + textwrap.dedent(SHARDED_WORKER)
    _two_processes(code, tmp_path, "1", "0")  # one epoch, then stop
    _two_processes(code, tmp_path, "2", "1")  # resumed to two, across the two processes
    # the schedule's horizon is the two epochs in both halves, as in the uninterrupted run
    one = train.train(
        TrainConfig(**{**CFG, "data_shards": 2, "schedule_epochs": 2}), progress=False
    )
    ref = [np.asarray(x) for x in jax.tree.leaves(one["state"].params)]
    _assert_both_processes_hold(ref, tmp_path)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_data_shards_must_be_a_multiple_of_the_devices():
    from jaxopt_notes import data as data_lib

    ds = data_lib.load("digits")
    mesh = train.make_mesh()
    with pytest.raises(ValueError, match=r"`data_shards` must be a multiple of the 2 devices"):
        distributed.shard_training(ds.x_train, ds.y_train, 3, _FakeMesh(2))
    x, y = distributed.shard_training(ds.x_train, ds.y_train, 3, mesh)
    assert x.shape[:2] == (3, len(ds.y_train) // 3) and y.shape == x.shape[:2]
    np.testing.assert_array_equal(np.asarray(y)[1], ds.y_train[1 : 3 * x.shape[1] : 3])


class _FakeMesh:
    def __init__(self, size: int):
        self.size = size


def test_initialize_refuses_bad_arguments_before_joining():
    with pytest.raises(ValueError, match="`coordinator` must be HOST:PORT"):
        distributed.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match=r"`process_id` must be in 0..1, got 2"):
        distributed.initialize("localhost:1234", 2, 2)


CLI_WORKER = """
import sys
from jaxopt_notes import cli
pid, port, out, rate = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4 + int(sys.argv[1])]
tiny = ["--model", "mlp", "--depth", "1", "--width", "16", "--dataset", "digits", "--epochs", "1"]
sys.exit(cli.main(["train", *tiny, "--learning-rate", rate, "--no-progress",
    "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", pid,
    "--out", out + "/run"]))
"""


def test_a_job_whose_processes_have_different_configs_refuses_to_start(tmp_path):
    """0.001 on process 0 and 0.5 on process 1 trained on a mix and exited 0 on both."""
    procs, outs = _run_two(textwrap.dedent(CLI_WORKER), tmp_path, "0.001", "0.5")
    for p, (_, err) in zip(procs, outs, strict=True):
        lines = err.strip().splitlines()
        assert p.returncode == 2 and len(lines) == 1, err[-3000:]
        assert lines[0].startswith("jaxopt-notes train: error: every process of a job must be")
        assert "`learning_rate` 0.001 on process 0, 0.5 on process 1" in lines[0]
    assert not (tmp_path / "run" / "run.json").exists()  # nothing trained, nothing written


def test_process_options_without_a_coordinator_are_refused(tmp_path, capsys):
    from jaxopt_notes import cli

    code = cli.main(
        ["train", "--process-id", "3", "--num-processes", "2", "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "`num_processes` and `process_id` need `coordinator`" in err[0]
    assert "--num-processes 2 --process-id 3 without it" in err[0]
    assert not (tmp_path / "r").exists()
