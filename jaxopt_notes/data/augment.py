"""Normalisation and augmentation of image batches: pure, jit-safe, explicit keys.

Every augmentation is a pure function of an explicit PRNG key and a float batch (B, H, W, C),
safe under ``jit`` and ``vmap``; :class:`Augment` says which to apply and :func:`augment`
applies them. Importable from :mod:`jaxopt_notes.data` as well.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_notes import _checks


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
