"""Putting transforms together: ``chain``, ``apply_updates``, the non-finite guard and ``switch``.

All tree plumbing that is not per-array math lives here, so the transforms stay short.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded
from jaxopt_notes._stream import RULE, Moments, MomentStreamError, link_name

_INT32_MAX = jnp.iinfo(jnp.int32).max


def increment(count: jax.Array) -> jax.Array:
    """``count + 1`` that saturates at the int32 maximum instead of wrapping round."""
    return jnp.where(count < _INT32_MAX, count + 1, _INT32_MAX).astype(jnp.int32)


def zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


@recorded
def chain(*transforms: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    r"""Applies ``transforms`` one after another; the state is the tuple of their states.

    .. math:: u \leftarrow T_k(\dots T_2(T_1(g)))

    Extra keyword arguments of ``update`` reach every link that accepts them. When ``params``
    are given, the incoming gradient must have their tree structure and every leaf its
    parameter's shape; the state must be what ``init`` makes for the gradient's shapes. A
    mismatch is a ValueError naming the structures, or the leaf and both shapes (checked at
    trace time: nothing is broadcast silently).
    Inside a moment run (from :func:`~jaxopt_notes.first_moment` or another moment link to
    :func:`~jaxopt_notes.ratio`) only moment links may stand: any other link there, optax's
    included, fails on its first update with a TypeError naming its place.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.chain(jn.clip(1.0), jn.scale(-0.1))
    >>> updates, _ = tx.update(jnp.array([3.0, -0.5]), tx.init(jnp.zeros(2)))
    >>> updates
    Array([-0.1 ,  0.05], dtype=float32)
    """
    for i, t in enumerate(transforms):
        _checks.transform(f"transforms[{i}]", t)
    links = tuple(optax.with_extra_args_support(t) for t in transforms)
    seen: dict = {}  # input signature -> the state structure `init` makes for it

    def init_fn(params):
        return tuple(link.init(params) for link in links)

    def update_fn(updates, state, params=None, **extra_args):
        if params is not None:
            _checks.same_structure("chain", updates, params)
        if not isinstance(updates, Moments):
            updates = jax.tree.map(jnp.asarray, updates)  # Python floats become arrays
            if params is not None:
                _checks.same_shapes("chain", updates, params)
        _check_state(
            init_fn, updates.grad if isinstance(updates, Moments) else updates, state, seen
        )
        new_state = []
        for i, (link, link_state) in enumerate(zip(links, state, strict=True)):
            name = f"transforms[{i}] ({link_name(transforms[i])})"
            updates, link_state = _link_update(name, link, updates, link_state, params, extra_args)
            new_state.append(link_state)
        return updates, tuple(new_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _link_update(name: str, link, updates, state, params, extra_args: dict) -> tuple:
    """One link's update; a foreign link that maps over a moment run is named in the error."""
    try:
        return link.update(updates, state, params, **extra_args)
    except MomentStreamError as error:
        if not isinstance(updates, Moments) or str(error).startswith("transforms["):
            raise  # not this link's doing, or already named by a nested chain
        raise MomentStreamError(
            f"{name} stands inside a moment run and got the `Moments` stream as its updates: {RULE}"
        ) from None


def _check_state(init_fn: Callable, params_like: Any, state: Any, seen: dict) -> None:
    """Refuses, before a link fails on it somewhere deep inside or silently broadcasts, a state
    that this chain's ``init`` would not make for parameters shaped like the gradient: one of
    another optimizer's (both structures shown), or one made for another parameter tree (the
    first leaf whose shape differs named, with both shapes). ``seen`` caches the expected
    state per input signature: tracing ``init`` costs an eager step. Shapes are static, so
    under ``jit`` all of this runs once, at trace time."""
    leaves, treedef = jax.tree.flatten(params_like)
    key = (treedef, tuple((jnp.shape(x), jnp.result_type(x)) for x in leaves))
    if key not in seen:
        shapes = [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in key[1]]
        made = jax.eval_shape(init_fn, treedef.unflatten(shapes))
        seen[key] = (jax.tree.structure(made), [x.shape for x in jax.tree.leaves(made)])
    (expected, expected_shapes), got = seen[key], jax.tree.structure(state)
    if expected != got:
        raise ValueError(
            "chain: `state` must be the state this chain's `init` makes (was it made by another "
            f"optimizer?), got a different structure\n  expected: {expected}\n  got:      {got}"
        )
    held = jax.tree_util.tree_leaves_with_path(state)
    for (path, leaf), shape in zip(held, expected_shapes, strict=True):
        if jnp.shape(leaf) != shape:
            raise ValueError(
                f"chain: `state` at {jax.tree_util.keystr(path)} must have shape {shape}, as "
                f"`init` makes it for parameters shaped like this gradient, got "
                f"{jnp.shape(leaf)}: the state was made for another parameter tree, or the "
                "gradient's shapes are not the parameters'"
            )


def apply_updates(params: optax.Params, updates: optax.Updates) -> optax.Params:
    r"""Returns :math:`\theta + u` leaf by leaf, each result in its parameter's dtype.

    Refused, with a sentence naming the leaf: an update whose shape is not its parameter's (no
    silent broadcasting), an integer or bool parameter (a fractional step would round away, so
    it would never move: keep such leaves out of the optimised tree), and a complex update of a
    real parameter (its imaginary part would be dropped). Python float leaves are fine.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> jn.apply_updates({"w": jnp.ones(2, jnp.bfloat16)}, {"w": jnp.full(2, 0.5)})["w"].dtype
    dtype(bfloat16)
    """
    _checks.same_structure("apply_updates", updates, params)
    return jax.tree_util.tree_map_with_path(_apply_leaf, params, updates)


def _apply_leaf(path: tuple, p: Any, u: Any) -> jax.Array:
    p, u = jnp.asarray(p), jnp.asarray(u)
    where = jax.tree_util.keystr(path) or "the root"
    if u.shape != p.shape:
        raise ValueError(
            f"apply_updates: the update at {where} must have its parameter's shape {p.shape}, "
            f"got {u.shape}"
        )
    if not jnp.issubdtype(p.dtype, jnp.inexact):
        raise TypeError(
            f"apply_updates: the parameter at {where} must have a floating-point dtype, got "
            f"{p.dtype}: a fractional step would round away and it would never move"
        )
    if jnp.iscomplexobj(u) and not jnp.iscomplexobj(p):
        raise TypeError(
            f"apply_updates: the update at {where} must be real like its parameter ({p.dtype}), "
            f"got {u.dtype}: its imaginary part would be dropped"
        )
    return (p + u).astype(p.dtype)


class SkipNonfiniteState(NamedTuple):
    inner_state: Any
    skipped: jax.Array  # total number of skipped steps, int32
    consecutive: jax.Array  # skipped steps since the last finite one, int32


@recorded
def skip_nonfinite(inner: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
    r"""Runs ``inner`` only on steps whose gradients are all finite.

    .. math:: (u, s) = \begin{cases} \mathrm{inner}(g, s) & g \text{ finite} \\
              (0, s) & \text{otherwise (a NaN or Inf anywhere)} \end{cases}

    On a skipped step the update is zero, so parameters stay put, and ``inner``'s state
    (moments, counters) is left exactly as it was. ``skipped`` counts skipped steps in all,
    ``consecutive`` those since the last good one; both saturate at the int32 maximum. One
    ``lax.cond`` runs or skips ``inner``, so compile time grows like ``inner``'s with the leaves.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.skip_nonfinite(jn.sgd(0.1))
    >>> u, s = tx.update(jnp.array([jnp.nan, 1.0]), tx.init(jnp.zeros(2)))
    >>> u, int(s.skipped)
    (Array([0., 0.], dtype=float32), 1)
    """
    _checks.transform("inner", inner)
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        return SkipNonfiniteState(inner.init(params), zero_count(), zero_count())

    def update_fn(updates, state, params=None, **extra_args):
        # one flag for the whole tree and one cond around `inner`: a `where` per leaf would make
        # XLA's compile time grow faster than the number of leaves
        finite = jnp.all(
            jnp.stack(
                [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(updates)] or [jnp.asarray(True)]
            )
        )

        def run(_):
            return inner.update(updates, state.inner_state, params, **extra_args)

        new_updates, new_inner = _run_or_skip(finite, run, updates, state.inner_state)
        skipped = jnp.where(finite, state.skipped, increment(state.skipped))
        consecutive = jnp.where(finite, zero_count(), increment(state.consecutive))
        return new_updates, SkipNonfiniteState(new_inner, skipped, consecutive)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _run_or_skip(finite: jax.Array, run: Callable, updates: Any, inner_state: Any) -> tuple:
    """``run`` if ``finite``, else zero updates and ``inner_state`` as is. The zeros must be
    exactly what ``run`` returns (structure, dtypes): first try zeros like the incoming
    updates, true of every element-wise optimizer, so that ``run`` is traced once; only where
    ``lax.cond`` finds the branches differ, trace ``run`` once more to learn its output."""

    def skip_like(tree):
        zeros = jax.tree.map(lambda x: jnp.zeros(jnp.shape(x), jnp.result_type(x)), tree)
        return lambda _: (zeros, inner_state)

    try:
        return jax.lax.cond(finite, run, skip_like(updates), None)
    except TypeError:  # the branches' outputs differ (e.g. lookahead's (fast, slow) updates)
        return jax.lax.cond(finite, run, skip_like(jax.eval_shape(run, None)[0]), None)


class SwitchState(NamedTuple):
    count: jax.Array  # steps taken, int32
    switched_at: jax.Array  # step at which `second` took over, -1 while `first` runs
    first_state: Any
    second_state: Any


@recorded
def switch(
    first: optax.GradientTransformation,
    second: optax.GradientTransformation,
    *,
    switch_step: int | None = None,
    criterion: Callable[[jax.Array, optax.Updates], jax.Array] | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Runs ``first`` until a switch, then ``second`` for good.

    The switch happens at step ``switch_step`` (counting from 0), or at the first step where
    ``criterion(count, grads)`` is true, whichever comes first. Only the running transform
    advances its state; the step of the switch is kept in ``switched_at``.

    >>> import jax.numpy as jnp, jaxopt_notes as jn
    >>> tx = jn.switch(jn.sgd(1.0), jn.sgd(0.5), switch_step=1)
    >>> s = tx.init(jnp.zeros(1))
    >>> u0, s = tx.update(jnp.ones(1), s)
    >>> u1, s = tx.update(jnp.ones(1), s)
    >>> float(u0[0]), float(u1[0]), int(s.switched_at)
    (-1.0, -0.5, 1)
    """
    _checks.transform("first", first)
    _checks.transform("second", second)
    if switch_step is None and criterion is None:
        raise ValueError("`switch_step` or `criterion` must be given, got neither")
    if switch_step is not None:
        _checks.integer("switch_step", switch_step)
    if criterion is not None:
        _checks.function("criterion", criterion)
    first, second = (optax.with_extra_args_support(t) for t in (first, second))

    def init_fn(params):
        return SwitchState(
            zero_count(), jnp.full([], -1, jnp.int32), first.init(params), second.init(params)
        )

    def update_fn(updates, state, params=None, **extra_args):
        now = state.switched_at >= 0
        if switch_step is not None:
            now = now | (state.count >= switch_step)
        if criterion is not None:
            now = now | jnp.asarray(criterion(state.count, updates), bool)
        switched_at = jnp.where((state.switched_at < 0) & now, state.count, state.switched_at)

        def run_first(_):
            u, s = first.update(updates, state.first_state, params, **extra_args)
            return u, s, state.second_state

        def run_second(_):
            u, s = second.update(updates, state.second_state, params, **extra_args)
            return u, state.first_state, s

        new_updates, s1, s2 = jax.lax.cond(now, run_second, run_first, None)
        return new_updates, SwitchState(increment(state.count), switched_at, s1, s2)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
