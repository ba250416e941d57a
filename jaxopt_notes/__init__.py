"""jaxopt_notes: composable deep-learning optimizers, Hessian tools and experiments in JAX.

>>> import jax.numpy as jnp, jaxopt_notes as jn
>>> tx = jn.chain(jn.clip_by_global_norm(1.0), jn.adam(1e-3))
>>> params = {"w": jnp.ones(3)}
>>> updates, state = tx.update({"w": jnp.full(3, 10.0)}, tx.init(params), params)
>>> jn.apply_updates(params, updates)["w"]
Array([0.999, 0.999, 0.999], dtype=float32)
"""

from jaxopt_notes import schedules
from jaxopt_notes._hyperparams import hyperparams
from jaxopt_notes.adadelta import adadelta, delta_ratio
from jaxopt_notes.adam_family import adam, adamax, adamw, amsgrad, nadam, nadamw
from jaxopt_notes.combine import (
    SkipNonfiniteState,
    SwitchState,
    apply_updates,
    chain,
    skip_nonfinite,
    switch,
)
from jaxopt_notes.modern import (
    adabelief,
    belief_moment,
    lion,
    radam,
    rectify,
    sign_momentum,
    yogi,
    yogi_moment,
)
from jaxopt_notes.moments import (
    Moments,
    accumulate_squares,
    amsgrad_max,
    bias_correction,
    first_moment,
    infinity_moment,
    ratio,
    scale_by_rms,
    scale_by_sum_of_squares,
    second_moment,
)
from jaxopt_notes.optimizers import OPTIMIZERS, adagrad, adam_then_sgd, rmsprop, sgd
from jaxopt_notes.optimizers_dadapt import (
    dadapt_adamw,
    prodigy,
    scale_by_dadapt_adamw,
    scale_by_prodigy,
)
from jaxopt_notes.optimizers_factored import (
    adafactor,
    clip_by_block_rms,
    ema,
    factored_rms,
    scale_by_param_block_rms,
)
from jaxopt_notes.optimizers_free import dog, dowg, scale_by_dog, scale_by_dowg
from jaxopt_notes.optimizers_muon import (
    muon,
    muon_momentum,
    newton_schulz,
    scale_by_shape,
)
from jaxopt_notes.optimizers_recent import (
    adan,
    ademamix,
    adopt,
    adopt_momentum,
    adopt_scale,
    scale_by_adan,
    slow_momentum,
)
from jaxopt_notes.optimizers_rprop import rprop, scale_by_rprop
from jaxopt_notes.optimizers_schedule_free import (
    schedule_free,
    schedule_free_adamw,
    schedule_free_eval_params,
    schedule_free_sgd,
)
from jaxopt_notes.optimizers_shampoo import graft, shampoo, shampoo_preconditioner
from jaxopt_notes.optimizers_soap import scale_by_soap, soap
from jaxopt_notes.optimizers_sophia import (
    clipped_ratio,
    hessian_moment,
    hutchinson_diagonal,
    sophia,
)
from jaxopt_notes.sharding import zero1
from jaxopt_notes.transforms import (
    add_decayed_weights,
    clip,
    clip_by_global_norm,
    current_learning_rate,
    global_norm,
    scale,
    scale_by_learning_rate,
    trace,
)
from jaxopt_notes.trust_ratio import lamb, lars, trust_ratio
from jaxopt_notes.wrappers import (
    LookaheadParams,
    averaged_params,
    ema_params,
    lookahead,
    normalize,
    polyak_params,
    sam,
)

__all__ = [
    "LookaheadParams",
    "Moments",
    "OPTIMIZERS",
    "SkipNonfiniteState",
    "SwitchState",
    "accumulate_squares",
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adam_then_sgd",
    "adamax",
    "adamw",
    "adan",
    "add_decayed_weights",
    "ademamix",
    "adopt",
    "adopt_momentum",
    "adopt_scale",
    "amsgrad",
    "amsgrad_max",
    "apply_updates",
    "averaged_params",
    "belief_moment",
    "bias_correction",
    "chain",
    "clip",
    "clip_by_block_rms",
    "clip_by_global_norm",
    "clipped_ratio",
    "current_learning_rate",
    "dadapt_adamw",
    "delta_ratio",
    "dog",
    "dowg",
    "ema",
    "ema_params",
    "factored_rms",
    "first_moment",
    "fused",
    "global_norm",
    "graft",
    "hessian_moment",
    "hutchinson_diagonal",
    "hyperparams",
    "infinity_moment",
    "lamb",
    "lars",
    "lion",
    "lookahead",
    "muon",
    "muon_momentum",
    "nadam",
    "nadamw",
    "newton_schulz",
    "normalize",
    "polyak_params",
    "prodigy",
    "radam",
    "ratio",
    "rectify",
    "rmsprop",
    "rprop",
    "sam",
    "scale",
    "scale_by_adan",
    "scale_by_dadapt_adamw",
    "scale_by_dog",
    "scale_by_dowg",
    "scale_by_learning_rate",
    "scale_by_param_block_rms",
    "scale_by_prodigy",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_shape",
    "scale_by_soap",
    "scale_by_sum_of_squares",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
    "schedules",
    "second_moment",
    "sgd",
    "shampoo",
    "shampoo_preconditioner",
    "sign_momentum",
    "skip_nonfinite",
    "slow_momentum",
    "soap",
    "sophia",
    "switch",
    "trace",
    "trust_ratio",
    "yogi",
    "yogi_moment",
    "zero1",
]


def __getattr__(name: str):
    """``jn.fused`` is imported on first use: it brings the native kernels' build machinery,
    which ``import jaxopt_notes`` should not load."""
    if name == "fused":
        import importlib

        return importlib.import_module("jaxopt_notes.fused")
    raise AttributeError(f"module 'jaxopt_notes' has no attribute {name!r}")
