"""Lion, AdaBelief, Yogi and RAdam against optax's aliases (and RAdam against torch.optim).

Equivalence runs are 300 steps in float64, both open-loop (the same fixed random gradient
sequence handed to both optimizers) and along each optimizer's own trajectory on the small MLP
of tests/reference.py (each framework handed the same hand-written gradient for its own params).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_notes as jn
from tests import reference as ref

STEPS = 300
TOL = 1e-9

# name: (ours, optax's), built lazily so float64 hyperparameters meet float64 params
CASES = {
    "lion": lambda: (jn.lion(1e-3), optax.lion(1e-3)),
    "lion_decay": lambda: (jn.lion(3e-3, weight_decay=0.1), optax.lion(3e-3, weight_decay=0.1)),
    "adabelief": lambda: (jn.adabelief(1e-2), optax.adabelief(1e-2)),
    "adabelief_nesterov": lambda: (
        jn.adabelief(1e-2, nesterov=True),
        optax.adabelief(1e-2, nesterov=True),
    ),
    "yogi": lambda: (jn.yogi(1e-2), optax.yogi(1e-2)),
    "radam": lambda: (jn.radam(1e-2), optax.radam(1e-2)),
    "radam_nesterov": lambda: (jn.radam(1e-2, nesterov=True), optax.radam(1e-2, nesterov=True)),
}
FACTORIES = {"lion": jn.lion, "adabelief": jn.adabelief, "yogi": jn.yogi, "radam": jn.radam}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def rel_err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def tree_rel_err(a, b) -> float:
    return max(jax.tree.leaves(jax.tree.map(rel_err, a, b)))


def open_loop(tx, grads, params):
    """Feeds the fixed ``grads`` sequence; returns every step's updates and the final params."""

    @jax.jit
    def step(params, state, g):
        u, state = tx.update(g, state, params)
        return optax.apply_updates(params, u), state, u

    state, history = tx.init(params), []
    for g in grads:
        params, state, u = step(params, state, g)
        history.append(u)
    return history, params


def trajectory(tx, theta0, grad_fn, unravel, steps=STEPS):
    """Runs ``tx`` along its own path on the MLP; returns the final flat float64 vector."""
    params = jax.tree.map(jnp.asarray, unravel(theta0))
    flat = lambda p: np.concatenate([np.ravel(p[k]) for k in ("w1", "b1", "w2", "b2")])  # noqa: E731

    @jax.jit
    def step(params, state, g):
        u, state = tx.update(g, state, params)
        return optax.apply_updates(params, u), state

    state = tx.init(params)
    for _ in range(steps):
        params, state = step(
            params, state, jax.tree.map(jnp.asarray, unravel(grad_fn(flat(params))))
        )
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(params))
    return flat(params)


def random_grads(seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    return [
        {"w": jnp.asarray(rng.normal(size=(3, 4))), "b": jnp.asarray(rng.normal(size=4) * 0.01)}
        for _ in range(steps)
    ]


PARAMS0 = {"w": np.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": np.zeros(4)}


# ----------------------------------------------------------------------- against optax
def assert_open_loop_equal(ours, theirs) -> tuple:
    """Both fed the same gradients from PARAMS0: every update and the end point within TOL."""
    params = jax.tree.map(jnp.asarray, PARAMS0)
    u1, p1 = open_loop(ours, random_grads(), params)
    u2, p2 = open_loop(theirs, random_grads(), params)
    assert max(tree_rel_err(a, b) for a, b in zip(u1, u2, strict=True)) < TOL
    assert tree_rel_err(p1, p2) < TOL
    return params, p1


def assert_own_trajectory_equal(ours, theirs) -> tuple:
    """Each along its own trajectory on the shared MLP problem: the paths agree within TOL."""
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = trajectory(ours, theta0, grad_fn, unravel)
    assert rel_err(mine, trajectory(theirs, theta0, grad_fn, unravel)) < TOL
    return mine, theta0


@pytest.mark.parametrize("name", sorted(CASES))
def test_open_loop_equals_optax(name, x64):
    assert_open_loop_equal(*CASES[name]())


@pytest.mark.parametrize("name", sorted(CASES))
def test_own_trajectory_equals_optax(name, x64):
    mine, theta0 = assert_own_trajectory_equal(*CASES[name]())
    assert rel_err(mine, theta0) > 1e-3  # it moved: the comparison is not vacuous


def test_yogis_first_moment_starts_where_optaxs_does(x64):
    """The 1e-6 start of both moments matters at this tolerance: from 0 the runs part."""
    grads = random_grads(steps=20)
    params = jax.tree.map(jnp.asarray, PARAMS0)
    u_opt, _ = open_loop(optax.yogi(1e-2), grads, params)
    u_zero, _ = open_loop(jn.yogi(1e-2, initial_accumulator_value=0.0), grads, params)
    assert max(tree_rel_err(a, b) for a, b in zip(u_zero, u_opt, strict=True)) > 1e-7


# ------------------------------------------------- NumPy references from the papers' formulas
def paper_lion(lr, b1=0.9, b2=0.99, wd=1e-3):
    """Chen et al. (2023), Algorithm 2 (decoupled decay, the schedule multiplier equal to 1)."""
    m = 0.0

    def step(theta, g, t):
        nonlocal m
        u = np.sign(b1 * m + (1 - b1) * g)
        m = b2 * m + (1 - b2) * g
        return theta - lr * (u + wd * theta)

    return step


def paper_adabelief(lr, b1=0.9, b2=0.999, eps=1e-16):
    """Zhuang et al. (2020), Algorithm 2: eps is added to s_t and beside its root."""
    m = s = 0.0

    def step(theta, g, t):
        nonlocal m, s
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps
        return theta - lr * (m / (1 - b1**t)) / (np.sqrt(s / (1 - b2**t)) + eps)

    return step


def paper_yogi(lr, b1=0.9, b2=0.999, eps=1e-3, v0=1e-6):
    """Zaheer et al. (2018), Algorithm 2, with bias correction and m_0 = v_0 = 1e-6 (optax's)."""
    m = v = v0

    def step(theta, g, t):
        nonlocal m, v
        m = b1 * m + (1 - b1) * g
        v = v - (1 - b2) * np.sign(v - g * g) * g * g
        return theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)

    return step


def paper_radam(lr, b1=0.9, b2=0.999, eps=1e-8):
    """Liu et al. (2020), Algorithm 2 (rectified when rho_t > 4 there; optax and torch switch
    at 5, which differs only at a step with 4 < rho_t < 5: here none, rho_5 = 4.996)."""
    m = v = 0.0
    rho_inf = 2 / (1 - b2) - 1

    def step(theta, g, t):
        nonlocal m, v
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1**t)
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho < 5:
            return theta - lr * m_hat
        r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        return theta - lr * r * m_hat / (np.sqrt(v / (1 - b2**t)) + eps)

    return step


PAPERS = {
    "lion": (lambda: jn.lion(1e-3), paper_lion(1e-3)),
    "adabelief": (lambda: jn.adabelief(1e-2), paper_adabelief(1e-2)),
    "yogi": (lambda: jn.yogi(1e-2), paper_yogi(1e-2)),
    "radam": (lambda: jn.radam(1e-2), paper_radam(1e-2)),
}


@pytest.mark.parametrize("name", sorted(PAPERS))
def test_own_trajectory_equals_the_papers_formula(name, x64):
    ours, paper = PAPERS[name]
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = trajectory(ours(), theta0, grad_fn, unravel)
    assert rel_err(mine, ref.run(paper, theta0, grad_fn, STEPS)) < TOL


# ----------------------------------------------------------------------- against torch
def run_torch(torch, make, theta0, grads_or_fn, steps=STEPS):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
        opt = make([p])
        for k in range(steps):
            if callable(grads_or_fn):
                g = grads_or_fn(p.detach().numpy().copy())
            else:
                g = grads_or_fn[k]
            p.grad = torch.from_numpy(np.array(g, np.float64))
            opt.step()
        return p.detach().numpy().copy()
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("eps", [1e-8, 1e-3])
def test_radam_pytorch_convention_equals_torch_optim(eps, x64):
    torch = pytest.importorskip(
        "torch", reason="torch is an optional extra: pip install -e .[torch]"
    )
    make = lambda p: torch.optim.RAdam(p, lr=1e-2, eps=eps)  # noqa: E731
    ours = jn.radam(1e-2, eps=eps, convention="pytorch")
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = trajectory(ours, theta0, grad_fn, unravel)
    assert rel_err(mine, run_torch(torch, make, theta0, grad_fn)) < TOL
    # open-loop: a fixed gradient sequence on a flat vector
    rng = np.random.default_rng(1)
    grads = rng.normal(size=(STEPS, theta0.size))
    _, p = open_loop(ours, [jnp.asarray(g) for g in grads], jnp.asarray(theta0))
    assert rel_err(p, run_torch(torch, make, theta0, grads)) < TOL


def test_radam_conventions_differ_where_the_docstring_says(x64):
    """With a large eps, torch's eps before the bias correction gives other numbers."""
    grads = [{"w": g["w"]} for g in random_grads(steps=20)]
    params = {"w": jnp.asarray(PARAMS0["w"])}
    _, a = open_loop(jn.radam(1e-2, eps=1e-3), grads, params)
    _, b = open_loop(jn.radam(1e-2, eps=1e-3, convention="pytorch"), grads, params)
    _, c = open_loop(optax.radam(1e-2, eps=1e-3), grads, params)
    assert tree_rel_err(a, c) < TOL < tree_rel_err(b, c)


# --------------------------------------------------------------- what optax's aliases promise
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.complex64])
@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_tree_structure_and_dtype_are_kept(name, dtype):
    tx = FACTORIES[name](1e-2)
    params = {"w": jnp.ones((2, 3), dtype), "b": [jnp.zeros(3, dtype)]}
    state, step = tx.init(params), jax.jit(tx.update)
    for k in range(7):  # past RAdam's first adaptive step
        g = jax.tree.map(
            lambda p, k=k: jnp.sin(jnp.arange(p.size, dtype=p.dtype) + k).reshape(p.shape), params
        )
        u, state = step(g, state, params)
        assert jax.tree.structure(u) == jax.tree.structure(params)
        assert all(x.dtype == dtype for x in jax.tree.leaves(u)), name
        assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u)), name
        params = jn.apply_updates(params, u)
    assert all(x.dtype == dtype for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_jit_and_inject_hyperparams_equal_the_plain_optimizer(name, x64):
    """In float64, since in float32 ``1 - b2**t`` (a difference of nearby numbers) takes the
    last bit of ``b2**t``, which XLA's compiled power need not share with the eager one."""
    plain = FACTORIES[name](1e-2)
    wrapped = optax.inject_hyperparams(FACTORIES[name])(learning_rate=1e-2)
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
    p_state, w_state = plain.init(params), jax.jit(wrapped.init)(params)
    assert jax.tree.structure(w_state.inner_state) == jax.tree.structure(p_state)
    p_step, w_step = jax.jit(plain.update), jax.jit(wrapped.update)
    for k in range(8):
        g = jax.tree.map(lambda p, k=k: jnp.cos(3.0 * p + k), params)
        eager, _ = plain.update(g, p_state, params)
        pu, p_state = p_step(g, p_state, params)
        wu, w_state = w_step(g, w_state, params)
        np.testing.assert_allclose(pu["w"], eager["w"], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(wu["w"], pu["w"], rtol=1e-10, atol=1e-14)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14),
            w_state.inner_state,
            p_state,
        )
    # the learning rate is traced: a new value is taken at once
    w_state.hyperparams["learning_rate"] = jnp.asarray(0.0)
    wu, _ = w_step(g, w_state, params)
    assert float(jnp.max(jnp.abs(wu["w"]))) == 0.0


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_bad_hyperparameters_are_refused_with_a_sentence(name):
    factory = FACTORIES[name]
    with pytest.raises(ValueError, match=r"^`b1` must be in \[0, 1\), got 1.0$"):
        factory(0.1, b1=1.0)
    with pytest.raises(ValueError, match=r"^`b2` must be in \[0, 1\), got -0.5$"):
        factory(0.1, b2=-0.5)
    with pytest.raises(ValueError, match=r"^`learning_rate` must be >= 0, got -1.0$"):
        factory(-1.0)
    with pytest.raises(ValueError, match="`convention` must be one of"):
        factory(0.1, convention="keras")
    if name != "lion":
        with pytest.raises(ValueError, match=r"^`eps` must be >= 0, got -1.0$"):
            factory(0.1, eps=-1.0)


def test_bad_hyperparameters_of_each_link():
    with pytest.raises(ValueError, match=r"^`weight_decay` must be >= 0, got -0.1$"):
        jn.lion(0.1, weight_decay=-0.1)
    with pytest.raises(TypeError, match="`threshold` must be a real number"):
        jn.radam(0.1, threshold="five")
    with pytest.raises(ValueError, match=r"^`initial_accumulator_value` must be >= 0"):
        jn.yogi(0.1, initial_accumulator_value=-1.0)
    with pytest.raises(ValueError, match="`mu_dtype` must be a floating-point dtype"):
        jn.adabelief(0.1, mu_dtype=jnp.int32)


def test_the_links_say_what_they_need_before_them():
    g = jnp.ones(2)
    with pytest.raises(ValueError, match="`belief_moment` needs a first moment"):
        tx = jn.belief_moment()
        tx.update(g, tx.init(g))
    with pytest.raises(ValueError, match="`rectify` needs a first and a second moment"):
        tx = jn.chain(jn.first_moment(), jn.rectify())
        tx.update(g, tx.init(g))
    with pytest.raises(ValueError, match="`sign_momentum` got a Moments stream"):
        tx = jn.chain(jn.first_moment(), jn.sign_momentum())
        tx.update(g, tx.init(g))


def test_radam_is_momentum_sgd_until_rho_reaches_the_threshold():
    tx, b1 = jn.radam(0.1), 0.9
    state, m = tx.init(jnp.zeros(1)), 0.0
    for t in range(1, 8):
        g = float(t)
        u, state = tx.update(jnp.array([g]), state)
        m = b1 * m + (1 - b1) * g
        momentum_step = -0.1 * m / (1 - b1**t)
        # rho_5 = 4.996 < 5 <= rho_6 = 5.994: adaptive from step 6
        assert (t <= 5) == bool(np.isclose(float(u[0]), momentum_step, rtol=1e-5)), t
