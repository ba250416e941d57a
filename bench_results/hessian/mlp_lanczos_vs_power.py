"""Lanczos top-1 vs power iteration on the 2,635-parameter tanh MLP (bench.hessian's `_mlp`
problem, 1,797 digits), each at the loosest tolerance of its ladder whose answer is within
1e-3 of the float64 reference; second call, new parameters, medians of interleaved repeats.
Lanczos at its default (a convergence test after every step) and with all its steps in one
call (steps_per_call = the steps the default needed: the run without round trips, a bound
known only after the fact). Prints the JSON recorded in mlp_lanczos_vs_power.json."""

import json
import os
import sys

import jax
from jaxopt_notes.benchmarks import hessian as hb
from jaxopt_notes.benchmarks import machine

from jaxopt_notes import hessian

load_before = os.getloadavg()
loss_fn, params = hb.mlp_problem(1797, seed=1)
warm = hb.mlp_problem(1797, seed=0)[1]
key = jax.random.PRNGKey(0)
ref = hb.reference_top(lambda dt: hb.mlp_loss_in(dt, 1797), params)
out = {"command": "python " + " ".join(sys.argv), "machine": machine(), "reference_float64": ref}
out.update(reps=21, load_before=load_before)


def lanczos(tol, p, spc):
    return hessian.eigenvalues(
        loss_fn, p, k=1, tol=tol, method="lanczos", key=key, steps_per_call=spc
    )


def power(tol, p):
    return hb.power_iteration(loss_fn, p, key, tol=tol)


fns = {}
for name in ("lanczos_default", "lanczos_one_call"):
    spc = None if name == "lanczos_default" else out["lanczos_default"]["iterations"]
    lad = hb.ladder(lambda t, spc=spc: float(lanczos(t, params, spc).values[0]), hb.OUR_TOLS, ref)
    tol = lad[-1]["tol"]
    res = lanczos(tol, params, spc)
    out[name] = {"tol": tol, "error": lad[-1]["error"], "iterations": res.iterations}
    out[name].update(hvps=res.num_hvps, steps_per_call=spc)
    fns[name] = lambda p, tol=tol, spc=spc: lanczos(tol, p, spc)
plad = hb.ladder(lambda t: power(t, params)[0], hb.POWER_TOLS, ref)
ptol = plad[-1]["tol"]
out["power"] = {"tol": ptol, "error": plad[-1]["error"], "hvps": power(ptol, params)[1]}
fns["power"] = lambda p: power(ptol, p)
for f in fns.values():
    f(warm)
t = hb.interleaved({k: (lambda f=f: f(params)) for k, f in fns.items()}, out["reps"])
out["median_s"] = t
out["over_power"] = {k: v / t["power"] for k, v in t.items()}
out["hvps_over_power"] = out["lanczos_default"]["hvps"] / out["power"]["hvps"]
out["load_after"] = os.getloadavg()
print(json.dumps(out, indent=2))
