"""The benchmark machinery runs and reports ratios; no time is asserted (not a test of speed)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxopt_notes import bench, fused


def test_bench_step_reports_every_peer_and_ratio(tmp_path):
    rows = bench.bench_step(("adam",), sizes=(1000,), leaves=(3,), rounds=1, calls=1)
    (row,) = rows
    assert row["params"] == 1000 and row["leaves"] == 3
    assert {"jaxopt_notes", "optax"} <= set(row["median_ms"])
    assert set(row["ratio_vs"]) == set(row["median_ms"]) - {"jaxopt_notes"}
    assert row["state_bytes_per_param"]["jaxopt_notes"] >= 8  # mu and nu in float32
    assert row["peak_rss_mb"] > 0
    if fused.available():  # the fused step is timed beside the chain, with its own ratios
        fused_keys = {"jaxopt_notes_fused", "jaxopt_notes_fused_flat"}  # flat: 3 leaves > 1
        assert fused_keys <= set(row["median_ms"])
        for field in ("fused_ratio_vs", "flat_ratio_vs"):
            assert set(row[field]) == set(row["median_ms"]) - fused_keys
        for key in fused_keys:
            assert row["state_bytes_per_param"][key] >= 8
    table = bench.markdown_table(rows)
    assert table.count("\n") == 2 and "ours / optax" in table
    assert ("fused / optax" in table) == ("fused flat / optax" in table) == fused.available()
    bench.plot_rows(rows, tmp_path / "step.png")
    assert (tmp_path / "step.png").read_bytes()[:4] == b"\x89PNG"
    assert sum(bench._split(1001, 10)) == 1001


def test_stays_within_counts_steps_after_the_last_miss():
    from jaxopt_notes.bench.hessian import stays_within

    est = np.array([0.0, 0.5, 0.9995, 1.01, 0.9999, 1.0])
    assert stays_within(est, 1.0, 1e-3) == 5  # 1.01 at step 4 leaves the band
    assert stays_within(est, 1.0, 0.02) == 3
    assert stays_within(est[2:], 1.0, 0.02) == 1
    assert stays_within(est[:4], 1.0, 1e-3) is None  # out of the band at the last step


def test_spectrum_race_on_a_known_diagonal_hessian():
    from jaxopt_notes.bench import hessian as hb

    d = jnp.concatenate([jnp.array([1.0, 0.9]), jnp.linspace(0.8, -0.2, 38)])

    def loss_fn(p):
        return 0.5 * jnp.sum(d * p["x"] ** 2)

    params = {"x": jnp.ones(40)}
    race = hb._spectrum_race(loss_fn, params, {"seeds": 2, "ref_iter": 40, "max_power": 300})
    assert abs(race["top_eigenvalue"] - 1.0) < 1e-5
    assert abs(race["lambda2_over_lambda1"] - 0.9) < 1e-5
    assert abs(race["bottom_eigenvalue"] + 0.2) < 1e-5
    previous = None
    for target in hb.TARGETS:
        row = race["by_target"][f"{target:.0e}"]
        lanczos, power = row["lanczos_hvps"], row["power_hvps"]
        assert row["resolved"] and race["resolution"] <= target
        assert len(lanczos) == len(power) == 2 and None not in lanczos + power
        assert all(a <= min(b, 40) for a, b in zip(lanczos, power, strict=True))
        ratios = [a / b for a, b in zip(lanczos, power, strict=True)]
        assert row["median_ratio"] == np.median(ratios) and not row["median_ratio_is_upper_bound"]
        assert row["seeds_meeting_floor"] == sum(r <= 1 / 3 for r in ratios)
        if previous is not None:  # a tighter target never takes fewer steps
            assert all(a >= b for a, b in zip(lanczos + power, previous, strict=True))
        previous = lanczos + power
    headline = race["by_target"][f"{hb.TARGETS[0]:.0e}"]
    assert race["lanczos_over_power"] == headline["median_ratio"]
    assert race["one_third_floor_met"] == (headline["median_ratio"] <= hb.FLOOR)


def test_train_bench_stock_lenet_is_the_same_network():
    """The stock-Flax baseline has our LeNet's parameter count and output, both variants."""
    from flax import nnx

    from jaxopt_notes import models
    from jaxopt_notes.bench import train as train_bench

    x = jnp.zeros((2, 28, 28, 1))
    for variant in ("modern", "classic"):
        ours = models.LeNet(variant=variant, rngs=nnx.Rngs(0))
        stock = train_bench._StockLeNet(1, 400, variant, nnx.Rngs(0))
        assert models.count_params(stock) == models.count_params(ours) == 61706
        assert stock(x).shape == ours(x).shape == (2, 10)
