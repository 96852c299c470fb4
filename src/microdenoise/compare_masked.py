"""The J-invariant masked loss (Noise2Self) as an MSE estimate from one image.

Batson & Royer, "Noise2Self: blind denoising by self-supervision", ICML 2019: if a
function's output on the pixels of a set ``J`` does not depend on the input's
values on ``J``, and the noise is pixel-independent and zero-mean, then
E||f(x)_J - x_J||^2 = E||f(x)_J - y_J||^2 + E||x_J - y_J||^2 (``y`` the clean image).
Any method becomes J-invariant by running it on a copy of the image whose ``J``
pixels are replaced by the mean of their 8 neighbours (scikit-image's
``calibrate_denoiser`` also masks a stride-4 grid, but fills it with the 4-neighbour
mean). The noise term is removed pixel by pixel with the fitted Poisson-Gaussian
model: ``a * x + b`` is an unbiased estimate of the noise variance ``a * y + b``.
In :func:`microdenoise.compare` the method's intensity normalization is computed from
the unmasked image (as for the method's own run), so the output on ``J`` depends on
``x_J`` through two global numbers (the image's min and max, or the 8-bit range):
a negligible departure from J-invariance.

What it estimates is the error of the *masked* method on ``J``, not the error of the
method run on the whole image: the two are close for methods that give the centre
pixel little weight (strong smoothing), and the masked one is worse for methods that
lean on it (a Gaussian of sigma 0.5, NLM with a small ``h``), so this estimator
overestimates those and favours strong smoothing a little. A misfit of the noise
model's scale shifts every candidate by the same amount (the ranking is kept). With
spatially correlated noise the neighbours carry the masked pixel's noise and the
method recovers part of it, so the loss underestimates the error of weak filters:
the estimate is then marked unreliable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from .compare_estimators import BLOCK, Estimate, NoiseCheck, block_means

__all__ = ["STRIDE", "masked_mse", "masked_plane"]

STRIDE = 4  # J is one phase of a STRIDE x STRIDE grid (BLOCK is a multiple of it)
_RING = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]) / 8.0


def masked_plane(x: np.ndarray, phase: tuple[int, int], *, stride: int = STRIDE
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``x`` with the pixels of ``J`` replaced by their 8-neighbour mean.

    Parameters
    ----------
    x : ndarray
        One 2D plane.
    phase : tuple of int
        ``J`` holds the pixels ``(i, j)`` with ``(i % stride, j % stride) == phase``.
    stride : int
        The grid's spacing (at least 2, so that no neighbour is in ``J``).

    Returns
    -------
    masked, mask : ndarray
        The masked copy (float64) and the boolean mask of ``J``. The borders are
        mirrored without repeating the edge pixel, so no J pixel sees itself.
    """
    mask = np.zeros(x.shape, dtype=bool)
    mask[phase[0]::stride, phase[1]::stride] = True
    ring = ndi.convolve(np.asarray(x, dtype=np.float64), _RING, mode="mirror")
    out = np.array(x, dtype=np.float64, copy=True)
    out[mask] = ring[mask]
    return out, mask


def masked_mse(x: np.ndarray, f: Callable[[np.ndarray], np.ndarray], check: NoiseCheck, *,
               phases: int = 1, seed: int = 0, stride: int = STRIDE) -> Estimate:
    """Noise2Self estimate of the MSE of ``f`` on ``x``, in intensity units squared.

    Parameters
    ----------
    x : ndarray
        One 2D plane (float64).
    f : callable
        The method, ``f(plane) -> plane``; called once per phase on the masked image.
    check : NoiseCheck
        The plane's fitted noise model and correlation test
        (:func:`~microdenoise.compare_estimators.noise_check`).
    phases : int
        How many phases of the ``stride`` x ``stride`` grid (drawn with ``seed``).
    seed : int
        Chooses the phases.
    stride : int
        The grid's spacing (2 or more; it must divide ``BLOCK``).

    Returns
    -------
    Estimate
        Per masked pixel ``(f(x_masked) - x)^2 - (a * x + b)``, averaged; the standard
        error from ``BLOCK`` x ``BLOCK`` block means, each over the masked pixels of its
        block. Unreliable when the noise is spatially correlated.
    """
    if stride < 2:
        raise ValueError(f"stride must be at least 2, got {stride}: with 1 every pixel is "
                         "masked and the neighbours are masked too")
    if BLOCK % stride:
        raise ValueError(f"stride {stride} must divide the block size {BLOCK}")
    if not 1 <= phases <= stride * stride:
        raise ValueError(f"phases must be 1..{stride * stride}, got {phases}")
    model = check.model
    if model.a <= 0 and model.b <= 0:
        return Estimate(math.nan, math.nan, "masked", False,
                        "no noise found in the image: the masked loss has nothing to go on")
    rng = np.random.default_rng(seed)
    picks = rng.permutation(stride * stride)[:phases]
    t = np.zeros(x.shape, dtype=np.float64)
    noise_var = model.a * x + model.b
    for p in picks:
        phase = (int(p) // stride, int(p) % stride)
        xm, mask = masked_plane(x, phase, stride=stride)
        out = np.asarray(f(xm), dtype=np.float64)
        t[mask] = (out[mask] - x[mask]) ** 2 - noise_var[mask]
    scale = stride * stride / phases  # block means over the masked pixels only
    means = block_means(t) * scale
    se = float(np.std(means, ddof=1) / math.sqrt(means.size))
    reason = check.white_noise_reason("a masked pixel's neighbours carry its noise, so the "
                                      "masked loss favours weak filters")
    return Estimate(float(np.mean(means)), se, "masked", not reason, reason, means)
