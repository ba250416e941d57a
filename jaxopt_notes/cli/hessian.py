"""``jaxopt-notes hessian``: the Hessian at a trained run's parameters, or of a 2-D function.

A run written by ``jaxopt-notes train --out RUN`` (read through ``train.load_run``; nothing in
``RUN`` is written)::

    jaxopt-notes hessian --run RUN [--split train|val|test] [--num-examples N|all] --out DIR

takes the Hessian of the run's mean training loss over the chosen examples (every batch, summed
by ``hessian.over_dataset``). A built-in function of two variables at a point::

    jaxopt-notes hessian --function monkey --point 0,0 --out DIR

Prints the classification, both ends of the spectrum, the trace and its error, the minimum ratio
and what they mean; writes ``result.json`` and ``spectral_density.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxopt_notes import hessian
from jaxopt_notes.cli import _options
from jaxopt_notes.cli._options import fail

# name -> (f(x, y), default point)
FUNCTIONS: dict[str, tuple[Callable, tuple[float, float]]] = {
    "saddle": (lambda x, y: x**2 - y**2, (0.0, 0.0)),
    "monkey": (lambda x, y: x**3 - 3 * x * y**2, (0.0, 0.0)),
    "rosenbrock": (lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2, (1.0, 1.0)),
    "bowl": (lambda x, y: x**2 / 20 + y**2, (0.0, 0.0)),
    "maximum": (lambda x, y: -(x**2) - y**2, (0.0, 0.0)),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run directory written by `jaxopt-notes train --out`")
    source.add_argument("--function", choices=sorted(FUNCTIONS), help="a built-in f(x, y)")
    parser.add_argument("--point", help="x,y for --function (default: its critical point)")
    parser.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="train",
        help="--run: the examples whose mean loss is differentiated (default: %(default)s)",
    )
    parser.add_argument(
        "--num-examples",
        default="all",
        help="--run: the first N examples of the split, or 'all' (default)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=500,
        help="--run: at most this many examples per summed product, the batches as equal as "
        "they divide (default: %(default)s)",
    )
    parser.add_argument(
        "--k", type=int, default=2, help="eigenvalues at each end (default: %(default)s)"
    )
    parser.add_argument(
        "--tol",
        type=float,
        default=1e-2,
        help="Lanczos residual relative to the largest eigenvalue (default: %(default)s)",
    )
    parser.add_argument(
        "--max-iter", type=int, default=40, help="Lanczos step cap (default: %(default)s)"
    )
    parser.add_argument(
        "--num-probes",
        type=int,
        default=1,
        help="SLQ probes for the density (default: %(default)s)",
    )
    parser.add_argument(
        "--num-iter",
        type=int,
        default=24,
        help="Lanczos steps per SLQ probe (default: %(default)s)",
    )
    parser.add_argument(
        "--trace-samples",
        type=int,
        default=10,
        help="Hutchinson probes for the trace (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=_options.seed, default=0, help="probe seed (default: %(default)s)"
    )
    parser.add_argument(
        "--out",
        default="runs/hessian",
        help="directory for result.json and the PNG (default: %(default)s)",
    )


def _check(args: argparse.Namespace) -> None:
    for name in ("k", "max_iter", "num_probes", "num_iter", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(
                f"`--{name.replace('_', '-')}` must be >= 1, got {getattr(args, name)}"
            )
    if args.trace_samples < 2:
        raise ValueError(f"`--trace-samples` must be >= 2, got {args.trace_samples}")
    if not args.tol > 0:
        raise ValueError(f"`--tol` must be > 0, got {args.tol}")
    out, run = (os.path.realpath(p) for p in (args.out, args.run or ""))
    if args.run and (out == run or out.startswith(run + os.sep)):  # the run itself, or in it
        raise ValueError(f"`--out` must lie outside the run directory, got {args.out!r}")


def _num_examples(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"`--num-examples` must be a positive integer or 'all', got {text!r}")
    return value


def _parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"`--point` must be two numbers 'x,y', got {text!r}") from None
    return x, y


def _run_problem(args: argparse.Namespace):
    from jaxopt_notes.train import load_run

    run = load_run(args.run)
    x, y = run.arrays(args.split, _num_examples(args.num_examples))
    num_batches = -(-len(y) // args.batch_size)
    size = -(-len(y) // num_batches)  # 3600 by 500: 8 of 450, not 7 of 500 and a 100 to compile
    loss = hessian.over_dataset(lambda p, b: run.batch_loss(p, *b), (x, y), batch_size=size)
    info = {
        "run": str(args.run),
        "split": args.split,
        "num_examples": int(len(y)),
        "batch_size": loss.batch_size,
        "reduction": "mean",
        "epoch": run.epoch,
        "loss": "the run's cross-entropy (its label smoothing, no augmentation)",
        "model": run.config.model,
    }
    return loss, run.params, info


def _problem(args: argparse.Namespace):
    if args.run:
        if args.point is not None:
            raise ValueError(f"`--point` needs `--function`, got --point {args.point}")
        return _run_problem(args)
    f, default = FUNCTIONS[args.function]
    point = default if args.point is None else _parse_point(args.point)
    return (
        (lambda p: f(p[0], p[1])),
        jnp.array(point),
        {"function": args.function, "point": list(point)},
    )


def run_cli(args: argparse.Namespace) -> int:
    try:
        _check(args)
        with jax.enable_x64(bool(args.function)):
            loss_fn, params, info = _problem(args)
            result = hessian.analyse(
                loss_fn,
                params,
                jax.random.PRNGKey(args.seed),
                out_dir=args.out,
                k=args.k,
                tol=args.tol,
                max_iter=args.max_iter,
                num_probes=args.num_probes,
                num_iter=args.num_iter,
                trace_samples=args.trace_samples,
                loss_info=info,
            )
    except (ValueError, TypeError, OSError) as error:
        return fail("hessian", _options.as_flags(str(error), run_dir="--run"))
    result["source"] = info
    with open(os.path.join(args.out, "result.json"), "w") as fh:
        json.dump(result, fh, indent=2, allow_nan=False)
    fmt = lambda vals: " ".join(f"{v:.6g}" for v in vals)  # noqa: E731
    print(
        f"{result['kind']} (n={result['size']}, loss {result['loss']:.4g}, "
        f"|grad|={result['grad_norm']:.3g}, {result['method']})"
    )
    print("largest eigenvalues: ", fmt(result["largest"]))
    print("smallest eigenvalues:", fmt(result["smallest"]))
    tr = result["trace"]
    dim = tr["krylov_dimension"]
    krylov = f", the {dim}-step Krylov space exact" if dim else ""
    print(f"trace: {tr['estimate']:.6g} +- {tr['std_error']:.2g} ({tr['samples']} probes{krylov})")
    print(f"minimum ratio: {result['minimum_ratio']} ({result['minimum_ratio_source']})")
    print(result["explanation"])
    print(
        f"{result['num_hvps']} Hessian-vector products in {result['seconds']:.1f} s; "
        f"wrote {os.path.join(args.out, 'result.json')} and "
        f"{result['density'].get('png')}"
    )
    return 0
