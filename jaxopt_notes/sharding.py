r"""Optimizer state that shards apart from the parameters: ZeRO stage 1 as a wrapper.

Data parallelism keeps a full copy of the parameters on every device; the optimizer state of
Adam is twice their size again, and every device updates all of it, the same numbers
everywhere. ZeRO-1 (Rajbhandari et al. 2020) keeps each state leaf split across the devices
instead: device :math:`i` holds and updates its :math:`1/n` slice, and the update, which every
device needs to step its copy of the parameters, is gathered once per step.

:func:`zero1` does that for any transform: its ``init`` places each state leaf split along
its first axis that the mesh axis divides (a leaf with none, the step count say, stays
replicated), and its ``update`` slices the replicated gradient (and parameters) alike, runs
the links on the slices and gathers the updates once. Under ``jit`` XLA partitions the
element-wise math of the links by that sharding; a link that needs a whole leaf (Muon's
orthogonalisation) gathers it itself. The arithmetic is the wrapped transform's own; only
where it runs changes.
"""

from __future__ import annotations

from typing import Any

import jax
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxopt_notes import _checks
from jaxopt_notes._hyperparams import recorded


def split_spec(shape: tuple[int, ...], size: int, axis: str) -> PartitionSpec:
    """The spec that splits a leaf of ``shape`` along its first dimension divisible by
    ``size`` over the mesh axis ``axis`` (``P()``, replicated, where none is)."""
    for i, n in enumerate(shape):
        if n >= size and n % size == 0:
            return PartitionSpec(*([None] * i), axis)
    return PartitionSpec()


def _place(tree: Any, mesh: Mesh, spec_of: Any) -> Any:
    """Every array leaf of ``tree`` on ``mesh`` with the spec ``spec_of(leaf)``."""

    def put(x):
        if not hasattr(x, "shape"):
            return x
        return jax.sharding.reshard(x, NamedSharding(mesh, spec_of(x)))

    return jax.tree.map(put, tree)


@recorded
def zero1(
    tx: optax.GradientTransformation, mesh: Mesh, axis: str = "x"
) -> optax.GradientTransformationExtraArgs:
    r"""``tx`` with its state split over the devices of ``mesh`` along ``axis`` (ZeRO stage
    1), while the parameters and the updates it returns are replicated.

    Each state leaf is split along its first dimension that ``mesh.shape[axis]`` divides, so
    a device holds about :math:`1/n` of the state; the steps are ``tx``'s (equal to one
    device's up to the order XLA reduces in). The mesh's axes must be explicit
    (``jax.make_mesh(..., axis_types=(AxisType.Explicit,))``), and calls run under
    ``jax.set_mesh(mesh)``.

    Args:
      tx: any gradient transformation (an optimizer of ours or optax's).
      mesh: the device mesh.
      axis: the mesh axis the state is split over.
    """
    _checks.transform("tx", tx)
    if axis not in mesh.shape:
        raise ValueError(f"`axis` must be an axis of `mesh` {tuple(mesh.shape)}, got {axis!r}")
    inner = optax.with_extra_args_support(tx)
    size = mesh.shape[axis]
    split = lambda x: split_spec(x.shape, size, axis)  # noqa: E731
    replicated = lambda x: PartitionSpec()  # noqa: E731

    def init_fn(params):
        return _place(inner.init(params), mesh, split)

    def update_fn(updates, state, params=None, **extra_args):
        # each device takes its slice of the (replicated) gradient and params: no transfer;
        # then the links' math runs on slices shaped as the state's, and one gather follows
        updates, params = _place(updates, mesh, split), _place(params, mesh, split)
        updates, state = inner.update(updates, state, params, **extra_args)
        return _place(updates, mesh, replicated), _place(state, mesh, split)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def state_bytes_per_device(state: Any) -> dict[str, int]:
    """The bytes of ``state`` each device holds (device id as a string -> bytes)."""
    held: dict[str, int] = {}
    for x in jax.tree.leaves(state):
        for shard in x.addressable_shards:
            key = str(shard.device.id)
            held[key] = held.get(key, 0) + shard.data.nbytes
    return held
