"""basins: tiny reproduces the noise claims, noise 0 flips them; verdicts on fixed numbers."""

from __future__ import annotations

import numpy as np
import pytest
from jaxopt_notes.experiments import basins

from tests.claims._contract import run_tiny, verdict_of


def test_tiny_reproduces_and_noise_zero_flips(tmp_path):
    plain = run_tiny("basins", tmp_path)
    assert verdict_of(plain, "gd_stays") == "reproduced"
    assert verdict_of(plain, "noise_escapes") == "reproduced"
    assert verdict_of(plain, "noise_prefers_deep") == "reproduced"
    sabotaged = run_tiny("basins", tmp_path, noise_std=0.0)
    assert verdict_of(sabotaged, "noise_escapes") == "not_reproduced"
    assert verdict_of(sabotaged, "noise_prefers_deep") == "not_reproduced"
    assert verdict_of(sabotaged, "gd_stays") == "reproduced"  # the check does not use noise


def fixed_metrics(left: float, shallow_out: float, deep_out: float, n: int = 100) -> dict:
    def ones(share):
        return (np.arange(n) < round(share * n)).astype(int)

    starts = np.array([-0.5, 1.5])
    own = np.array([basins.SHALLOW, basins.DEEP])
    return {
        "clean": {"starts": starts, "ends": own + 1e-5, "own_minimum": own},
        "noisy": {
            "shallow_left": ones(left),
            "shallow_ended_elsewhere": ones(shallow_out),
            "deep_ended_elsewhere": ones(deep_out),
        },
    }


@pytest.mark.parametrize(
    ("left", "shallow_out", "deep_out", "expected"),
    [
        (0.9, 0.85, 0.05, "reproduced"),
        (0.1, 0.1, 0.0, "not_reproduced"),
        (0.5, 0.5, 0.0, "inconclusive"),
    ],
)
def test_claims_on_fixed_numbers(left, shallow_out, deep_out, expected):
    found = basins.claims(fixed_metrics(left, shallow_out, deep_out), basins.Config())
    verdicts = {c["id"]: c["verdict"] for c in found}
    assert verdicts["noise_escapes"] == expected
    assert verdicts["noise_prefers_deep"] == expected
    assert verdicts["gd_stays"] == "reproduced"


def test_gd_check_fails_when_a_start_ends_elsewhere():
    m = fixed_metrics(0.9, 0.9, 0.0)
    m["clean"]["ends"] = np.array([basins.DEEP, basins.DEEP])  # the shallow start ended deep
    found = {c["id"]: c for c in basins.claims(m, basins.Config())}
    assert found["gd_stays"]["verdict"] == "not_reproduced"
