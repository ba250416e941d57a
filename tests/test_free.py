"""DoG, DoWG, Prodigy and D-Adaptation AdamW against optax.contrib's, in float64 over 300
steps, open loop and along their own trajectories."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from optax import contrib

import jaxopt_notes as jn
from tests import reference as ref
from tests.test_modern import (
    PARAMS0,
    assert_open_loop_equal,
    assert_own_trajectory_equal,
    open_loop,
    random_grads,
    rel_err,
)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _half_life(t):
    return 0.5 ** (t / 100.0)


CASES = {
    "dog": lambda: (jn.dog(), contrib.dog()),
    "dog_lr_decay": lambda: (
        jn.dog(_half_life, init_step=("learning_rate", 1e-3), weight_decay=1e-3),
        contrib.dog(_half_life, init_step=("learning_rate", 1e-3), weight_decay=1e-3),
    ),
    "dog_distance": lambda: (
        jn.dog(init_step=("distance", 1e-4)),
        contrib.dog(init_step=("distance", 1e-4)),
    ),
    "dowg": lambda: (jn.dowg(), contrib.dowg()),
    "dowg_decay": lambda: (
        jn.dowg(0.5, init_estim_sq_dist=1e-6, weight_decay=1e-3),
        contrib.dowg(0.5, init_estim_sq_dist=1e-6, weight_decay=1e-3),
    ),
    "prodigy": lambda: (jn.prodigy(), contrib.prodigy()),
    "prodigy_all": lambda: (
        jn.prodigy(_half_life, beta3=0.99, weight_decay=1e-2, estim_lr_coef=0.5,
                   safeguard_warmup=True),
        contrib.prodigy(_half_life, beta3=0.99, weight_decay=1e-2, estim_lr_coef=0.5,
                        safeguard_warmup=True),
    ),
    "dadapt_adamw": lambda: (jn.dadapt_adamw(), contrib.dadapt_adamw()),
    "dadapt_adamw_decay": lambda: (
        jn.dadapt_adamw(_half_life, weight_decay=1e-2, estim_lr0=1e-4),
        contrib.dadapt_adamw(_half_life, weight_decay=1e-2, estim_lr0=1e-4),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CASES))
def test_open_loop_equals_optax(name, x64):
    assert_open_loop_equal(*CASES[name]())


@pytest.mark.parametrize("name", sorted(CASES))
def test_own_trajectory_equals_optax(name, x64):
    mine, theta0 = assert_own_trajectory_equal(*CASES[name]())
    assert rel_err(mine, theta0) > 1e-3


@pytest.mark.parametrize("make", [jn.prodigy, jn.dadapt_adamw])
def test_the_distance_estimate_only_grows_and_does_grow(make, x64):
    """On the MLP (a descent path moves away from x_0) d_t grows from 1e-6, never back."""
    theta0, grad_fn, unravel = ref.mlp_problem()
    flat = lambda p: jnp.concatenate([p[k].ravel() for k in ("w1", "b1", "w2", "b2")])  # noqa: E731
    tx, params = make(), jax.tree.map(jnp.asarray, unravel(theta0))
    state, estimates = tx.init(params), []
    for _ in range(60):
        g = jax.tree.map(jnp.asarray, unravel(grad_fn(flat(params))))
        u, state = tx.update(g, state, params)
        params = jn.apply_updates(params, u)
        estimates.append(float(state[0].estim_lr))
    assert all(b >= a for a, b in zip(estimates, estimates[1:], strict=False))
    assert estimates[-1] > 100 * 1e-6, estimates[-1]


def test_dogs_first_step_is_its_initial_rate(x64):
    grads, params = random_grads(steps=1), jax.tree.map(jnp.asarray, PARAMS0)
    u, _ = open_loop(jn.dog(init_step=("learning_rate", 0.3)), grads, params)
    assert rel_err(u[0]["w"], -0.3 * grads[0]["w"]) < 1e-15


def test_bad_hyperparameters_are_refused_with_a_sentence():
    with pytest.raises(ValueError, match="`init_step kind` must be one of"):
        jn.dog(init_step=("guess", 1.0))
    with pytest.raises(ValueError, match=r"^`betas` must be a pair"):
        jn.prodigy(betas=(0.9,))
    with pytest.raises(ValueError, match=r"^`estim_lr0` must be > 0, got 0.0$"):
        jn.dadapt_adamw(estim_lr0=0.0)
