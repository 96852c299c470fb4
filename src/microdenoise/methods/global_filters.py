"""Filters whose output pixel depends on the whole image: TV, wavelet, BM3D.

They declare a receptive field of ``GLOBAL_FIELD`` pixels for tiling, but their
output depends on the whole image (TV's iterations, wavelet thresholds from the
image's coefficients, BM3D's block matching), so tiles or Dask chunks differ from
one whole pass, and the prediction core warns when it tiles them
(:attr:`~microdenoise.registry.Denoiser.global_field`). Conventions and calibration:
:mod:`microdenoise.methods.filters`.

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

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pywt
from skimage import restoration

from ..errors import InputError
from ..registry import register
from .filters import Filter, FilterParams


@dataclass(frozen=True)
class TVConfig(FilterParams):
    """Chambolle TV: weight (larger smooths more), iteration cap, stopping tolerance."""

    weight: float = 0.1
    max_num_iter: int = 200
    eps: float = 2e-4
    calibrate: bool = False


@register("tv")
class TotalVariation(Filter):
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
class WaveletConfig(FilterParams):
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
class Wavelet(Filter):
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
class BM3DConfig(FilterParams):
    """BM3D: the noise std is sigma_scale * sigma (None: estimated); bm3d profile."""

    sigma: float | None = None
    sigma_scale: float = 1.0
    profile: Literal["np", "refilter", "vn", "vn_old", "high", "deb"] = "np"
    vst: Literal["none", "gat"] = "gat"
    calibrate: bool = False


@register("bm3d")
class BM3D(Filter):
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
