"""What a JAX user brings from optax: complex parameters, ``inject_hyperparams`` under ``jit``,
optax's dtype keywords, and optax transforms placed (wrongly) inside a moment run."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_notes as jn

# --------------------------------------------------------------------- complex parameters
# the optimizers whose second moment squares the gradient: |g|^2 = g * conj(g) for complex g
COMPLEX = {
    "adam": (lambda: jn.adam(0.05), lambda: optax.adam(0.05)),
    "rmsprop": (lambda: jn.rmsprop(0.01), lambda: optax.rmsprop(0.01)),
    "adagrad": (lambda: jn.adagrad(0.5), lambda: optax.adagrad(0.5)),
    "amsgrad": (lambda: jn.amsgrad(0.05), lambda: optax.amsgrad(0.05)),
    "nadam": (lambda: jn.nadam(0.05), lambda: optax.nadam(0.05)),
    "adamax": (lambda: jn.adamax(0.05), lambda: optax.adamax(0.05)),
}


def complex_least_squares(dtype):
    """``f(x) = ||A x - b||^2`` with complex A, b = A x*: its minimum is 0, at x*."""
    k1, k2, k3, k4 = jax.random.split(jax.random.key(0), 4)
    real = jnp.finfo(dtype).dtype
    a = jax.random.normal(k1, (6, 3), real) + 1j * jax.random.normal(k2, (6, 3), real)
    x_star = jax.random.normal(k3, (3,), real) + 1j * jax.random.normal(k4, (3,), real)
    a, x_star = a.astype(dtype), x_star.astype(dtype)
    b = a @ x_star
    loss = lambda x: jnp.sum(jnp.abs(a @ x - b) ** 2)  # noqa: E731
    # jax.grad of a real function of complex x is the conjugate of the steepest ascent direction
    descent_grad = lambda x: jnp.conj(jax.grad(loss)(x))  # noqa: E731
    return loss, descent_grad, jnp.zeros(3, dtype)


def run(tx, grad, x, steps):
    def body(carry, _):
        x, s = carry
        u, s = tx.update(grad(x), s, x)
        x = jn.apply_updates(x, u)
        return (x, s), x

    _, xs = jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps))((x, tx.init(x)))
    return xs


@pytest.mark.parametrize("name", sorted(COMPLEX))
def test_complex_parameters_equal_optax_step_for_step(name):
    """Open loop (both fed optax's gradient sequence): equal updates at every step; closed loop
    (each along its own path): the same loss. Paths are not compared past the point where
    rmsprop's oscillation near the minimum amplifies rounding."""
    ours, theirs = COMPLEX[name]
    with jax.enable_x64(True):
        loss, grad, x0 = complex_least_squares(jnp.complex128)
        path = run(theirs(), grad, x0, 300)
        tx_a, tx_b = ours(), theirs()
        s_a, s_b = tx_a.init(x0), tx_b.init(x0)
        step_a, step_b = jax.jit(tx_a.update), jax.jit(tx_b.update)
        for x in path[:100]:
            u_a, s_a = step_a(grad(x), s_a, x)
            u_b, s_b = step_b(grad(x), s_b, x)
            assert u_a.dtype == jnp.complex128
            np.testing.assert_allclose(u_a, u_b, rtol=1e-12, atol=1e-15, err_msg=name)
        mine = run(ours(), grad, x0, 300)
        assert float(loss(mine[-1])) <= 1.01 * float(loss(path[-1])) + 1e-12, name


def test_complex_adam_reaches_what_optax_reaches():
    loss, grad, x0 = complex_least_squares(jnp.complex64)
    ours, theirs = run(jn.adam(0.05), grad, x0, 2000), run(optax.adam(0.05), grad, x0, 2000)
    assert float(loss(theirs[-1])) < 1e-6 * float(loss(x0))
    assert float(loss(ours[-1])) < 1e-6 * float(loss(x0))


def test_complex_second_moments_are_real():
    x = jnp.ones(3, jnp.complex64)
    for tx in (jn.adam(0.1), jn.rmsprop(0.1), jn.adagrad(0.1), jn.amsgrad(0.1), jn.adamax(0.1)):
        state = tx.init(x)
        u, state = jax.jit(tx.update)(jnp.full(3, 1 + 2j, jnp.complex64), state, x)
        assert u.dtype == jnp.complex64
        moments = [s for s in jax.tree.leaves(state) if s.ndim]
        kinds = {leaf.dtype for leaf in moments}
        assert jnp.dtype("float32") in kinds, kinds  # nu (and nu_max) hold |g|^2: real
        assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in moments)


def test_global_norm_of_a_complex_tree_is_real():
    g = {"a": jnp.array([3j]), "b": jnp.array([4.0])}
    assert float(jn.global_norm(g)) == pytest.approx(5.0)
    clipped, _ = jn.clip_by_global_norm(1.0).update(g, ())
    np.testing.assert_allclose(clipped["a"], [0.6j], rtol=1e-6)


# ------------------------------------------------------------------- inject_hyperparams
INJECTED = {
    **{name: (factory, {"learning_rate": 0.1}) for name, factory in jn.OPTIMIZERS.items()},
    "sgd_momentum": (jn.sgd, {"learning_rate": 0.1, "momentum": 0.9}),
    "rmsprop_momentum": (jn.rmsprop, {"learning_rate": 0.1, "momentum": 0.9}),
    "nadam_torch": (jn.nadam, {"learning_rate": 0.1, "convention": "pytorch"}),
    "adagrad_torch": (jn.adagrad, {"learning_rate": 0.1, "convention": "pytorch"}),
    "adam_then_sgd": (
        jn.adam_then_sgd,
        {"learning_rate": 0.1, "sgd_learning_rate": 0.01, "switch_step": 2},
    ),
}
PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.zeros(3)}


@pytest.mark.parametrize("name", sorted(INJECTED))
@pytest.mark.parametrize("x64", [True, False])
def test_inject_hyperparams_under_jit_equals_the_plain_optimizer(name, x64):
    """States and updates equal: exactly in float64; in float32 up to how a hyperparameter is
    held (``1 - b2`` rounds once as a Python float, twice as a float32 array)."""
    factory, kwargs = INJECTED[name]
    rtol, atol = (1e-12, 1e-15) if x64 else (1e-4, 1e-7)
    close = lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)  # noqa: E731
    with jax.enable_x64(x64):
        params = jax.tree.map(lambda p: p.astype(jnp.float64 if x64 else jnp.float32), PARAMS)
        static = jn.optimizers.STATIC_ARGS.get(name, ())
        wrapped = optax.inject_hyperparams(factory, static_args=static)(**kwargs)
        plain = factory(**kwargs)
        w_state, p_state = jax.jit(wrapped.init)(params), plain.init(params)
        w_step, p_step = jax.jit(wrapped.update), jax.jit(plain.update)
        assert jax.tree.structure(w_state.inner_state) == jax.tree.structure(p_state)
        for k in range(4):
            g = jax.tree.map(lambda p: jnp.cos(3.0 * p + k), params)
            wu, w_state = w_step(g, w_state, params)
            pu, p_state = p_step(g, p_state, params)
            jax.tree.map(close, wu, pu)
            jax.tree.map(close, w_state.inner_state, p_state)


def test_an_injected_momentum_can_change_while_running():
    tx = optax.inject_hyperparams(jn.sgd)(learning_rate=1.0, momentum=0.5)
    state, step = jax.jit(tx.init)(jnp.zeros(1)), jax.jit(tx.update)
    _, state = step(jnp.ones(1), state)
    state.hyperparams["momentum"] = jnp.asarray(0.0)
    u, _ = step(jnp.ones(1), state)
    assert float(u[0]) == -1.0  # the buffer is no longer carried


# ----------------------------------------------------------------- optax's dtype keywords
def test_mu_dtype_is_the_first_moments_dtype_only():
    p = jnp.ones(4)
    for factory in (jn.adam, jn.adamw, jn.nadam, jn.amsgrad, jn.adamax):
        state = factory(0.1, mu_dtype=jnp.bfloat16).init(p)
        assert jn_state(state, "FirstMomentState").mu.dtype == jnp.bfloat16, factory.__name__
        assert jn_state(state, "SecondMomentState").nu.dtype == jnp.float32, factory.__name__


def test_mu_dtype_equals_optax_up_to_bfloat16_rounding():
    """optax multiplies the stored bfloat16 moment by b1 in bfloat16; we cast it back to the
    gradient's type first, so our updates stay at least as close to the float32 run."""
    ours, theirs = jn.adam(0.1, mu_dtype=jnp.bfloat16), optax.adam(0.1, mu_dtype=jnp.bfloat16)
    full = jn.adam(0.1)
    p = jnp.linspace(-1.0, 1.0, 8)
    s1, s2, s3 = ours.init(p), theirs.init(p), full.init(p)
    for k in range(5):
        g = jnp.sin(p * (k + 1))
        u1, s1 = ours.update(g, s1, p)
        u2, s2 = theirs.update(g, s2, p)
        u3, s3 = full.update(g, s3, p)
        np.testing.assert_allclose(u1, u2, rtol=1e-2)
        assert float(jnp.max(jnp.abs(u1 - u3))) <= float(jnp.max(jnp.abs(u2 - u3))) + 1e-7
        assert jn_state(s1, "FirstMomentState").mu.dtype == s2[0].mu.dtype == jnp.bfloat16
        assert jn_state(s1, "SecondMomentState").nu.dtype == s2[0].nu.dtype == jnp.float32


def test_moment_dtype_still_stores_both_and_mu_dtype_overrides_the_first():
    state = jn.adam(0.1, moment_dtype=jnp.bfloat16, mu_dtype=jnp.float32).init(jnp.ones(2))
    assert jn_state(state, "FirstMomentState").mu.dtype == jnp.float32
    assert jn_state(state, "SecondMomentState").nu.dtype == jnp.bfloat16


def test_accumulator_dtype_is_sgds_momentum_trace():
    ours = jn.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)
    theirs = optax.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)
    full = jn.sgd(0.1, momentum=0.9)
    p = jnp.linspace(-1.0, 1.0, 8)
    s1, s2, s3 = ours.init(p), theirs.init(p), full.init(p)
    assert jn_state(s1, "TraceState").trace.dtype == jnp.bfloat16
    for k in range(5):
        g = jnp.sin(p * (k + 1))
        u1, s1 = ours.update(g, s1, p)
        u2, s2 = theirs.update(g, s2, p)
        u3, s3 = full.update(g, s3, p)
        assert u1.dtype == u2.dtype == jnp.float32
        # optax rounds decay * v to bfloat16, we add in float32: equal to bfloat16's precision
        np.testing.assert_allclose(u1, u2, atol=2e-2 * float(jnp.max(jnp.abs(u3))))
        assert float(jnp.max(jnp.abs(u1 - u3))) <= float(jnp.max(jnp.abs(u2 - u3))) + 1e-7
    assert jn_state(s1, "TraceState").trace.dtype == s2[0].trace.dtype == jnp.bfloat16


def test_a_bad_dtype_is_refused_by_name():
    with pytest.raises(ValueError, match="`mu_dtype` must be a floating-point dtype"):
        jn.adam(0.1, mu_dtype=jnp.int32)
    with pytest.raises(TypeError, match="`accumulator_dtype` must be a dtype"):
        jn.sgd(0.1, 0.9, accumulator_dtype="fast")


def jn_state(state, cls_name):
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda s: type(s).__name__ == cls_name)
        if type(s).__name__ == cls_name
    ]
    return found[0]


# ------------------------------------------------------------- a sealed moment stream
FOREIGN = {
    "optax.clip": lambda: optax.clip(1.0),
    "optax.clip_by_global_norm": lambda: optax.clip_by_global_norm(1.0),
    "optax.trace (stateful)": lambda: optax.trace(0.9),
    "optax.scale_by_adam (stateful)": lambda: optax.scale_by_adam(),
}


@pytest.mark.parametrize("name", sorted(FOREIGN))
@pytest.mark.parametrize("jit", [False, True])
def test_a_foreign_link_inside_a_moment_run_fails_clearly(name, jit):
    tx = jn.chain(jn.first_moment(0.9), FOREIGN[name](), jn.second_moment(), jn.ratio())
    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    update = jax.jit(tx.update) if jit else tx.update
    with pytest.raises(TypeError, match=r"transforms\[1\] .*inside a moment run") as info:
        update(params, tx.init(params), params)
    assert "jn.ratio" in str(info.value)


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_inside_optax_chain_too(name):
    tx = optax.chain(jn.first_moment(0.9), FOREIGN[name](), jn.second_moment(), jn.ratio())
    with pytest.raises(TypeError, match="inside a moment run"):
        tx.update(jnp.ones(3), tx.init(jnp.ones(3)))


def test_the_stream_is_no_array_and_no_tuple():
    m, _ = jn.first_moment(0.9).update(jnp.ones(2), jn.first_moment(0.9).init(jnp.ones(2)))
    for misuse in (lambda: jnp.asarray(m), lambda: jnp.ones(2) + m, lambda: jax.tree.leaves(m)):
        with pytest.raises(TypeError, match="inside a moment run"):
            misuse()


def test_optax_links_around_a_run_still_mix():
    tx = jn.chain(
        optax.clip(1.0),
        jn.first_moment(0.9),
        jn.second_moment(),
        jn.bias_correction(0.9, 0.999),
        jn.ratio(),
        optax.scale(-0.1),
    )
    u, _ = jax.jit(tx.update)(jnp.full(2, 5.0), tx.init(jnp.ones(2)))
    np.testing.assert_allclose(u, -0.1, rtol=1e-4)
