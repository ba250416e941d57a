"""AdaDelta, NAdamW, LAMB and LARS against optax's aliases (AdaDelta and NAdamW against
torch.optim too), and the trust-ratio link on its own.

The same protocol as tests/test_modern.py: 300 steps in float64, open-loop (one fixed random
gradient sequence for both) and along each optimizer's own trajectory on the small MLP of
tests/reference.py, 1e-9 relative.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_notes as jn
from tests import reference as ref
from tests.test_modern import (
    PARAMS0,
    STEPS,
    TOL,
    assert_open_loop_equal,
    open_loop,
    random_grads,
    rel_err,
    run_torch,
    trajectory,
    tree_rel_err,
)

CASES = {
    "adadelta": lambda: (jn.adadelta(1.0), optax.adadelta(1.0)),
    "adadelta_decay": lambda: (
        jn.adadelta(0.5, rho=0.95, weight_decay=0.1),
        optax.adadelta(0.5, rho=0.95, weight_decay=0.1),
    ),
    "nadamw": lambda: (jn.nadamw(1e-2), optax.nadamw(1e-2)),
    "nadamw_decay": lambda: (
        jn.nadamw(1e-2, weight_decay=0.1),
        optax.nadamw(1e-2, weight_decay=0.1),
    ),
    "lamb": lambda: (jn.lamb(1e-2), optax.lamb(1e-2)),
    "lamb_decay": lambda: (jn.lamb(1e-2, weight_decay=0.01), optax.lamb(1e-2, weight_decay=0.01)),
    "lars": lambda: (jn.lars(0.5), optax.lars(0.5)),
    "lars_decay_nesterov": lambda: (
        jn.lars(0.5, weight_decay=0.01, nesterov=True, eps=1e-6),
        optax.lars(0.5, weight_decay=0.01, nesterov=True, eps=1e-6),
    ),
}


# the variants' own trajectories (and torch's second cases) run with `-m slow`: the plain
# cases keep every optimizer checked both ways in the default run
VARIANTS = {"adadelta_decay", "nadamw_decay", "lamb_decay", "lars_decay_nesterov"}


def names(cases, slow=frozenset()):
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in sorted(cases)]


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("name", sorted(CASES))
def test_open_loop_equals_optax(name, x64):
    params, p1 = assert_open_loop_equal(*CASES[name]())
    assert tree_rel_err(p1, params) > 1e-4  # it moved


@pytest.mark.parametrize("name", names(CASES, VARIANTS))
def test_own_trajectory_equals_optax(name, x64):
    ours, theirs = CASES[name]()
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = trajectory(ours, theta0, grad_fn, unravel)
    assert rel_err(mine, trajectory(theirs, theta0, grad_fn, unravel)) < TOL
    assert rel_err(mine, theta0) > 1e-4


def test_optax_adadelta_without_a_learning_rate_ascends(x64):
    """optax's default ``learning_rate=None`` skips the whole scaling, the sign too; ours
    defaults to 1 and descends. Shown on one step: the two updates are opposite."""
    g = jnp.array([1.0, -2.0])
    ours, theirs = jn.adadelta(), optax.adadelta()
    u1, _ = ours.update(g, ours.init(g), g)
    u2, _ = theirs.update(g, theirs.init(g), g)
    np.testing.assert_allclose(u1, -u2, rtol=1e-12)
    assert float(jnp.vdot(u1, g)) < 0


TORCH = {  # name: (ours, torch's, extra float64 hyperparameters)
    # lr 0.5: at lr 1 this MLP's AdaDelta run is chaotic after ~150 steps (the last-bit
    # differences of torch's fused multiply-adds grow 1e10-fold by step 200), so no run agrees
    "adadelta": (lambda: jn.adadelta(0.5, convention="pytorch"), "Adadelta", {"lr": 0.5}),
    "adadelta_decay": (
        lambda: jn.adadelta(0.5, rho=0.95, weight_decay=0.1, convention="pytorch"),
        "Adadelta",
        {"lr": 0.5, "rho": 0.95, "weight_decay": 0.1},
    ),
    "nadamw": (
        lambda: jn.nadamw(1e-2, convention="pytorch"),
        "NAdam",
        {"lr": 1e-2, "weight_decay": 1e-2, "decoupled_weight_decay": True},
    ),
    "nadamw_no_schedule": (
        lambda: jn.nadamw(1e-2, weight_decay=0.1, momentum_decay=0.0, convention="pytorch"),
        "NAdam",
        {"lr": 1e-2, "weight_decay": 0.1, "momentum_decay": 0.0, "decoupled_weight_decay": True},
    ),
}


@pytest.mark.parametrize("name", names(TORCH, {"adadelta_decay", "nadamw_no_schedule"}))
def test_pytorch_convention_equals_torch_optim(name, x64):
    torch = pytest.importorskip(
        "torch", reason="torch is an optional extra: pip install -e .[torch]"
    )
    ours, cls, kw = TORCH[name]
    make = lambda p: getattr(torch.optim, cls)(p, **kw)  # noqa: E731
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = trajectory(ours(), theta0, grad_fn, unravel)
    assert rel_err(mine, run_torch(torch, make, theta0, grad_fn)) < TOL
    grads = np.random.default_rng(1).normal(size=(STEPS, theta0.size))
    _, p = open_loop(ours(), [jnp.asarray(g) for g in grads], jnp.asarray(theta0))
    assert rel_err(p, run_torch(torch, make, theta0, grads)) < TOL


def test_nadamw_is_nadam_plus_decoupled_decay(x64):
    """With no decay it is Nadam; with one, the difference is lr * wd * theta per step."""
    grads = random_grads(steps=5)
    params = jax.tree.map(jnp.asarray, PARAMS0)
    u_w, _ = open_loop(jn.nadamw(1e-2, weight_decay=0.0), grads, params)
    u_n, _ = open_loop(jn.nadam(1e-2), grads, params)
    assert max(tree_rel_err(a, b) for a, b in zip(u_w, u_n, strict=True)) == 0.0
    tx = jn.nadamw(1e-2, weight_decay=0.5)
    u, _ = tx.update(grads[0], tx.init(params), params)
    v, _ = jn.nadam(1e-2).update(grads[0], jn.nadam(1e-2).init(params), params)
    np.testing.assert_allclose(u["w"] - v["w"], -1e-2 * 0.5 * params["w"], rtol=1e-12)


# ------------------------------------------------------------------- the trust-ratio link
def test_trust_ratio_gives_each_layer_the_norm_of_its_weights():
    params = {"big": jnp.full(4, 10.0), "small": jnp.full(4, 0.01), "zero": jnp.zeros(4)}
    g = {"big": jnp.ones(4), "small": jnp.ones(4) * 100.0, "zero": jnp.ones(4) * 3.0}
    tx = jn.trust_ratio(trust_coefficient=0.5)
    u, _ = tx.update(g, tx.init(params), params)
    norm = lambda x: float(jnp.linalg.norm(x))  # noqa: E731
    assert norm(u["big"]) == pytest.approx(0.5 * norm(params["big"]), rel=1e-6)
    assert norm(u["small"]) == pytest.approx(0.5 * norm(params["small"]), rel=1e-6)
    np.testing.assert_array_equal(u["zero"], g["zero"])  # zero weights: ratio 1


def test_trust_ratio_mask_and_its_refusals():
    params, g = {"w": jnp.full(2, 2.0), "b": jnp.full(2, 2.0)}, {"w": jnp.ones(2), "b": jnp.ones(2)}
    tx = jn.trust_ratio(mask={"w": True, "b": False})
    u, _ = tx.update(g, tx.init(params), params)
    np.testing.assert_allclose(u["w"], params["w"])
    np.testing.assert_array_equal(u["b"], g["b"])
    with pytest.raises(ValueError, match="`trust_ratio` needs `params`"):
        tx.update(g, ())
    with pytest.raises(ValueError, match=r"^`trust_coefficient` must be >= 0, got -1.0$"):
        jn.trust_ratio(-1.0)
    with pytest.raises(ValueError, match="`trust_ratio` got a Moments stream"):
        bad = jn.chain(jn.first_moment(), jn.trust_ratio())
        bad.update(g, bad.init(params), params)


def test_trust_ratio_follows_any_direction_lion_included(x64):
    """A separately usable link: after Lion's sign it equals optax's scale_by_trust_ratio."""
    grads = random_grads(steps=30)
    params = jax.tree.map(jnp.asarray, PARAMS0)
    ours = jn.chain(jn.sign_momentum(), jn.trust_ratio(0.1), jn.scale_by_learning_rate(0.1))
    theirs = optax.chain(
        optax.scale_by_lion(), optax.scale_by_trust_ratio(trust_coefficient=0.1), optax.scale(-0.1)
    )
    _, p1 = open_loop(ours, grads, params)
    _, p2 = open_loop(theirs, grads, params)
    assert tree_rel_err(p1, p2) < TOL


def test_adadelta_delta_ratio_needs_a_second_moment():
    g = jnp.ones(2)
    tx = jn.delta_ratio()
    with pytest.raises(ValueError, match="`delta_ratio` needs a second moment"):
        tx.update(g, tx.init(g))
    with pytest.raises(ValueError, match=r"^`rho` must be in \[0, 1\), got 1.0$"):
        jn.adadelta(1.0, rho=1.0)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.complex64])
@pytest.mark.parametrize("name", ["adadelta", "nadamw", "lamb", "lars"])
def test_dtype_kept(name, dtype):
    tx = jn.OPTIMIZERS[name](1e-2)
    params = {"w": jnp.ones((2, 3), dtype)}
    state, step = tx.init(params), jax.jit(tx.update)
    for k in range(3):
        g = {"w": jnp.sin(jnp.arange(6, dtype=dtype) + k).reshape(2, 3)}
        u, state = step(g, state, params)
        assert u["w"].dtype == dtype and bool(jnp.all(jnp.isfinite(u["w"])))
        params = jn.apply_updates(params, u)
