"""The curvature of the mean loss over a whole data set, one batch of products at a time.

:func:`over_dataset` wraps a per-batch loss and the data into a :class:`DatasetLoss`; every tool
of :mod:`jaxopt_notes.hessian` accepts it in place of ``loss_fn`` and then works on the Hessian
of the *mean loss over every example* (PyHessian's ``dataloader`` mode): each product sums the
per-batch products, weighted by batch size. On the device loop the sum is one compiled ``scan``;
on the host loop (CPU) a Python loop over jitted per-batch products. With several devices the
batch axis is sharded over a ``("data",)`` mesh and XLA adds the reduction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxopt_notes import _checks
from jaxopt_notes._types import PyTree
from jaxopt_notes.hessian import _core as core


class DatasetLoss:
    """``params -> mean loss over the data``; also the description the Hessian tools read.

    Built by :func:`over_dataset`. Keep one object per data set: the compiled products are
    cached on ``batch_loss_fn`` and the arrays' shapes.
    """

    def __init__(self, batch_loss_fn: Callable, stacked: Any, tail: Any, num_examples: int):
        self.batch_loss_fn, self.stacked, self.tail = batch_loss_fn, stacked, tail
        self.num_examples = num_examples
        self.batch_size = int(jax.tree.leaves(stacked)[0].shape[1])
        self.num_batches = int(jax.tree.leaves(stacked)[0].shape[0]) + (tail is not None)

    @property
    def data(self) -> tuple:
        return self.stacked, self.tail, self.num_examples

    def _hessian_spec(self, mask: tuple[bool, ...]) -> tuple[core.Spec, Any]:
        return core.Spec(self.batch_loss_fn, mask, "dataset"), self.data

    def __call__(self, params: PyTree) -> jax.Array:
        return _mean_loss(params, self.data, fn=self.batch_loss_fn)

    def batch(self, i: int) -> Any:
        """The ``i``-th batch (the last may be the shorter remainder)."""
        full = self.num_batches - (self.tail is not None)
        if not 0 <= i < self.num_batches:
            raise ValueError(f"`i` must be in [0, {self.num_batches}), got {i}")
        return self.tail if i == full else jax.tree.map(lambda a: a[i], self.stacked)

    def __repr__(self) -> str:
        return (
            f"DatasetLoss({getattr(self.batch_loss_fn, '__name__', 'batch_loss_fn')}, "
            f"{self.num_examples} examples in {self.num_batches} batches of "
            f"{self.batch_size})"
        )


@jax.jit(static_argnames="fn")
def _mean_loss(params, data, *, fn):
    return core._dataset_sum(lambda b: fn(params, b), data)


def over_dataset(
    batch_loss_fn: Callable[[PyTree, Any], jax.Array],
    data: Any,
    *,
    batch_size: int,
    shard: bool = True,
) -> DatasetLoss:
    """The mean of ``batch_loss_fn(params, batch)`` over ``data``, as a Hessian-tool loss.

    ``data`` is a pytree of arrays sharing a leading example axis, e.g. ``(x, y)``;
    ``batch_loss_fn`` must return the *mean* loss of its batch. Batches are consecutive slices
    of ``batch_size`` examples; the remainder is one shorter batch, weighted by its size.
    ``shard`` spreads each batch over all devices when there are several (and they divide it).

    >>> x = jnp.arange(5.0)
    >>> loss = over_dataset(lambda w, b: jnp.mean((w * b) ** 2), x, batch_size=2)
    >>> loss, float(loss(1.0))
    (DatasetLoss(<lambda>, 5 examples in 3 batches of 2), 6.0)
    """
    _checks.function("batch_loss_fn", batch_loss_fn)
    _checks.integer("batch_size", batch_size, low=1)
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ValueError("`data` must hold at least one array, got an empty pytree")
    sizes = {int(np.shape(a)[0]) if np.ndim(a) else -1 for a in leaves}
    if len(sizes) != 1 or min(sizes) < 1:
        raise ValueError(f"`data` arrays must share one leading example axis, got sizes {sizes}")
    total = sizes.pop()
    size = min(batch_size, total)
    full = total // size
    stacked = jax.tree.map(
        lambda a: jnp.asarray(a[: full * size]).reshape(full, size, *np.shape(a)[1:]), data
    )
    tail = (
        None
        if full * size == total
        else jax.tree.map(lambda a: jnp.asarray(a[full * size :]), data)
    )
    if shard and jax.device_count() > 1 and size % jax.device_count() == 0:
        mesh = Mesh(np.array(jax.devices()), ("data",))
        stacked = jax.device_put(stacked, NamedSharding(mesh, P(None, "data")))
    return DatasetLoss(batch_loss_fn, stacked, tail, total)


class BatchSpread(NamedTuple):
    """The top eigenvalue of single batches beside that of the whole data set."""

    dataset: float  # top eigenvalue of the mean loss over every example
    per_batch: np.ndarray  # top eigenvalue of each of the first `num_batches` batches
    batch_size: int

    @property
    def relative_spread(self) -> float:
        """std over batches / the data set's value: how much one minibatch misleads."""
        return float(np.std(self.per_batch, ddof=1) / abs(self.dataset))


def batch_spread(
    loss: DatasetLoss,
    params: PyTree,
    *,
    num_batches: int = 5,
    key: jax.Array | None = None,
    **kwargs,
) -> BatchSpread:
    """How the top eigenvalue varies with the batch used, against the whole data set's.

    ``kwargs`` go to :func:`~jaxopt_notes.hessian.eigenvalues` (e.g. ``tol``, ``wrt``).
    """
    from jaxopt_notes.hessian.spectrum import eigenvalues

    if not isinstance(loss, DatasetLoss):
        raise TypeError(f"`loss` must be a DatasetLoss (see over_dataset), got {type(loss)}")
    _checks.integer("num_batches", num_batches, low=2)
    full = loss.num_batches - (loss.tail is not None)
    if num_batches > full:
        raise ValueError(f"`num_batches` must be <= the {full} full batches, got {num_batches}")
    per = [  # each batch as a one-batch data set: one compilation serves them all
        float(
            eigenvalues(
                over_dataset(loss.batch_loss_fn, loss.batch(i), batch_size=loss.batch_size),
                params,
                key=key,
                **kwargs,
            ).values[0]
        )
        for i in range(num_batches)
    ]
    top = float(eigenvalues(loss, params, key=key, **kwargs).values[0])
    return BatchSpread(top, np.array(per), loss.batch_size)
