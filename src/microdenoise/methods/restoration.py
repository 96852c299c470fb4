"""Edge-preserving and transform-domain filters: bilateral, NLM, TV, wavelet, BM3D.

Same conventions as :mod:`microdenoise.methods.classical` (float32 images scaled to
about [0, 1], one 2D plane at a time, J-invariant calibration of ``PARAM``, the
pipeline fits each image). NLM, wavelet and BM3D estimate the noise level once per
fitted image (``USES_SIGMA``) so that tiles share it.

``vst`` (NLM, wavelet, BM3D): with "gat" (the default) ``fit`` estimates a
Poisson-Gaussian model var = a*y + b of the image
(:func:`microdenoise.vst.estimate_poisson_gaussian`); the filter then runs in the
generalized Anscombe domain at noise std 1 and the result is mapped back with the
exact unbiased inverse (Makitalo & Foi 2013), as FMD ran its BM3D baseline. "none"
filters the image as it is, with sigma estimated by the wavelet MAD; giving
``sigma`` implies "none". On the FMD tuning captures ``_1`` "gat" gains 2.8 (NLM),
1.5 (wavelet) and 3.2 dB (BM3D) (``benchmarks/results/fmd_fm2s/fmd_test_mix/table.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pywt
from skimage import restoration

from ..errors import InputError
from ..registry import register
from .classical import _Filter, _Params


@dataclass(frozen=True)
class BilateralConfig(_Params):
    """Range and spatial kernel widths, window (None: from sigma_spatial), LUT bins."""

    sigma_color: float = 0.05
    sigma_spatial: float = 1.5
    win_size: int | None = None
    bins: int = 10000
    calibrate: bool = False


@register("bilateral")
class Bilateral(_Filter):
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
class NLMConfig(_Params):
    """Non-local means: h = h_factor * sigma (sigma None: estimated from the image)."""

    h_factor: float = 0.8
    patch_size: int = 5
    patch_distance: int = 6
    sigma: float | None = None
    fast_mode: bool = True
    vst: Literal["none", "gat"] = "gat"
    calibrate: bool = False


@register("nlm")
class NLMeans(_Filter):
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


@dataclass(frozen=True)
class TVConfig(_Params):
    """Chambolle TV: weight (larger smooths more), iteration cap, stopping tolerance."""

    weight: float = 0.1
    max_num_iter: int = 200
    eps: float = 2e-4
    calibrate: bool = False


@register("tv")
class TotalVariation(_Filter):
    """Total-variation denoising by Chambolle's projection algorithm.

    Parameters
    ----------
    TV couples all pixels, but its influence decays fast: the receptive field is
    declared as 32, so tiles overlapping that much agree closely, not exactly.

    Parameters
    ----------
    weight : float
        Denoising weight (0.1); larger smooths more.
    max_num_iter, eps : int, float
        Iteration cap (200) and relative stopping tolerance (2e-4).
    calibrate : bool
        Choose ``weight`` from ``GRID`` = (0.02, 0.04, 0.07, 0.1, 0.15, 0.25, 0.4).

    References
    ----------
    A. Chambolle, "An algorithm for total variation minimization and applications",
    J. Math. Imaging Vis. 20, 89-97 (2004); L. Rudin, S. Osher and E. Fatemi, Physica D
    60, 259-268 (1992). Implementation: ``skimage.restoration.denoise_tv_chambolle``.
    """

    Config = TVConfig
    bytes_per_pixel = 72  # see benchmarks/results/bytes_per_pixel/table.md
    PARAM = "weight"
    GRID = (0.02, 0.04, 0.07, 0.1, 0.15, 0.25, 0.4)

    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        return np.asarray(restoration.denoise_tv_chambolle(
            image, weight=value, eps=self.config.eps, max_num_iter=self.config.max_num_iter
        ))


@dataclass(frozen=True)
class WaveletConfig(_Params):
    """Wavelet shrinkage; the noise std is sigma_scale * sigma (None: estimated)."""

    wavelet: str = "db1"
    method: Literal["BayesShrink", "VisuShrink"] = "BayesShrink"
    mode: Literal["soft", "hard"] = "soft"
    sigma: float | None = None
    sigma_scale: float = 1.0
    wavelet_levels: int | None = None
    rescale_sigma: bool = True
    vst: Literal["none", "gat"] = "gat"
    calibrate: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.wavelet not in pywt.wavelist(kind="discrete"):
            raise InputError(f"unknown wavelet {self.wavelet!r}; use a discrete one such as "
                             "db1, db2, sym4 or coif1 (pywt.wavelist(kind='discrete'))")


@register("wavelet")
class Wavelet(_Filter):
    """Wavelet shrinkage, BayesShrink with soft thresholds by default.

    A multi-level transform reaches 2**levels pixels; the receptive field is declared
    as 32 and sigma is estimated per call, so tiled output is close to untiled output,
    not equal to it. Pass ``sigma`` to fix the noise level.

    Parameters
    ----------
    wavelet, method, mode : str
        PyWavelets discrete wavelet ("db1"), "BayesShrink" or "VisuShrink", "soft" or
        "hard".
    sigma, sigma_scale : float or None, float
        Noise std (None: estimated per image by ``estimate_sigma``) and a factor on it (1).
    wavelet_levels : int or None
        Decomposition levels; None is skimage's default (3 fewer than the maximum).
    rescale_sigma : bool
        Rescale sigma with the image as skimage does (True).
    calibrate : bool
        Choose ``sigma_scale`` from ``GRID`` = (0.5, 0.75, 1, 1.5, 2).
    vst : {"none", "gat"}
        Variance stabilisation ("gat", default) or none; see the module notes.

    References
    ----------
    S. G. Chang, B. Yu and M. Vetterli, "Adaptive wavelet thresholding for image denoising
    and compression", IEEE Trans. Image Process. 9, 1532-1546 (2000); D. L. Donoho and
    I. M. Johnstone, Biometrika 81, 425-455 (1994). Implementation: ``denoise_wavelet``.
    """

    Config = WaveletConfig
    bytes_per_pixel = 64  # see benchmarks/results/bytes_per_pixel/table.md
    USES_SIGMA = True
    PARAM = "sigma_scale"
    GRID = (0.5, 0.75, 1.0, 1.5, 2.0)

    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        c = self.config
        return np.asarray(restoration.denoise_wavelet(
            image, sigma=self._noise_sigma(image) * value, wavelet=c.wavelet,
            mode=c.mode, wavelet_levels=c.wavelet_levels, method=c.method,
            rescale_sigma=c.rescale_sigma,
        ))


@dataclass(frozen=True)
class BM3DConfig(_Params):
    """BM3D: the noise std is sigma_scale * sigma (None: estimated); bm3d profile."""

    sigma: float | None = None
    sigma_scale: float = 1.0
    profile: Literal["np", "refilter", "vn", "vn_old", "high", "deb"] = "np"
    vst: Literal["none", "gat"] = "gat"
    calibrate: bool = False


@register("bm3d")
class BM3D(_Filter):
    """Block-matching and 3D collaborative filtering (the ``bm3d`` package).

    Calls ``bm3d.bm3d(image, sigma_psd=sigma_scale * sigma, profile=profile)``. Needs
    the optional extra ``pip install 'microdenoise[bm3d]'``; BM3D's licence is
    non-commercial.

    Block matching searches about 20 pixels around each block, in two stages; the
    receptive field is declared as 32.

    Parameters
    ----------
    sigma, sigma_scale : float or None, float
        Noise std (None: estimated per image by ``estimate_sigma``) and a factor on it (1).
    profile : str
        bm3d settings profile ("np", the package's default).
    calibrate : bool
        Choose ``sigma_scale`` from ``GRID`` = (0.5, 0.7, 1, 1.4, 2), on a central
        128-pixel crop with one mask, as BM3D is slow.
    vst : {"none", "gat"}
        Variance stabilisation ("gat", default) or none; see the module notes.

    References
    ----------
    K. Dabov, A. Foi, V. Katkovnik and K. Egiazarian, "Image denoising by sparse 3-D
    transform-domain collaborative filtering", IEEE Trans. Image Process. 16, 2080-2095
    (2007); Y. Makinen, L. Azzari and A. Foi, "Collaborative filtering of correlated
    noise", IEEE Trans. Image Process. 29, 8339-8354 (2020) (the ``bm3d`` package).
    """

    Config = BM3DConfig
    bytes_per_pixel = 784  # see benchmarks/results/bytes_per_pixel/table.md
    USES_SIGMA = True
    PARAM = "sigma_scale"
    GRID = (0.5, 0.7, 1.0, 1.4, 2.0)
    CROP = 128
    MASKS = 1

    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        try:
            import bm3d
        except ImportError:
            raise InputError(
                "bm3d needs the optional extra: pip install 'microdenoise[bm3d]' "
                "(BM3D's licence is non-commercial)"
            ) from None
        sigma = self._noise_sigma(image) * value
        return np.asarray(bm3d.bm3d(image, sigma_psd=sigma, profile=self.config.profile))
