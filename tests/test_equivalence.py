"""Every optimizer against optax, against torch.optim, and against NumPy references.

All runs are 300 steps in float64 on the same small MLP, each framework handed the same
hand-written gradient for its own parameters (tests/reference.py), so any difference comes
from the optimizer arithmetic alone.
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


def rel_err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def run_jax(tx, theta0, grad_fn, unravel, steps=STEPS):
    """Runs a transform on the MLP's params pytree; returns the final flat vector."""

    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    return run_steps(tx.init, step, theta0, grad_fn, unravel, steps)


def run_steps(init, step, theta0, grad_fn, unravel, steps=STEPS):
    """Runs ``step(params, state, grads) -> (params, state)`` jitted, in float64."""
    with jax.enable_x64(True):
        params = jax.tree.map(jnp.asarray, unravel(theta0))
        flat = lambda p: np.concatenate([np.ravel(p[k]) for k in ("w1", "b1", "w2", "b2")])  # noqa: E731
        state, step = init(params), jax.jit(step)
        for _ in range(steps):
            grads = jax.tree.map(jnp.asarray, unravel(grad_fn(flat(params))))
            params, state = step(params, state, grads)
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(params))
        return flat(params)


# name: (ours, optax's, NumPy reference from the paper)
OPTAX_CASES = {
    "sgd": (jn.sgd(0.1), optax.sgd(0.1), ref.sgd(0.1)),
    "momentum": (jn.sgd(0.05, 0.9), optax.sgd(0.05, 0.9), ref.sgd(0.05, 0.9)),
    "nesterov": (
        jn.sgd(0.05, 0.9, nesterov=True),
        optax.sgd(0.05, 0.9, nesterov=True),
        ref.sgd(0.05, 0.9, nesterov=True),
    ),
    "adagrad": (jn.adagrad(0.1), optax.adagrad(0.1), ref.adagrad(0.1, 1e-7, 0.1, True)),
    "rmsprop": (jn.rmsprop(0.01), optax.rmsprop(0.01), ref.rmsprop(0.01, 0.9, 1e-8, True)),
    "rmsprop_momentum": (
        # a small rate: with momentum the larger ones make this trajectory chaotic, and every
        # implementation (the paper's included) drifts apart from rounding alone
        jn.rmsprop(3e-4, momentum=0.9),
        optax.rmsprop(3e-4, momentum=0.9),
        ref.rmsprop(3e-4, 0.9, 1e-8, True, momentum=0.9),
    ),
    "adam": (jn.adam(0.01), optax.adam(0.01), ref.adam(0.01)),
    "adamw": (
        jn.adamw(0.01, weight_decay=0.1),
        optax.adamw(0.01, weight_decay=0.1),
        ref.adam(0.01, weight_decay=0.1),
    ),
    "amsgrad": (jn.amsgrad(0.01), optax.amsgrad(0.01), ref.adam(0.01, amsgrad="corrected")),
    "nadam": (jn.nadam(0.01), optax.nadam(0.01), ref.nadam(0.01)),
    "adamax": (jn.adamax(0.01), optax.adamax(0.01), ref.adamax(0.01)),
}


@pytest.mark.parametrize("name", sorted(OPTAX_CASES))
def test_matches_optax_and_the_paper(name):
    ours, theirs, paper = OPTAX_CASES[name]
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = run_jax(ours, theta0, grad_fn, unravel)
    assert rel_err(mine, run_jax(theirs, theta0, grad_fn, unravel)) < TOL
    assert rel_err(mine, ref.run(paper, theta0, grad_fn, STEPS)) < TOL
    assert rel_err(mine, theta0) > 1e-3  # it moved: the comparison is not vacuous


def test_a_schedule_is_stepped_like_optax():
    """Same schedule, same count: step 0 on the first update, one more per update."""
    theta0, grad_fn, unravel = ref.mlp_problem(seed=1)
    schedule = jn.schedules.linear_warmup(
        jn.schedules.cosine_decay(0.02, decay_steps=250), warmup_steps=50
    )
    for ours, theirs in [
        (jn.adam(schedule), optax.adam(schedule)),
        (jn.sgd(schedule, 0.9), optax.sgd(schedule, 0.9)),
    ]:
        mine = run_jax(ours, theta0, grad_fn, unravel)
        assert rel_err(mine, run_jax(theirs, theta0, grad_fn, unravel)) < TOL


def test_conventions_differ_where_the_frameworks_differ():
    """Where the docstrings say torch differs, the pytorch convention gives other numbers."""
    theta0, grad_fn, unravel = ref.mlp_problem()
    for make in (jn.adagrad, jn.rmsprop, jn.amsgrad, jn.nadam):
        a = run_jax(make(0.01), theta0, grad_fn, unravel, steps=50)
        b = run_jax(make(0.01, convention="pytorch"), theta0, grad_fn, unravel, steps=50)
        assert rel_err(a, b) > 1e-6, make.__name__
    for make in (jn.sgd, jn.adam, jn.adamax):
        a = run_jax(make(0.01), theta0, grad_fn, unravel, steps=50)
        b = run_jax(make(0.01, convention="pytorch"), theta0, grad_fn, unravel, steps=50)
        assert rel_err(a, b) == 0.0, make.__name__


# ------------------------------------------------------------------------------ torch
def torch_cases(torch):
    o = torch.optim
    return {  # name: (ours, torch factory on a param list, NumPy reference)
        "sgd": (jn.sgd(0.1, convention="pytorch"), lambda p: o.SGD(p, lr=0.1), ref.sgd(0.1)),
        "momentum": (
            jn.sgd(0.05, 0.9, convention="pytorch"),
            lambda p: o.SGD(p, lr=0.05, momentum=0.9),
            ref.sgd(0.05, 0.9),
        ),
        "nesterov": (
            jn.sgd(0.05, 0.9, nesterov=True, convention="pytorch"),
            lambda p: o.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
            ref.sgd(0.05, 0.9, nesterov=True),
        ),
        "adagrad": (
            jn.adagrad(0.1, convention="pytorch"),
            lambda p: o.Adagrad(p, lr=0.1),
            ref.adagrad(0.1, 1e-10, 0.0, False),
        ),
        "rmsprop": (
            jn.rmsprop(0.01, convention="pytorch"),
            lambda p: o.RMSprop(p, lr=0.01),
            ref.rmsprop(0.01, 0.99, 1e-8, False),
        ),
        "rmsprop_momentum": (
            jn.rmsprop(3e-4, momentum=0.9, convention="pytorch"),
            lambda p: o.RMSprop(p, lr=3e-4, momentum=0.9),
            ref.rmsprop(3e-4, 0.99, 1e-8, False, momentum=0.9),
        ),
        "adam": (
            jn.adam(0.01, convention="pytorch"),
            lambda p: o.Adam(p, lr=0.01),
            ref.adam(0.01),
        ),
        "adamw": (
            jn.adamw(0.01, convention="pytorch"),
            lambda p: o.AdamW(p, lr=0.01),
            ref.adam(0.01, weight_decay=0.01),
        ),
        "amsgrad": (
            jn.amsgrad(0.01, convention="pytorch"),
            lambda p: o.Adam(p, lr=0.01, amsgrad=True),
            ref.adam(0.01, amsgrad="raw"),
        ),
        "nadam": (
            jn.nadam(0.01, convention="pytorch"),
            lambda p: o.NAdam(p, lr=0.01),
            ref.nadam(0.01, psi=4e-3),
        ),
        "adamax": (
            jn.adamax(0.01, convention="pytorch"),
            lambda p: o.Adamax(p, lr=0.01),
            ref.adamax(0.01),
        ),
    }


def run_torch(torch, make, theta0, grad_fn, steps=STEPS):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # torch keeps some optimizer scalars in this dtype
    try:
        p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
        opt = make([p])
        for _ in range(steps):
            p.grad = torch.from_numpy(grad_fn(p.detach().numpy().copy()))
            opt.step()
        return p.detach().numpy().copy()
    finally:
        torch.set_default_dtype(previous)


TORCH_NAMES = [
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "rmsprop",
    "rmsprop_momentum",
    "adam",
    "adamw",
    "amsgrad",
    "nadam",
    "adamax",
]


@pytest.mark.parametrize("name", TORCH_NAMES)
def test_pytorch_convention_matches_torch_optim(name):
    torch = pytest.importorskip(
        "torch", reason="torch is an optional extra: pip install -e .[torch]"
    )
    ours, make, paper = torch_cases(torch)[name]
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = run_jax(ours, theta0, grad_fn, unravel)
    assert rel_err(mine, run_torch(torch, make, theta0, grad_fn)) < TOL
    assert rel_err(mine, ref.run(paper, theta0, grad_fn, STEPS)) < TOL
