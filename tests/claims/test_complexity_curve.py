"""complexity_curve: the U-curve rises past the best degree; noise-free plentiful data flips it."""

from __future__ import annotations

import numpy as np
import pytest
from jaxopt_notes.experiments import complexity_curve as exp

from jaxopt_notes import experiments
from tests.claims._contract import run_tiny, verdict_of


def test_tiny_reproduces_and_noise_free_plentiful_data_flips_the_rise(tmp_path):
    plain = run_tiny("complexity_curve", tmp_path)
    assert verdict_of(plain, "held_out_loss_rises") == "reproduced"
    assert verdict_of(plain, "held_out_loss_falls") == "reproduced"
    assert verdict_of(plain, "training_loss_falls") == "reproduced"
    clean = run_tiny("complexity_curve", tmp_path, noise=0, n_train=200)
    assert verdict_of(clean, "held_out_loss_rises") == "not_reproduced"


def metrics(test_curve, chosen, seeds=12, optimism=1.5) -> dict:
    degrees = len(test_curve)
    test = np.array([np.asarray(test_curve) * (1 + 0.01 * i) for i in range(seeds)])
    pick = np.arange(seeds)
    chosen = np.full(seeds, chosen)
    val = test[pick, chosen] * (1 + 0.01 * pick)
    return {
        "train_mse": np.tile(np.linspace(1, 0.01, degrees), (seeds, 1)).tolist(),
        "chosen_degree": chosen.tolist(),
        "test_at_chosen": test[pick, chosen].tolist(),
        "test_at_max": test[:, -1].tolist(),
        "test_at_zero": test[:, 0].tolist(),
        "val_at_chosen": val.tolist(),
        "fresh_at_chosen": (val * optimism).tolist(),
    }


def cfg():
    return exp.Config(seeds=12)


def test_a_u_shaped_curve_passes():
    m = metrics([0.5, 0.4, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 2.0, 50.0], chosen=4)
    out = {"claims": exp.claims(m, cfg())}
    for claim_id in (
        "held_out_loss_rises",
        "held_out_loss_falls",
        "selection_is_optimistic",
        "training_loss_falls",
    ):
        assert verdict_of(out, claim_id) == "reproduced", claim_id


def test_a_curve_that_keeps_falling_fails_the_rise_and_honest_selection_is_not_optimistic():
    m = metrics(list(np.geomspace(1, 1e-3, 10)), chosen=9, optimism=1.0)
    out = {"claims": exp.claims(m, cfg())}
    assert verdict_of(out, "held_out_loss_rises") == "not_reproduced"
    assert verdict_of(out, "held_out_loss_falls") == "reproduced"
    assert verdict_of(out, "selection_is_optimistic") == "not_reproduced"


def test_a_training_loss_that_rises_fails_the_check():
    m = metrics([0.5, 0.4, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 2.0, 50.0], chosen=4)
    m["train_mse"][0][5] = 2.0
    out = {"claims": exp.claims(m, cfg())}
    assert verdict_of(out, "training_loss_falls") == "not_reproduced"


def test_the_fit_interpolates_at_degree_n_minus_one():
    curves = exp.curves(0, 10, 10, 100, 0.3, 9)
    assert curves[0, -1] < 1e-12 and curves[3, -1] > curves[3].min()


def test_configs_validate():
    for c in (exp.Config(), exp.Config.quick(), exp.Config.tiny()):
        experiments._config.validate(c, exp.Config())
    with pytest.raises(ValueError, match="n_train"):
        exp.Config(n_train=5).validate()
