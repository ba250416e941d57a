"""Bad hyperparameters are refused when a transform is built, with a sentence that names the
argument, the rule and the value; mismatched trees show both structures."""

from __future__ import annotations

import inspect
import math

import jax
import jax.numpy as jnp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxopt_notes as jn

# (factory, argument under test, valid keyword arguments for the rest)
BETAS = [
    (jn.adam, "b1", {"learning_rate": 0.1}),
    (jn.adam, "b2", {"learning_rate": 0.1}),
    (jn.amsgrad, "b1", {"learning_rate": 0.1}),
    (jn.nadam, "b2", {"learning_rate": 0.1}),
    (jn.adamax, "b1", {"learning_rate": 0.1}),
    (jn.adamw, "b2", {"learning_rate": 0.1}),
    (jn.rmsprop, "decay", {"learning_rate": 0.1}),
    (jn.sgd, "momentum", {"learning_rate": 0.1}),
    (jn.trace, "decay", {}),
    (jn.first_moment, "b1", {}),
    (jn.second_moment, "b2", {}),
    (jn.scale_by_rms, "decay", {}),
]
NON_NEGATIVE = [
    (jn.sgd, "learning_rate", {}),
    (jn.adam, "learning_rate", {}),
    (jn.adam, "eps", {"learning_rate": 0.1}),
    (jn.adagrad, "eps", {"learning_rate": 0.1}),
    (jn.rmsprop, "eps", {"learning_rate": 0.1}),
    (jn.adamw, "weight_decay", {"learning_rate": 0.1}),
    (jn.scale_by_learning_rate, "learning_rate", {}),
    (jn.clip, "max_delta", {}),
    (jn.add_decayed_weights, "weight_decay", {}),
    (jn.scale_by_sum_of_squares, "eps", {}),
    (jn.ratio, "eps", {}),
]
ALL = BETAS + NON_NEGATIVE + [(jn.clip_by_global_norm, "max_norm", {})]


def assert_named(error: Exception, argument: str) -> None:
    message = str(error)
    assert f"`{argument}`" in message and "must" in message and "got" in message, message


@settings(max_examples=25, deadline=None)
@given(
    case=st.sampled_from(BETAS),
    value=st.one_of(st.floats(max_value=-1e-12), st.floats(min_value=1.0)),
)
def test_betas_outside_zero_one_are_refused(case, value):
    factory, arg, rest = case
    with pytest.raises(ValueError) as info:
        factory(**rest, **{arg: value})
    assert_named(info.value, arg)


@settings(max_examples=25, deadline=None)
@given(case=st.sampled_from(NON_NEGATIVE), value=st.floats(max_value=-1e-12))
def test_negative_values_are_refused(case, value):
    factory, arg, rest = case
    with pytest.raises(ValueError) as info:
        factory(**rest, **{arg: value})
    assert_named(info.value, arg)


@settings(max_examples=30, deadline=None)
@given(case=st.sampled_from(ALL), value=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_non_finite_values_are_refused(case, value):
    factory, arg, rest = case
    with pytest.raises(ValueError) as info:
        factory(**rest, **{arg: value})
    assert_named(info.value, arg)
    assert "finite" in str(info.value)


@settings(max_examples=30, deadline=None)
@given(
    case=st.sampled_from(ALL),
    value=st.one_of(
        st.text(max_size=3),
        st.booleans(),
        st.lists(st.floats(), max_size=2),
        st.just(None),
        st.just(jnp.ones(2)),
    ),
)
def test_wrong_types_are_refused(case, value):
    factory, arg, rest = case
    if value is None and inspect.signature(factory).parameters[arg].default is None:
        return  # None means "this convention's default" there
    with pytest.raises(TypeError) as info:
        factory(**rest, **{arg: value})
    assert_named(info.value, arg)


def test_the_message_reads_as_a_sentence():
    with pytest.raises(ValueError, match=r"^`b1` must be in \[0, 1\), got 1.5$"):
        jn.adam(0.1, b1=1.5)
    with pytest.raises(ValueError, match=r"^`max_norm` must be > 0, got 0.0$"):
        jn.clip_by_global_norm(0.0)
    with pytest.raises(ValueError, match="`convention` must be one of"):
        jn.adam(0.1, convention="keras")
    with pytest.raises(ValueError, match=r"got 'pytroch'; did you mean 'pytorch'\?$"):
        jn.adam(0.1, convention="pytroch")
    with pytest.raises(ValueError, match="`nesterov=True` needs `momentum` > 0"):
        jn.sgd(0.1, nesterov=True)
    with pytest.raises(TypeError, match="`transforms\\[1\\]` must be a gradient transformation"):
        jn.chain(jn.adam(0.1), "sgd")


def test_a_schedule_is_a_valid_learning_rate_everywhere():
    schedule = jn.schedules.constant(0.1)
    for name, factory in jn.OPTIMIZERS.items():
        tx = factory(learning_rate=schedule)
        u, _ = tx.update(jnp.ones(2), tx.init(jnp.ones(2)), jnp.ones(2))
        assert u.shape == (2,), name


def test_mismatched_trees_show_both_structures():
    tx = jn.adamw(0.1)
    params = {"w": jnp.ones(2), "b": jnp.ones(1)}
    with pytest.raises(ValueError) as info:
        tx.update({"w": jnp.ones(2)}, tx.init(params), params)
    message = str(info.value)
    assert "updates:" in message and "params:" in message and "'b'" in message
    with pytest.raises(ValueError, match="same tree structure"):
        jn.apply_updates(params, [jnp.ones(2), jnp.ones(1)])


# ------------------------------------------------------------ apply_updates and states
def test_apply_updates_refuses_a_shape_change_naming_the_leaf():
    with pytest.raises(ValueError) as info:
        jn.apply_updates({"w": jnp.ones(3)}, {"w": jnp.ones((2, 3))})
    message = str(info.value)
    assert "['w']" in message and "(3,)" in message and "(2, 3)" in message, message
    with pytest.raises(ValueError, match="shape"):
        jn.apply_updates({"w": jnp.ones(3)}, {"w": jnp.ones(())})  # no silent broadcast either


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.uint8, jnp.bool_])
def test_apply_updates_refuses_integer_and_bool_params(dtype):
    params = {"w": jnp.ones(3, jnp.float32), "steps": jnp.ones(3, dtype)}
    with pytest.raises(TypeError, match=r"\['steps'\].*(int|uint|bool)") as info:
        jn.apply_updates(params, jax.tree.map(lambda p: jnp.full(3, 0.3), params))
    assert "floating" in str(info.value)


def test_apply_updates_refuses_a_complex_update_of_a_real_param():
    with pytest.raises(TypeError, match=r"\['w'\].*complex"):
        jn.apply_updates({"w": jnp.ones(2)}, {"w": jnp.ones(2, jnp.complex64)})


def test_python_float_leaves_work():
    tx = jn.adam(0.1)
    params = {"w": 1.0, "b": jnp.zeros(2)}
    state = tx.init(params)
    for _ in range(3):
        updates, state = tx.update({"w": 0.5, "b": jnp.ones(2)}, state, params)
        params = jn.apply_updates(params, updates)
    assert float(params["w"]) == pytest.approx(0.7, rel=1e-5)
    assert params["w"].dtype == jnp.float32


def test_a_state_from_another_optimizer_is_refused():
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="`state` must be the state this chain's `init` makes"):
        jn.adam(0.1).update(params, jn.sgd(0.1, 0.9).init(params), params)
    with pytest.raises(ValueError, match="made by another optimizer"):
        jn.amsgrad(0.1).update(params, jn.adamw(0.1).init(params), params)


def test_augmentations_larger_than_the_image_allows_are_refused():
    from jaxopt_notes.train import config as config_lib

    with pytest.raises(ValueError, match=r"`shift` must be at most 13 pixels for mnist5k's 28x28"):
        config_lib.TrainConfig(shift=50)
    with pytest.raises(ValueError, match=r"`cutout` must be at most 4 pixels for digits's 8x8"):
        config_lib.TrainConfig(dataset="digits", cutout=5)
    config_lib.TrainConfig(dataset="digits", shift=3, cutout=4)  # at the bounds


# ------------------------------------------------------------ shapes the chains refuse
def _params(bias: int) -> dict:
    return {"w": jnp.ones((4, 3)), "b": jnp.ones(bias)}


@pytest.mark.parametrize("name", sorted(jn.OPTIMIZERS))
def test_every_optimizer_refuses_a_gradient_of_another_shape(name):
    """A (1,) gradient for a (3,) bias was broadcast onto it without a word."""
    tx = jn.OPTIMIZERS[name](learning_rate=0.1)
    params = _params(3)
    with pytest.raises(ValueError) as info:
        tx.update(_params(1), tx.init(params), params)
    message = str(info.value)
    assert "['b']" in message and "(3,)" in message and "(1,)" in message, message


@pytest.mark.parametrize(
    "name", ["adam", "momentum", "rmsprop", "lion", "amsgrad", "lamb", "muon", "adafactor"]
)
def test_a_state_made_for_another_parameter_tree_is_refused(name):
    tx = jn.OPTIMIZERS[name](learning_rate=0.1)
    params = _params(3)
    for state, grads, with_params in [
        (tx.init(_params(1)), params, True),  # the state of another tree
        (tx.init(params), _params(1), False),  # no params given: the gradient against the state
    ]:
        with pytest.raises(ValueError) as info:
            tx.update(grads, state, params if with_params else None)
        message = str(info.value)
        assert "['b']" in message and "(3,)" in message and "(1,)" in message, message


def test_the_shape_checks_hold_under_jit():
    tx = jn.adam(0.1)
    params = _params(3)
    step = jax.jit(tx.update)
    with pytest.raises(ValueError, match=r"\['b'\]"):
        step(_params(1), tx.init(params), params)
    u, _ = step(params, tx.init(params), params)  # the right shapes still trace and run
    assert u["b"].shape == (3,)
