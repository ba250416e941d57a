"""``load_run``: a trained run back as a model, its parameters, its data and its loss."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxopt_notes import _checks, models
from jaxopt_notes import data as data_lib
from jaxopt_notes.train import runs
from jaxopt_notes.train.config import TrainConfig, make_optimizer
from jaxopt_notes.train.loop import with_validation
from jaxopt_notes.train.steps import init_state, label_loss, make_mesh


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """A trained run, read back by :func:`load_run`.

    Attributes:
      path: the run directory.
      config: its resolved :class:`~jaxopt_notes.train.TrainConfig`.
      model: the network (``nnx.Module``) holding ``params``, in evaluation mode.
      params: the selected parameters (``config.select``: best validation epoch or last; the
        moving average when ``config.ema``), an ``nnx.State`` pytree.
      batch_stats: the BatchNorm averages going with them (an empty state without BatchNorm).
      init_params: the parameters at initialisation (rebuilt from ``config.seed``).
      last_params: the parameters after the last epoch run.
      data: the :class:`~jaxopt_notes.data.Dataset` as the run split it: ``x_train``/``y_train``
        (what it trained on), ``x_val``/``y_val``, ``x_test``/``y_test``; uint8 images.
      epoch: the epoch of the checkpoint read; ``history``: its per-epoch records.
      summary: ``summary.json`` when the run finished (else ``None``).
    """

    path: Path
    config: TrainConfig
    model: nnx.Module
    params: Any
    batch_stats: Any
    init_params: Any
    last_params: Any
    data: data_lib.Dataset
    epoch: int
    history: list[dict]
    summary: dict | None
    _pure: models.Split = dataclasses.field(repr=False)

    def apply(self, params: Any, x: jax.Array) -> jax.Array:
        """Logits of uint8 images ``x`` (normalised as in training) under ``params``."""
        net = self._pure.merge(params, self.batch_stats)
        return net(data_lib.normalize(jnp.asarray(x), self.data.mean, self.data.std))

    def batch_loss(self, params: Any, x: jax.Array, y: jax.Array) -> jax.Array:
        """The run's mean loss (its `loss`, label smoothing, no augmentation) on a batch."""
        logits = self.apply(params, x)
        return label_loss(self.config, logits, jnp.asarray(y), self.data.num_classes)

    def arrays(self, split: str = "train", num_examples: int | None = None):
        """``(x, y)`` of ``split`` ("train", "val" or "test"), its first ``num_examples``."""
        _checks.one_of("split", split, ("train", "val", "test"))
        x, y = getattr(self.data, f"x_{split}"), getattr(self.data, f"y_{split}")
        if num_examples is not None:
            if not 1 <= num_examples <= len(y):
                raise ValueError(
                    f"`num_examples` must be in 1..{len(y)} for split {split!r}, got {num_examples}"
                )
            x, y = x[:num_examples], y[:num_examples]
        return x, y

    def trajectory(self) -> list[Any]:
        """The parameters the run evaluated after each epoch (init first), as pytrees."""
        from jax.flatten_util import ravel_pytree

        unravel = ravel_pytree(self.init_params)[1]
        return [unravel(jnp.asarray(v)) for v in runs.read_path(self.path)]

    def landscape_split(self) -> Any:
        """The :class:`~jaxopt_notes.landscape.FirstLayerSplit` of :meth:`batch_loss` after
        LeNet's first convolution (linear in its parameters), for ``split=`` of
        :func:`~jaxopt_notes.landscape.surface`; ``None`` for the MLP. Exact, but on the CPU
        about 2x slower for LeNet: XLA fuses the combination of the three stored feature maps
        into the pooling's reduction, which it does not vectorise, and the first convolution
        it saves is a small share of a point (``bench_results/landscape/``); the command line
        does not use it."""
        from jaxopt_notes import landscape

        if self.config.model != "lenet":
            return None
        cfg, classes = self.config, self.data.num_classes
        loss = lambda logits, y: label_loss(cfg, logits, jnp.asarray(y), classes)  # noqa: E731

        prepare = lambda x: data_lib.normalize(jnp.asarray(x), self.data.mean, self.data.std)  # noqa: E731
        return landscape.first_layer_split(self.model, "conv1", loss, prepare=prepare)

    def loss_fn(self, split: str = "train", num_examples: int | None = None) -> Callable:
        """``loss_fn(params) -> scalar``: :meth:`batch_loss` over ``split``'s examples (all, or
        the first ``num_examples``), closed over them; what the Hessian tools take."""
        x, y = (jnp.asarray(a) for a in self.arrays(split, num_examples))
        return lambda params: self.batch_loss(params, x, y)


def load_run(run_dir: str | Path) -> Run:
    """The run in ``run_dir`` as a :class:`Run`, from its newest intact checkpoint.

    Nothing is written into ``run_dir``. The data are loaded again from ``config.dataset`` and
    split as the run split them; the split's checksum must equal the one the run recorded.

    >>> import tempfile
    >>> from jaxopt_notes import train
    >>> cfg = train.TrainConfig(model="mlp", width=8, depth=1, dataset="digits", epochs=1)
    >>> out = tempfile.mkdtemp()
    >>> _ = train.train(cfg, out_dir=out, progress=False)
    >>> run = load_run(out)
    >>> run.epoch, run.data.x_val.shape, float(run.loss_fn("val")(run.params)) > 0
    (1, (144, 8, 8, 1), True)
    """
    path = Path(run_dir)
    if not (path / "run.json").is_file() or not (path / "config.toml").is_file():
        raise ValueError(f"`run_dir` must be a run directory with run.json, got {str(path)!r}")
    cfg = runs.read_config(path)
    identity = runs.read_identity(path)
    data = with_validation(cfg, None)
    if (data.split or {}) != identity.get("split", {}):
        raise ValueError(
            f"`run_dir` {str(path)!r} recorded the split {identity.get('split')}, but its "
            f"config now gives {data.split}"
        )
    tx = make_optimizer(cfg, len(data.y_train) // cfg.batch_size)
    model, state = init_state(cfg, data, tx, make_mesh(1))
    init_params = state.params
    best = (state.params if state.ema is None else state.ema, state.batch_stats)
    restored = runs.Checkpoints(path, read_only=True).restore(
        {"state": state, "best": best}, identity["run_id"]
    )
    if restored is None:
        raise ValueError(f"`run_dir` {str(path)!r} has no checkpoint yet")
    trees, run = restored
    state = trees["state"]
    chosen = (
        trees["best"]
        if cfg.select == "best"
        else (state.params if state.ema is None else state.ema, state.batch_stats)
    )
    net = models.split(model, train=False).merge(*chosen)
    summary_path = path / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    if summary is not None and not isinstance(summary, dict):
        raise ValueError(
            f"`run_dir` {str(path)!r} has a summary.json that is not an object "
            f"(got {type(summary).__name__}): it was edited or damaged"
        )
    return Run(
        path=path,
        config=cfg,
        model=net,
        params=chosen[0],
        batch_stats=chosen[1],
        init_params=init_params,
        last_params=state.params,
        data=data,
        epoch=len(run["history"]),
        history=run["history"],
        summary=summary,
        _pure=models.split(net),
    )
