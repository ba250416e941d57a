r"""Loss landscapes: 1-D interpolations and 2-D slices of a network's loss around its parameters.

- :func:`interpolate`: the loss along :math:`(1-\alpha)\,\theta_a + \alpha\,\theta_b`
  (Goodfellow, Vinyals & Saxe 2015), e.g. init -> final, or run A -> run B.
- :func:`surface`: the loss on the plane :math:`\theta + x\,d_1 + y\,d_2` over a grid, with
  directions from :func:`random_directions` (filter-normalised, Li et al. 2018),
  :func:`eigen_directions` (the top-2 Hessian eigenvectors) or :func:`pca_directions` (the
  principal directions of the training path, whose projection :func:`surface` can carry).
- :func:`plot_surface`, :func:`plot_pair`, :func:`plot_line`: the figures.
- :func:`draw_runs`: all of it for one trained run or two (``jaxopt-notes landscape``).

Every grid is one compiled program over blocks of points (:func:`grid_values`);
``batch_loss(params, x, y) -> scalar`` is the loss of one parameter set on a batch (e.g.
:meth:`jaxopt_notes.train.Run.batch_loss`). With a :class:`FirstLayerSplit`
(:func:`first_layer_split`), the first layer, linear in its parameters, is computed once per
direction instead of once per point.

>>> import jax.numpy as jnp
>>> loss = lambda p, x, y: jnp.mean((x @ p["w"] - y) ** 2)
>>> x, y = jnp.eye(2), jnp.zeros(2)
>>> dirs = ({"w": jnp.array([1.0, 0])}, {"w": jnp.array([0, 1.0])})
>>> grid = surface(loss, {"w": jnp.zeros(2)}, dirs, x, y, xs=[0.0, 1.0], ys=[0.0, 2.0])
>>> grid.values.tolist()  # rows are y, columns x: (x^2 + y^2) / 2
[[0.0, 0.5], [2.0, 2.5]]
"""

from jaxopt_notes.landscape._directions import (
    eigen_directions,
    filter_normalize,
    pca_directions,
    random_directions,
)
from jaxopt_notes.landscape._draw import KINDS, draw_runs
from jaxopt_notes.landscape._figures import plot_line, plot_pair, plot_surface
from jaxopt_notes.landscape._grid import (
    BatchLoss,
    Progress,
    Surface,
    grid_values,
    interpolate,
    surface,
)
from jaxopt_notes.landscape._split import FirstLayerSplit, first_layer_split

__all__ = [
    "KINDS",
    "BatchLoss",
    "FirstLayerSplit",
    "Progress",
    "Surface",
    "draw_runs",
    "eigen_directions",
    "filter_normalize",
    "first_layer_split",
    "grid_values",
    "interpolate",
    "pca_directions",
    "plot_line",
    "plot_pair",
    "plot_surface",
    "random_directions",
    "surface",
]
