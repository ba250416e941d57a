"""Lanczos top-1 vs power iteration on the 2,635-parameter tanh MLP (bench.hessian's `_mlp`
problem, 1,797 digits), each at the loosest tolerance of its ladder whose answer is within
1e-3 of the float64 reference; second call, new parameters, medians of interleaved repeats."""

import json, os, sys, time
import jax, numpy as np
from jaxopt_notes import hessian
from jaxopt_notes.bench import hessian as hb, machine

load_before = os.getloadavg()
loss_fn, params = hb.mlp_problem(1797, seed=1)
_, warm = hb.mlp_problem(1797, seed=0)
key = jax.random.PRNGKey(0)
ref = hb.reference_top(lambda dt: hb.mlp_loss_in(dt, 1797), params)
out = {
    "command": "python " + " ".join(sys.argv),
    "machine": machine(),
    "reference_float64": ref,
    "reps": 21,
    "load_before": load_before,
}
fns = {}
for spc in (None, 8):
    run = lambda t, p=params, spc=spc: hessian.eigenvalues(
        loss_fn, p, k=1, tol=t, method="lanczos", key=key, steps_per_call=spc
    )
    lad = hb.ladder(lambda t: float(run(t).values[0]), hb.OUR_TOLS, ref)
    tol = lad[-1]["tol"]
    res = run(tol)
    name = f"lanczos_steps_per_call_{spc or 'default'}"
    out[name] = {
        "tol": tol,
        "error": lad[-1]["error"],
        "iterations": res.iterations,
        "hvps": res.num_hvps,
    }
    fns[name] = lambda p, tol=tol, run=run: run(tol, p)
plad = hb.ladder(lambda t: hb.power_iteration(loss_fn, params, key, tol=t)[0], hb.POWER_TOLS, ref)
ptol = plad[-1]["tol"]
out["power"] = {
    "tol": ptol,
    "error": plad[-1]["error"],
    "hvps": hb.power_iteration(loss_fn, params, key, tol=ptol)[1],
}
fns["power"] = lambda p: hb.power_iteration(loss_fn, p, key, tol=ptol)
for f in fns.values():
    f(warm)
t = hb.interleaved({k: (lambda f=f: f(params)) for k, f in fns.items()}, out["reps"])
out["median_s"] = t
out["over_power"] = {k: v / t["power"] for k, v in t.items()}
out["load_after"] = os.getloadavg()
print(json.dumps(out, indent=2))
