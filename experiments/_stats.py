"""Estimates with 95% intervals: what a verdict is decided from.

Every function returns an :class:`Estimate`: the point value, the spread of the samples it came
from, a two-sided confidence interval and the number of samples. Paired designs (both arms share
a seed) take the per-seed differences or log-ratios first, so seed-to-seed variation common to
both arms cancels. A single deterministic value is an ``Estimate`` with a zero-width interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from jaxopt_notes._extras import require

_scipy_stats = require("scipy.stats", "experiments")

LEVEL = 0.95


class Estimate(NamedTuple):
    """``value`` with its ``[low, high]`` interval over ``n`` samples (``method`` says how)."""

    value: float
    low: float
    high: float
    n: int
    spread: float  # sample standard deviation (0 for one sample)
    method: str

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "ci_low": self.low,
            "ci_high": self.high,
            "n": self.n,
            "std": self.spread,
            "method": self.method,
        }

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.value, self.low, self.high))


def _samples(values: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("`values` must hold at least one sample, got none")
    return a


def exact(value: float, method: str = "deterministic: one exact value") -> Estimate:
    """A quantity with no sampling noise (a deterministic run, a closed form)."""
    v = float(value)
    return Estimate(v, v, v, 1, 0.0, method)


def mean(values: Sequence[float] | np.ndarray) -> Estimate:
    """Mean with a Student-t interval (one sample: a point, which no interval can widen)."""
    a = _samples(values)
    n = a.size
    m = float(a.mean())
    if n == 1:
        return Estimate(m, m, m, 1, 0.0, "one sample: no interval")
    sd = float(a.std(ddof=1))
    half = float(_scipy_stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * sd / math.sqrt(n)
    return Estimate(m, m - half, m + half, n, sd, f"mean, t-interval, {n} samples")


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Mean of ``a - b`` over paired seeds, with a t-interval."""
    a, b = _samples(a), _samples(b)
    if a.shape != b.shape:
        raise ValueError(f"paired samples must have one shape, got {a.shape} and {b.shape}")
    est = mean(a - b)
    return est._replace(method=f"paired difference, t-interval, {est.n} seeds")


def difference(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Difference of the means of two independent samples (Welch's t-interval)."""
    a, b = _samples(a), _samples(b)
    m = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return Estimate(m, m, m, min(a.size, b.size), 0.0, "too few samples: no interval")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(m, m, m, a.size + b.size, 0.0, "Welch difference (no spread)")
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(_scipy_stats.t.ppf(0.5 + LEVEL / 2, df)) * se
    return Estimate(m, m - half, m + half, a.size + b.size, se, "Welch t-interval")


def paired_ratio(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """Geometric mean of ``a / b`` over paired seeds: a t-interval on the log-ratios."""
    a, b = _samples(a), _samples(b)
    if np.any(a <= 0) or np.any(b <= 0):
        raise ValueError("`paired_ratio` needs positive samples; use paired_difference instead")
    est = mean(np.log(a) - np.log(b))
    return Estimate(
        math.exp(est.value),
        math.exp(est.low),
        math.exp(est.high),
        est.n,
        est.spread,
        f"geometric-mean ratio, t-interval on log-ratios, {est.n} seeds",
    )


def proportion(successes: int, n: int) -> Estimate:
    """A fraction with its Wilson score interval (sound at 0 and at 1 too)."""
    if n <= 0:
        raise ValueError(f"`n` must be positive, got {n}")
    p = successes / n
    z = float(_scipy_stats.norm.ppf(0.5 + LEVEL / 2))
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Estimate(
        p,
        max(0.0, centre - half),
        min(1.0, centre + half),
        n,
        math.sqrt(p * (1 - p)),
        f"proportion, Wilson interval, {successes}/{n}",
    )


def bootstrap(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] = np.mean,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Percentile bootstrap of ``statistic`` over the rows of ``values`` (fixed resampling seed).

    ``values`` may be 2-d (one row per seed, e.g. paired arms as columns), and ``statistic``
    then maps such an array to a number.
    """
    a = np.asarray(values, dtype=np.float64)
    if a.shape[0] == 0:
        raise ValueError("`values` must hold at least one sample, got none")
    point = float(statistic(a))
    n = a.shape[0]
    if n == 1:
        return Estimate(point, point, point, 1, 0.0, "one sample: no interval")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    stats = np.array([statistic(a[i]) for i in idx], dtype=np.float64)
    low, high = np.quantile(stats, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Estimate(
        point, float(low), float(high), n, float(stats.std()), f"bootstrap, {n} samples"
    )


def timing_ratio(a_seconds: Sequence[float], b_seconds: Sequence[float]) -> Estimate:
    """Median of per-round ratios ``a / b`` of interleaved repeats; interval: their 10-90% range.

    Timings are not normal and not independent (machine load drifts), so the interval is the
    spread of the ratios themselves, not a t-interval: a threshold inside it is inconclusive.
    """
    a, b = _samples(a_seconds), _samples(b_seconds)
    if a.shape != b.shape:
        raise ValueError(f"interleaved timings must pair up, got {a.shape} and {b.shape}")
    r = a / b
    low, high = np.quantile(r, [0.1, 0.9])
    return Estimate(
        float(np.median(r)),
        float(low),
        float(high),
        r.size,
        float(r.std()),
        f"median of {r.size} interleaved ratios, 10-90% range",
    )


def accuracy_gain(
    correct_a: np.ndarray, correct_b: np.ndarray, *, resamples: int = 2000, seed: int = 0
) -> Estimate:
    """Accuracy of ``a`` minus ``b`` with an interval over seeds *and* test images.

    ``correct_*`` are (seeds, images) booleans, paired on both axes (same seeds, same images).
    Each bootstrap resample draws seeds and images with replacement, so the interval carries
    the test set's sampling error (0.2 points is 2 of 1,000 images) beside the seeds'.
    """
    a, b = np.asarray(correct_a, np.float64), np.asarray(correct_b, np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            f"`correct_a` and `correct_b` must be one (seeds, images) shape, got "
            f"{a.shape} and {b.shape}"
        )
    diff = a - b
    seeds, images = diff.shape
    point = float(diff.mean())
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for r in range(resamples):  # a loop keeps memory at one resample, not resamples x size
        s = rng.integers(0, seeds, seeds)
        i = rng.integers(0, images, images)
        stats[r] = diff[s][:, i].mean()
    low, high = np.quantile(stats, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Estimate(
        point,
        float(low),
        float(high),
        seeds,
        float(stats.std()),
        f"bootstrap over {seeds} seeds and {images} test images",
    )


def resolvable(threshold: float, images: int) -> None:
    """Refuses an accuracy threshold finer than two test images: the set cannot resolve it."""
    if abs(threshold) < 2.0 / images:
        raise ValueError(
            f"an accuracy threshold of {threshold:g} is below what {images} test images resolve "
            f"(2 images = {2.0 / images:.3g}); use more test images or a larger threshold"
        )


def positive_mean(values: Sequence[float] | np.ndarray) -> Estimate:
    """Mean of a positive quantity (a loss, a rate) with a percentile-bootstrap interval.

    A t-interval on a few skewed positive samples can reach below zero; a bootstrap of the
    mean of positive samples cannot.
    """
    a = _samples(values)
    if np.any(a < 0):
        raise ValueError("`positive_mean` needs non-negative samples; use mean instead")
    est = bootstrap(a)
    return est._replace(method=f"mean, percentile bootstrap, {est.n} samples")
