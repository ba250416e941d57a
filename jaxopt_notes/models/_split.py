"""One way across the NNX / pure-function boundary: :func:`split` and :meth:`Split.merge`.

Training steps, evaluation, the Hessian tools and the experiments all need an NNX model as
pure functions of its parameters and BatchNorm statistics; this module is the one place that
cuts a model into those parts and puts it back together.

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> from jaxopt_notes import models
>>> model = models.MLP(in_features=4, depth=1, width=3, batch_norm=True, rngs=nnx.Rngs(0))
>>> pure = models.split(model, train=False)
>>> sorted(pure.stats["norms"][0])
['mean', 'var']
>>> pure.merge(pure.params)(jnp.ones((2, 4))).shape
(2, 10)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flax import nnx


class Split(NamedTuple):
    """An NNX model cut into its graph, ``nnx.Param``, ``nnx.BatchStat`` and the other state."""

    graphdef: Any
    params: nnx.State
    stats: nnx.State  # BatchNorm running averages (empty for a model without BatchNorm)
    rest: nnx.State  # everything else: RNG streams, counters

    def merge(self, params: Any = None, stats: Any = None, *, copy: bool = False) -> nnx.Module:
        """The model again with ``params`` and ``stats`` (``None``: the ones split off).

        ``copy=True`` gives the merged model fresh variables, so a traced function can update
        its BatchNorm statistics and read them back without touching the split-off ones.
        """
        params = self.params if params is None else params
        stats = self.stats if stats is None else stats
        return nnx.merge(self.graphdef, params, stats, self.rest, copy=copy)


def split(model: nnx.Module, *, train: bool | None = None) -> Split:
    """``model`` as a :class:`Split`, viewed in training or evaluation mode first.

    ``train=True``: dropout on and BatchNorm on batch statistics; ``train=False``: dropout off
    and BatchNorm on its running averages; ``None``: the model's modes as they are. The view
    changes only the merged model's modes, never ``model`` itself.
    """
    if train is not None:
        model = nnx.view(
            model, deterministic=not train, use_running_average=not train, raise_if_not_found=False
        )
    graphdef, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    return Split(graphdef, params, stats, rest)
