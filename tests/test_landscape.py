"""Loss landscapes: a quadratic's slice in closed form, the grid program against a direct loop,
Li et al.'s filter normalisation, PCA of a path, and ``jaxopt-notes landscape`` on two runs."""

import json
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_notes import cli, landscape, train
from jaxopt_notes.landscape._figures import _shown


def _quadratic():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(50, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=50), jnp.float32)

    def loss(p, x, y):  # 0.5 mean (x.w + b - y)^2: a quadratic in (w, b)
        return 0.5 * jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    return loss, x, y


def test_a_quadratic_slice_equals_its_closed_form_and_a_direct_loop():
    loss, x, y = _quadratic()
    center = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(0.3)}
    d1 = {"w": jnp.array([1.0, 0.0, 0.5]), "b": jnp.array(0.0)}
    d2 = {"w": jnp.array([0.0, -1.0, 1.0]), "b": jnp.array(1.0)}
    xs, ys = np.linspace(-2, 2, 9), np.linspace(-1, 3, 7)
    grid = landscape.surface(loss, center, (d1, d2), x, y, xs=xs, ys=ys, block=4)
    # closed form, float64: f(a, b) = 0.5 mean (r0 + a r1 + b r2)^2 with r_k residual parts
    xa, ya = np.asarray(x, np.float64), np.asarray(y, np.float64)
    r0 = xa @ np.asarray(center["w"]) + 0.3 - ya
    r1, r2 = xa @ np.asarray(d1["w"]), xa @ np.asarray(d2["w"]) + 1.0
    exact = np.array([[0.5 * np.mean((r0 + a * r1 + b * r2) ** 2) for a in xs] for b in ys])
    np.testing.assert_allclose(grid.values, exact, rtol=2e-6)
    direct = np.array(
        [
            [
                loss(jax.tree.map(lambda c, u, v: c + a * u + b * v, center, d1, d2), x, y)
                for a in xs
            ]
            for b in ys
        ]
    )
    np.testing.assert_allclose(grid.values, direct, rtol=1e-6)
    alphas, line = landscape.interpolate(loss, center, d1, x, y, alphas=[0.0, 1.0])
    assert line[0] == pytest.approx(float(loss(center, x, y)), rel=1e-6)
    assert line[1] == pytest.approx(float(loss(d1, x, y)), rel=1e-6)


def test_filter_normalisation_matches_each_filter_and_zeroes_biases():
    params = {
        "conv": jax.random.normal(jax.random.key(0), (5, 5, 3, 8)),
        "bias": jnp.ones(4),
        "dense": jax.random.normal(jax.random.key(1), (20, 4)),
    }
    (d,) = landscape.random_directions(params, jax.random.key(2), num=1)
    for name, axes in (("conv", (0, 1, 2)), ("dense", (0,))):
        got = np.sqrt((np.asarray(d[name]) ** 2).sum(axis=axes))
        want = np.sqrt((np.asarray(params[name]) ** 2).sum(axis=axes))
        np.testing.assert_allclose(got, want, rtol=1e-5)
    assert not np.asarray(d["bias"]).any()
    kept = landscape.filter_normalize(params, params, biases="keep")
    np.testing.assert_allclose(kept["bias"], 1.0)


def test_pca_of_a_path_on_a_plane_recovers_its_coordinates():
    rng = np.random.default_rng(0)
    u, v = np.linalg.qr(rng.normal(size=(10, 2)))[0].T
    end = rng.normal(size=10)
    coords = np.array([[3.0, 1.0], [2.0, -0.5], [1.0, 0.2], [0.5, 0.1], [0.0, 0.0]])
    path = [jnp.asarray(end + a * u + b * v, jnp.float32) for a, b in coords]
    dirs, got, ratio = landscape.pca_directions(path)
    assert ratio.sum() == pytest.approx(1.0, abs=1e-5) and ratio[0] > ratio[1]
    # the same plane: reconstructing each point from its PCA coordinates is exact
    recon = np.asarray(path[-1])[None] + got @ np.stack([np.asarray(d) for d in dirs])
    np.testing.assert_allclose(recon, np.stack([np.asarray(p) for p in path]), atol=1e-5)


@pytest.mark.slow  # two trainings and a Lanczos eigen slice: about a minute on 2 cores
def test_cli_draws_one_and_two_runs(tmp_path, capsys):
    tiny = [
        "--model",
        "mlp",
        "--depth",
        "1",
        "--width",
        "8",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--no-progress",
    ]
    for name, batch in (("small", "16"), ("large", "256")):
        assert cli.main(["train", *tiny, "--batch-size", batch, "--out", str(tmp_path / name)]) == 0
    out = tmp_path / "ls"
    argv = ["landscape", "--run", str(tmp_path / "small"), "--run", str(tmp_path / "large")]
    argv += ["--out", str(out), "--grid", "5", "--examples", "100", "--hessian-examples", "100"]
    assert cli.main(argv) == 0
    report = json.loads((out / "landscape.json").read_text())
    assert set(report["slices"]) == {"random", "eigen", "pca", "random_run0", "random_run1"}
    assert len(report["slices"]["eigen"]["eigenvalues"]) == 2
    assert report["slices"]["random_run0"]["top"] > 0
    # the centre of every slice is the run's own loss on those images
    run = train.load_run(tmp_path / "small")
    own = float(run.loss_fn("train", 100)(run.params))
    for kind in ("random", "eigen", "pca"):
        assert report["slices"][kind]["center"] == pytest.approx(own, rel=1e-5)
        grid = np.load(out / f"{kind}.npz")
        assert grid["values"].shape == (5, 5)
    assert np.load(out / "pca.npz")["path"].shape == (3, 2)  # init, epoch 1, the selected epoch
    for png in ("line.png", "pair.png", "pca_contour.png", "eigen_surface.png"):
        assert (out / png).stat().st_size > 0
    nope = ["landscape", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "ls2")]
    assert cli.main(nope) == 2
    assert "`--run` must be a run directory" in capsys.readouterr().err


@pytest.mark.slow  # trains and compiles a LeNet: ~30-90 s here, for an option the CLI leaves off
def test_a_lenet_runs_first_layer_split_gives_the_plain_grid(tmp_path):
    argv = ["train", "--dataset", "digits", "--epochs", "1", "--no-progress"]
    assert cli.main([*argv, "--label-smoothing", "0.1", "--out", str(tmp_path / "r")]) == 0
    run = train.load_run(tmp_path / "r")
    x, y = (jnp.asarray(a) for a in run.arrays("train", 64))
    split = run.landscape_split()
    assert split is not None
    dirs = landscape.random_directions(run.params, jax.random.key(0))
    coords = np.linspace(-1, 1, 3)
    plain = landscape.surface(run.batch_loss, run.params, dirs, x, y, xs=coords, ys=coords)
    cut = landscape.surface(
        run.batch_loss, run.params, dirs, x, y, xs=coords, ys=coords, split=split
    )
    np.testing.assert_allclose(cut.values, plain.values, rtol=1e-5)
    assert cut.values[1, 1] == pytest.approx(float(run.batch_loss(run.params, x, y)), rel=1e-5)
    assert np.ptp(plain.values) > 1e-3  # the grid moves: equal values are not constant ones


def test_grid_values_reports_progress_after_each_block():
    loss, x, y = _quadratic()
    center = {"w": jnp.zeros(3), "b": jnp.array(0.0)}
    d = {"w": jnp.ones(3), "b": jnp.array(1.0)}
    calls = []
    coords = np.linspace(0, 1, 20).reshape(10, 2)
    values = landscape.grid_values(
        loss, center, [d, d], coords, x, y, block=4, progress=lambda *a: calls.append(a)
    )
    assert calls == [(4, 10), (8, 10), (10, 10)]
    plain = landscape.grid_values(loss, center, [d, d], coords, x, y, block=4)
    np.testing.assert_array_equal(values, plain)


def test_figures_draw_the_loss_as_it_is_with_no_floor(tmp_path):
    shown, label = _shown(np.array([[1e-20, 1.0], [10.0, np.inf]]))
    assert label == "log10 loss" and shown[0, 0] == pytest.approx(-20.0) and shown.mask[1, 1]
    # a loss that reaches 0 (or below) is drawn linearly, not clipped to a plateau at 1e-12
    shown, label = _shown(np.array([[0.0, -1.0], [2.0, 3.0]]))
    assert label == "loss" and shown.tolist() == [[0.0, -1.0], [2.0, 3.0]]
    xs = np.linspace(-1, 1, 5)
    grid = landscape.Surface(xs, xs, np.add.outer(xs**2, xs**2), labels=("v1 (λ=2)", "v2 (λ=1)"))
    for name in landscape.plot_surface(grid, tmp_path / "bowl"):
        assert (tmp_path / name).stat().st_size > 0


def test_eigen_directions_compile_one_lanczos_chunk(caplog):
    # clustered eigenvalues: the top two take more than 16 Lanczos steps, where the default
    # basis of 101 rows would switch its orthogonalised rows from 16 to 32 and compile again;
    # parameters on a mesh, as a run's are, whose placement the chunk's output state would
    # take after a start without it (another compile)
    lam = jnp.linspace(1.0, 2.0, 300)
    loss = lambda p: 0.5 * jnp.sum(lam * p["w"] ** 2)  # noqa: E731
    mesh = jax.make_mesh((1,), ("data",))
    on_mesh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    params = {"w": jax.device_put(jnp.ones(300), on_mesh)}
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles():
        dirs, values = landscape.eigen_directions(loss, params, jax.random.key(0))
    chunks = [
        r for r in caplog.records if r.getMessage().startswith("Compiling jit(_lanczos_chunk")
    ]
    assert len(chunks) == 1, [r.getMessage()[:80] for r in chunks]
    np.testing.assert_allclose(values, [2.0, 2.0 - 1 / 299], rtol=2e-3)
    assert len(dirs) == 2
