"""Image quality metrics: PSNR, SSIM, NRMSE, SNR and scale-invariant PSNR.

Every metric takes the image to score first and the ground truth second,
``metric(x, gt, ...)``, and computes in float64. PSNR-type metrics need an
explicit, keyword-only ``data_range``: there is no default, because the
number depends on the convention, and published tables differ only by it.

Conventions
-----------
8-bit benchmark data (FMD, W2S 8-bit, SRDTrans)
    ``data_range=255`` on the 0..255 scale. The denoised output is first
    brought back to 0..255, clipped and quantised to integers as the papers'
    code does (``np.clip(y, 0, 255)`` then rounding; note that the official
    FM2S code truncates with ``.int()`` instead of rounding, which costs a few
    hundredths of a dB). State which one a table uses.
CLIDiM and Noise2Void papers (16-bit data)
    ``data_range = max(gt) - min(gt)``, i.e. :func:`gt_range`.
W2S 8-bit
    The noisy and clean 8-bit copies were rescaled per image, separately, so
    their intensity scales differ. Report both the raw :func:`psnr` and
    :func:`si_psnr`, the PSNR after a per-image least-squares affine fit of
    the output to the ground truth (:func:`affine_fit`). With
    ``data_range=gt_range(gt)`` :func:`si_psnr` equals CAREamics'
    ``scale_invariant_psnr``.

:func:`psnr` and :func:`nrmse` agree with ``skimage.metrics``
(``peak_signal_noise_ratio``, ``normalized_root_mse``); :func:`ssim` is
``skimage.metrics.structural_similarity`` with its defaults (7x7 uniform
window, sample covariance) on 2D images; for stacks (ndim > 2) it is the mean
of the per-plane SSIMs over the last two axes (YX).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from skimage.metrics import structural_similarity

from .errors import InputError

__all__ = ["affine_fit", "gt_range", "nrmse", "psnr", "si_psnr", "snr", "ssim"]

Normalization = Literal["euclidean", "min-max", "mean"]
_NORMALIZATIONS = ("euclidean", "min-max", "mean")


def _pair(x: ArrayLike, gt: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return ``x`` and ``gt`` as float64 arrays of the same, non-empty shape."""
    xa = np.asarray(x, dtype=np.float64)
    ga = np.asarray(gt, dtype=np.float64)
    if xa.shape != ga.shape:
        raise InputError(
            f"the image and the ground truth have different shapes {xa.shape} and {ga.shape}: "
            "compare images of the same shape"
        )
    if xa.size == 0:
        raise InputError("the images are empty: pass images with at least one pixel")
    return xa, ga


def _check_range(data_range: float) -> float:
    """Validate ``data_range`` and return it as a float."""
    value = float(data_range)
    if not math.isfinite(value) or value <= 0:
        raise InputError(
            f"data_range must be a positive finite number, got {data_range!r}: use 255 for "
            "8-bit data on 0..255, or gt_range(gt) for the max(gt) - min(gt) convention"
        )
    return value


def _psnr64(x: NDArray[np.float64], gt: NDArray[np.float64], data_range: float) -> float:
    mse = float(np.mean((gt - x) ** 2))
    if mse == 0.0:
        return math.inf
    return float(10.0 * np.log10(data_range**2 / mse))


def psnr(x: ArrayLike, gt: ArrayLike, *, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB.

    Parameters
    ----------
    x : array_like
        Image to score.
    gt : array_like
        Ground truth, same shape as ``x``.
    data_range : float
        Peak value range, e.g. 255 for 8-bit data or ``gt_range(gt)``.

    Returns
    -------
    float
        ``10 * log10(data_range**2 / mean((gt - x)**2))``; ``inf`` if ``x == gt``.

    Raises
    ------
    InputError
        If the shapes differ or ``data_range`` is not positive.
    """
    xa, ga = _pair(x, gt)
    return _psnr64(xa, ga, _check_range(data_range))


def ssim(x: ArrayLike, gt: ArrayLike, *, data_range: float) -> float:
    """Structural similarity index (scikit-image defaults: 7x7 uniform window).

    Parameters
    ----------
    x : array_like
        Image to score, 2D (YX) or a stack (..., Y, X).
    gt : array_like
        Ground truth, same shape as ``x``.
    data_range : float
        Value range used in the SSIM constants.

    Returns
    -------
    float
        SSIM of a 2D image, or the mean SSIM over the YX planes of a stack.

    Raises
    ------
    InputError
        If the shapes differ, ``data_range`` is not positive, the image is not
        at least 2D or a plane is smaller than 7x7.
    """
    xa, ga = _pair(x, gt)
    value = _check_range(data_range)
    if xa.ndim < 2:
        raise InputError(f"ssim needs 2D images (YX) or stacks of them, got shape {xa.shape}")
    if min(xa.shape[-2:]) < 7:
        raise InputError(
            f"ssim needs planes of at least 7x7 pixels (its window), got {xa.shape[-2:]}"
        )
    planes_x = xa.reshape(-1, *xa.shape[-2:])
    planes_g = ga.reshape(-1, *ga.shape[-2:])
    scores = [
        float(structural_similarity(p, q, data_range=value))
        for p, q in zip(planes_x, planes_g, strict=True)
    ]
    return float(np.mean(scores))


def nrmse(x: ArrayLike, gt: ArrayLike, *, normalization: Normalization = "euclidean") -> float:
    """Normalized root mean squared error, as ``skimage.metrics.normalized_root_mse``.

    Parameters
    ----------
    x : array_like
        Image to score.
    gt : array_like
        Ground truth, same shape as ``x``; the normalization uses it.
    normalization : {"euclidean", "min-max", "mean"}
        Denominator: ``sqrt(mean(gt**2))``, ``max(gt) - min(gt)`` or ``mean(gt)``.

    Returns
    -------
    float
        ``sqrt(mean((gt - x)**2)) / denominator``.

    Raises
    ------
    InputError
        If the shapes differ, the normalization is unknown, or its denominator is zero.
    """
    xa, ga = _pair(x, gt)
    if normalization == "euclidean":
        denom = float(np.sqrt(np.mean(ga * ga)))
    elif normalization == "min-max":
        denom = float(ga.max() - ga.min())
    elif normalization == "mean":
        denom = float(ga.mean())
    else:
        raise InputError(
            f"unknown normalization {normalization!r}: use one of {', '.join(_NORMALIZATIONS)}"
        )
    if denom == 0.0:
        raise InputError(
            f"the {normalization} normalization of this ground truth is zero: "
            "choose another normalization"
        )
    return float(np.sqrt(np.mean((ga - xa) ** 2)) / denom)


def snr(x: ArrayLike, gt: ArrayLike) -> float:
    """Signal-to-noise ratio in dB, as in the Noise2Void and DecoNoising papers.

    Parameters
    ----------
    x : array_like
        Image to score.
    gt : array_like
        Ground truth, same shape as ``x``.

    Returns
    -------
    float
        ``10 * log10(sum(gt**2) / sum((gt - x)**2))``; ``inf`` if ``x == gt``.

    Raises
    ------
    InputError
        If the shapes differ.
    """
    xa, ga = _pair(x, gt)
    noise = float(np.sum((ga - xa) ** 2))
    if noise == 0.0:
        return math.inf
    signal = float(np.sum(ga * ga))
    if signal == 0.0:
        return -math.inf
    return float(10.0 * np.log10(signal / noise))


def affine_fit(x: ArrayLike, gt: ArrayLike) -> NDArray[np.float64]:
    """Least-squares affine fit ``a * x + b`` of ``x`` to ``gt``.

    The whole array is one image: one ``(a, b)`` pair is fitted. For a stack
    whose planes were rescaled separately, call it once per plane.

    Parameters
    ----------
    x : array_like
        Image to fit.
    gt : array_like
        Ground truth, same shape as ``x``.

    Returns
    -------
    numpy.ndarray
        float64 array ``a * x + b`` minimising ``sum((a * x + b - gt)**2)``.
        If ``x`` is constant, ``a = 0`` and the result is ``mean(gt)`` everywhere.

    Raises
    ------
    InputError
        If the shapes differ.
    """
    xa, ga = _pair(x, gt)
    xc = xa - xa.mean()
    gmean = ga.mean()
    var = float(np.sum(xc * xc))
    if var == 0.0:
        return np.full_like(ga, gmean)
    a = float(np.sum(xc * (ga - gmean))) / var
    return a * xc + gmean


def si_psnr(x: ArrayLike, gt: ArrayLike, *, data_range: float) -> float:
    """Scale-invariant PSNR: :func:`psnr` of ``affine_fit(x, gt)`` against ``gt``.

    With ``data_range=gt_range(gt)`` this equals CAREamics' ``scale_invariant_psnr``.
    It is never below ``psnr(x, gt, data_range=data_range)``: the identity is
    one of the affine maps the fit considers (and is kept if rounding makes the
    computed fit no better), so it is ``inf`` when ``x == gt``.

    Parameters
    ----------
    x : array_like
        Image to score.
    gt : array_like
        Ground truth, same shape as ``x``.
    data_range : float
        Peak value range on the ground truth's scale.

    Returns
    -------
    float
        PSNR in dB after the affine fit; ``inf`` for a perfect fit.

    Raises
    ------
    InputError
        If the shapes differ or ``data_range`` is not positive.
    """
    xa, ga = _pair(x, gt)
    value = _check_range(data_range)
    fitted = affine_fit(xa, ga)
    # The identity is one of the candidate maps: keep it when rounding makes the
    # computed fit no better (e.g. x already equal to, or already fitted to, gt).
    best = min(float(np.mean((ga - fitted) ** 2)), float(np.mean((ga - xa) ** 2)))
    if best == 0.0:
        return math.inf
    return float(10.0 * np.log10(value**2 / best))


def gt_range(gt: ArrayLike) -> float:
    """Data range ``max(gt) - min(gt)``, the CLIDiM and Noise2Void papers' convention.

    Parameters
    ----------
    gt : array_like
        Ground truth image.

    Returns
    -------
    float
        ``max(gt) - min(gt)`` in float64 (0.0 for a constant image, which
        :func:`psnr` then rejects as a data range).

    Raises
    ------
    InputError
        If ``gt`` is empty.
    """
    ga = np.asarray(gt, dtype=np.float64)
    if ga.size == 0:
        raise InputError("the ground truth is empty: pass an image with at least one pixel")
    return float(ga.max() - ga.min())
