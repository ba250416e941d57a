"""The equivalence table: every optimizer of ``jn.OPTIMIZERS`` against its references (optax,
torch.optim, the NumPy references of tests/), as the largest relative difference over
``--steps`` float64 steps, open loop (a fixed random gradient sequence) and along its own
trajectory on the small MLP of tests/reference.py. Writes docs/optimizers_table.md.

    python scripts/optimizers_table.py            # from the repository root
    python scripts/optimizers_table.py --steps 300 --out docs/optimizers_table.md

The runs are the tests' own harness (tests/test_modern.py, tests/test_equivalence.py,
tests/test_muon.py), so the table and the 1e-9 assertions measure the same thing.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jaxopt_notes as jn  # noqa: E402
from tests import reference as ref  # noqa: E402
from tests import test_equivalence as eq  # noqa: E402
from tests import test_factored as tfa  # noqa: E402
from tests import test_modern as tm  # noqa: E402
from tests import test_muon as tmu  # noqa: E402
from tests import test_optax_contract as contract  # noqa: E402
from tests import test_shampoo as tsh  # noqa: E402
from tests import test_soap as tsoap  # noqa: E402
from tests import test_sophia as tso  # noqa: E402

LR = 1e-2


def vs_optax(name: str, steps: int) -> tuple[float, float]:
    """(open loop, own trajectory): ours against optax's alias of the same name."""
    ours, theirs = contract.ALIASES[name]
    params = jax.tree.map(jnp.asarray, tm.PARAMS0)
    grads = tm.random_grads(steps=steps)
    u1, p1 = tm.open_loop(ours(LR), grads, params)
    u2, p2 = tm.open_loop(theirs(LR), grads, params)
    loop = max(
        [tm.tree_rel_err(a, b) for a, b in zip(u1, u2, strict=True)] + [tm.tree_rel_err(p1, p2)]
    )
    theta0, grad_fn, unravel = ref.mlp_problem()
    a = tm.trajectory(ours(LR), theta0, grad_fn, unravel, steps)
    b = tm.trajectory(theirs(LR), theta0, grad_fn, unravel, steps)
    return loop, tm.rel_err(a, b)


def torch_rows(torch, steps: int) -> dict[str, tuple[str, float, float]]:
    """name -> (torch reference, open loop, own trajectory) under ``convention="pytorch"``."""
    o, theta0, grad_fn, unravel = torch.optim, *ref.mlp_problem()
    cases = {
        k: (v[0], v[1], f"torch.optim.{v[1]([torch.zeros(1)]).__class__.__name__}")
        for k, v in eq.torch_cases(torch).items()
        if k in jn.OPTIMIZERS
    }
    cases["radam"] = (
        jn.radam(LR, convention="pytorch"),
        lambda p: o.RAdam(p, lr=LR),
        "torch.optim.RAdam",
    )
    cases["rprop"] = (
        jn.rprop(LR, convention="pytorch"),
        lambda p: o.Rprop(p, lr=LR),
        "torch.optim.Rprop",
    )
    fixed = np.random.default_rng(1).normal(size=(steps, theta0.size))
    out = {}
    for name, (ours, make, label) in cases.items():
        mine = tm.trajectory(ours, theta0, grad_fn, unravel, steps)
        traj = tm.rel_err(mine, tm.run_torch(torch, make, theta0, grad_fn, steps))
        _, p = tm.open_loop(ours, [jnp.asarray(g) for g in fixed], jnp.asarray(theta0))
        loop = tm.rel_err(p, tm.run_torch(torch, make, theta0, fixed, steps))
        out[name] = (label, loop, traj)
    out["muon"] = ("torch.optim.Muon + AdamW (bfloat16 cast off)", *_muon_torch(torch, steps))
    out["adafactor"] = ("torch.optim.Adafactor", *_adafactor_torch(torch, steps))
    return out


def _adafactor_torch(torch, steps: int) -> tuple[float, float]:
    theta0, grad_fn, unravel = ref.mlp_problem()
    ours = jn.adafactor(LR, convention="pytorch")
    make = lambda p: torch.optim.Adafactor(p, lr=LR)  # noqa: E731
    mine = tm.trajectory(ours, theta0, grad_fn, unravel, steps)
    traj = tm.rel_err(mine, tfa._torch_run(torch, make, lambda k, th: grad_fn(th), steps))
    fixed = np.random.default_rng(2).normal(size=(steps, theta0.size))
    p0 = jax.tree.map(jnp.asarray, unravel(theta0))
    _, p = tm.open_loop(ours, [jax.tree.map(jnp.asarray, unravel(g)) for g in fixed], p0)
    flat = np.concatenate([np.ravel(p[k]) for k in tfa.KEYS])
    loop = tm.rel_err(flat, tfa._torch_run(torch, make, lambda k, th: fixed[k], steps))
    return loop, traj


def _muon_torch(torch, steps: int) -> tuple[float, float]:
    theta0, grad_fn, unravel = ref.mlp_problem()
    ours = jn.muon(0.02, convention="pytorch")
    kw = dict(lr=0.02, wd=0.1, eps=1e-7, nesterov=True)
    with _no_bfloat16(torch):
        mine = tm.trajectory(ours, theta0, grad_fn, unravel, steps)
        traj = tm.rel_err(
            mine, tmu._torch_run(torch, theta0, unravel, lambda k, th: grad_fn(th), steps, **kw)
        )
        fixed = np.random.default_rng(3).normal(size=(steps, theta0.size))
        p0 = jax.tree.map(jnp.asarray, unravel(theta0))
        _, p = tm.open_loop(ours, [jax.tree.map(jnp.asarray, unravel(g)) for g in fixed], p0)
        flat = np.concatenate([np.ravel(p[k]) for k in tmu.KEYS])
        loop = tm.rel_err(
            flat, tmu._torch_run(torch, theta0, unravel, lambda k, th: fixed[k], steps, **kw)
        )
    return loop, traj


@contextlib.contextmanager
def _no_bfloat16(torch):
    """torch.optim.Muon casts to bfloat16 before its iteration; a copy instead, for float64."""
    saved = torch.Tensor.bfloat16
    torch.Tensor.bfloat16 = lambda self: self.clone()
    try:
        yield
    finally:
        torch.Tensor.bfloat16 = saved


def numpy_rows(steps: int) -> dict[str, tuple[str, float]]:
    """name -> (reference, own trajectory) against the NumPy references written from papers."""
    theta0, grad_fn, unravel = ref.mlp_problem()
    cases = {k: (v[0], v[2]) for k, v in eq.OPTAX_CASES.items() if k in jn.OPTIMIZERS}
    cases.update({k: (ours(), paper) for k, (ours, paper) in tm.PAPERS.items()})
    out = {}
    for name, (ours, paper) in cases.items():
        mine = tm.trajectory(ours, theta0, grad_fn, unravel, steps)
        out[name] = (
            "tests/reference.py" if name in eq.OPTAX_CASES else "tests/test_modern.py",
            tm.rel_err(mine, ref.run(paper, theta0, grad_fn, steps)),
        )
    mine = tm.trajectory(jn.shampoo(0.05), theta0, grad_fn, unravel, steps)
    step, params = tsh.paper_shampoo(0.05), unravel(theta0)
    for _ in range(steps):
        params = step(params, unravel(grad_fn(tsh._flat(params))))
    out["shampoo"] = (
        "tests/test_shampoo.py (Gupta et al. 2018 Alg. 1, grafted)",
        tm.rel_err(mine, tsh._flat(params)),
    )
    ours_soap, paper_soap = tsoap.trajectories(steps)
    out["soap"] = (
        "tests/test_soap.py (Vyas et al. 2024 Alg. 3; least squares)",
        tm.tree_rel_err(ours_soap, paper_soap),
    )
    return out


def sophia_row(steps: int) -> tuple[float, float]:
    """Sophia (not in jn.OPTIMIZERS: it needs the loss) against optax.contrib.sophia."""
    import optax

    loss_fn, params = tso._problem()
    tso.STEPS = steps
    p1, _ = tso._run(jn.sophia(LR), loss_fn, params, "loss_fn")
    p2, _ = tso._run(optax.contrib.sophia(LR), loss_fn, params, "obj_fn")
    rng = np.random.default_rng(1)
    fixed = [
        jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape)), params) for _ in range(steps)
    ]
    _, u1 = tso._run(jn.sophia(LR), loss_fn, params, "loss_fn", fixed)
    _, u2 = tso._run(optax.contrib.sophia(LR), loss_fn, params, "obj_fn", fixed)
    loop = max(tm.tree_rel_err(a, b) for a, b in zip(u1, u2, strict=True))
    return loop, tm.tree_rel_err(p1, p2)


LAMBDAS = {"momentum": "sgd(momentum=0.9)", "nesterov": "sgd(momentum=0.9, nesterov=True)"}


def _optax_name(name: str) -> str:
    """optax's name for the alias (our key; momentum and Nesterov are sgd with arguments)."""
    import optax

    where = (
        "optax.contrib." if not hasattr(optax, name) and hasattr(optax.contrib, name) else "optax."
    )
    return where + LAMBDAS.get(name, name)


def _code(name: str | None) -> str:
    return f"`{name}`" if name else "none"


def _fmt(x: float | None) -> str:
    return "" if x is None else ("0" if x == 0 else f"{x:.1e}")


def table(steps: int) -> str:
    torch = __import__("torch")
    with jax.enable_x64(True):
        optax_rows = {n: vs_optax(n, steps) for n in sorted(contract.ALIASES)}
        optax_rows["sophia"] = sophia_row(steps)
        t_rows, n_rows = torch_rows(torch, steps), numpy_rows(steps)
    refs = {n: _optax_name(n) for n in optax_rows}
    lines = [
        "| optimizer | optax reference | vs optax: open loop | own trajectory | torch reference "
        '(`convention="pytorch"`) | vs torch: open loop | own trajectory | NumPy reference | '
        "vs NumPy: own trajectory |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in [*jn.OPTIMIZERS, "sophia"]:
        o = optax_rows.get(name, (None, None))
        t = t_rows.get(name, ("", None, None))
        p = n_rows.get(name, ("", None))
        lines.append(
            f"| `{name}` | {_code(refs.get(name))} | {_fmt(o[0])} | {_fmt(o[1])} | {t[0]} | "
            f"{_fmt(t[1])} | {_fmt(t[2])} | {p[0]} | {_fmt(p[1])} |"
        )
    return "\n".join(lines)


HEADER = """# Optimizers and their references

Every optimizer of `jn.OPTIMIZERS` against its references, in float64: the largest relative
difference (max |ours - theirs| / max |theirs|, over every step's update and the end point for
the open loop; over the end point for the own trajectory) after {steps} steps. Open loop: both fed
one fixed random gradient sequence; own trajectory: each run on the small MLP of
tests/reference.py, handed the exact gradient at its own parameters (Sophia, which needs the
loss, on the tanh regression of tests/test_sophia.py). The tests assert 1e-9. `sophia` is not in
`jn.OPTIMIZERS` (its update needs `loss_fn=`); `jn.sophia` is.

Produced by `python scripts/optimizers_table.py` ({seconds:.0f} s on {machine}); do not edit by
hand. Versions: jax {jax}, optax {optax}, torch {torch}.

"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--out", default=str(ROOT / "docs" / "optimizers_table.md"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    body = table(args.steps)
    import platform

    import optax
    import torch

    head = HEADER.format(
        steps=args.steps,
        seconds=time.perf_counter() - start,
        machine=platform.machine(),
        jax=jax.__version__,
        optax=optax.__version__,
        torch=torch.__version__,
    )
    Path(args.out).write_text(head + body + "\n")
    print(head + body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
