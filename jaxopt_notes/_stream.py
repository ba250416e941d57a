"""The sealed stream of a moment run: what flows between :func:`jaxopt_notes.first_moment` (or
any moment link) and :func:`jaxopt_notes.ratio`.

It is deliberately neither a tuple nor an array, and a registered pytree node that refuses to be
flattened: a transform that is not a moment link (``optax.clip``, ``optax.clip_by_global_norm``,
``optax.trace``...) maps over its updates with ``jax.tree`` utilities or treats them as arrays,
and would otherwise map silently over ``(grad, mu, nu)`` and hand back nonsense. Here it fails at
once, under ``jit`` too, with a sentence saying what may stand inside a run.
"""

from __future__ import annotations

from typing import Any

import jax

MOMENT_LINKS = (
    "first_moment",
    "second_moment",
    "belief_moment",
    "yogi_moment",
    "accumulate_squares",
    "infinity_moment",
    "bias_correction",
    "amsgrad_max",
    "slow_momentum",
    "hessian_moment",
)

RULE = (
    f"only jaxopt_notes' moment links ({', '.join(MOMENT_LINKS)}) may stand inside a moment "
    "run, between the first of them and the link that closes it (`jn.ratio`, `jn.rectify`, "
    "`jn.delta_ratio` or `jn.clipped_ratio`); "
    "put other transforms (optax's included) before the run or after its closing link"
)


class MomentStreamError(TypeError):
    """A transform inside a moment run treated the :class:`Moments` stream as a tree or array."""


def _refuse(*_: Any) -> Any:
    raise MomentStreamError(
        f"a transform inside a moment run used the `Moments` stream as a tree or an array: {RULE}"
    )


class Moments:
    """The structured stream between moment links: ``grad``, ``mu``, ``nu``, each a tree shaped
    like the params; ``None`` marks a moment not yet estimated. Read its fields; do not map."""

    __slots__ = ("grad", "mu", "nu")

    def __init__(self, grad: Any, mu: Any = None, nu: Any = None) -> None:
        self.grad, self.mu, self.nu = grad, mu, nu

    def _replace(self, **fields: Any) -> Moments:
        values = {"grad": self.grad, "mu": self.mu, "nu": self.nu, **fields}
        return Moments(**values)

    def __repr__(self) -> str:
        return f"Moments(grad={self.grad!r}, mu={self.mu!r}, nu={self.nu!r})"

    # as an array (jnp.asarray, arithmetic with arrays) it refuses too, with the same sentence
    __jax_array__ = _refuse
    __array__ = _refuse


jax.tree_util.register_pytree_node(Moments, _refuse, _refuse)


def link_name(transform: Any) -> str:
    """``optax.clip``-style name of a transform's factory, read from its update function."""
    fn = getattr(transform, "update", None)
    qualname = getattr(fn, "__qualname__", type(transform).__name__)
    top = (getattr(fn, "__module__", None) or "").split(".")[0]
    name = qualname.split(".<locals>")[0]
    return f"{top}.{name}" if top else name
