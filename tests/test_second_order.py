"""Newton, saddle-free Newton, saddle escape and L-BFGS as optax transformations."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxopt_notes import second_order


def saddle(p):
    return 0.5 * p["x"] ** 2 - 0.5 * p["y"] ** 2


def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def step(opt, loss_fn, params, state):
    grads = jax.grad(loss_fn)(params)
    updates, state = opt.update(grads, state, params, loss_fn=loss_fn)
    return optax.apply_updates(params, updates), state


def test_newton_jumps_onto_the_saddle_and_saddle_free_newton_moves_away():
    start = {"x": jnp.array(1.0), "y": jnp.array(0.1)}
    newton = second_order.newton(learning_rate=1.0)
    at_newton, _ = step(newton, saddle, start, newton.init(start))
    np.testing.assert_allclose([at_newton["x"], at_newton["y"]], [0.0, 0.0], atol=1e-7)
    sfn = second_order.saddle_free_newton(learning_rate=1.0, damping=0.0)
    at_sfn, _ = step(sfn, saddle, start, sfn.init(start))
    np.testing.assert_allclose([at_sfn["x"], at_sfn["y"]], [0.0, 0.2], atol=1e-7)
    assert saddle(at_sfn) < saddle(start) < saddle(at_newton) + 1  # downhill, away from (0, 0)


def test_damped_newton_solves_a_quadratic_exactly_and_damping_shortens():
    a = jnp.array([[3.0, 1.0], [1.0, 2.0]])
    loss = lambda p: 0.5 * p @ a @ p - p @ jnp.ones(2)  # noqa: E731
    opt = second_order.newton()
    params, state = step(opt, loss, jnp.zeros(2), opt.init(jnp.zeros(2)))
    np.testing.assert_allclose(params, jnp.linalg.solve(a, jnp.ones(2)), rtol=1e-6)
    assert int(state.count) == 1
    damped = second_order.newton(damping=10.0)
    short, _ = step(damped, loss, jnp.zeros(2), damped.init(jnp.zeros(2)))
    np.testing.assert_allclose(short, jnp.linalg.solve(a + 10 * jnp.eye(2), jnp.ones(2)))


def test_escape_saddles_leaves_a_stalled_saddle_under_jit():
    loss = lambda p: p[0] ** 2 - p[1] ** 2 + p[1] ** 4  # noqa: E731  (minima at y = +-1/sqrt 2)
    opt = optax.chain(optax.sgd(0.1), second_order.escape_saddles(step_size=0.1))
    params, state = jnp.zeros(2), opt.init(jnp.zeros(2))
    run = jax.jit(lambda p, s: step(opt, loss, p, s))
    for _ in range(60):
        params, state = run(params, state)
    np.testing.assert_allclose(jnp.abs(params), [0.0, 2**-0.5], atol=1e-4)
    assert int(state[1].escapes) == 1  # one escape step, then plain descent
    plain = optax.sgd(0.1)
    stuck, _ = step(plain, loss, jnp.zeros(2), plain.init(jnp.zeros(2)))
    assert not np.any(stuck)  # descent alone never leaves the saddle


def test_lbfgs_converges_on_rosenbrock():
    with jax.enable_x64(True):
        opt = second_order.lbfgs(memory_size=5)
        params = jnp.array([-1.2, 1.0])
        state = opt.init(params)
        run = jax.jit(lambda p, s: step(opt, rosenbrock, p, s))
        for _ in range(60):
            params, state = run(params, state)
        np.testing.assert_allclose(params, [1.0, 1.0], atol=1e-8)


def test_lbfgs_steps_meet_the_wolfe_conditions_and_solve_a_quadratic():
    with jax.enable_x64(True):
        a = jnp.array([[30.0, 1.0], [1.0, 2.0]])
        loss = lambda p: 0.5 * p @ a @ p  # noqa: E731
        opt = second_order.lbfgs(memory_size=3)
        params, state = jnp.array([1.0, -2.0]), opt.init(jnp.array([1.0, -2.0]))
        run = jax.jit(lambda p, s: step(opt, loss, p, s))
        for i in range(12):
            g = jax.grad(loss)(params)
            new, state = run(params, state)
            d = (new - params) / state.step_size
            assert loss(new) <= loss(params) + 1e-4 * (new - params) @ g  # Armijo
            assert jax.grad(loss)(new) @ d >= 0.9 * g @ d - 1e-12  # curvature
            if i == 0:  # no pairs yet: a gradient step
                np.testing.assert_allclose(new - params, -state.step_size * g)
            params = new
        assert float(jnp.linalg.norm(params)) < 1e-10


@pytest.mark.parametrize(
    "factory, kwargs, error, message",
    [
        (second_order.newton, {"damping": -1.0}, ValueError, "`damping` must be >= 0, got -1.0"),
        (second_order.newton, {"learning_rate": 0.0}, ValueError, "`learning_rate` must be > 0"),
        (second_order.saddle_free_newton, {"damping": -1.0}, ValueError, "`damping` must be >= 0"),
        (second_order.lbfgs, {"memory_size": 0}, ValueError, "`memory_size` must be >= 1, got 0"),
        (second_order.lbfgs, {"c1": 1.5}, ValueError, r"`c1` must be in \(0, 1\), got 1.5"),
        (second_order.lbfgs, {"c2": 1e-5}, ValueError, r"`c2` must be in \(0.0001, 1\), got 1e-05"),
        (second_order.escape_saddles, {"step_size": -1.0}, ValueError, "`step_size` must be > 0"),
        (second_order.lbfgs, {"memory_size": 2.5}, TypeError, "`memory_size` must be an integer"),
    ],
)
def test_bad_hyperparameters_raise_in_the_factory(factory, kwargs, error, message):
    with pytest.raises(error, match=message):
        factory(**kwargs)


def test_missing_loss_fn_is_named():
    opt = second_order.newton()
    with pytest.raises(ValueError, match="`newton` needs `params` and `loss_fn`"):
        opt.update(jnp.ones(2), opt.init(jnp.ones(2)), jnp.ones(2))
