"""Every optimizer's state can be donated to a jitted step with the params, as training does:
no state field shares a buffer with another or with the params."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import jaxopt_notes as jn


@pytest.mark.parametrize("name", sorted(jn.OPTIMIZERS))
def test_params_and_state_can_be_donated_together(name):
    tx = jn.OPTIMIZERS[name](learning_rate=1e-2)
    params = {"w": jnp.linspace(0.5, 1.5, 12).reshape(3, 4), "b": jnp.ones(4)}
    state = tx.init(params)
    leaves = [x for x in jax.tree.leaves((params, state)) if isinstance(x, jax.Array)]
    pointers = [x.unsafe_buffer_pointer() for x in leaves]
    assert len(set(pointers)) == len(pointers), name

    @jax.jit
    def step(params, state, g):
        u, state = tx.update(g, state, params)
        return jn.apply_updates(params, u), state

    donated = jax.jit(step, donate_argnums=(0, 1))
    g = jax.tree.map(jnp.ones_like, params)
    params, state = donated(params, state, g)
    params, state = donated(params, state, g)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params))
