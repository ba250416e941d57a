"""``train.make_optimizer(cfg, steps_per_epoch, **values)``: values given as numbers make the
run of the replaced config; values given as arrays (what a search injects, tracers under
``jit``) make the same updates, the decay link kept at a decay of 0; unknown names and
out-of-range numbers are refused by name."""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxopt_notes.train import TrainConfig, from_dict, make_optimizer

PARAMS = {"w": jnp.linspace(-1.0, 1.0, 6), "b": jnp.ones(2)}


def updates(tx, steps=5):
    """``steps`` updates, each by one jitted call (as a training step makes them)."""
    state, out, update = tx.init(PARAMS), [], jax.jit(tx.update)
    for step in range(steps):
        grads = jax.tree.map(lambda p, s=step: jnp.sin(p * (s + 1)) + 0.1 * p, PARAMS)
        u, state = update(grads, state, PARAMS)
        out.append(u)
    return out


def assert_same(a, b, rtol=2e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=1e-9)


@pytest.mark.parametrize(
    ("changes", "values"),
    [
        ({"optimizer": "sgd", "momentum": 0.9}, {"learning_rate": 0.05, "momentum": 0.5}),
        ({"optimizer": "adam", "weight_decay_mode": "coupled"}, {"weight_decay": 0.01}),
        ({"optimizer": "adamw", "warmup_epochs": 0.5}, {"weight_decay": 0.1, "b1": 0.8}),
        ({"optimizer": "rmsprop"}, {"weight_decay": 0.02, "decay": 0.95}),
    ],
)
def test_values_as_numbers_and_as_traced_arrays_make_the_replaced_configs_run(changes, values):
    cfg = TrainConfig(schedule="cosine", epochs=3, **changes)
    run = make_optimizer(dataclasses.replace(cfg, **values), 4)
    assert_same(updates(make_optimizer(cfg, 4, **values)), updates(run))

    def injected(**arrays):
        return make_optimizer(cfg, 4, **arrays)

    kind = inspect.Parameter.KEYWORD_ONLY  # inject_hyperparams binds the arguments by name
    injected.__signature__ = inspect.Signature([inspect.Parameter(n, kind) for n in values])
    tx = optax.inject_hyperparams(injected)(**values)  # arrays, read under jit
    assert_same(updates(tx), updates(run))


def test_an_array_weight_decay_of_zero_keeps_its_link_and_changes_nothing():
    cfg = TrainConfig(optimizer="sgd", schedule="constant")
    plain = make_optimizer(cfg, 4)
    zero = make_optimizer(cfg, 4, weight_decay=jnp.asarray(0.0))
    assert len(jax.tree.leaves(zero.init(PARAMS))) > len(jax.tree.leaves(plain.init(PARAMS)))
    assert_same(updates(zero), updates(plain), rtol=0)
    # a number 0 is the config's own value: no link
    same = make_optimizer(cfg, 4, weight_decay=0.0)
    assert jax.tree.structure(same.init(PARAMS)) == jax.tree.structure(plain.init(PARAMS))


def test_values_are_refused_by_name():
    cfg = TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="`b1` is not a value make_optimizer sets .* 'sgd'.*0.9"):
        make_optimizer(cfg, 4, b1=0.9)
    with pytest.raises(ValueError, match="`learning_rate` must be a finite number in .* got -1"):
        make_optimizer(cfg, 4, learning_rate=-1.0)


def test_from_dict_leaves_the_callers_table_as_it_was():
    table = {"learning_rate": 1, "epochs": 2}
    assert from_dict(table).learning_rate == 1.0 and table == {"learning_rate": 1, "epochs": 2}
