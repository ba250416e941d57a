"""learning_rate_range: tiny run reproduces; a full "small" batch flips it; fixed numbers."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import learning_rate_range as lr

from tests.claims._contract import run_tiny, verdict_of

CFG = lr.Config.tiny()


def metrics(small_diverges_at=0.2, crawl_keeps=0.5, blows_up=True):
    """Hand-written metrics: batches (1, N), final losses on the rate grid of the tiny config."""
    factors = lr.rate_grid(CFG)
    n = CFG.seeds
    start, star = np.full(n, 10.0), np.full(n, 0.01)
    excess = np.where(factors <= 1.0, 1e-4, 1e6 if blows_up else 1e-4)
    excess = np.where(factors == CFG.crawl_factor, crawl_keeps, excess)
    full = star[:, None] + (start - star)[:, None] * excess[None, :]
    small = np.where(factors[None, :] < small_diverges_at, 1.0, np.inf) * np.ones((n, 1))
    q = {
        "factors": list(lr.FACTORS),
        "closed_form_max_rel_error": 1e-6,
        "top_flip_rate": [1.0 if 0.5 < f < 1 else 0.0 for f in lr.FACTORS],
        "final_over_initial_loss": [0.5 if f < 1 else 2.0 for f in lr.FACTORS],
    }
    return {
        "quadratic": q,
        "rate_factors": factors,
        "batches": [1, CFG.samples],
        "L": np.full(n, 4.0),
        "start_loss": start,
        "optimal_loss": star,
        "final_loss": np.stack([small, full]),
    }


def by_id(entries):
    return {c["id"]: c["verdict"] for c in entries}


def test_fixed_numbers_that_must_pass():
    v = by_id(lr.claims(metrics(), CFG))
    assert v["rate_must_be_tuned"] == v["small_batch_needs_smaller_rate"] == "reproduced"
    assert v["quadratic_closed_form"] == v["oscillation_above_1_over_L"] == "reproduced"
    assert v["divergence_above_2_over_L"] == "reproduced"


def test_fixed_numbers_that_must_fail():
    v = by_id(lr.claims(metrics(small_diverges_at=2.0, crawl_keeps=1e-4, blows_up=False), CFG))
    assert v["rate_must_be_tuned"] == v["small_batch_needs_smaller_rate"] == "not_reproduced"


def test_tiny_run_reproduces_and_a_full_small_batch_flips_it(tmp_path):
    plain = run_tiny("learning_rate_range", tmp_path)
    assert verdict_of(plain, "small_batch_needs_smaller_rate") == "reproduced"
    assert verdict_of(plain, "rate_must_be_tuned") == "reproduced"
    assert verdict_of(plain, "oscillation_above_1_over_L") == "reproduced"
    sabotaged = run_tiny("learning_rate_range", tmp_path, small_batch=CFG.samples)
    assert verdict_of(sabotaged, "small_batch_needs_smaller_rate") == "not_reproduced"
