"""gradient_noise: the 1/b law is reproduced on tiny settings and flips when a batch repeats."""

from __future__ import annotations

import numpy as np
import pytest
from jaxopt_notes.experiments import gradient_noise as exp

from tests.claims._contract import run_tiny, verdict_of


def test_tiny_reproduces_and_a_repeated_example_flips_it(tmp_path):
    plain = run_tiny("gradient_noise", tmp_path)
    assert verdict_of(plain, "variance_falls_as_1_over_b") == "reproduced"
    assert verdict_of(plain, "large_batch_less_noisy") == "reproduced"
    assert verdict_of(plain, "gram_trick_exact") == "reproduced"
    sabotaged = run_tiny("gradient_noise", tmp_path, sampling="repeat")
    assert verdict_of(sabotaged, "variance_falls_as_1_over_b") == "not_reproduced"
    assert verdict_of(sabotaged, "large_batch_less_noisy") == "not_reproduced"


def metrics(slopes, log_ratios, first_over_last=100.0) -> dict:
    """Hand-written metrics in the shape ``measure`` returns (4 sizes)."""
    seeds = len(slopes)
    msd = np.tile([first_over_last, 10.0, 3.0, 1.0], (seeds, 1))
    arm = {
        "sigma2": np.full(seeds, 40.0),
        "msd": msd,
        "slope": np.asarray(slopes),
        "log_ratio_to_exact": np.asarray(log_ratios),
    }
    return {
        "N": 1437,
        "batch_sizes": (1, 4, 16, 64),
        "sampling": "without_replacement",
        "without_replacement": arm,
        "with_replacement": arm,
        "exact_slope": -1.01,
        "gram_check_error": 1e-6,
    }


def test_claims_pass_on_numbers_that_follow_the_law():
    cfg = exp.Config.tiny()
    out = exp.claims(metrics([-1.0, -0.99, -1.01, -1.0], [0.01, -0.02, 0.0, 0.01]), cfg)
    assert verdict_of({"claims": out}, "variance_falls_as_1_over_b") == "reproduced"
    assert verdict_of({"claims": out}, "large_batch_less_noisy") == "reproduced"


@pytest.mark.parametrize(
    ("slopes", "log_ratios", "verdict"),
    [
        ([-0.5, -0.52, -0.49, -0.5], [0.0, 0.01, -0.01, 0.0], "not_reproduced"),  # b^-1/2
        ([-1.0, -1.0, -1.0, -1.0], [0.4, 0.42, 0.39, 0.41], "not_reproduced"),  # 1.5x too big
        ([-1.0, -0.8, -1.1, -0.95], [0.0, 0.0, 0.0, 0.0], "inconclusive"),  # straddles -0.9
    ],
)
def test_claims_fail_on_numbers_that_do_not(slopes, log_ratios, verdict):
    out = exp.claims(metrics(slopes, log_ratios), exp.Config.tiny())
    assert verdict_of({"claims": out}, "variance_falls_as_1_over_b") == verdict


def test_a_batch_barely_less_noisy_than_one_example_fails():
    out = exp.claims(metrics([-1.0] * 4, [0.0] * 4, first_over_last=2.0), exp.Config.tiny())
    assert verdict_of({"claims": out}, "large_batch_less_noisy") == "not_reproduced"


def test_the_exact_law_has_the_finite_population_factor():
    b = np.array([1.0, 100.0, 1437.0])
    np.testing.assert_allclose(
        exp.exact(2.0, 1437, b, "without_replacement"),
        [2.0, 2.0 * 1337 / 1436 / 100, 0.0],
        atol=1e-12,
    )
    np.testing.assert_allclose(exp.exact(2.0, 1437, b, "with_replacement"), 2.0 / b)
