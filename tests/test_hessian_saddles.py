"""``hessian.escape_compare`` and ``jaxopt-notes saddles`` end to end on tiny trained runs."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxopt_notes import cli, hessian


def test_escape_beats_its_controls_at_a_known_saddle():
    """At the saddle of 1 + x^2 - y^2 + y^4 + z^2/10 the model's step along y falls by ~1% of
    the loss; a random direction falls by less, the (zero) gradient not at all."""
    f = lambda p: 1.0 + p[0] ** 2 - p[1] ** 2 + p[1] ** 4 + 0.1 * p[2] ** 2  # noqa: E731
    with jax.enable_x64(True):
        e = hessian.escape_compare(f, jnp.zeros(3), num_random=4)
    assert e.eigenvalue == pytest.approx(-2.0) and e.length == pytest.approx(0.1)
    assert e.model_decrease == pytest.approx(0.01)
    np.testing.assert_allclose(e.escape_decrease, [0.0099, 0.0099], rtol=1e-9)  # y^4 pays back
    assert e.escapes and e.gradient_decrease == 0.0 and e.random_decrease.max() < 0.0099
    assert len(e.line["t"]) == 21 and e.line["escape"][10] == pytest.approx(1.0)
    assert "lowers the loss more than the controls" in str(e) and len(repr(e)) < 200


def test_escape_length_is_capped_and_halved_where_the_curvature_is_tiny():
    """At eigenvalue -2e-6 the model's length would be 100; ``max_length`` holds it at 0.1.
    Both run far past where y^4 stops mattering: along y the loss falls by 1e-6 r^2 - r^4,
    at least half the model's 1e-6 r^2 only for r <= sqrt(0.5e-6) = 7.07e-4, so the trust
    test halves 100 eighteen times (3.81e-4) and 0.1 eight times (3.91e-4); without it
    (``trust=None``) the steps go uphill."""
    f = lambda p: 1.0 + p[0] ** 2 - 1e-6 * p[1] ** 2 + p[1] ** 4  # noqa: E731
    with jax.enable_x64(True):
        free = hessian.escape_compare(f, jnp.zeros(2), num_random=2, trust=None)
        capped = hessian.escape_compare(f, jnp.zeros(2), num_random=2, max_length=0.1, trust=None)
        trusted = hessian.escape_compare(f, jnp.zeros(2), num_random=2)
        trusted_cap = hessian.escape_compare(f, jnp.zeros(2), num_random=2, max_length=0.1)
    assert free.length == pytest.approx(100.0) and capped.length == pytest.approx(0.1)
    assert max(free.escape_decrease) < 0 and max(capped.escape_decrease) < 0  # uphill
    assert (trusted.halvings, trusted_cap.halvings) == (18, 8)
    assert trusted.length == pytest.approx(100 / 2**18)
    assert trusted_cap.length == pytest.approx(0.1 / 2**8)
    assert max(trusted.escape_decrease) >= 0.5 * trusted.model_decrease > 0
    for bad, match in ((dict(max_length=0.0), "max_length"), (dict(trust=1.0), "trust")):
        with pytest.raises(ValueError, match=match):
            hessian.escape_compare(f, jnp.zeros(2), **bad)


def test_escape_refuses_a_minimum():
    with pytest.raises(ValueError, match="must have negative curvature to escape"):
        hessian.escape_compare(lambda p: jnp.sum(p**2), jnp.ones(2))


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    from jaxopt_notes import train

    out = str(tmp_path_factory.mktemp("runs") / "mlp")
    cfg = train.TrainConfig(model="mlp", width=4, depth=1, dataset="digits", epochs=2)
    train.train(cfg, out_dir=out, progress=False)
    return out


def test_saddles_on_a_tiny_mlp_run(mlp_run, tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["saddles", "--run", mlp_run, "--out", str(out), "--no-progress", "--max-iter", "8"]
    assert cli.main(argv) == 0
    result = json.loads((out / "saddles.json").read_text())
    search, c = result["search"], result["classification"]
    assert result["dtype"] == "float64" and c["size"] == 64 * 4 + 4 + 4 * 10 + 10
    assert search["status"] in ("critical", "gradient_flat", "stalled", "budget")
    assert (search["grad_norm"] <= search["tol"]) == (search["status"] == "critical")
    assert c["grad_rule"] == "grad_rtol x grad_scale" and c["complete"]
    assert c["minimum_ratio"] == c["num_positive"] / c["size"] and c["minimum_ratio_error"] == 0
    assert len(c["eigenvalues"]) == c["size"] and c["better_step"] in (
        "gradient",
        "negative_curvature",
    )
    assert (result["escape"] is None) == (c["num_negative"] == 0)
    for name in result["figures"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert search["sentence"] in printed and "saddles.json" in printed
    # a second run into the same directory is refused without --overwrite
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxopt-notes saddles: error: `out`") and err.count("\n") == 1
    assert cli.main([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max-iter", "0"], "`--max-iter` must be >= 1, got 0"),
        (["--rtol", "2"], "`--rtol` must be in [0, 1), got 2.0"),
        (["--num-examples", "100000"], "`num_examples` must be in 1.."),
        (["--split", "nope"], "argument --split: invalid choice"),
    ],
)
def test_bad_input_is_one_error_line(mlp_run, tmp_path, capsys, extra, message):
    argv = ["saddles", "--run", mlp_run, "--out", str(tmp_path / "o"), "--no-progress", *extra]
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own refusals go through parser.error
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"jaxopt-notes saddles: error: {message}")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_run_is_refused(tmp_path, capsys):
    assert cli.main(["saddles", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith("jaxopt-notes saddles: error: `--run`")


@pytest.mark.slow
def test_saddles_on_a_tiny_lenet_run(tmp_path):
    """LeNet is past DENSE_MAX: Lanczos ends, an SLQ minimum ratio with its error bound.
    (Slow: training LeNet for an epoch and compiling its HVPs take ~40 s on 2 cores.)"""
    from jaxopt_notes import train

    run = str(tmp_path / "lenet")
    cfg = train.TrainConfig(model="lenet", dataset="digits", epochs=1)
    train.train(cfg, out_dir=run, progress=False)
    out = tmp_path / "s"
    argv = ["saddles", "--run", run, "--out", str(out), "--no-progress", "--num-examples", "64"]
    argv += ["--max-iter", "3", "--k", "1", "--lanczos-steps", "12"]
    assert cli.main(argv) == 0
    result = json.loads((out / "saddles.json").read_text())
    c = result["classification"]
    assert result["source"]["model"] == "lenet" and not c["complete"] and c["method"] == "lanczos"
    assert 0 <= c["minimum_ratio"] <= 1 and c["minimum_ratio_error"] > 0
    assert "stochastic Lanczos quadrature" in c["minimum_ratio_source"]
    assert result["search"]["iterations"] <= 3
    for name in result["figures"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
