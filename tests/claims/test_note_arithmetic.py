"""note_arithmetic: the locality claim on fixed numbers; a tiny run passes every check and the
pixel-permutation sabotage flips the claim."""

from __future__ import annotations

import numpy as np
from jaxopt_notes.experiments import _claims
from jaxopt_notes.experiments import note_arithmetic as exp

from tests.claims._contract import run_tiny, verdict_of

NAME = "note_arithmetic"
CFG = exp.Config.tiny()
CLAIM = "pixel_correlation_falls"


def pixels(near: float, far: float) -> dict:
    """Per-group correlation rows: ``near`` at distance 1, ``far`` at ``CFG.far``, jittered."""
    dists = list(range(1, 13))
    rows = np.full((CFG.groups, len(dists)), 0.3) + np.linspace(0, 0.01, CFG.groups)[:, None]
    rows[:, dists.index(CFG.near)] = near + np.linspace(0, 0.02, CFG.groups)
    rows[:, dists.index(CFG.far)] = far
    return {"distances": dists, "corr": rows}


def test_locality_on_fixed_numbers():
    assert exp.locality_claim(pixels(0.7, 0.0), CFG)["verdict"] == _claims.REPRODUCED
    assert exp.locality_claim(pixels(0.35, 0.3), CFG)["verdict"] == _claims.NOT_REPRODUCED


def test_tiny_run_passes_the_checks_and_the_claim(tmp_path):
    plain = run_tiny(NAME, tmp_path)
    assert verdict_of(plain, CLAIM) == _claims.REPRODUCED
    checks = [c for c in plain["claims"] if c["kind"] == "check"]
    assert len(checks) == 16 and all(c["verdict"] == _claims.REPRODUCED for c in checks)


def test_permuted_pixels_remove_locality(tmp_path):
    # measured on the tiny config: 0.0029 [8.5e-5, 0.0057], far below the stated 0.1
    sabotaged = run_tiny(NAME, tmp_path, permute_pixels=True)
    assert verdict_of(sabotaged, CLAIM) == _claims.NOT_REPRODUCED
