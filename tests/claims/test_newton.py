"""newton: few steps against tuned GD (reproduced on tiny), flipped by an identity Hessian."""

from __future__ import annotations

import math

import numpy as np
import pytest
from jaxopt_notes.experiments import newton as exp

from tests.claims._contract import run_tiny, verdict_of


def test_tiny_reproduces_and_an_identity_hessian_flips_it(tmp_path):
    plain = run_tiny("newton", tmp_path)
    assert verdict_of(plain, "newton_few_steps") == "reproduced"
    assert verdict_of(plain, "newton_one_step_on_quadratic") == "reproduced"
    sabotaged = run_tiny("newton", tmp_path, curvature="identity")
    assert verdict_of(sabotaged, "newton_few_steps") == "not_reproduced"


def metrics(newton_steps, gd_steps, cpu_ratio=8.0, flop_ratio=8.0) -> dict:
    """Hand-written metrics in the shape ``measure`` returns (sizes 64, 128, 256)."""
    rounds = 7
    rng = np.random.default_rng(0)
    base = 1e-3 * (1 + 0.01 * rng.standard_normal(rounds))
    cpu = {"64": list(base), "128": list(base * 8), "256": list(base * 8 * cpu_ratio)}
    return {
        "newton_steps": np.asarray(newton_steps, dtype=float),
        "gd_steps_per_rate": np.asarray(gd_steps, dtype=float),
        "timing": {"n": [64, 128, 256], "cpu_seconds": cpu, "wall_seconds": cpu},
        "quadratic_residual": 1e-7,
        "work": {
            "n": [64, 128, 256],
            "flops": {"64": 1e5, "128": 1e5 * flop_ratio, "256": 1e5 * flop_ratio**2},
            "max_relative_residual": 1e-15,
        },
    }


def cfg():
    return exp.Config.tiny()


def test_claims_pass_on_fast_newton_and_cubic_cost():
    m = metrics([5, 6, 6], [[400, 200, math.inf]] * 3)
    out = {"claims": exp.claims(m, cfg())}
    assert verdict_of(out, "newton_few_steps") == "reproduced"
    assert verdict_of(out, "solve_cost_cubic") == "reproduced"


def test_newton_that_never_converges_fails_even_if_gd_is_slow():
    m = metrics([math.inf] * 3, [[math.inf] * 3] * 3)
    assert verdict_of({"claims": exp.claims(m, cfg())}, "newton_few_steps") == "not_reproduced"


def test_gd_as_fast_as_newton_fails_the_speedup():
    m = metrics([5, 6, 6], [[12, 20, 30]] * 3)
    assert verdict_of({"claims": exp.claims(m, cfg())}, "newton_few_steps") == "not_reproduced"


@pytest.mark.parametrize("ratio", [4.0, 16.0])
def test_quadratic_or_quartic_counted_work_fails_the_cubic_check(ratio):
    m = metrics([5, 6, 6], [[400, 200, 300]] * 3, flop_ratio=ratio)
    assert verdict_of({"claims": exp.claims(m, cfg())}, "solve_cost_cubic") == "not_reproduced"


def test_the_clock_does_not_decide_the_cost():
    # a timing that says n^2 (caches, other processes) is evidence only: the count decides
    m = metrics([5, 6, 6], [[400, 200, 300]] * 3, cpu_ratio=4.0)
    assert verdict_of({"claims": exp.claims(m, cfg())}, "solve_cost_cubic") == "reproduced"


def test_the_counted_solve_solves_and_counts_about_two_thirds_n_cubed():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((50, 50))
    h, g = a @ a.T + 50 * np.eye(50), rng.standard_normal(50)
    x, flops = exp.counted_solve(h, g)
    assert np.allclose(h @ x, g, atol=1e-10)
    assert 2 / 3 * 50**3 < flops < 2 / 3 * 50**3 + 4 * 50**2  # 2n^3/3 plus lower-order terms


def test_steps_to_tolerance_needs_the_tolerance_to_hold_for_good():
    norms = np.array([1.0, 1e-6, 1.0, 1e-6, 1e-7])
    assert exp.steps_to_tolerance(norms, 1e-5) == 3
    assert exp.steps_to_tolerance(np.array([1.0, 0.5]), 1e-5) == math.inf
