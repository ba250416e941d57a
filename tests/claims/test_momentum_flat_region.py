"""momentum_flat_region: tiny runs reproduce; momentum 0 / Nesterov off flip them; fixed numbers."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import momentum_flat_region as mf

from tests.claims._contract import run_tiny, verdict_of

CFG = mf.Config.tiny()
ARMS = ("momentum", "GD at lr/(1-beta)", "GD at lr")


def metrics(deep_share=(0.7, 0.3, 0.0), steps=(10.0, 20.0, 200.0), nag_over=0.3):
    """Hand-written metrics at the one beta of the config (index 1 of betas 0.5, 0.9)."""
    n, m = CFG.seeds, CFG.valley_seeds
    rng = np.random.default_rng(0)

    def per_beta(rows):
        return np.stack([rows, rows])

    u, jitter = rng.random(n), rng.uniform(0.9, 1.1, n)  # shared: equal arms tie exactly
    deep = {k: per_beta((u < p).astype(float)) for k, p in zip(ARMS, deep_share, strict=True)}
    cross = {k: per_beta(s * jitter) for k, s in zip(ARMS, steps, strict=True)}
    y0 = rng.uniform(0.1, 1.0, m)
    hb_total = rng.uniform(1.0, 2.0, m)
    valley = {
        "heavy ball": {
            "total_overshoot": per_beta(hb_total),
            "largest_y_overshoot": per_beta(0.9 * y0),
        },
        "Nesterov": {
            "total_overshoot": per_beta(nag_over * hb_total),
            "largest_y_overshoot": per_beta(0.9 * y0),
        },
        "abs_y0": y0,
    }
    return {
        "betas": [0.5, 0.9],
        "deep": deep,
        "diverged": {k: per_beta(np.zeros(n)) for k in ARMS},
        "steps_to_cross": cross,
        "steps_to_stay": cross,
        "valley": valley,
    }


def by_id(entries):
    return {c["id"]: c["verdict"] for c in entries}


def test_fixed_numbers_that_must_pass():
    v = by_id(mf.claims(metrics(), CFG))
    assert v["shallow_minimum_beyond_step"] == v["plateau_beyond_step"] == "reproduced"
    assert v["nesterov_less_overshoot"] == v["first_overshoot_equal"] == "reproduced"


def test_fixed_numbers_that_must_fail():
    # momentum no better than GD at its effective step; Nesterov overshooting as much
    v = by_id(mf.claims(metrics((0.3, 0.3, 0.0), (20.0, 20.0, 200.0), 1.0), CFG))
    assert v["shallow_minimum_beyond_step"] == v["plateau_beyond_step"] == "not_reproduced"
    assert v["nesterov_less_overshoot"] == "not_reproduced"


def test_tiny_run_reproduces(tmp_path):
    plain = run_tiny("momentum_flat_region", tmp_path)
    assert verdict_of(plain, "shallow_minimum_beyond_step") == "reproduced"
    assert verdict_of(plain, "nesterov_less_overshoot") == "reproduced"
    assert verdict_of(plain, "first_overshoot_equal") == "reproduced"


def test_momentum_zero_removes_the_effect(tmp_path):
    sabotaged = run_tiny("momentum_flat_region", tmp_path, momentum=0.0)
    assert verdict_of(sabotaged, "shallow_minimum_beyond_step") == "not_reproduced"
    assert verdict_of(sabotaged, "plateau_beyond_step") == "not_reproduced"


def test_nesterov_off_removes_the_look_ahead(tmp_path):
    sabotaged = run_tiny("momentum_flat_region", tmp_path, nesterov=False)
    assert verdict_of(sabotaged, "nesterov_less_overshoot") == "not_reproduced"
