"""Adafactor against optax.adafactor and (``convention="pytorch"``) torch.optim.Adafactor, in
float64, open loop and along its own trajectory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_notes as jn
from tests import reference as ref
from tests.test_modern import open_loop, rel_err, trajectory, tree_rel_err

STEPS = 150
TOL = 1e-9
KEYS = ("w1", "b1", "w2", "b2")
SHAPES = {"w": (6, 4), "stack": (2, 3, 5), "b": (4,)}

CASES = {  # name: optax.adafactor's keyword arguments, ours taking the same
    "defaults": {},
    "with_rate": {"learning_rate": 1e-2},
    "factored": {"learning_rate": 1e-2, "min_dim_size_to_factor": 2},
    "momentum_decay": {
        "learning_rate": 1e-2,
        "min_dim_size_to_factor": 2,
        "momentum": 0.9,
        "weight_decay_rate": 1e-3,
    },
    "bare": {"min_dim_size_to_factor": 3, "clipping_threshold": None, "decay_offset": -3,
             "multiply_by_parameter_scale": False},
}  # fmt: skip


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _grads(seed=0, steps=STEPS):
    rng = np.random.default_rng(seed)
    return [{k: jnp.asarray(rng.normal(size=s)) for k, s in SHAPES.items()} for _ in range(steps)]


@pytest.mark.parametrize("name", sorted(CASES))
def test_open_loop_equals_optax(name, x64):
    kw = CASES[name]
    params = {k: jnp.asarray(np.linspace(-1, 1, np.prod(s)).reshape(s)) for k, s in SHAPES.items()}
    u1, p1 = open_loop(jn.adafactor(**kw), _grads(), params)
    u2, p2 = open_loop(optax.adafactor(**kw), _grads(), params)
    assert max(tree_rel_err(a, b) for a, b in zip(u1, u2, strict=True)) < TOL
    assert tree_rel_err(p1, p2) < TOL


@pytest.mark.parametrize("name", ["with_rate", "factored", "momentum_decay"])
def test_own_trajectory_equals_optax(name, x64):
    kw = {**CASES[name], "min_dim_size_to_factor": 2}
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = trajectory(jn.adafactor(**kw), theta0, grad_fn, unravel, STEPS)
    theirs = trajectory(optax.adafactor(**kw), theta0, grad_fn, unravel, STEPS)
    assert rel_err(mine, theirs) < TOL
    assert rel_err(mine, theta0) > 1e-3


# ----------------------------------------------------------------------- against torch
def _torch_run(torch, make, grads_of, steps=STEPS):
    """torch.optim on the MLP's four tensors (so its matrices are factored), float64."""
    theta0, _, unravel = ref.mlp_problem()
    parts = unravel(theta0)
    ps = {k: torch.nn.Parameter(torch.tensor(parts[k], dtype=torch.float64)) for k in KEYS}
    opt = make(list(ps.values()))
    flat = lambda: np.concatenate([ps[k].detach().numpy().ravel() for k in KEYS])  # noqa: E731
    for k in range(steps):
        g = unravel(grads_of(k, flat()))
        for key, p in ps.items():
            p.grad = torch.from_numpy(np.array(g[key], np.float64))
        opt.step()
    return flat()


@pytest.mark.parametrize(
    "ours, theirs",
    [({"learning_rate": 1e-2}, {"lr": 1e-2}),
     ({"learning_rate": 0.5, "weight_decay_rate": 0.01}, {"lr": 0.5, "weight_decay": 0.01}),
     ({"learning_rate": 1e-2, "decay_rate": 0.5, "clipping_threshold": 2.0, "min_scale": 1e-2},
      {"lr": 1e-2, "beta2_decay": -0.5, "d": 2.0, "eps": (None, 1e-2)})],
)  # fmt: skip
def test_pytorch_convention_equals_torch_optim_adafactor(ours, theirs, x64):
    torch = pytest.importorskip("torch", reason="torch is an optional extra")
    tx = jn.adafactor(**ours, convention="pytorch")
    make = lambda p: torch.optim.Adafactor(p, **theirs)  # noqa: E731
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = trajectory(tx, theta0, grad_fn, unravel, STEPS)
    assert rel_err(mine, _torch_run(torch, make, lambda k, th: grad_fn(th))) < TOL
    fixed = np.random.default_rng(2).normal(size=(STEPS, theta0.size))
    p0 = jax.tree.map(jnp.asarray, unravel(theta0))
    _, p = open_loop(tx, [jax.tree.map(jnp.asarray, unravel(g)) for g in fixed], p0)
    flat = np.concatenate([np.ravel(p[k]) for k in KEYS])
    assert rel_err(flat, _torch_run(torch, make, lambda k, th: fixed[k])) < TOL


def test_conventions_differ_where_the_docstring_says(x64):
    grads = _grads(steps=5)
    params = {k: jnp.ones(s) for k, s in SHAPES.items()}
    _, a = open_loop(jn.adafactor(1e-2), grads, params)
    _, b = open_loop(jn.adafactor(1e-2, convention="pytorch"), grads, params)
    assert tree_rel_err(a, b) > 1e-3  # optax leaves 6x4 unfactored (min 128); torch factors it
    assert jn.hyperparams(jn.adafactor(convention="pytorch"))["learning_rate"] == 1e-2
    with pytest.raises(ValueError, match="torch.optim.Adafactor, which has no momentum"):
        jn.adafactor(1e-2, momentum=0.9, convention="pytorch")


def test_the_factored_moment_is_kept_in_rows_and_columns():
    tx = jn.factored_rms(min_dim_size_to_factor=2)
    state = tx.init({"w": jnp.zeros((6, 4)), "b": jnp.zeros(4)})
    assert state.v_row["w"].shape == (4,) and state.v_col["w"].shape == (6,)
    assert state.v["w"].shape == (1,) and state.v["b"].shape == (4,)
    torch_like = jn.factored_rms(convention="pytorch").init({"w": jnp.zeros((2, 6, 4))})
    assert torch_like.v_row["w"].shape == (2, 6) and torch_like.v_col["w"].shape == (2, 4)


def test_current_learning_rate_is_torchs_relative_step():
    tx = jn.adafactor(0.5, convention="pytorch")
    p = {"w": jnp.ones((2, 3))}
    state = tx.init(p)
    for _ in range(4):
        _, state = tx.update(p, state, p)
    assert float(jn.current_learning_rate(state)) == pytest.approx(0.5)  # min(0.5, 1/sqrt(4))
    _, state = tx.update(p, state, p)
    assert float(jn.current_learning_rate(state)) == pytest.approx(5**-0.5)


def test_adafactor_options_are_keyword_only():
    with pytest.raises(TypeError, match="positional"):
        jn.adafactor(1e-2, 128)
