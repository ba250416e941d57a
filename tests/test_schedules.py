"""Schedules against their formulas (NumPy) and against optax where optax has the same one."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxopt_notes import schedules as S

T = np.arange(0, 400)


def values(schedule, steps=T):
    return np.asarray(jax.vmap(schedule)(jnp.asarray(steps)))


def test_step_decay_is_resnets_recipe():
    lr = values(S.step_decay(0.1, gamma=0.1, every=30))
    assert lr[0] == pytest.approx(0.1) and lr[29] == pytest.approx(0.1)
    assert lr[30] == pytest.approx(0.01) and lr[60] == pytest.approx(0.001)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (S.constant(0.3), optax.constant_schedule(0.3)),
        (
            S.exponential_decay(0.1, decay_rate=0.5, decay_steps=50),
            optax.exponential_decay(0.1, 50, 0.5),
        ),
        (
            S.exponential_decay(0.1, decay_rate=0.5, decay_steps=50, staircase=True),
            optax.exponential_decay(0.1, 50, 0.5, staircase=True),
        ),
        (
            S.cosine_decay(0.1, decay_steps=300, alpha=0.1),
            optax.cosine_decay_schedule(0.1, 300, 0.1),
        ),
        (
            S.linear_warmup(S.cosine_decay(0.1, decay_steps=300), warmup_steps=50),
            optax.warmup_cosine_decay_schedule(0.0, 0.1, 50, 350),
        ),
        (
            S.cyclic(0.1, period=100),
            optax.sgdr_schedule(
                [dict(init_value=0.0, peak_value=0.1, warmup_steps=0, decay_steps=100)] * 4
            ),
        ),
    ],
)
def test_matches_optax(ours, theirs):
    np.testing.assert_allclose(values(ours), values(theirs), rtol=1e-5, atol=1e-7)


def test_inverse_time_and_inverse_sqrt():
    np.testing.assert_allclose(
        values(S.inverse_time_decay(1.0, decay_rate=0.5)), 1 / (1 + 0.5 * T), rtol=1e-6
    )
    np.testing.assert_allclose(
        values(S.inverse_time_decay(1.0, power=0.5)), 1 / np.sqrt(1 + T), rtol=1e-6
    )


def test_cyclic_restarts_with_growing_periods():
    lr = values(S.cyclic(1.0, period=10, period_mult=2.0), np.arange(0, 70))
    starts = [0, 10, 30]  # cycles of 10, 20, 40 steps
    for s in starts:
        assert lr[s] == pytest.approx(1.0, abs=1e-5)
    assert lr[9] < 0.05 and lr[29] < 0.01  # the snapshot points: near the bottom
    cycle_2 = 0.5 * (1 + np.cos(np.pi * np.arange(20) / 20))
    np.testing.assert_allclose(lr[10:30], cycle_2, atol=1e-5)


def test_jit_safe_and_bad_input():
    assert float(jax.jit(S.cosine_decay(1.0, decay_steps=10))(5)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="`every` must be >= 1, got 0"):
        S.step_decay(0.1, every=0)
    with pytest.raises(ValueError, match="`alpha` must be in"):
        S.cosine_decay(0.1, decay_steps=10, alpha=2.0)


def test_a_negative_step_reads_as_step_zero():
    s = S
    made = [
        s.constant(0.1),
        s.step_decay(0.1, gamma=0.5, every=10),
        s.exponential_decay(0.1, decay_rate=0.5, decay_steps=10),
        s.inverse_time_decay(0.1, decay_rate=2.0, power=0.5),
        s.cosine_decay(0.1, decay_steps=100),
        s.linear_warmup(s.constant(0.1), warmup_steps=10),
        s.cyclic(0.1, period=10, period_mult=2.0),
    ]
    for schedule in made:
        for step in (-1, -5, -(10**6)):
            assert float(schedule(step)) == float(schedule(0)), (schedule, step)
