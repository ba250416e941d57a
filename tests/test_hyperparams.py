"""Readable hyperparameters (``jn.hyperparams(tx)``) and the current learning rate
(``jn.current_learning_rate(state)``), inside optax's wrappers and flax's optimizer too; and
``fused`` built from the chains' resolved values."""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_notes as jn
from jaxopt_notes import fused


@pytest.mark.parametrize("name", sorted(jn.OPTIMIZERS))
def test_every_optimizer_says_what_it_was_built_with(name):
    factory = jn.OPTIMIZERS[name]
    tx = factory(learning_rate=0.1)
    hp = jn.hyperparams(tx)
    wanted = set(inspect.signature(factory).parameters)
    assert wanted <= set(hp), (name, wanted - set(hp))
    assert hp["learning_rate"] == 0.1
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    init, update = tx  # still the pair optax unpacks
    assert (init, update) == (tx.init, tx.update)


@pytest.mark.parametrize(
    ("factory", "key", "optax_value", "pytorch_value"),
    [
        (jn.adagrad, "eps", 1e-7, 1e-10),
        (jn.adagrad, "initial_accumulator_value", 0.1, 0.0),
        (jn.rmsprop, "decay", 0.9, 0.99),
        (jn.adamw, "weight_decay", 1e-4, 1e-2),
        (jn.nadam, "momentum_decay", None, 4e-3),
        (jn.nadamw, "weight_decay", 1e-4, 1e-2),
    ],
)
def test_convention_defaults_are_resolved(factory, key, optax_value, pytorch_value):
    assert jn.hyperparams(factory(0.1))[key] == optax_value
    assert jn.hyperparams(factory(0.1, convention="pytorch"))[key] == pytorch_value
    assert jn.hyperparams(factory(0.1, **{key: 0.5}, convention="pytorch"))[key] == 0.5


def test_links_say_theirs_too_and_foreign_transforms_are_refused():
    assert jn.hyperparams(jn.trace(0.5))["decay"] == 0.5
    assert jn.hyperparams(jn.first_moment(0.8))["b1"] == 0.8
    assert jn.hyperparams(jn.trust_ratio(0.01))["trust_coefficient"] == 0.01
    clip, adam = jn.clip(1.0), jn.adam(0.1)
    links = jn.hyperparams(jn.chain(clip, adam))["transforms"]  # a chain names its links
    assert links == (clip, adam) and jn.hyperparams(links[1])["learning_rate"] == 0.1
    sched = jn.schedules.cosine_decay(0.1, decay_steps=10)
    assert jn.hyperparams(jn.adam(sched))["learning_rate"] is sched
    with pytest.raises(TypeError, match="`tx` must be a transform made by a jaxopt_notes"):
        jn.hyperparams(optax.adam(0.1))
    with pytest.raises(TypeError, match="must be a transform made by a jaxopt_notes"):
        jn.hyperparams(optax.chain(jn.adam(0.1)))  # a foreign chain says nothing


def test_the_signature_is_kept_for_inject_hyperparams():
    assert inspect.signature(jn.adam) == inspect.signature(jn.adam.__wrapped__)
    tx = optax.inject_hyperparams(jn.rmsprop)(learning_rate=0.1, convention="pytorch")
    state = jax.jit(tx.init)(jnp.zeros(2))
    assert set(state.hyperparams) >= {"learning_rate", "eps"}


def _lr_after(tx, steps, params=None):
    params = jnp.zeros(2) if params is None else params
    state, step = tx.init(params), jax.jit(tx.update)
    for _ in range(steps):
        _, state = step(jnp.ones(2), state, params)
    return state


@pytest.mark.parametrize("steps", [0, 1, 5])
def test_current_learning_rate_under_a_schedule(steps):
    sched = jn.schedules.exponential_decay(0.1, decay_rate=0.5)
    rate_of_last_step = sched(max(steps - 1, 0))
    for tx in (jn.adam(sched), jn.sgd(sched, 0.9), jn.lion(sched), jn.lars(sched)):
        state = _lr_after(tx, steps)
        np.testing.assert_allclose(jn.current_learning_rate(state), rate_of_last_step, rtol=1e-6)


def test_current_learning_rate_of_a_constant_and_through_wrappers():
    assert float(jn.current_learning_rate(_lr_after(jn.adam(0.03), 2))) == pytest.approx(0.03)
    sched = jn.schedules.step_decay(1.0, gamma=0.1, every=2)
    wrapped = [
        jn.skip_nonfinite(jn.adam(sched)),
        optax.MultiSteps(jn.adam(sched), every_k_schedule=1),
        optax.chain(optax.clip(1.0), jn.adam(sched)),
        optax.inject_hyperparams(jn.adam)(learning_rate=sched),
    ]
    for tx in wrapped:
        state = _lr_after(tx, 3)  # the third step (count 2) used 0.1
        assert float(jn.current_learning_rate(state)) == pytest.approx(0.1), tx
    with pytest.raises(ValueError, match="must hold one learning rate .* got 0"):
        jn.current_learning_rate(optax.adam(0.1).init(jnp.zeros(2)))
    switched = jn.adam_then_sgd(0.1, 0.01, switch_step=3)
    with pytest.raises(ValueError, match="got 2; read the state of each part"):
        jn.current_learning_rate(switched.init(jnp.zeros(2)))


def test_injected_learning_rate_takes_effect_at_once_and_is_read_back():
    tx = optax.inject_hyperparams(jn.adam)(learning_rate=0.1)
    params = jnp.zeros(2)
    state = tx.init(params)
    u, state = tx.update(jnp.ones(2), state, params)
    state.hyperparams["learning_rate"] = jnp.asarray(0.5)
    u, state = tx.update(jnp.ones(2), state, params)
    np.testing.assert_allclose(u, -0.5, rtol=1e-5)
    assert float(jn.current_learning_rate(state)) == pytest.approx(0.5)
    assert float(jn.current_learning_rate(state.inner_state)) == pytest.approx(0.5)


def test_readable_inside_nnx_optimizer():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    tx = jn.adam(jn.schedules.step_decay(0.1, gamma=0.5, every=1))
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    grads = jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param))
    for _ in range(3):
        opt.update(model, grads)
    assert float(jn.current_learning_rate(opt.opt_state)) == pytest.approx(0.025)
    assert jn.hyperparams(opt.tx)["b1"] == 0.9


# --------------------------------------------------------------------------------- fused
def test_fused_sgd_defaults_are_jn_sgds():
    assert inspect.signature(fused.sgd).parameters["momentum"].default is None
    params, g = {"w": jnp.ones(3)}, {"w": jnp.full(3, 0.5)}
    opt = fused.sgd(0.1)
    p, _ = opt.step(params, opt.init(params), g)
    np.testing.assert_allclose(p["w"], 1 - 0.1 * 0.5)  # plain SGD, as jn.sgd(0.1)
    assert jax.tree.structure(opt.init(params)) == jax.tree.structure(jn.sgd(0.1).init(params))
    heavy = fused.OPTIMIZERS["momentum"](0.1)  # the named table keeps momentum 0.9
    assert jn.hyperparams(heavy.tx)["momentum"] == 0.9
    p2, _ = heavy.step(params, heavy.init(params), g)
    np.testing.assert_allclose(p2["w"], 1 - 0.1 * 0.5, rtol=1e-6)  # v_1 = g_1


@pytest.mark.parametrize("convention", ["optax", "pytorch"])
def test_fused_reads_the_chains_resolved_defaults(convention):
    for fused_name, chain_name, key in [
        ("rmsprop", "rmsprop", "decay"),
        ("adagrad", "adagrad", "eps"),
        ("adamw", "adamw", "weight_decay"),
    ]:
        opt = fused.OPTIMIZERS[fused_name](0.1, convention=convention)
        chain = jn.OPTIMIZERS[chain_name](0.1, convention=convention)
        assert jn.hyperparams(opt.tx)[key] == jn.hyperparams(chain)[key]
