"""The Hessian of a loss: products, spectra, critical points, saddle escape, trace and density.

``loss_fn(params) -> scalar`` closes over its data; ``params`` is any pytree of float arrays (a
Flax NNX ``nnx.State`` too; see :func:`from_nnx`). Every product is forward-over-reverse
(``jvp`` of ``grad``): one HVP costs about two gradients and never forms the matrix.

Every tool also takes, in place of ``loss_fn``:

* :func:`over_dataset` ``(batch_loss_fn, data, batch_size=...)``: the Hessian of the *mean loss
  over the whole data set*, its products summed over batches (PyHessian's dataloader mode);
* :class:`GaussNewton` ``(model_fn, output_loss)``: the Gauss-Newton matrix instead of ``H``.

Solvers take ``params`` as a traced argument and ``loss_fn`` as a static one: calling them again
with new params of the same shapes reuses the compiled code. Build ``loss_fn`` once (not a fresh
lambda per call), or every call compiles anew. ``loop="auto"`` drives one jitted step from the
host on CPU (XLA:CPU runs products slower inside loop bodies) and runs one compiled loop on
accelerators; ``"host"`` / ``"device"`` force either.

Lanczos (:func:`eigenvalues`) stops when the wanted pairs' residuals are below ``tol`` times the
spectrum's scale; its result says how many steps and products it spent and which pairs
converged. A non-finite loss, gradient or product raises a one-sentence ValueError.

The spectrum depends on the loss convention (mean or sum over examples, 0.5*MSE or MSE): pass
``loss_info={"reduction": "mean", "num_examples": n}`` and it is recorded on the result.
``wrt`` restricts every tool to some parameters: a path prefix such as ``"layers/0"`` or a
predicate ``(path, leaf) -> bool`` (paths as :func:`leaf_paths` prints them); the others are held
fixed, and returned vectors are zero there.
"""

from jaxopt_notes.hessian._core import DENSE_MAX, check_eval_mode, from_nnx, leaf_paths
from jaxopt_notes.hessian.critical import (
    Classification,
    EscapeStep,
    classify,
    downhill,
    escape_direction,
    escape_step,
    explain,
)
from jaxopt_notes.hessian.curvature import (
    Diagonal,
    GaussNewton,
    LayerSpectrum,
    diagonal,
    ggn_vp,
    layer_spectra,
    layer_table,
    layers,
)
from jaxopt_notes.hessian.dataset import BatchSpread, DatasetLoss, batch_spread, over_dataset
from jaxopt_notes.hessian.density import SpectralDensity, TraceEstimate, spectral_density, trace
from jaxopt_notes.hessian.escape import EscapeComparison, escape_compare
from jaxopt_notes.hessian.find import CriticalPoint, find_critical
from jaxopt_notes.hessian.krylov import Extremes, Tridiagonal, lanczos, lanczos_extremes, ritz
from jaxopt_notes.hessian.report import analyse, json_safe
from jaxopt_notes.hessian.saddles import saddles_run
from jaxopt_notes.hessian.sharpness import (
    Reading,
    SharpnessHistory,
    measure,
    plot_sharpness,
    plot_spectral_density,
    track_sharpness,
)
from jaxopt_notes.hessian.spectrum import Eigenpairs, dataset_hvp, dense, eigenvalues, hvp

# fmt: off
__all__ = [
    "hvp", "dataset_hvp", "dense", "eigenvalues", "classify", "explain", "escape_direction",
    "escape_step", "downhill", "find_critical", "escape_compare", "saddles_run", "trace",
    "spectral_density", "over_dataset", "batch_spread",
    "GaussNewton", "ggn_vp", "diagonal", "layers", "layer_spectra", "layer_table",
    "check_eval_mode", "from_nnx", "leaf_paths", "lanczos", "lanczos_extremes", "ritz",
    "analyse", "json_safe", "measure", "track_sharpness", "plot_spectral_density", "plot_sharpness",
    "DENSE_MAX",
    "Tridiagonal", "Extremes", "Eigenpairs", "Classification", "EscapeStep", "CriticalPoint",
    "EscapeComparison", "TraceEstimate",
    "SpectralDensity", "Reading", "SharpnessHistory", "DatasetLoss", "BatchSpread", "Diagonal",
    "LayerSpectrum",
]
# fmt: on
