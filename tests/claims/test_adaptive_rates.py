"""adaptive_rates: bias correction and AMSGrad's max, each removed, flip their claims."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from jaxopt_notes.experiments import adaptive_rates as exp

from tests.claims._contract import run_tiny, verdict_of

SABOTAGED = ("uncorrected_steps_too_large", "amsgrad_fixes_adam_on_reddi")


def test_tiny_reproduces_and_removing_the_correction_and_the_max_flips_it(tmp_path):
    plain = run_tiny("adaptive_rates", tmp_path)
    for claim_id in SABOTAGED:
        assert verdict_of(plain, claim_id) == "reproduced", claim_id
    race = next(c for c in plain["claims"] if c["id"] == "rmsprop_overtakes_adagrad")
    # at the notes' common rate 0.01 the race goes as the notes say (final ratio measured
    # 2.9e4, CI [8e3, 1e5] against 10); each at its own tuned rate it does not (AdaGrad 0.3)
    assert set(race["settings"].values()) == {"reproduced"}
    assert verdict_of(plain, "bias_factor_step_one") == "reproduced"
    assert verdict_of(plain, "amsgrad_rate_never_rises") == "reproduced"
    sabotaged = run_tiny("adaptive_rates", tmp_path, bias_correction=False, amsgrad_max=False)
    for claim_id in SABOTAGED:
        assert verdict_of(sabotaged, claim_id) == "not_reproduced", claim_id


def metrics(ada_late=0.05, rms_late=1.0, early=0.8, final=100.0, size_ratio=4.0, ams_x=-1.0):
    """Hand-written metrics in the shape ``measure`` returns (tiny: 2 rates, 3 seeds)."""
    jitter = np.array([1.0, 1.02, 0.98])
    ones = np.ones((2, 3))

    def arm(late, excess_early, excess_final):
        return {
            "eff_lr_early": ones * 1e-2,
            "eff_lr_late": ones * 1e-2 * late * jitter,
            "excess_early": ones * excess_early * jitter,
            "excess_final": ones * excess_final * jitter,
        }

    sizes = np.full((3, 50), 1e-3) * jitter[:, None]
    return {
        "lr_grid": (0.01, 0.3),
        "race": {"AdaGrad": arm(ada_late, 10.0, final), "RMSProp": arm(rms_late, 10.0 * early, 1)},
        "early_step_sizes": {"Adam": sizes, "no bias correction": sizes * size_ratio},
        "step1_factor_expected": 0.1 / np.sqrt(0.001),
        "reddi_final_x": {
            "Adam": np.full(3, 0.99),
            "AMSGrad": np.full(3, ams_x),
            "Adam, b2 = 0.1": np.full(3, 0.99),
            "Adam, b2 = 0.999": np.full(3, -0.99),
        },
        "reddi_rate_rises": {"Adam": np.array([5, 6, 5]), "AMSGrad": np.zeros(3, int)},
    }


def verdicts(m: dict) -> dict:
    return {c["id"]: c["verdict"] for c in exp.claims(m, exp.Config.tiny())}


def test_claims_pass_on_numbers_that_show_every_effect():
    out = verdicts(metrics())
    for claim_id in ("adagrad_rate_decays", "rmsprop_overtakes_adagrad", *SABOTAGED):
        assert out[claim_id] == "reproduced", claim_id


@pytest.mark.parametrize(
    ("change", "claim_id"),
    [
        ({"ada_late": 0.5}, "adagrad_rate_decays"),  # AdaGrad's rate kept half
        ({"rms_late": 0.1}, "adagrad_rate_decays"),  # RMSProp's rate decayed too
        ({"early": 0.2}, "rmsprop_overtakes_adagrad"),  # RMSProp 5x ahead from the start
        ({"final": 2.0}, "rmsprop_overtakes_adagrad"),  # barely overtaken
        ({"size_ratio": 1.0}, "uncorrected_steps_too_large"),  # the correction changed nothing
        ({"size_ratio": 0.5}, "uncorrected_steps_too_large"),  # the notes' reading: too small
        ({"ams_x": 0.99}, "amsgrad_fixes_adam_on_reddi"),  # AMSGrad fails as Adam does
    ],
)
def test_claims_fail_when_the_effect_is_missing(change, claim_id):
    assert verdicts(metrics(**change))[claim_id] == "not_reproduced"


def test_the_race_is_judged_at_rates_tuned_on_other_problems():
    m = metrics()
    # AdaGrad at the grid's second rate reaches RMSProp's floor: tuned on problem 0, it is
    # chosen and judged on problems 1-2, where the overtaking disappears
    m["race"]["AdaGrad"]["excess_final"][1] = m["race"]["RMSProp"]["excess_final"][1]
    race = next(
        c for c in exp.claims(m, exp.Config.tiny()) if c["id"] == "rmsprop_overtakes_adagrad"
    )
    assert race["verdict"] == "not_reproduced"
    assert race["evidence"]["AdaGrad's tuned rate"] == 0.3
    assert set(race["settings"].values()) == {"reproduced"}  # the notes' common rate
    tuned = exp.tuned_race(m["race"]["AdaGrad"])
    assert tuned["lr_index"] == 1 and tuned["excess_final"].shape == (2,)  # the unseen half


def test_amsgrad_without_the_max_is_adam_and_with_it_is_not():
    cfg = exp.Config.tiny()
    x = np.zeros(1, np.float32)
    grads = [np.asarray([v], np.float32) for v in (3.0, -1.0, -1.0, 3.0, -1.0)]

    def updates(tx):
        state, out = tx.init(x), []
        for g in grads:
            u, state = tx.update(g, state, x)
            out.append(float(u[0]))
        return np.asarray(out)

    no_max = exp.reddi_arms(dataclasses.replace(cfg, amsgrad_max=False))
    np.testing.assert_allclose(updates(no_max["AMSGrad"]), updates(no_max["Adam"]), rtol=1e-6)
    plain = exp.reddi_arms(cfg)
    assert not np.allclose(updates(plain["AMSGrad"]), updates(plain["Adam"]), rtol=1e-3)
