"""The benchmark machinery runs and reports ratios; no time is asserted (not a test of speed)."""

from __future__ import annotations

from jaxopt_notes import bench


def test_bench_step_reports_every_peer_and_ratio(tmp_path):
    rows = bench.bench_step(("adam",), sizes=(1000,), leaves=(3,), rounds=1, calls=1)
    (row,) = rows
    assert row["params"] == 1000 and row["leaves"] == 3
    assert {"jaxopt_notes", "optax"} <= set(row["median_ms"])
    assert set(row["ratio_vs"]) == set(row["median_ms"]) - {"jaxopt_notes"}
    assert row["state_bytes_per_param"]["jaxopt_notes"] >= 8  # mu and nu in float32
    assert row["peak_rss_mb"] > 0
    table = bench.markdown_table(rows)
    assert table.count("\n") == 2 and "ours / optax" in table
    bench.plot_rows(rows, tmp_path / "step.png")
    assert (tmp_path / "step.png").read_bytes()[:4] == b"\x89PNG"
    assert sum(bench._split(1001, 10)) == 1001
