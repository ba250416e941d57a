"""Flax NNX models of the notes: LeNet (classic and modern) and an MLP, plus a pure-function view.

Images are NHWC. Every hyperparameter is keyword-only and checked before any array is made.
Modules follow NNX's modes: as built they are in training mode (dropout on, BatchNorm on batch
statistics); ``model.eval()`` or ``nnx.view(model, deterministic=True, use_running_average=True)``
switches both off. :func:`functional` crosses into pure functions for the Hessian tools and the
gradient transforms: ``apply(params, x) -> logits`` over a params pytree; :func:`split` and
:meth:`Split.merge` are the one way to cut a model into parameters, BatchNorm statistics and the
rest, and to put it back.

>>> import jax.numpy as jnp
>>> from flax import nnx
>>> model = LeNet(rngs=nnx.Rngs(0))
>>> count_params(model)
61706
>>> model(jnp.zeros((2, 28, 28, 1))).shape
(2, 10)
"""

from jaxopt_notes.models._layers import ACTIVATIONS, INITS, kernel_init, pool_2x2
from jaxopt_notes.models._nets import MLP, VARIANTS, LeNet, count_params, functional
from jaxopt_notes.models._split import Split, split

__all__ = [
    "ACTIVATIONS",
    "INITS",
    "MLP",
    "VARIANTS",
    "LeNet",
    "Split",
    "count_params",
    "functional",
    "kernel_init",
    "pool_2x2",
    "split",
]
