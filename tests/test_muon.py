"""Muon against ``optax.contrib.muon`` and ``torch.optim.Muon`` (+ ``torch.optim.AdamW`` on the
leaves that are not matrices), in float64, open loop and along its own trajectory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax.contrib import MuonDimensionNumbers as Dims

import jaxopt_notes as jn
from tests import reference as ref
from tests.test_modern import open_loop, rel_err, trajectory, tree_rel_err

STEPS = 120
TOL = 1e-9
KEYS = ("w1", "b1", "w2", "b2")


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _grads(shapes: dict, seed: int = 0, steps: int = STEPS) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{k: jnp.asarray(rng.normal(size=s)) for k, s in shapes.items()} for _ in range(steps)]


MLP_SHAPES = {"w": (3, 5), "tall": (6, 2), "b": (5,)}
CONV_SHAPES = {"kernel": (3, 3, 2, 4), "w": (4, 3), "b": (3,)}
STACK_SHAPES = {"layers": (4, 3, 5), "w": (5, 2), "b": (2,)}
conv_dims = {"kernel": Dims((0, 1, 2), 3), "w": Dims(), "b": None}
stack_dims = {"layers": Dims(1, 2), "w": Dims(), "b": None}

# name: (shapes, ours, optax's)
CASES = {
    "default": (MLP_SHAPES, lambda: jn.muon(0.02), lambda: optax.contrib.muon(0.02)),
    "no_nesterov": (
        MLP_SHAPES,
        lambda: jn.muon(0.02, nesterov=False, beta=0.9),
        lambda: optax.contrib.muon(0.02, nesterov=False, beta=0.9),
    ),
    "decay_rms_adam": (
        MLP_SHAPES,
        lambda: jn.muon(0.02, weight_decay=0.1, consistent_rms=0.2, adam_weight_decay=0.01),
        lambda: optax.contrib.muon(
            0.02, weight_decay=0.1, consistent_rms=0.2, adam_weight_decay=0.01
        ),
    ),
    "own_adam_rate": (
        MLP_SHAPES,
        lambda: jn.muon(0.02, adam_learning_rate=1e-3, ns_steps=3),
        lambda: optax.contrib.muon(0.02, adam_learning_rate=1e-3, ns_steps=3),
    ),
    "conv_as_matrix": (
        CONV_SHAPES,
        lambda: jn.muon(0.02, conv_as_matrix=True),
        lambda: optax.contrib.muon(0.02, muon_weight_dimension_numbers=conv_dims),
    ),
    "stacked": (
        STACK_SHAPES,
        lambda: jn.muon(0.02, stacked=True),
        lambda: optax.contrib.muon(0.02, muon_weight_dimension_numbers=stack_dims),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_open_loop_equals_optax(name, x64):
    shapes, ours, theirs = CASES[name]
    grads = _grads(shapes)
    params = {k: jnp.asarray(np.linspace(-1, 1, np.prod(s)).reshape(s)) for k, s in shapes.items()}
    u1, p1 = open_loop(ours(), grads, params)
    u2, p2 = open_loop(theirs(), grads, params)
    worst = max(tree_rel_err(a, b) for a, b in zip(u1, u2, strict=True))
    assert worst < TOL, worst
    assert tree_rel_err(p1, p2) < TOL


def test_own_trajectory_equals_optax(x64):
    theta0, grad_fn, unravel = ref.mlp_problem()
    mine = trajectory(jn.muon(0.02), theta0, grad_fn, unravel, STEPS)
    theirs = trajectory(optax.contrib.muon(0.02), theta0, grad_fn, unravel, STEPS)
    assert rel_err(mine, theirs) < TOL
    assert rel_err(mine, theta0) > 1e-3


def test_conv_kernels_go_to_adam_unless_asked():
    params = {"kernel": jnp.ones((3, 3, 2, 4)), "w": jnp.ones((4, 3))}
    labels = jn.optimizers_muon.matrix_labels()(params)
    assert labels == {"kernel": "adam", "w": "muon"}
    assert jn.optimizers_muon.matrix_labels(conv_as_matrix=True)(params)["kernel"] == "muon"


# ----------------------------------------------------------------------- against torch
def _torch_run(torch, theta0, unravel, grad_of, steps, *, lr, wd, eps, nesterov):
    """torch.optim.Muon on the matrices, torch.optim.AdamW on the rest, in float64."""
    parts = unravel(np.asarray(theta0))
    ps = {k: torch.nn.Parameter(torch.tensor(parts[k], dtype=torch.float64)) for k in KEYS}
    mats = [p for p in ps.values() if p.ndim == 2]
    rest = [p for p in ps.values() if p.ndim != 2]
    opts = [
        torch.optim.Muon(mats, lr=lr, weight_decay=wd, eps=eps, nesterov=nesterov),
        torch.optim.AdamW(rest, lr=lr, eps=eps, weight_decay=0.0),
    ]
    flat = lambda: np.concatenate([ps[k].detach().numpy().ravel() for k in KEYS])  # noqa: E731
    for k in range(steps):
        g = unravel(grad_of(k, flat()))
        for key, p in ps.items():
            p.grad = torch.from_numpy(np.array(g[key], np.float64))
        for opt in opts:
            opt.step()
    return flat()


@pytest.fixture
def torch_f64(monkeypatch):
    """torch, with Muon's cast to bfloat16 before the iteration made a copy instead, so that
    its float64 arithmetic can be compared at 1e-9 (the cast is the one thing switched off)."""
    torch = pytest.importorskip("torch", reason="torch is an optional extra")
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda self: self.clone())
    return torch


@pytest.mark.parametrize("nesterov", [True, False])
def test_pytorch_convention_equals_torch_optim_muon(nesterov, torch_f64, x64):
    theta0, grad_fn, unravel = ref.mlp_problem()
    ours = jn.muon(0.02, convention="pytorch", nesterov=nesterov)
    h = jn.hyperparams(ours)
    kw = dict(lr=0.02, wd=h["weight_decay"], eps=h["eps"], nesterov=nesterov)
    assert (h["weight_decay"], h["eps"]) == (0.1, 1e-7)  # torch's defaults
    mine = trajectory(ours, theta0, grad_fn, unravel, STEPS)
    theirs = _torch_run(torch_f64, theta0, unravel, lambda k, th: grad_fn(th), STEPS, **kw)
    assert rel_err(mine, theirs) < TOL
    rng = np.random.default_rng(3)
    fixed = rng.normal(size=(STEPS, theta0.size))
    p0 = jax.tree.map(jnp.asarray, unravel(theta0))
    _, p = open_loop(ours, [jax.tree.map(jnp.asarray, unravel(g)) for g in fixed], p0)
    flat = np.concatenate([np.ravel(p[k]) for k in KEYS])
    theirs = _torch_run(torch_f64, theta0, unravel, lambda k, th: fixed[k], STEPS, **kw)
    assert rel_err(flat, theirs) < TOL


def test_torchs_bfloat16_iteration_is_near_ours_not_equal():
    """Unpatched torch orthogonalises in bfloat16: one step lies within bfloat16's error of
    ours in float32 (1-2% here), and ``ns_dtype=bfloat16`` is bfloat16 rounding of its own
    kind (XLA rounds other intermediate products than torch's fused ``addmm``), not torch's."""
    torch = pytest.importorskip("torch", reason="torch is an optional extra")
    rng = np.random.default_rng(0)
    w, g = rng.normal(size=(6, 4)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32)
    p = torch.nn.Parameter(torch.tensor(w))
    p.grad = torch.tensor(g)
    torch.optim.Muon([p], lr=0.1, weight_decay=0.0).step()
    step_torch, steps = p.detach().numpy() - w, {}
    for ns_dtype in (jnp.bfloat16, None):
        tx = jn.muon(0.1, weight_decay=0.0, ns_dtype=ns_dtype, convention="pytorch")
        steps[ns_dtype] = np.asarray(tx.update(jnp.asarray(g), tx.init(w), jnp.asarray(w))[0])
    assert 1e-4 < rel_err(steps[None], step_torch) < 0.05
    assert 1e-3 < rel_err(steps[jnp.bfloat16], steps[None]) < 0.2
    assert steps[jnp.bfloat16].dtype == np.float32  # the update keeps the param's dtype


def test_conventions_differ_where_the_docstring_says(x64):
    grads = _grads(MLP_SHAPES, steps=10)
    params = {k: jnp.ones(s) for k, s in MLP_SHAPES.items()}
    same = dict(weight_decay=0.0, eps=1e-8)
    _, a = open_loop(jn.muon(0.02, **same), grads, params)
    _, b = open_loop(jn.muon(0.02, convention="pytorch", **same), grads, params)
    assert tree_rel_err(a, b) > 1e-6
    # the shape factor: optax sqrt(max(1, cols/rows)), torch sqrt(max(1, rows/cols))
    u = jnp.ones((2, 8))
    for convention, factor in (("optax", 2.0), ("pytorch", 1.0)):
        out, _ = jn.scale_by_shape(convention=convention).update(u, ())
        assert float(out[0, 0]) == factor


# ------------------------------------------------------------------- the links, the state
def test_newton_schulz_orthogonalises_and_keeps_the_shape():
    rng = np.random.default_rng(0)
    for shape in ((5, 3), (3, 5)):
        m = jnp.asarray(rng.normal(size=shape), jnp.float32)
        tx = jn.newton_schulz(ns_steps=40, ns_coeffs=(1.5, -0.5, 0.0))
        o, _ = tx.update(m, ())
        u, _, vt = np.linalg.svd(np.asarray(m), full_matrices=False)
        np.testing.assert_allclose(o, u @ vt, atol=1e-4)
    stack = jnp.asarray(rng.normal(size=(4, 3, 5)))
    o, _ = jn.newton_schulz(stacked=True).update(stack, ())
    one, _ = jn.newton_schulz().update(stack[2], ())
    np.testing.assert_allclose(o[2], one, rtol=1e-5, atol=1e-6)  # each matrix alone


def test_hyperparams_and_the_learning_rate_are_readable():
    tx = jn.muon(jn.schedules.exponential_decay(0.1, decay_rate=0.5), convention="pytorch")
    assert jn.hyperparams(tx)["eps"] == 1e-7 and jn.hyperparams(tx)["beta"] == 0.95
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
    state = tx.init(params)
    for _ in range(2):
        _, state = tx.update({"w": jnp.ones((2, 3)), "b": jnp.ones(3)}, state, params)
    assert float(jn.current_learning_rate(state)) == pytest.approx(0.05)


def test_bad_hyperparameters_are_refused_with_a_sentence():
    with pytest.raises(ValueError, match=r"^`ns_coeffs` must be three numbers"):
        jn.muon(0.1, ns_coeffs=(1.0, 2.0))
    with pytest.raises(ValueError, match=r"^`ns_steps` must be >= 0, got -1$"):
        jn.muon(0.1, ns_steps=-1)
    with pytest.raises(ValueError, match=r"^`beta` must be in \[0, 1\), got 1.0$"):
        jn.muon(0.1, beta=1.0)
    with pytest.raises(ValueError, match="`convention` must be one of"):
        jn.muon(0.1, convention="keras")
    with pytest.raises(ValueError, match="`newton_schulz` needs matrices"):
        jn.newton_schulz().update(jnp.ones(3), ())
