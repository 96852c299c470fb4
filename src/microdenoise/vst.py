"""Poisson-Gaussian noise: parameter estimation and the generalized Anscombe transform.

Fluorescence micrographs carry signal-dependent noise, var(y) = a * y + b (photon
shot noise with gain ``a`` plus Gaussian read noise ``b``). Filters designed for
white Gaussian noise (NLM, BM3D, wavelet shrinkage) work on such data after a
variance-stabilizing transform (VST) that makes the noise std about 1 everywhere;
this is how the FMD benchmark ran its BM3D baseline (Zhang et al., CVPR 2019).

- :func:`estimate_poisson_gaussian` fits ``(a, b)`` from one image: Haar diagonal
  details of 2x2 blocks (free of the signal where it is locally linear) binned by the
  local mean, a trimmed variance per bin (robust to edges and to 8-bit
  quantization, where a MAD is 0), a weighted straight-line fit. It is a
  simplified form of Foi, Trimeche, Katkovnik & Egiazarian, "Practical
  Poissonian-Gaussian noise modeling and fitting for single-image raw-data",
  IEEE Trans. Image Process. 17, 1737-1754 (2008), without the clipping model.
- :func:`gat_forward` is the generalized Anscombe transform and :func:`gat_inverse`
  the closed-form approximation of its exact unbiased inverse, from Makitalo & Foi,
  "Optimal inversion of the generalized Anscombe transformation for Poisson-Gaussian
  noise", IEEE Trans. Image Process. 22, 91-103 (2013).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_TRIM = 0.98  # keep the 98% smallest |detail| of each bin (edges leave the rest)
_TRIM_VAR = 0.8735  # E[x^2 | |x| <= 2.326] for x ~ N(0, 1): undoes the trimming


@dataclass(frozen=True)
class PoissonGaussian:
    """var(y) = a * y + b, on the image's own intensity scale."""

    a: float
    b: float

    @property
    def params(self) -> tuple[float, float, float]:
        """(alpha, sigma, g) of the GAT: var = alpha * (y - g) + sigma^2, sigma, alpha >= 0."""
        a = max(self.a, 1e-12)
        if self.b >= 0:
            return a, float(np.sqrt(self.b)), 0.0
        return a, 0.0, -self.b / a


def estimate_poisson_gaussian(image: np.ndarray, *, bins: int = 24) -> PoissonGaussian:
    """Fit var(y) = a * y + b to one 2D image (see the module notes).

    Parameters
    ----------
    image : ndarray
        One 2D plane, any intensity scale.
    bins : int
        Number of intensity bins (equal counts) for the variance estimates.

    Returns
    -------
    PoissonGaussian
        ``a`` is clipped to >= 0; ``b`` may be negative (an offset on the intensities).
    """
    x = np.asarray(image, dtype=np.float64)
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    p, q, r, s = x[0:h:2, 0:w:2], x[0:h:2, 1:w:2], x[1:h:2, 0:w:2], x[1:h:2, 1:w:2]
    detail = (p - q - r + s) / 2.0  # var = noise var for independent noise
    level = ndimage.uniform_filter((p + q + r + s) / 4.0, size=3, mode="reflect")
    lo, hi = x.min(), x.max()
    # Blocks touching the extremes may be clipped (saturated or floored): leave them out.
    keep = (np.minimum.reduce([p, q, r, s]) > lo) & (np.maximum.reduce([p, q, r, s]) < hi)
    if keep.sum() < 8 * bins:
        keep = np.ones_like(keep)
    m, d = level[keep], detail[keep]
    order = np.argsort(m)
    means, variances, weights = [], [], []
    for chunk in np.array_split(order, bins):
        if chunk.size < 16:
            continue
        part = d[chunk]
        part = part[np.abs(part) <= np.quantile(np.abs(part), _TRIM)]  # edges out
        v = float(np.mean(part * part)) / _TRIM_VAR
        means.append(float(np.mean(m[chunk])))
        variances.append(float(v))
        weights.append(chunk.size)
    mm, vv, ww = np.array(means), np.array(variances), np.sqrt(np.array(weights))
    if mm.size < 2 or np.ptp(mm) <= 0:
        return PoissonGaussian(0.0, float(np.mean(vv)) if vv.size else 0.0)
    design = np.stack([mm, np.ones_like(mm)], axis=1) * ww[:, None]
    (a, b), *_ = np.linalg.lstsq(design, vv * ww, rcond=None)
    if a < 0:  # no signal dependence seen: pure Gaussian
        return PoissonGaussian(0.0, float(np.median(vv)))
    return PoissonGaussian(float(a), float(b))


def _gaussian_only(noise: PoissonGaussian) -> bool:
    """Shot noise negligible (a * 1 < 1e-3 * b on a [0, 1] scale): a plain rescaling."""
    return noise.b > 0 and noise.a < 1e-3 * noise.b


def gat_forward(image: np.ndarray, noise: PoissonGaussian) -> np.ndarray:
    """Generalized Anscombe transform: noise std about 1 for var = a * y + b.

    With negligible shot noise it is the division by the Gaussian std.
    """
    if _gaussian_only(noise):
        return np.asarray(image, dtype=np.float32) / np.float32(np.sqrt(noise.b))
    alpha, sigma, g = noise.params
    # float32 throughout: the transform runs per tile of large images (memory).
    z = np.asarray(image, dtype=np.float32) * np.float32(1.0 / alpha)
    z += np.float32(3.0 / 8.0 + (sigma / alpha) ** 2 - g / alpha)
    np.maximum(z, 0.0, out=z)
    np.sqrt(z, out=z)
    z *= np.float32(2.0)
    return z


def gat_inverse(d: np.ndarray, noise: PoissonGaussian) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse of :func:`gat_forward`.

    Makitalo & Foi (2013), eq. 12: I(D) = D^2/4 + sqrt(3/2)/(4D) - 11/(8D^2)
    + 5 sqrt(3/2)/(8D^3) - 1/8 - sigma^2, clipped at 0; below D = 1, where the series
    diverges, the algebraic inverse D^2/4 - 3/8 - sigma^2 is used.
    """
    if _gaussian_only(noise):
        return np.asarray(d, dtype=np.float32) * np.float32(np.sqrt(noise.b))
    alpha, sigma, g = noise.params
    s2 = (sigma / alpha) ** 2
    d = np.asarray(d, dtype=np.float32)
    safe = np.maximum(d, np.float32(1.0))
    c = math.sqrt(1.5)
    inv = np.float32(1.0) / safe
    exact = (safe * safe / 4 + inv * (c / 4 + inv * (-11 / 8 + inv * (5 * c / 8)))
             - np.float32(1 / 8 + s2))
    algebraic = d * d / 4 - np.float32(3.0 / 8.0 + s2)
    z = np.maximum(np.float32(0.0), np.where(d >= 1.0, exact, algebraic))
    return (z * np.float32(alpha) + np.float32(g)).astype(np.float32, copy=False)


def gat_slope(image: np.ndarray, noise: PoissonGaussian) -> np.ndarray:
    """d GAT / dy at ``image`` (float64): about 1 / (noise std) there.

    Where the transform is clipped at 0 (intensities below the model's floor) the slope
    of the floor, ``1 / sqrt(max(b, a * 3/8))``-like, is used instead of infinity.
    """
    if _gaussian_only(noise):
        return np.full(np.shape(image), 1.0 / math.sqrt(noise.b))
    alpha, sigma, g = noise.params
    u = np.asarray(image, dtype=np.float64) / alpha + 3.0 / 8.0 + (sigma / alpha) ** 2 - g / alpha
    floor = 3.0 / 8.0 + (sigma / alpha) ** 2
    return 1.0 / (alpha * np.sqrt(np.maximum(u, floor)))


def gat_expected(image: np.ndarray, noise: PoissonGaussian) -> np.ndarray:
    """E[GAT(y)] for noisy data of mean ``image``: the inverse of :func:`gat_inverse`.

    The exact unbiased inverse of Makitalo & Foi maps E[GAT(y)] back to the mean of
    ``y``; this is the forward map, by interpolation on a grid of GAT values. At low
    counts it lies below ``gat_forward(image)`` (the transform's bias), so an error
    measured against E[GAT(y)] in the GAT domain is an error of the mean.
    """
    if _gaussian_only(noise):
        return gat_forward(image, noise).astype(np.float64)
    y = np.asarray(image, dtype=np.float64)
    top = float(gat_forward(np.array([max(float(y.max()), 0.0)]), noise)[0]) + 8.0
    grid = np.linspace(0.0, max(top, 8.0), 4096)
    means = np.maximum.accumulate(gat_inverse(grid.astype(np.float32), noise).astype(np.float64))
    keep = np.concatenate([[True], np.diff(means) > 0])
    return np.interp(y, means[keep], grid[keep])
