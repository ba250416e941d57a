"""The data-set-wide HVP with its batches sharded over two (forced host) devices equals the
one-device product: a subprocess, since the device count is fixed when JAX starts."""

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = r"""
import json
import jax, jax.numpy as jnp, numpy as np
from jaxopt_notes import hessian
from jaxopt_notes.hessian import _core as core

kx, kw = jax.random.split(jax.random.PRNGKey(0))
x = jax.random.normal(kx, (40, 4))
y = jnp.sin(x @ jnp.arange(1.0, 5.0))
params = {"w1": 0.7 * jax.random.normal(kw, (4, 3)), "w2": jnp.ones(3)}

def batch_loss(p, batch):
    xb, yb = batch
    return 0.5 * jnp.mean((jnp.tanh(xb @ p["w1"]) @ p["w2"] - yb) ** 2)

flat_v = jnp.cos(jnp.arange(15.0))
out = {"devices": jax.device_count()}
for shard in (True, False):
    loss = hessian.over_dataset(batch_loss, (x, y), batch_size=8, shard=shard)
    out[f"shards_{shard}"] = len(loss.stacked[0].sharding.device_set)
    spec, data = core.problem(loss, params, None)
    for loop in ("host", "device"):
        hv = core.Operator(spec, params, data, loop)(flat_v[None])[0]
        out[f"{shard}_{loop}"] = np.asarray(hv).tolist()
print(json.dumps(out))
"""


def test_dataset_hvp_sharded_over_two_devices_equals_one_device():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2 and out["shards_True"] == 2 and out["shards_False"] == 1
    one = out["False_host"]
    for name in ("True_host", "True_device", "False_device"):
        np.testing.assert_allclose(out[name], one, rtol=1e-5, atol=1e-5 * max(map(abs, one)))
