"""Schedule-Free SGD and AdamW against optax.contrib's, in float64 over 300 steps, open loop
and along their own trajectories; the evaluation parameters against optax's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax import contrib

import jaxopt_notes as jn
from tests.test_modern import (
    PARAMS0,
    TOL,
    assert_open_loop_equal,
    assert_own_trajectory_equal,
    open_loop,
    random_grads,
    rel_err,
    tree_rel_err,
)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


CASES = {
    "sgd": lambda: (jn.schedule_free_sgd(0.05), contrib.schedule_free_sgd(0.05)),
    "sgd_decay_warmup": lambda: (
        jn.schedule_free_sgd(0.05, warmup_steps=20, weight_decay=1e-2, b1=0.8),
        contrib.schedule_free_sgd(0.05, warmup_steps=20, weight_decay=1e-2, b1=0.8),
    ),
    "adamw": lambda: (jn.schedule_free_adamw(1e-2), contrib.schedule_free_adamw(1e-2)),
    "adamw_decay_warmup": lambda: (
        jn.schedule_free_adamw(1e-2, warmup_steps=30, weight_decay=0.1, weight_lr_power=1.0),
        contrib.schedule_free_adamw(1e-2, warmup_steps=30, weight_decay=0.1, weight_lr_power=1.0),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_open_loop_equals_optax(name, x64):
    assert_open_loop_equal(*CASES[name]())


@pytest.mark.parametrize("name", sorted(CASES))
def test_own_trajectory_equals_optax(name, x64):
    mine, theta0 = assert_own_trajectory_equal(*CASES[name]())
    assert rel_err(mine, theta0) > 1e-3


def _eval_params(tx, read, grads, params):
    state, step = tx.init(params), jax.jit(tx.update)
    for g in grads:
        u, state = step(g, state, params)
        params = optax.apply_updates(params, u)
    return read(state, params)


def test_eval_params_equal_optaxs(x64):
    grads, params = random_grads(steps=50), jax.tree.map(jnp.asarray, PARAMS0)
    ours = _eval_params(jn.schedule_free_adamw(1e-2), jn.schedule_free_eval_params, grads, params)
    theirs = _eval_params(
        contrib.schedule_free_adamw(1e-2), contrib.schedule_free_eval_params, grads, params
    )
    assert tree_rel_err(ours, theirs) < TOL
    assert tree_rel_err(ours, params) > 1e-3


def test_the_first_step_is_the_base_optimizers(x64):
    """c_1 = w_1 / w_1 = 1, so x_1 = z_1 and y_1 = z_1: the base optimizer's first step."""
    grads, params = random_grads(steps=1), jax.tree.map(jnp.asarray, PARAMS0)
    u_sf, _ = open_loop(jn.schedule_free_sgd(0.1), grads, params)
    u_sgd, _ = open_loop(jn.sgd(0.1), grads, params)
    assert tree_rel_err(u_sf[0], u_sgd[0]) < 1e-15


def test_eval_params_need_a_schedule_free_state():
    with pytest.raises(ValueError, match="one Schedule-Free state, got 0"):
        jn.schedule_free_eval_params(jn.adam(0.1).init(jnp.ones(2)), jnp.ones(2))
    with pytest.raises(ValueError, match=r"^`b1` must be in \(0, 1\), got 0.0$"):
        jn.schedule_free_sgd(0.1, b1=0.0)
    assert np.isclose(jn.hyperparams(jn.schedule_free_adamw())["learning_rate"], 0.0025)
