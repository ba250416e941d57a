"""The benchmark machinery runs and reports ratios; no time is asserted (not a test of speed)."""

from __future__ import annotations

import jax.numpy as jnp
from jaxopt_notes.benchmarks import step

from jaxopt_notes import benchmarks as bench
from jaxopt_notes import fused


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
    assert sum(step._split(1001, 10)) == 1001


def test_train_bench_stock_lenet_is_the_same_network():
    """The stock-Flax baseline has our LeNet's parameter count and output, both variants."""
    from flax import nnx
    from jaxopt_notes.benchmarks import train as train_bench

    from jaxopt_notes import models

    x = jnp.zeros((2, 28, 28, 1))
    for variant in ("modern", "classic"):
        ours = models.LeNet(variant=variant, rngs=nnx.Rngs(0))
        stock = train_bench._StockLeNet(1, 400, variant, nnx.Rngs(0))
        assert models.count_params(stock) == models.count_params(ours) == 61706
        assert stock(x).shape == ours(x).shape == (2, 10)
