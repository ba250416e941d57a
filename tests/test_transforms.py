"""Contracts of the building blocks: composition, dtypes, compilation, interop, guards."""

from __future__ import annotations

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_notes as jn

ALL = {
    "sgd": lambda: jn.sgd(0.1),
    "momentum": lambda: jn.sgd(0.1, 0.9),
    "nesterov": lambda: jn.sgd(0.1, 0.9, nesterov=True),
    "adagrad": lambda: jn.adagrad(0.1),
    "rmsprop": lambda: jn.rmsprop(0.01),
    "adam": lambda: jn.adam(0.01),
    "adamw": lambda: jn.adamw(0.01),
    "amsgrad": lambda: jn.amsgrad(0.01),
    "nadam": lambda: jn.nadam(0.01),
    "nadam_torch": lambda: jn.nadam(0.01, convention="pytorch"),
    "adamax": lambda: jn.adamax(0.01),
}

PARAMS = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2), "nested": [jnp.full(4, 0.5, jnp.float32)]}


def grads_like(params, scale=1.0):
    return jax.tree.map(
        lambda p: scale * (jnp.arange(p.size, dtype=p.dtype).reshape(p.shape) - 1.5), params
    )


# ------------------------------------------------------------------------- composition
def test_adam_chain_equals_the_manual_formula():
    b1, b2, eps, lr = 0.8, 0.9, 1e-3, 0.1
    tx = jn.adam(lr, b1, b2, eps)
    g = [jnp.array([0.3, -2.0]), jnp.array([1.0, 0.5]), jnp.array([-0.7, 0.0])]
    state, m, v = tx.init(jnp.zeros(2)), np.zeros(2), np.zeros(2)
    for t, gt in enumerate(g, start=1):
        u, state = tx.update(gt, state)
        m = b1 * m + (1 - b1) * np.asarray(gt)
        v = b2 * v + (1 - b2) * np.asarray(gt) ** 2
        manual = -lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        np.testing.assert_allclose(u, manual, rtol=1e-6)


def test_pieces_compose_with_optax_transforms():
    """Our moment links inside optax.chain, optax's clipping before, our lr after."""
    mixed = optax.chain(
        optax.clip_by_global_norm(1.0),
        jn.first_moment(0.9),
        jn.second_moment(0.999),
        jn.bias_correction(0.9, 0.999),
        jn.ratio(1e-8),
        optax.scale_by_learning_rate(0.01),
    )
    fused = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.01))
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), PARAMS)
        s1, s2 = mixed.init(params), fused.init(params)
        for k in range(5):
            g = grads_like(params, scale=k + 1.0)
            u1, s1 = mixed.update(g, s1, params)
            u2, s2 = fused.update(g, s2, params)
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), u1, u2)


def test_rms_of_momentum_is_not_adam():
    """Composing RMSProp on top of momentum is a different algorithm: show it differs."""
    other = jn.chain(jn.trace(0.9), jn.scale_by_rms(0.999, 1e-8), jn.scale_by_learning_rate(0.01))
    adam = jn.adam(0.01)
    s1, s2 = other.init(PARAMS), adam.init(PARAMS)
    for _ in range(3):
        u1, s1 = other.update(grads_like(PARAMS), s1)
        u2, s2 = adam.update(grads_like(PARAMS), s2)
    assert not np.allclose(u1["w"], u2["w"], rtol=1e-3)


def test_moment_stream_must_be_closed():
    tx = jn.chain(jn.first_moment(0.9), jn.scale(1.0))
    with pytest.raises(ValueError, match="close it with `jn.ratio`"):
        tx.update(PARAMS, tx.init(PARAMS))
    tx = jn.chain(jn.first_moment(0.9), jn.ratio())
    with pytest.raises(ValueError, match="`ratio` needs a second moment"):
        tx.update(PARAMS, tx.init(PARAMS))


# ---------------------------------------------------------------------------- contracts
@pytest.mark.parametrize("name", sorted(ALL))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_tree_structure_and_dtype_are_kept(name, dtype):
    tx = ALL[name]()
    params = jax.tree.map(lambda p: p.astype(dtype), PARAMS)
    state = tx.init(params)
    step = jax.jit(tx.update)
    for _ in range(3):
        updates, state = step(grads_like(params, 100.0), state, params)  # large: g^2 overflows?
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    for u in jax.tree.leaves(updates):
        assert u.dtype == dtype and bool(jnp.all(jnp.isfinite(u)))
    new = jn.apply_updates(params, updates)
    assert all(p.dtype == dtype for p in jax.tree.leaves(new))


@pytest.mark.parametrize("name", sorted(ALL))
def test_compiles_once(name):
    tx = ALL[name]()
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)
        updates, state = tx.update(grads, state, params)
        return jn.apply_updates(params, updates), state

    params, state = PARAMS, tx.init(PARAMS)
    for k in range(4):
        params, state = step(params, state, grads_like(PARAMS, k + 1.0))
    assert len(traces) == 1


def test_bias_correction_in_bfloat16_keeps_early_steps_finite():
    tx = jn.adam(1e-3, b2=0.9999)
    p = jnp.ones(4, jnp.bfloat16)
    u, _ = tx.update(jnp.full(4, 1e-3, jnp.bfloat16), tx.init(p))
    np.testing.assert_allclose(np.asarray(u, np.float32), -1e-3, rtol=1e-2)


def test_step_count_lives_in_state_and_saturates():
    tx = jn.adam(0.1)
    state = tx.init(jnp.zeros(1))
    _, state = tx.update(jnp.ones(1), state)
    assert int(state[2].count) == 1
    correction = state[2]._replace(count=jnp.asarray(jnp.iinfo(jnp.int32).max, jnp.int32))
    state = (*state[:2], correction, *state[3:])
    _, state = tx.update(jnp.ones(1), state)
    assert int(state[2].count) == jnp.iinfo(jnp.int32).max


# ----------------------------------------------------------------------------- interop
def test_inside_optax_inject_hyperparams():
    tx = optax.inject_hyperparams(jn.adam)(learning_rate=0.1)
    state = tx.init(PARAMS)
    u, state = jax.jit(tx.update)(grads_like(PARAMS), state, PARAMS)
    state.hyperparams["learning_rate"] = jnp.asarray(0.01)
    u2, _ = jax.jit(tx.update)(grads_like(PARAMS), state, PARAMS)
    assert float(jnp.abs(u["b"]).max()) > 5 * float(jnp.abs(u2["b"]).max())


def test_inside_optax_multisteps():
    tx = optax.MultiSteps(jn.sgd(1.0), every_k_schedule=2)
    state = tx.init(jnp.zeros(1))
    u1, state = tx.update(jnp.array([1.0]), state)
    u2, state = tx.update(jnp.array([3.0]), state)
    assert float(u1[0]) == 0.0 and float(u2[0]) == -2.0  # the mean of the two


def test_inside_flax_nnx_optimizer():
    model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, jn.chain(jn.clip_by_global_norm(1.0), jn.adam(0.05)), wrt=nnx.Param)
    x, y = jnp.ones((8, 2)), jnp.full((8, 1), 3.0)

    @nnx.jit
    def step(model, opt):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x) - y) ** 2))(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt)) for _ in range(100)]
    assert losses[-1] < 0.01 * losses[0]


# ---------------------------------------------------------------------- guards, switch
def test_skip_nonfinite_leaves_moments_untouched():
    tx = jn.skip_nonfinite(jn.adam(0.1))
    state = tx.init(PARAMS)
    _, state = tx.update(grads_like(PARAMS), state)
    bad = jax.tree.map(lambda g: g.at[0].set(jnp.inf), grads_like(PARAMS))
    updates, after = tx.update(bad, state)
    assert all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(updates))
    assert int(after.skipped) == 1 and int(after.consecutive) == 1
    jax.tree.map(np.testing.assert_array_equal, after.inner_state, state.inner_state)
    _, again = tx.update(grads_like(PARAMS), after)
    assert int(again.skipped) == 1 and int(again.consecutive) == 0


def test_skip_nonfinite_counters_saturate():
    tx = jn.skip_nonfinite(jn.adam(0.1))
    top = jnp.asarray(jnp.iinfo(jnp.int32).max, jnp.int32)
    state = tx.init(PARAMS)._replace(skipped=top, consecutive=top)
    bad = jax.tree.map(lambda g: g.at[0].set(jnp.nan), grads_like(PARAMS))
    _, state = jax.jit(tx.update)(bad, state)
    assert int(state.skipped) == int(state.consecutive) == int(top)


def test_skip_nonfinite_is_one_cond_over_the_inner_update():
    """One global flag and one ``lax.cond``, not a select per leaf of the state: what kept
    its compile time linear in the number of leaves."""
    params = {f"p{i}": jnp.ones(2) for i in range(50)}
    tx = jn.skip_nonfinite(jn.adam(0.1))
    jaxpr = jax.make_jaxpr(tx.update)(params, tx.init(params)).jaxpr
    names = [e.primitive.name for e in jaxpr.eqns]
    assert names.count("cond") == 1 and names.count("select_n") <= 4, names


def test_skip_nonfinite_traces_the_inner_update_once_and_wraps_any_output():
    """Zeros like the incoming updates suffice for element-wise optimizers, so the inner
    update is traced once; an inner transform with other outputs (lookahead's (fast, slow)
    updates) still gets zeros of its own structure."""
    traces = []

    def counted(inner):
        def update(updates, state, params=None):
            traces.append(1)
            return inner.update(updates, state, params)

        return optax.GradientTransformation(inner.init, update)

    tx = jn.skip_nonfinite(counted(jn.adam(0.1)))
    params = {"w": jnp.ones(2, jnp.bfloat16)}
    jax.make_jaxpr(tx.update)(params, tx.init(params), params)
    assert len(traces) == 1
    tx = jn.skip_nonfinite(jn.lookahead(jn.sgd(0.1), 2, 0.5))
    la = optax.LookaheadParams.init_synced(jnp.ones(2))
    u, s = jax.jit(tx.update)(jnp.array([jnp.nan, 1.0]), tx.init(la), la)
    assert isinstance(u, optax.LookaheadParams) and int(s.skipped) == 1
    np.testing.assert_array_equal(u.fast, 0.0)
    u, s = jax.jit(tx.update)(jnp.ones(2), s, la)
    np.testing.assert_allclose(u.fast, -0.1)


def test_switch_by_criterion_happens_once():
    tx = jn.switch(jn.sgd(1.0), jn.sgd(0.0), criterion=lambda count, g: jnp.abs(g[0]) < 0.5)
    state = tx.init(jnp.zeros(1))
    outs = []
    for g in (1.0, 0.1, 1.0):
        u, state = tx.update(jnp.array([g]), state)
        outs.append(float(u[0]))
    assert outs == [-1.0, 0.0, 0.0] and int(state.switched_at) == 1


def test_adam_then_sgd_switches_at_the_step():
    tx = jn.adam_then_sgd(0.1, 0.5, switch_step=2, momentum=0.0)
    state = tx.init(jnp.zeros(1))
    outs = []
    for _ in range(3):
        u, state = tx.update(jnp.array([4.0]), state)
        outs.append(round(float(u[0]), 4))
    assert outs == [-0.1, -0.1, -2.0]


# --------------------------------------------------------------------------- clipping
def test_global_norm_clip_keeps_direction_value_clip_does_not():
    g = jnp.array([10.0, 1.0])
    by_norm, _ = jn.clip_by_global_norm(1.0).update(g, ())
    by_value, _ = jn.clip(1.0).update(g, ())
    cos = lambda a, b: float(a @ b / jnp.linalg.norm(a) / jnp.linalg.norm(b))  # noqa: E731
    assert cos(by_norm, g) == pytest.approx(1.0) and float(jnp.linalg.norm(by_norm)) == 1.0
    assert cos(by_value, g) < 0.8


def test_weight_decay_mask_and_positions():
    params = {"w": jnp.ones(2), "b": jnp.ones(2)}
    tx = jn.add_decayed_weights(0.5, mask={"w": True, "b": False})
    u, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    assert u["w"].tolist() == [0.5, 0.5] and u["b"].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="needs `params`"):
        tx.update(params, tx.init(params))


# -------------------------------------------------------------------------- convergence
def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def run_steps(tx, f, p0, steps):
    def body(carry, _):
        p, s = carry
        u, s = tx.update(jax.grad(f)(p), s, p)
        return (jn.apply_updates(p, u), s), None

    (p, _), _ = jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps))((p0, tx.init(p0)))
    return p


@pytest.mark.parametrize(
    "tx, steps, tol",
    [
        (jn.adam(jn.schedules.cosine_decay(0.05, decay_steps=4000)), 4000, 1e-3),
        (jn.sgd(1e-3, 0.9), 5000, 1e-2),
        (jn.nadam(jn.schedules.cosine_decay(0.05, decay_steps=4000)), 4000, 1e-3),
        # AMSGrad's max keeps the large early second moments, so its steps stay small: slower
        (jn.amsgrad(jn.schedules.cosine_decay(0.05, decay_steps=8000)), 8000, 1e-2),
    ],
)
def test_converges_on_rosenbrock(tx, steps, tol):
    p = run_steps(tx, rosenbrock, jnp.array([-1.0, 1.0]), steps)
    assert float(jnp.linalg.norm(p - 1.0)) < tol


@pytest.mark.parametrize("name", sorted(ALL))
def test_reduces_an_ill_conditioned_quadratic(name):
    a = jnp.array([0.05, 1.0])  # f = 0.5 * sum(a * x^2): Saito's bowl, condition number 20
    f = lambda x: 0.5 * jnp.sum(a * x**2)  # noqa: E731
    x0 = jnp.array([-7.0, 2.0])
    x = run_steps(ALL[name](), f, x0, 300)
    assert float(f(x)) < 0.5 * float(f(x0))


def test_bfloat16_moments_halve_the_state_and_train_alike():
    params = jnp.linspace(-3.0, 3.0, 4096)
    full, half = jn.adam(1e-2), jn.adam(1e-2, moment_dtype=jnp.bfloat16)
    size = lambda s: sum(x.nbytes for x in jax.tree.leaves(s))  # noqa: E731
    assert size(half.init(params)) <= 0.5 * size(full.init(params)) + 16  # + the counters
    moments = [x for x in jax.tree.leaves(half.init(params)) if x.ndim]
    assert {x.dtype for x in moments} == {jnp.dtype("bfloat16")}
    scales = jnp.linspace(0.1, 10.0, 4096)
    f = lambda x: 0.5 * jnp.sum(scales * x**2)  # noqa: E731
    a, b = run_steps(full, f, params, 500), run_steps(half, f, params, 500)
    assert b.dtype == jnp.float32 and float(f(b)) < 1e-3 * float(f(params))
    assert float(f(b)) < 10 * float(f(a)) + 1e-6  # same progress up to bfloat16 rounding
