"""``jaxopt-notes hessian``: classify a point and plot the Hessian spectrum there.

Either a built-in function of two variables at a point::

    jaxopt-notes hessian --function monkey --point 0,0 --out runs/hessian

or a saved MLP checkpoint on the scikit-learn digits (mean softmax cross-entropy)::

    jaxopt-notes hessian --checkpoint mlp.npz --out runs/hessian

The checkpoint is an ``.npz`` with arrays ``w0, b0, w1, b1, ...`` (``w_i`` of shape
``(fan_in, fan_out)``, input 64, output 10): :func:`init_mlp` and :func:`save_checkpoint` write one.
Prints the classification and the extreme eigenvalues; writes ``result.json`` and
``spectral_density.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import hessian
from jaxopt_notes._extras import require

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
    source.add_argument("--function", choices=sorted(FUNCTIONS), help="a built-in f(x, y)")
    source.add_argument("--checkpoint", help="an .npz of MLP arrays w0, b0, w1, b1, ...")
    parser.add_argument("--point", help="x,y for --function (default: its critical point)")
    parser.add_argument("--num-examples", type=int, default=500, help="digits used by the loss")
    parser.add_argument("--method", choices=["auto", "dense", "lanczos"], default="auto")
    parser.add_argument("--k", type=int, default=5, help="eigenvalues per end with Lanczos")
    parser.add_argument("--num-probes", type=int, default=4, help="SLQ probes for the density")
    parser.add_argument("--num-iter", type=int, default=64, help="Lanczos steps per SLQ probe")
    parser.add_argument("--x64", action="store_true", help="float64 for a checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/hessian", help="directory for the outputs")


def init_mlp(sizes: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    """LeCun-normal weights and zero biases for layer sizes such as ``[64, 32, 10]``."""
    rng = np.random.default_rng(seed)
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        params[f"w{i}"] = (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype("f4")
        params[f"b{i}"] = np.zeros(fan_out, "f4")
    return params


def save_checkpoint(path: str, params: dict) -> str:
    np.savez(path, **{name: np.asarray(value) for name, value in params.items()})
    return path


def mlp_apply(params: dict, x: jax.Array) -> jax.Array:
    """tanh MLP: layers ``w0, b0, w1, b1, ...``; the last one is linear (logits)."""
    depth = len(params) // 2
    for i in range(depth):
        x = x @ params[f"w{i}"] + params[f"b{i}"][None, :]
        x = jnp.tanh(x) if i < depth - 1 else x
    return x


def digits_loss(num_examples: int, dtype) -> Callable:
    """Mean softmax cross-entropy of :func:`mlp_apply` on the first digits (pixels / 16)."""
    load_digits = require("sklearn.datasets", "train").load_digits

    data = load_digits()
    x = jnp.asarray(data.data[:num_examples] / 16.0, dtype)
    y = jnp.asarray(data.target[:num_examples])

    def loss_fn(params):
        logp = jax.nn.log_softmax(mlp_apply(params, x))
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    return loss_fn


def _load_checkpoint(path: str, dtype) -> dict:
    with np.load(path) as data:
        params = {name: jnp.asarray(data[name], dtype) for name in data.files}
    expected = {f"{p}{i}" for i in range(len(params) // 2) for p in "wb"}
    if set(params) != expected or not params:
        raise ValueError(
            f"`--checkpoint` must hold arrays w0, b0, w1, b1, ..., got {sorted(params)}"
        )
    return params


def _problem(args: argparse.Namespace):
    """``(loss_fn, params, description)`` for a built-in function or a checkpoint."""
    if args.function:
        f, default = FUNCTIONS[args.function]
        point = default if args.point is None else _parse_point(args.point)
        return (lambda p: f(p[0], p[1])), jnp.array(point), {"function": args.function,
                                                             "point": list(point)}  # fmt: skip
    if args.point is not None:
        raise ValueError(f"`--point` needs `--function`, got --point {args.point}")
    if args.num_examples < 1:
        raise ValueError(f"`--num-examples` must be >= 1, got {args.num_examples}")
    dtype = jnp.float64 if args.x64 else jnp.float32
    info = {"checkpoint": args.checkpoint, "loss": "mean softmax cross-entropy on digits",
            "reduction": "mean", "num_examples": min(args.num_examples, 1797)}  # fmt: skip
    return digits_loss(args.num_examples, dtype), _load_checkpoint(args.checkpoint, dtype), info


def _parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"`--point` must be two numbers 'x,y', got {text!r}") from None
    return x, y


def _analyse(args: argparse.Namespace) -> dict:
    loss_fn, params, info = _problem(args)
    c = hessian.classify(loss_fn, params, k=args.k, method=args.method, loss_info=info,
                         key=jax.random.PRNGKey(args.seed))  # fmt: skip
    key = jax.random.PRNGKey(args.seed + 1)
    density = hessian.spectral_density(
        loss_fn, params, key, num_probes=args.num_probes, num_iter=args.num_iter
    )
    os.makedirs(args.out, exist_ok=True)
    png = hessian.plot_spectral_density(density, os.path.join(args.out, "spectral_density.png"))
    top, bottom = c.eigenvalues[: args.k], c.eigenvalues[-args.k :]
    return {
        "source": info, "kind": c.kind, "size": c.size, "method": c.method,
        "loss": float(loss_fn(params)), "grad_norm": c.grad_norm, "grad_tol": c.grad_tol,
        "eig_tol": c.eig_tol, "largest": top.tolist(), "smallest": bottom.tolist(),
        "num_positive": c.num_positive, "num_negative": c.num_negative,
        "num_near_zero": c.num_near_zero, "minimum_ratio": c.minimum_ratio,
        "complete": c.complete, "density": {"png": os.path.basename(png), "sigma": density.sigma,
        "fraction_positive": density.fraction_positive(c.eig_tol)},
    }  # fmt: skip


def run_cli(args: argparse.Namespace) -> int:
    try:
        with jax.enable_x64(bool(args.function) or args.x64):
            result = _analyse(args)
    except (ValueError, OSError) as error:
        print(f"jaxopt-notes hessian: {error}", file=sys.stderr)
        return 2
    with open(os.path.join(args.out, "result.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"{result['kind']} (n={result['size']}, |grad|={result['grad_norm']:.3g}, "
          f"{result['method']})")  # fmt: skip
    print("largest eigenvalues: ", " ".join(f"{v:.6g}" for v in result["largest"]))
    print("smallest eigenvalues:", " ".join(f"{v:.6g}" for v in result["smallest"]))
    print(f"near zero: {result['num_near_zero']}, minimum ratio: {result['minimum_ratio']}")
    print(f"wrote {os.path.join(args.out, 'result.json')} and {result['density']['png']}")
    return 0
