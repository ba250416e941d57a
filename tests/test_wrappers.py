"""Lookahead, SAM and the parameter averages against optax (float64, 300 steps, open-loop
and along their own trajectories on the MLP of tests/reference.py, 1e-9 relative), and the
averages against NumPy's mean of the iterates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_notes as jn
from tests import reference as ref
from tests.test_modern import PARAMS0, STEPS, TOL, open_loop, random_grads, rel_err, tree_rel_err


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def sam_pair(outer, rho=0.05, sync_period=2, reset_state=True):
    adv = jn.chain(jn.normalize(), jn.sgd(rho))
    adv_optax = optax.chain(optax.contrib.normalize(), optax.sgd(rho))
    return (
        jn.sam(outer[0], adv, sync_period, reset_state),
        optax.contrib.sam(outer[1], adv_optax, sync_period, reset_state),
    )


CASES = {  # name: (ours, optax's, lookahead params?)
    "lookahead_adam": lambda: (
        jn.lookahead(jn.adam(1e-2), 5, 0.5),
        optax.lookahead(optax.adam(1e-2), 5, 0.5),
        True,
    ),
    "lookahead_sgd_reset": lambda: (
        jn.lookahead(jn.sgd(0.1, 0.9), 3, 0.8, reset_state=True),
        optax.lookahead(optax.sgd(0.1, 0.9), 3, 0.8, reset_state=True),
        True,
    ),
    "sam_sgd": lambda: (*sam_pair((jn.sgd(0.1), optax.sgd(0.1))), False),
    "sam_adam_3_keep": lambda: (
        *sam_pair((jn.adam(1e-2), optax.adam(1e-2)), sync_period=3, reset_state=False),
        False,
    ),
}


def _wrap(params, lookahead):
    return optax.LookaheadParams.init_synced(params) if lookahead else params


@pytest.mark.parametrize("name", sorted(CASES))
def test_open_loop_equals_optax(name, x64):
    ours, theirs, la = CASES[name]()
    params = _wrap(jax.tree.map(jnp.asarray, PARAMS0), la)
    grads = random_grads()
    u1, p1 = open_loop(ours, grads, params)
    u2, p2 = open_loop(theirs, grads, params)
    assert max(tree_rel_err(a, b) for a, b in zip(u1, u2, strict=True)) < TOL
    assert tree_rel_err(p1, p2) < TOL


def run(tx, theta0, grad_fn, unravel, lookahead, steps=STEPS):
    """Gradients at the fast (lookahead) or current (SAM) params; returns the final params."""
    names = ("w1", "b1", "w2", "b2")
    flat = lambda p: np.concatenate([np.ravel(p[k]) for k in names])  # noqa: E731
    params = _wrap(jax.tree.map(jnp.asarray, unravel(theta0)), lookahead)
    step = jax.jit(
        lambda p, s, g: (lambda u, s: (optax.apply_updates(p, u), s))(*tx.update(g, s, p))
    )
    state = tx.init(params)
    for _ in range(steps):
        at = params.fast if lookahead else params
        params, state = step(params, state, jax.tree.map(jnp.asarray, unravel(grad_fn(flat(at)))))
    return flat(params.slow) if lookahead else flat(params)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.slow)
        if n in ("lookahead_sgd_reset", "sam_adam_3_keep")
        else n
        for n in sorted(CASES)
    ],
)
def test_own_trajectory_equals_optax(name, x64):
    ours, theirs, la = CASES[name]()
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = run(ours, theta0, grad_fn, unravel, la)
    assert rel_err(mine, run(theirs, theta0, grad_fn, unravel, la)) < TOL
    assert rel_err(mine, theta0) > 1e-3


def test_lookahead_refuses_plain_params():
    tx = jn.lookahead(jn.sgd(0.1), 2, 0.5)
    with pytest.raises(TypeError, match="`lookahead` needs its params as `optax.LookaheadParams"):
        tx.init(jnp.zeros(2))
    with pytest.raises(ValueError, match=r"^`sync_period` must be >= 1, got 0$"):
        jn.lookahead(jn.sgd(0.1), 0, 0.5)
    with pytest.raises(ValueError, match=r"^`slow_step_size` must be in \[0, 1\], got 1.5$"):
        jn.lookahead(jn.sgd(0.1), 2, 1.5)


def test_sam_perturbs_then_steps_from_the_unperturbed_params():
    tx = jn.sam(jn.sgd(0.1), jn.chain(jn.normalize(), jn.sgd(0.05)))
    p = jnp.array([3.0, 4.0])
    s = tx.init(p)
    u, s = tx.update(jnp.array([3.0, 4.0]), s, p)
    p_adv = p + u  # + rho g / |g|
    np.testing.assert_allclose(p_adv, [3.03, 4.04], rtol=1e-6)
    g_adv = jnp.array([1.0, 2.0])  # the gradient at the perturbed point
    u, s = tx.update(g_adv, s, p_adv)
    np.testing.assert_allclose(p_adv + u, p - 0.1 * g_adv, rtol=1e-6)
    with pytest.raises(ValueError, match="`sam` needs `params`"):
        tx.update(g_adv, s)


# ------------------------------------------------------------------- the averages
def iterates(tx_last, steps=50, seed=0):
    """SGD on random gradients with ``tx_last`` at the end; the iterates and the final state."""
    tx = jn.chain(jn.sgd(0.1), tx_last)
    params = jax.tree.map(jnp.asarray, PARAMS0)
    state, history = tx.init(params), []
    step = jax.jit(tx.update)
    for g in random_grads(seed, steps):
        u, state = step(g, state, params)
        params = jn.apply_updates(params, u)
        history.append(params)
    return history, state


def test_ema_params_debiased_equals_optax_ema_of_the_iterates(x64):
    decay = 0.9
    history, state = iterates(jn.ema_params(decay))
    ema = optax.ema(decay, debias=True)
    s = ema.init(history[0])
    for p in history:
        average, s = ema.update(p, s)
    assert tree_rel_err(jn.averaged_params(state), average) < TOL
    assert int(state[1].count) == len(history)


def test_ema_params_without_debias_starts_from_the_initial_params(x64):
    decay = 0.8
    history, state = iterates(jn.ema_params(decay, debias=False), steps=20)
    expected = jax.tree.map(np.asarray, PARAMS0)
    for p in history:
        expected = jax.tree.map(lambda a, x: decay * a + (1 - decay) * np.asarray(x), expected, p)
    assert tree_rel_err(jn.averaged_params(state), expected) < TOL


def test_polyak_params_is_the_mean_of_the_iterates(x64):
    history, state = iterates(jn.polyak_params(), steps=40)
    mean = jax.tree.map(lambda *xs: np.mean(np.stack(xs), axis=0), *history)
    assert tree_rel_err(jn.averaged_params(state), mean) < TOL


def test_averages_leave_the_updates_alone_and_keep_dtypes():
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    g = {"w": jnp.ones(3, jnp.bfloat16)}
    plain = jn.sgd(0.5)
    v, _ = plain.update(g, plain.init(params), params)
    for link, kept in (
        (jn.ema_params(0.9), jnp.bfloat16),
        (jn.polyak_params(accumulator_dtype=jnp.float32), jnp.float32),
    ):
        tx = jn.chain(jn.sgd(0.5), link)
        u, s = tx.update(g, tx.init(params), params)
        np.testing.assert_array_equal(u["w"], v["w"])
        assert jn.averaged_params(s)["w"].dtype == kept
    with pytest.raises(ValueError, match="`ema_params` needs `params`"):
        tx = jn.ema_params()
        tx.update(g, tx.init(params))
    with pytest.raises(ValueError, match="must hold one parameter average"):
        jn.averaged_params(jn.sgd(0.1).init(params))


def test_polyak_params_equals_torchs_averaged_model(x64):
    """torch.optim.swa_utils.AveragedModel, updated after every step, keeps the same running
    mean of the iterates (its first update copies them, as our mean of one iterate does)."""
    torch = pytest.importorskip(
        "torch", reason="torch is an optional extra: pip install -e .[torch]"
    )
    from torch.optim.swa_utils import AveragedModel

    grads = random_grads(steps=30)
    history, state = iterates(jn.polyak_params(), steps=30)
    module = torch.nn.ParameterDict(
        {k: torch.nn.Parameter(torch.tensor(v, dtype=torch.float64)) for k, v in PARAMS0.items()}
    )
    opt, swa = torch.optim.SGD(module.parameters(), lr=0.1), AveragedModel(module)
    for g in grads:
        for k, p in module.items():
            p.grad = torch.from_numpy(np.array(g[k]))
        opt.step()
        swa.update_parameters(module)
    theirs = {k: p.detach().numpy() for k, p in swa.module.items()}
    assert tree_rel_err(jn.averaged_params(state), theirs) < TOL
    assert tree_rel_err(history[-1], {k: p.detach().numpy() for k, p in module.items()}) < TOL
