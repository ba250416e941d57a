"""The run config: every knob of a training run, checked, resolved and written as TOML.

A :class:`TrainConfig` is the whole recipe of a run. :meth:`TrainConfig.resolved` fills in what
was left to defaults (the model's init, the schedule's horizon), and that resolved config is what
a run writes into ``RUN/config.toml``; :func:`read_toml` reads it back, so
``jaxopt-notes train --config RUN/config.toml`` repeats the run. Optimizer hyperparameters left
unset (``None``) take the optimizer's own default for its ``convention`` and are omitted from the
TOML (TOML has no null).

>>> cfg = TrainConfig(optimizer="sgd", momentum=0.9, schedule="step", epochs=4)
>>> from_toml(to_toml(cfg.resolved())) == cfg.resolved()
True
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import tomllib
from pathlib import Path
from typing import Any

import optax

import jaxopt_notes as jn
from jaxopt_notes import _checks, models, schedules
from jaxopt_notes import data as data_lib

SCHEDULES = ("constant", "step", "exponential", "inverse_time", "cosine", "cyclic")
INITS = ("default",) + models.INITS
MODEL_INIT = {"lenet": "lecun", "mlp": "he"}  # "default" means the model's own scheme
HYPERPARAMETERS = ("momentum", "nesterov", "b1", "b2", "eps", "decay")
LOSSES = ("cross_entropy", "mse")


def _knob(default: Any, help_text: str, choices: tuple | None = None) -> Any:
    return dataclasses.field(default=default, metadata={"help": help_text, "choices": choices})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on; each field is a CLI option and a key of ``config.toml``."""

    # the model
    model: str = _knob("lenet", "the network", ("lenet", "mlp"))
    variant: str = _knob(
        "modern",
        "LeNet: classic (sigmoid, average pool) or modern (ReLU, max pool)",
        models.VARIANTS,
    )
    depth: int = _knob(2, "MLP hidden layers")
    width: int = _knob(256, "MLP hidden units per layer")
    activation: str = _knob("relu", "MLP activation", tuple(models.ACTIVATIONS))
    dropout: float = _knob(0.0, "MLP inverted dropout probability, in [0, 1)")
    batch_norm: bool = _knob(False, "MLP BatchNorm after each hidden layer")
    init: str = _knob(
        "default",
        "weight init: the model's default (LeNet lecun, MLP he), normal with "
        "--init-std, xavier (Glorot normal), he or lecun (normal)",
        INITS,
    )
    init_std: float = _knob(0.01, "std of --init normal")
    # the data
    dataset: str = _knob("mnist5k", "the data set", data_lib.DATASETS)
    val_fraction: float = _knob(0.1, "fraction of the training data held out for validation")
    val_seed: int = _knob(0, "seed of the stratified validation split")
    batch_size: int = _knob(64, "examples per step")
    data_shards: int = _knob(
        1,
        "the training data as this many fixed shards (example i in shard i mod S), each "
        "shuffled alone and giving batch_size / S examples of every step; a run on several "
        "processes needs a multiple of its devices, and is the same run on any of them",
    )
    shift: int = _knob(2, "augmentation: random shift by up to this many pixels")
    flip: bool = _knob(False, "augmentation: random horizontal flips")
    cutout: int = _knob(0, "augmentation: side of a random zeroed square (0: off)")
    mixup: float = _knob(0.0, "augmentation: mixup Beta parameter (0: off)")
    rotate: float = _knob(10.0, "augmentation: random rotation by up to this many degrees")
    scale: float = _knob(0.1, "augmentation: random zoom by a factor in [1 - this, 1 + this]")
    elastic: float = _knob(
        2.0, "augmentation: elastic distortion, largest displacement in pixels (0: off)"
    )
    elastic_sigma: float = _knob(4.0, "augmentation: smoothing std of the elastic field, pixels")
    label_smoothing: float = _knob(0.1, "label smoothing of the cross-entropy, in [0, 1)")
    loss: str = _knob(
        "cross_entropy",
        "training loss: softmax cross_entropy, or mse (half the squared error of the logits "
        "against the one-hot labels, summed over classes: Cohen et al. 2021's square loss)",
        LOSSES,
    )
    # the optimizer
    optimizer: str = _knob("adam", "the optimizer (jn.OPTIMIZERS)", tuple(jn.OPTIMIZERS))
    learning_rate: float = _knob(3e-3, "peak learning rate")
    convention: str = _knob("optax", "hyperparameter convention", ("optax", "pytorch"))
    momentum: float | None = _knob(None, "momentum (sgd, rmsprop)")
    nesterov: bool | None = _knob(None, "Nesterov momentum (sgd, rmsprop)")
    b1: float | None = _knob(None, "first-moment decay (Adam family)")
    b2: float | None = _knob(None, "second-moment decay (Adam family)")
    eps: float | None = _knob(None, "denominator epsilon")
    decay: float | None = _knob(None, "rmsprop's squared-gradient decay")
    weight_decay: float = _knob(0.0, "weight decay lambda (0: off)")
    weight_decay_mode: str = _knob(
        "decoupled",
        "coupled (L2 added to the gradient) or decoupled (AdamW-style, after the "
        "optimizer, times the learning rate)",
        ("coupled", "decoupled"),
    )
    clip_value: float = _knob(0.0, "clip each gradient coordinate to +-this (0: off)")
    clip_norm: float = _knob(0.0, "clip the gradient's global norm to this (0: off)")
    skip_nonfinite: bool = _knob(False, "skip steps whose gradient holds a NaN or Inf")
    # the schedule (in epochs; converted to steps)
    schedule: str = _knob("cosine", "learning-rate schedule", SCHEDULES)
    warmup_epochs: float = _knob(0.0, "linear warm-up from 0 around any schedule, in epochs")
    schedule_epochs: int = _knob(0, "horizon of cosine decay (0: --epochs; fixed on resume)")
    lr_gamma: float = _knob(0.1, "step: multiply the rate by this every --lr-every epochs")
    lr_every: int = _knob(3, "step: epochs between decays; exponential/inverse_time: unit")
    decay_rate: float = _knob(0.5, "exponential: rate factor per unit; inverse_time: k")
    power: float = _knob(1.0, "inverse_time: the power p of 1 / (1 + k t)^p")
    lr_alpha: float = _knob(0.0, "cosine/cyclic: the floor as a fraction of the peak")
    cycle_epochs: int = _knob(2, "cyclic: epochs of the first cycle (SGDR restarts)")
    cycle_mult: float = _knob(1.0, "cyclic: each cycle this many times longer")
    # the loop
    epochs: int = _knob(60, "passes over the training data (may be raised on --resume)")
    seed: int = _knob(0, "seed of the init, the shuffles, dropout and augmentation")
    patience: int = _knob(
        0, "early stop after this many epochs without a better validation accuracy (0: off)"
    )
    select: str = _knob(
        "best",
        "parameters tested at the end: best validation epoch (accuracy, ties by lower loss) "
        "or last",
        ("best", "last"),
    )
    tta_shift: int = _knob(
        1,
        "test-time augmentation: validation and test accuracy from the softmax averaged over "
        "each image and its shifts by this many pixels up, down, left and right (0: off)",
    )
    ema: float = _knob(
        0.0, "evaluate an exponential moving average of the parameters with this decay (0: off)"
    )
    track_curvature: int = _knob(0, "every this many steps, record Hessian eigenvalues (0: off)")
    curvature_examples: int = _knob(
        32, "training images the curvature is measured on (0: the whole training set)"
    )
    curvature_iters: int = _knob(4, "Lanczos steps per curvature measurement (warm-started)")
    curvature_probes: int = _knob(2, "Hutchinson probes of the trace per measurement")

    def __post_init__(self):
        for field in dataclasses.fields(self):
            choices = field.metadata.get("choices")
            if choices is not None and getattr(self, field.name) not in choices:
                _checks.one_of(field.name, getattr(self, field.name), choices)
        for name in ("epochs", "batch_size", "lr_every", "cycle_epochs", "data_shards"):
            _at_least(name, getattr(self, name), 1)
        if self.batch_size % self.data_shards:
            raise ValueError(
                f"`batch_size` must be divisible by `data_shards` ({self.data_shards}), "
                f"got {self.batch_size}"
            )
        for name in (
            "depth",
            "shift",
            "cutout",
            "patience",
            "track_curvature",
            "schedule_epochs",
            "curvature_examples",
            "tta_shift",
        ):
            _at_least(name, getattr(self, name), 0)
        for name in ("curvature_iters", "curvature_probes"):
            _at_least(name, getattr(self, name), 2)
        _real("learning_rate", self.learning_rate, low=0.0, low_open=True)
        _real("val_fraction", self.val_fraction, low=0.0, high=1.0, low_open=True, high_open=True)
        _real("dropout", self.dropout, low=0.0, high=1.0, high_open=True)
        _real("label_smoothing", self.label_smoothing, low=0.0, high=1.0, high_open=True)
        _real("ema", self.ema, low=0.0, high=1.0, high_open=True)
        for name in ("init_std", "lr_gamma", "decay_rate", "power"):
            _real(name, getattr(self, name), low=0.0, low_open=True)
        for name in ("weight_decay", "clip_value", "clip_norm", "warmup_epochs", "mixup"):
            _real(name, getattr(self, name), low=0.0)
        _real("lr_alpha", self.lr_alpha, low=0.0, high=1.0)
        _real("rotate", self.rotate, low=0.0, high=180.0)
        _real("scale", self.scale, low=0.0, high=1.0, high_open=True)
        _real("elastic", self.elastic, low=0.0)
        _real("elastic_sigma", self.elastic_sigma, low=0.0, low_open=True)
        _real("cycle_mult", self.cycle_mult, low=1.0)
        _at_least("width", self.width, 1)
        _seed("seed", self.seed, negative=True)
        _seed("val_seed", self.val_seed, negative=False)
        self._check_augment_sizes()
        self.hyperparameters()  # refuses knobs the optimizer does not take

    def _check_augment_sizes(self) -> None:
        """A shift of half the image moves the digit off it, and a cutout larger than half of
        it hides most of it: both train on images with nothing left to learn from."""
        side = data_lib.IMAGE_SIDE.get(self.dataset)
        if side is None:
            return
        for name in ("shift", "tta_shift", "cutout"):
            value, most = getattr(self, name), (side - 1) // 2 if name != "cutout" else side // 2
            if value > most:
                raise ValueError(
                    f"`{name}` must be at most {most} pixels for {self.dataset}'s "
                    f"{side}x{side} images, got {value}"
                )

    @property
    def augment(self) -> data_lib.Augment:
        names = ("shift", "flip", "cutout", "mixup", "rotate", "scale", "elastic", "elastic_sigma")
        return data_lib.Augment(**{name: getattr(self, name) for name in names})

    def resolved(self) -> TrainConfig:
        """The config with its defaults made explicit: what ``config.toml`` records."""
        init = MODEL_INIT[self.model] if self.init == "default" else self.init
        return dataclasses.replace(
            self, init=init, schedule_epochs=self.schedule_epochs or self.epochs
        )

    def hyperparameters(self) -> dict[str, Any]:
        """The optimizer's keyword arguments set in this config (``None`` ones left out)."""
        accepted = inspect.signature(jn.OPTIMIZERS[self.optimizer]).parameters
        given = {k: getattr(self, k) for k in HYPERPARAMETERS if getattr(self, k) is not None}
        for name in given:
            if name not in accepted:
                takes = [k for k in HYPERPARAMETERS if k in accepted]
                raise ValueError(
                    f"`{name}` is not a hyperparameter of optimizer {self.optimizer!r} "
                    f"(it takes {takes}), got {given[name]!r}"
                )
        return given


def _at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}")


def _seed(name: str, value: Any, *, negative: bool) -> None:
    """A seed must fit the 64-bit integer JAX's and NumPy's generators take: 2**64 was
    accepted here and failed deep inside ``jax.random.key`` with an OverflowError."""
    low, shown = (-(2**63), "-2**63") if negative else (0, "0")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 2**63:
        raise ValueError(f"`{name}` must be an integer in [{shown}, 2**63), got {value!r}")


def _real(name, value, *, low=-math.inf, high=math.inf, low_open=False, high_open=False):
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"`{name}` must be a finite number in {interval}, got {value!r}")


# ----- the optimizer and its schedule -----


def make_schedule(cfg: TrainConfig, steps_per_epoch: int, *, learning_rate: Any = None) -> Any:
    """The learning rate of ``cfg``: a float for ``constant`` without warm-up, else a schedule;
    ``learning_rate`` (a number or an array, e.g. a searched one) replaces the config's peak."""
    lr, spe = cfg.learning_rate if learning_rate is None else learning_rate, steps_per_epoch
    horizon = (cfg.schedule_epochs or cfg.epochs) * spe
    warmup = round(cfg.warmup_epochs * spe)
    unit = cfg.lr_every * spe
    spans = {
        "schedule_epochs" if cfg.schedule_epochs else "epochs": horizon,
        "warmup_epochs": warmup,
        "lr_every": unit,
        "cycle_epochs": cfg.cycle_epochs * spe,
    }
    for name, steps in spans.items():
        if steps >= 2**31:  # the step count is an int32 inside the compiled step
            raise ValueError(
                f"`{name}` must span under 2**31 steps at {spe} steps per epoch, got "
                f"{getattr(cfg, name)!r} ({steps} steps)"
            )
    make = {
        "constant": lambda: schedules.constant(lr),
        "step": lambda: schedules.step_decay(lr, gamma=cfg.lr_gamma, every=unit),
        "exponential": lambda: schedules.exponential_decay(
            lr, decay_rate=cfg.decay_rate, decay_steps=unit
        ),
        "inverse_time": lambda: schedules.inverse_time_decay(
            lr, decay_rate=cfg.decay_rate, decay_steps=unit, power=cfg.power
        ),
        "cosine": lambda: schedules.cosine_decay(
            lr, decay_steps=max(1, horizon - warmup), alpha=cfg.lr_alpha
        ),
        "cyclic": lambda: schedules.cyclic(
            lr, period=cfg.cycle_epochs * spe, period_mult=cfg.cycle_mult, alpha=cfg.lr_alpha
        ),
    }
    if cfg.schedule == "constant" and warmup == 0:
        return lr
    schedule = make[cfg.schedule]()
    return schedules.linear_warmup(schedule, warmup_steps=warmup) if warmup else schedule


def make_optimizer(
    cfg: TrainConfig, steps_per_epoch: int, **values: Any
) -> optax.GradientTransformation:
    """Clipping, coupled weight decay, the optimizer, decoupled weight decay, skip_nonfinite.

    Coupled decay adds lambda * theta to the clipped gradient, before the optimizer's scaling
    (torch ``Adam(weight_decay=...)``); decoupled decay subtracts lr_t * lambda * theta after it
    (AdamW). ``adamw`` has its own decoupled decay: ``weight_decay`` is passed to it.

    ``values`` replace the config's ``learning_rate`` (the schedule's peak), ``weight_decay`` or
    a hyperparameter the optimizer takes. A number is checked as the config checks it (the run
    is ``dataclasses.replace(cfg, **values)``'s); an array, a tracer included, is taken as it
    is: a searched value, one per trial (``optax.inject_hyperparams`` over this factory). An
    array ``weight_decay`` always has its decay link, as a tracer cannot say whether it is 0 (a
    link that adds 0 makes the same update).
    """
    cfg, arrays = _with_values(cfg, values)
    lr = make_schedule(cfg, steps_per_epoch, learning_rate=arrays.get("learning_rate"))
    own = {k: v for k, v in arrays.items() if k in HYPERPARAMETERS}
    kwargs = {**cfg.hyperparameters(), **own, "convention": cfg.convention}
    links: list[optax.GradientTransformation] = []
    if cfg.clip_value:
        links.append(jn.clip(cfg.clip_value))
    if cfg.clip_norm:
        links.append(jn.clip_by_global_norm(cfg.clip_norm))
    wd, own_decay = arrays.get("weight_decay", cfg.weight_decay), cfg.optimizer == "adamw"
    decays = "weight_decay" in arrays or bool(wd)
    if own_decay:
        if cfg.weight_decay_mode == "coupled":
            raise ValueError("`weight_decay_mode` must be 'decoupled' for adamw, got 'coupled'")
        kwargs["weight_decay"] = wd
    elif decays and cfg.weight_decay_mode == "coupled":
        links.append(jn.add_decayed_weights(wd))
    links.append(jn.OPTIMIZERS[cfg.optimizer](learning_rate=lr, **kwargs))
    if decays and not own_decay and cfg.weight_decay_mode == "decoupled":
        rate = lr if callable(lr) else schedules.constant(lr)
        links.append(jn.add_decayed_weights(lambda t: -wd * rate(t)))  # u -= lr_t * wd * theta
    tx = links[0] if len(links) == 1 else jn.chain(*links)
    return jn.skip_nonfinite(tx) if cfg.skip_nonfinite else tx


def _with_values(cfg: TrainConfig, values: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """``cfg`` with the numbers among ``values`` set (and checked), and the arrays left over."""
    accepted = inspect.signature(jn.OPTIMIZERS[cfg.optimizer]).parameters
    settable = ("learning_rate", "weight_decay") + tuple(
        k for k in HYPERPARAMETERS if k in accepted
    )
    for name, value in values.items():
        if name not in settable:
            raise ValueError(
                f"`{name}` is not a value make_optimizer sets for optimizer {cfg.optimizer!r} "
                f"(it sets {', '.join(settable)}), got {value!r}"
            )
    numbers = {k: v for k, v in values.items() if isinstance(v, int | float)}
    arrays = {k: v for k, v in values.items() if k not in numbers}
    return (dataclasses.replace(cfg, **numbers) if numbers else cfg), arrays


# ----- TOML -----


def to_toml(cfg: TrainConfig) -> str:
    """``cfg`` as a flat TOML table; unset (``None``) optimizer knobs are left out."""
    lines = ["# jaxopt-notes train --config THIS_FILE repeats the run"]
    for field in dataclasses.fields(cfg):
        value = getattr(cfg, field.name)
        if value is None:
            lines.append(f"# {field.name}: the optimizer's default")
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        else:
            text = repr(value)
        lines.append(f"{field.name} = {text}")
    return "\n".join(lines) + "\n"


def from_toml(text: str, *, source: str = "config") -> TrainConfig:
    """The config in TOML ``text``; unknown keys and wrong types are refused by name."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"`config` {source!r} must be valid TOML: {error}") from None
    return from_dict(table, source=source)


def from_dict(table: dict[str, Any], *, source: str = "config") -> TrainConfig:
    """The config in ``table`` (a TOML table's or a command line's values): unknown keys and
    wrong types are refused by name, integers given for float fields are taken as floats."""
    table = dict(table)  # the caller's table stays as it was
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ValueError(f"`config` {source!r} has unknown keys {unknown}; known: {sorted(fields)}")
    for name, value in table.items():
        kind = type(fields[name].default) if fields[name].default is not None else None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            table[name] = float(value)
        elif kind is not None and not isinstance(value, kind):
            raise ValueError(f"`{name}` in {source!r} must be {kind.__name__}, got {value!r}")
    return TrainConfig(**table)


def read_toml(path: str | Path) -> TrainConfig:
    """The config in the TOML file ``path`` (a run's ``config.toml``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"`config` must be an existing TOML file, got {str(path)!r}")
    return from_toml(path.read_text(), source=str(path))
