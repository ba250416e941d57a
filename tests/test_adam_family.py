"""The Adam family's shared links: the aliases are the chains written out, state and numbers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_notes as jn
from jaxopt_notes.adam_family import adam_direction, adam_moments


def _run(tx, steps=5):
    params = {"w": jnp.linspace(-1.0, 1.0, 6), "b": jnp.ones(2)}
    state = tx.init(params)
    for k in range(steps):
        grads = jax.tree.map(lambda p: jnp.sin(p * (k + 1.0)) + 0.1 * k, params)
        updates, state = tx.update(grads, state, params)
        params = jn.apply_updates(params, updates)
    return params, state


WRITTEN_OUT = {  # alias -> the same chain, link by link
    "adam": (
        lambda: jn.adam(0.1, eps_root=1e-3),
        lambda: jn.chain(
            jn.first_moment(0.9),
            jn.second_moment(0.999),
            jn.bias_correction(0.9, 0.999),
            jn.ratio(1e-8, 1e-3),
            jn.scale_by_learning_rate(0.1),
        ),
    ),
    "nadamw": (
        lambda: jn.nadamw(0.1, weight_decay=0.1, convention="pytorch"),
        lambda: jn.chain(
            jn.first_moment(0.9),
            jn.second_moment(0.999),
            jn.bias_correction(0.9, 0.999, nesterov=True, momentum_decay=4e-3),
            jn.ratio(1e-8),
            jn.add_decayed_weights(0.1),
            jn.scale_by_learning_rate(0.1),
        ),
    ),
    "yogi": (
        lambda: jn.yogi(0.1),
        None,  # its first moment starts at 1e-6: compared by state layout only
    ),
}


@pytest.mark.parametrize("name", ["adam", "nadamw"])
def test_an_alias_is_its_chain_written_out(name):
    alias, written = WRITTEN_OUT[name]
    (p1, s1), (p2, s2) = _run(alias()), _run(written())
    assert jax.tree.structure(s1) == jax.tree.structure(s2)  # flat: one state per link
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), p1, p2)


def test_the_links_are_a_flat_list_in_the_chains_order():
    links = adam_direction(0.9, 0.999, 1e-8, mu_dtype=jnp.bfloat16)
    state = jn.chain(*links).init(jnp.zeros(3))
    names = [type(s).__name__ for s in state]
    assert names[:3] == ["FirstMomentState", "SecondMomentState", "BiasCorrectionState"]
    assert (
        len(links) == 4 and state[0].mu.dtype == jnp.bfloat16 and state[1].nu.dtype == jnp.float32
    )
    assert len(adam_moments(0.9, 0.999)) == 2
    assert len(jax.tree.structure(_run(WRITTEN_OUT["yogi"][0]())[1]).children()) == 5


def test_dtypes_with_given_moments_are_refused_by_name():
    with pytest.raises(
        ValueError, match="`mu_dtype` and `moment_dtype` must be None when `moments`"
    ):
        adam_direction(0.9, 0.999, 1e-8, moments=adam_moments(0.9, 0.999), mu_dtype=jnp.bfloat16)
    with pytest.raises(ValueError, match="`moment_dtype` must be a floating-point dtype"):
        adam_moments(0.9, 0.999, moment_dtype=jnp.int32)
