"""State that shards, on 8 forced host devices (a subprocess: the device count is fixed when JAX
starts): every optimizer of ``jn.OPTIMIZERS`` under optax's sharding contract, ZeRO-1
(``jaxopt_notes.sharding.zero1``) equal to one device, and Muon on a sharded stack of matrices
with no collective in its compiled step."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, re
import jax, jax.numpy as jnp, numpy as np
import jaxopt_notes as jn
from jaxopt_notes import sharding
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

mesh = jax.make_mesh((8,), ("x",), axis_types=(AxisType.Explicit,))
kind = lambda tree: jax.tree.map(jax.typeof, tree)
out = {"devices": jax.device_count(), "contract": {}, "zero1": {}, "muon_hlo": {}}

# optax's sharding_test, for ours: state types after init / update, eager and jitted
with jax.set_mesh(mesh):
    params = {
        "w": jnp.zeros((2, 8, 4), jnp.float16, out_sharding=NamedSharding(mesh, P(None, "x"))),
        "m": jnp.ones((8, 16), jnp.float32, out_sharding=NamedSharding(mesh, P("x"))),
    }
    for name, make in jn.OPTIMIZERS.items():
        tx = make(learning_rate=1.0)
        try:
            s0, s1 = tx.init(params), jax.jit(tx.init)(params)
            _, s2 = tx.update(params, s0, params)
            _, s3 = jax.jit(tx.update)(params, s0, params)
            same = [kind(s0) == kind(s1), kind(s2) == kind(s3), kind(s0) == kind(s3)]
            out["contract"][name] = same
        except Exception as error:
            out["contract"][name] = repr(error)[:400]

# ZeRO-1: three steps on 8 devices, state split, against one device
rng = np.random.default_rng(0)
p0 = {"w": rng.normal(size=(16, 8)), "b": rng.normal(size=8), "c": rng.normal(size=3)}
p0 = jax.tree.map(lambda x: x.astype(np.float32), p0)
grads = [jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), p0) for _ in range(3)]

def run(tx, put):
    p = jax.tree.map(put, p0)
    state, step = tx.init(p), jax.jit(tx.update)
    for g in grads:
        u, state = step(jax.tree.map(put, g), state, p)
        p = jax.jit(jn.apply_updates)(p, u)
    return p, state

for name, make in jn.OPTIMIZERS.items():
    alone, _ = run(make(learning_rate=1e-2), jnp.asarray)
    with jax.set_mesh(mesh):
        replicate = lambda x: jax.device_put(x, NamedSharding(mesh, P()))
        spread, state = run(sharding.zero1(make(learning_rate=1e-2), mesh, "x"), replicate)
        held = sharding.state_bytes_per_device(state)
    full = sum(x.nbytes for x in jax.tree.leaves(state))
    err = max(
        float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))
        for a, b in zip(jax.tree.leaves(spread), jax.tree.leaves(alone))
    )
    specs = {str(jax.typeof(x).sharding.spec) for x in jax.tree.leaves(spread)}
    held = max(held.values())
    out["zero1"][name] = {"err": err, "param_specs": sorted(specs), "held": held, "full": full}

# Muon: a stack of 8 matrices split on the stack axis needs no collective; one matrix split
# on its rows must be gathered (the check can fail)
collective = re.compile(r"\b(all-reduce|all-gather|all-to-all|collective-permute|reduce-scatter)")
with jax.set_mesh(mesh):
    for stacked, shape in ((True, (8, 16, 32)), (False, (16, 32))):
        p = {"layers": jnp.ones(shape, out_sharding=NamedSharding(mesh, P("x")))}
        tx = jn.muon(0.02, stacked=stacked)
        hlo = jax.jit(tx.update).lower(p, tx.init(p), p).compile().as_text()
        out["muon_hlo"][str(stacked)] = sorted(set(collective.findall(hlo)))
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def report() -> dict:
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    return out


def test_every_optimizer_keeps_its_state_sharding_types(report):
    """After ``init`` (eager, jitted) and ``update`` (eager, jitted), the state's types
    (shape, dtype and sharding) are equal: ``optax``'s ``sharding_test``, for all of ours."""
    import jaxopt_notes as jn

    assert set(report["contract"]) == set(jn.OPTIMIZERS)
    broken = {k: v for k, v in report["contract"].items() if v != [True, True, True]}
    assert not broken, broken


def test_zero1_steps_equal_one_device_steps_with_the_state_split(report):
    for name, r in report["zero1"].items():
        assert r["err"] < 1e-6, (name, r["err"])  # float32 rounding of reordered sums
        assert not any("x" in spec for spec in r["param_specs"]), (name, r)  # replicated
        # a device holds its slice: at most a quarter of the state (the 3-vector's moments
        # and the scalars stay whole)
        assert r["held"] <= r["full"] / 4 or r["full"] < 64, (name, r)


def test_muon_on_a_sharded_stack_compiles_without_collectives(report):
    assert report["muon_hlo"]["True"] == []
    assert "all-gather" in report["muon_hlo"]["False"]  # one matrix split by rows: gathered
