"""Prints the table of docs/conventions.md: 3 steps at lr 0.1 in float64, starting from [1, 1]."""

import jax

jax.config.update("jax_enable_x64", True)  # a script, not the library: x64 for exact tables

import jax.numpy as jnp  # noqa: E402

import jaxopt_notes as jn  # noqa: E402

GRADS = [jnp.array([1.0, 1e-3]), jnp.array([-0.5, 2e-3]), jnp.array([0.25, -1e-3])]
OPTIMIZERS = {"sgd": {"momentum": 0.9, "nesterov": True}}
NAMES = ("sgd", "adagrad", "rmsprop", "adam", "adamw", "amsgrad", "nadam", "adamax")


def final_params(name: str, convention: str) -> jax.Array:
    tx = getattr(jn, name)(0.1, convention=convention, **OPTIMIZERS.get(name, {}))
    params = jnp.array([1.0, 1.0])
    state = tx.init(params)
    for g in GRADS:
        updates, state = tx.update(g, state, params)
        params = jn.apply_updates(params, updates)
    return params


if __name__ == "__main__":
    for name in NAMES:
        a, b = final_params(name, "optax"), final_params(name, "pytorch")
        gap = float(jnp.max(jnp.abs(a - b)))
        print(f"| `{name}` | {a[0]:.6f}, {a[1]:.6f} | {b[0]:.6f}, {b[1]:.6f} | {gap:.2e} |")
