"""Filters whose output pixel depends on a finite neighbourhood: median, Gaussian, box,
3D box, bilateral, non-local means.

Their receptive field is finite, so tiled output equals untiled output. Conventions
and calibration: :mod:`microdenoise.methods.filters`. NLM estimates the noise level
once per fitted image (``USES_SIGMA``) so that tiles share it; with ``vst="gat"``
(the default) it runs in the generalized Anscombe domain (see
:mod:`microdenoise.methods.global_filters` for the VST note and its measurement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage as ndi
from skimage import restoration

from ..errors import InputError
from ..registry import register
from .filters import Filter, FilterParams


@dataclass(frozen=True)
class SizeConfig(FilterParams):
    """Window width in pixels (odd widths are centred) and whether to calibrate it."""

    size: int = 3
    calibrate: bool = False


class SizeFilter(Filter):
    """A filter over a ``size`` x ``size`` window; calibration chooses ``size``."""

    Config = SizeConfig
    PARAM = "size"
    GRID = (3, 5, 7, 9, 11)

    def _radius(self, value: float) -> int:
        return int(value) // 2


@register("median")
class Median(SizeFilter):
    """Median filter over a ``size`` x ``size`` window, edges reflected.

    Parameters
    ----------
    size : int
        Window width (3); receptive field ``size // 2``.
    calibrate : bool
        Choose ``size`` from ``GRID`` = (3, 5, 7, 9, 11).

    References
    ----------
    J. W. Tukey, "Nonlinear (nonsuperposable) methods for smoothing data", EASCON 1974.
    Implementation: ``scipy.ndimage.median_filter(image, size, mode="reflect")``.
    """

    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        return np.asarray(ndi.median_filter(image, size=int(value), mode="reflect"))


@dataclass(frozen=True)
class GaussianConfig(FilterParams):
    """Standard deviation of the Gaussian in pixels and whether to calibrate it."""

    sigma: float = 1.0
    calibrate: bool = False


@register("gaussian")
class Gaussian(Filter):
    """Gaussian blur, truncated at 4 sigma, edges reflected.

    Parameters
    ----------
    sigma : float
        Standard deviation in pixels (1.0); receptive field ``int(4 * sigma + 0.5)``.
    calibrate : bool
        Choose ``sigma`` from ``GRID`` = (0.5, 0.75, 1, 1.5, 2, 3).

    References
    ----------
    Implementation: ``scipy.ndimage.gaussian_filter(image, sigma, mode="reflect")``.
    """

    Config = GaussianConfig
    PARAM = "sigma"
    GRID = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0)

    def _radius(self, value: float) -> int:
        return int(4.0 * value + 0.5)

    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        return np.asarray(ndi.gaussian_filter(image, sigma=value, mode="reflect", truncate=4.0))


@register("box")
class Box(SizeFilter):
    """Mean over a ``size`` x ``size`` window (box or moving-average filter), edges reflected.

    Parameters
    ----------
    size : int
        Window width (3); receptive field ``size // 2``.
    calibrate : bool
        Choose ``size`` from ``GRID`` = (3, 5, 7, 9, 11).

    References
    ----------
    Implementation: ``scipy.ndimage.uniform_filter(image, size, mode="reflect")``.
    """

    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        return np.asarray(ndi.uniform_filter(image, size=int(value), mode="reflect"))


@dataclass(frozen=True)
class Box3DConfig(FilterParams):
    """Box width in YX, along Z/T (None: the same), and whether to calibrate it."""

    size: int = 3
    size_z: int | None = None
    calibrate: bool = False


@register("box3d")
class Box3D(Filter):
    """Mean over a 3D box of a Z or T stack, edges reflected.

    ``denoise`` takes one ZYX (or TYX) array; a single 2D image raises
    :class:`InputError` (a 3D box needs a stack): use ``box`` for single images.

    Parameters
    ----------
    size : int
        Box width in Y and X (3).
    size_z : int or None
        Box width along Z or T; None (default) means ``size``.
    calibrate : bool
        Choose ``size`` (and ``size_z`` when None) from ``GRID`` = (3, 5, 7, 9).

    References
    ----------
    Implementation: ``scipy.ndimage.uniform_filter``, size (size_z, size, size), reflect.
    """

    Config = Box3DConfig
    IMAGE_NDIM = 3
    PARAM = "size"
    GRID = (3, 5, 7, 9)

    @property
    def supports_3d(self) -> bool:
        return True

    def _check(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim == 2:
            raise InputError(
                f"box3d needs a stack (Z or T) as a 3D array, got a single 2D image of shape "
                f"{image.shape}; use 'box' for single images"
            )
        if image.ndim != 3:
            raise InputError(f"box3d takes one 3D (ZYX or TYX) stack, got shape {image.shape}")
        return np.ascontiguousarray(image, dtype=np.float32)

    def _radius(self, value: float) -> int:
        return max(int(value), self.config.size_z or 0) // 2

    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        shape = (self.config.size_z or int(value), int(value), int(value))
        return np.asarray(ndi.uniform_filter(image, size=shape, mode="reflect"))


@dataclass(frozen=True)
class BilateralConfig(FilterParams):
    """Range and spatial kernel widths, window (None: from sigma_spatial), LUT bins."""

    sigma_color: float = 0.05
    sigma_spatial: float = 1.5
    win_size: int | None = None
    bins: int = 10000
    calibrate: bool = False


@register("bilateral")
class Bilateral(Filter):
    """Bilateral filter: a Gaussian weighted by intensity similarity, edges reflected.

    Parameters
    ----------
    sigma_color : float
        Std of the range kernel in intensity units (0.05).
    sigma_spatial : float
        Std of the spatial kernel in pixels (1.5).
    win_size : int or None
        Window width; None: ``max(5, 2 * ceil(3 * sigma_spatial) + 1)`` (11).
        Receptive field ``win_size // 2``.
    bins : int
        Bins of the range-kernel look-up table (10000).
    calibrate : bool
        Choose ``sigma_color`` from ``GRID`` = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5).

    References
    ----------
    C. Tomasi and R. Manduchi, "Bilateral filtering for gray and color images", ICCV 1998.
    Implementation: ``skimage.restoration.denoise_bilateral``.
    """

    Config = BilateralConfig
    PARAM = "sigma_color"
    GRID = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)

    def _radius(self, value: float) -> int:
        c = self.config
        return (c.win_size or max(5, 2 * math.ceil(3 * c.sigma_spatial) + 1)) // 2

    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        low = float(image.min())  # skimage wants non-negative input; the filter is shift-free
        out = restoration.denoise_bilateral(
            image - low, win_size=self.config.win_size, sigma_color=value,
            sigma_spatial=self.config.sigma_spatial, bins=self.config.bins, mode="reflect",
        )
        return np.asarray(out, dtype=np.float32) + np.float32(low)


@dataclass(frozen=True)
class NLMConfig(FilterParams):
    """Non-local means: h = h_factor * sigma (sigma None: estimated from the image)."""

    h_factor: float = 0.8
    patch_size: int = 5
    patch_distance: int = 6
    sigma: float | None = None
    fast_mode: bool = True
    vst: Literal["none", "gat"] = "gat"
    calibrate: bool = False


@register("nlm")
class NLMeans(Filter):
    """Non-local means: each pixel a weighted mean of pixels with similar patches.

    ``h = h_factor * sigma``, with ``sigma`` estimated from the image (wavelet MAD,
    ``skimage.restoration.estimate_sigma``) unless given; ``sigma`` is also passed to
    skimage, which subtracts the expected noise from patch distances, as its guide does.

    Parameters
    ----------
    h_factor : float
        Filtering strength relative to the noise std (0.8).
    patch_size, patch_distance : int
        Patch width (5) and search radius (6). Receptive field
        ``patch_size // 2 + patch_distance``.
    sigma : float or None
        Noise std; None (default) estimates it per image.
    fast_mode : bool
        skimage's fast algorithm (True).
    calibrate : bool
        Choose ``h_factor`` from ``GRID`` = (0.4, 0.6, 0.8, 1, 1.3, 1.6).
    vst : {"none", "gat"}
        Variance stabilisation ("gat", default) or none; see the module notes.

    References
    ----------
    A. Buades, B. Coll and J.-M. Morel, "A non-local algorithm for image denoising",
    CVPR 2005; J. Darbon et al., "Fast nonlocal filtering applied to electron
    cryomicroscopy", ISBI 2008 (fast mode). Implementation: ``denoise_nl_means``.
    """

    Config = NLMConfig
    bytes_per_pixel = 72  # see benchmarks/results/bytes_per_pixel/table.md
    USES_SIGMA = True
    PARAM = "h_factor"
    GRID = (0.4, 0.6, 0.8, 1.0, 1.3, 1.6)

    def _radius(self, value: float) -> int:
        return self.config.patch_size // 2 + self.config.patch_distance

    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        c = self.config
        sigma = self._noise_sigma(image)
        return np.asarray(restoration.denoise_nl_means(
            image, patch_size=c.patch_size, patch_distance=c.patch_distance, h=value * sigma,
            fast_mode=c.fast_mode, sigma=sigma, preserve_range=True,
        ))
