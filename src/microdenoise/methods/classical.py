"""Classical filters: median, Gaussian, box, 3D box, NLM, TV, wavelet, bilateral, BM3D.

Each filter takes a float32 image scaled to about [0, 1] (``normalization =
"unit"``) and returns float32 of the same shape. All but ``box3d`` take one 2D
(YX) image; the pipeline runs them plane by plane.

Self-calibration: with ``calibrate=True``, ``fit(noisy)`` picks the main
parameter ``PARAM`` from the grid ``GRID`` by minimising the J-invariant loss
of Noise2Self (Batson & Royer, ICML 2019) on the central ``CROP`` x ``CROP``
pixels, in the manner of :func:`skimage.restoration.calibrate_denoiser` (which
averages all stride**2 mask phases; we average ``MASKS`` of them for speed). The
choice is the learned state, ``{"calibrated": {PARAM: value}}``. The pipeline
fits every image (``zero_shot``), which also fixes the noise level of NLM,
wavelet and BM3D once per image, so tiles share it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pywt
from scipy import ndimage as ndi
from skimage import restoration

from ..errors import InputError
from ..registry import Denoiser, register

_MIN_SIGMA = 1e-6  # a flat image estimates sigma = 0; NLM and BM3D need a positive one
_GLOBAL_FIELD = 32  # receptive field declared for TV, wavelet and BM3D (see their notes)


@dataclass(frozen=True)
class _Params:
    """Base of the filters' configs: every number given must be > 0 (None means default)."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and not value > 0:
                raise InputError(f"{field.name} must be > 0, got {value!r}")


def _estimate_sigma(image: np.ndarray) -> float:
    """Gaussian noise std by the wavelet MAD of Donoho & Johnstone (skimage)."""
    with warnings.catch_warnings():  # a flat image has no non-zero detail: NaN, warned
        warnings.simplefilter("ignore", RuntimeWarning)
        sigma = float(restoration.estimate_sigma(image))
    return sigma if math.isfinite(sigma) and sigma > _MIN_SIGMA else _MIN_SIGMA


def invariant_loss(
    image: np.ndarray,
    denoise: Callable[[np.ndarray], np.ndarray],
    *,
    stride: int = 4,
    masks: int = 2,
) -> float:
    """Self-supervised (J-invariant) mean squared error of ``denoise`` on ``image``.

    Parameters
    ----------
    image : numpy.ndarray
        Noisy image, any number of dimensions, each at least 2 long.
    denoise : callable
        Maps an array to a denoised array of the same shape.
    stride : int, optional
        Spacing of the masked grid along each axis.
    masks : int, optional
        Number of grid offsets (along the diagonal) the loss averages over.

    Returns
    -------
    float
        Mean squared error between ``denoise(masked image)`` and ``image`` on the
        masked pixels, each replaced by the mean of its 2 * ndim neighbours
        (Batson & Royer, Noise2Self, ICML 2019).
    """
    if min(image.shape) < 2:
        raise InputError(f"an image of shape {image.shape} is too small to calibrate on")
    kernel = ndi.generate_binary_structure(image.ndim, 1).astype(np.float32)
    kernel.flat[kernel.size // 2] = 0.0
    interp = ndi.convolve(image, kernel / kernel.sum(), mode="mirror")
    total, count = 0.0, 0
    for k in range(masks):
        phase = (k * stride) // masks + stride // (2 * masks)
        grid = tuple(slice(phase % min(stride, n), None, min(stride, n)) for n in image.shape)
        masked = image.copy()
        masked[grid] = interp[grid]
        diff = np.asarray(denoise(masked), dtype=np.float64)[grid] - image[grid]
        total += float(np.sum(diff * diff))
        count += diff.size
    return total / count


class _Filter(Denoiser):
    """Shared machinery: input checks, calibration of ``PARAM`` over ``GRID``, state."""

    family = "classical"
    needs = "nothing"
    normalization = "unit"
    zero_shot = True  # the pipeline fits each image: noise level, calibration
    USES_SIGMA: ClassVar[bool] = False  # estimates the noise level in fit (config sigma None)
    IMAGE_NDIM: ClassVar[int] = 2
    PARAM: ClassVar[str] = ""  # the config field calibration chooses
    GRID: ClassVar[tuple[float, ...]] = ()
    CROP: ClassVar[int] = 256  # calibration looks at the central CROP x CROP pixels
    MASKS: ClassVar[int] = 2  # grid offsets the J-invariant loss averages over

    def __init__(self, config: Any = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self._calibrated: dict[str, float] = {}
        self._sigma: float | None = None  # noise level estimated by fit
        #: J-invariant loss of each grid value in the last calibration.
        self.calibration_losses: dict[float, float] = {}

    @abstractmethod
    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        """Filter a checked float32 image with main parameter ``value``."""

    def _radius(self, value: float) -> int:
        return _GLOBAL_FIELD

    @property
    def value(self) -> float:
        """The main parameter in use: the calibrated value if any, else the config's."""
        return self._calibrated.get(self.PARAM, getattr(self.config, self.PARAM))

    @property
    def receptive_field(self) -> int:
        """Half-width of the neighbourhood an output pixel depends on.

        While a calibration is pending, the widest value of the grid is assumed.
        """
        value = self.value
        if self.config.calibrate and not self._calibrated:
            value = max((*self.GRID, value))
        return self._radius(value)

    def _check(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != self.IMAGE_NDIM:
            raise InputError(
                f"method {self.key!r} denoises one 2D (YX) image at a time, got shape "
                f"{image.shape}; denoise_array/denoise_file with axes run it plane by plane"
            )
        return np.ascontiguousarray(image, dtype=np.float32)

    def fit(self, noisy: np.ndarray, clean: np.ndarray | None = None) -> Self:
        """Estimate the noise level (NLM, wavelet, BM3D) and calibrate if ``calibrate=True``.

        Fitting the whole image once makes tiled output use one noise level for all
        tiles (no seams from per-tile estimates).
        """
        image = self._check(noisy)
        if self.USES_SIGMA and getattr(self.config, "sigma", None) is None:
            self._sigma = _estimate_sigma(image)
        if self.config.calibrate:
            self._calibrate(image)
        return self

    def _noise_sigma(self, image: np.ndarray) -> float:
        """The config's sigma, else the one fitted, else estimated on ``image``."""
        given = getattr(self.config, "sigma", None)
        if given is not None:
            return float(given)
        return self._sigma if self._sigma is not None else _estimate_sigma(image)

    def _calibrate(self, image: np.ndarray) -> None:
        y, x = (max(0, (n - self.CROP) // 2) for n in image.shape[-2:])
        patch = np.ascontiguousarray(image[..., y : y + self.CROP, x : x + self.CROP])
        losses = {
            v: invariant_loss(patch, functools.partial(self._apply, value=v), masks=self.MASKS)
            for v in self.GRID
        }
        self.calibration_losses = losses
        self._calibrated = {self.PARAM: min(losses, key=losses.__getitem__)}

    def denoise(self, image: np.ndarray) -> np.ndarray:
        """Denoise a float32 image scaled to about [0, 1]; float32, same shape."""
        checked = self._check(image)
        if self.config.calibrate and not self._calibrated:
            self._calibrate(checked)
        return np.asarray(self._apply(checked, self.value), dtype=np.float32)

    def state_dict(self) -> dict[str, Any]:
        """``{"calibrated": {PARAM: value}, "sigma": s}`` as far as fitted, else ``{}``."""
        state: dict[str, Any] = {}
        if self._calibrated:
            state["calibrated"] = dict(self._calibrated)
        if self._sigma is not None:
            state["sigma"] = float(self._sigma)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the calibrated parameter saved by :meth:`state_dict`."""
        calibrated = state.get("calibrated", {}) if isinstance(state, dict) else None
        if (not isinstance(calibrated, dict) or set(state) - {"calibrated", "sigma"}
                or set(calibrated) - {self.PARAM}):
            raise InputError(
                f"state for method {self.key!r} must be {{}} or {{'calibrated': "
                f"{{{self.PARAM!r}: value}}}}, got {state!r}; was it saved by another method?"
            )
        kind = type(getattr(self.config, self.PARAM))
        self._calibrated = {k: kind(v) for k, v in calibrated.items()}
        self._sigma = float(state["sigma"]) if "sigma" in state else None


@dataclass(frozen=True)
class SizeConfig(_Params):
    """Window width in pixels (odd widths are centred) and whether to calibrate it."""

    size: int = 3
    calibrate: bool = False


@register("median")
class Median(_Filter):
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

    Config = SizeConfig
    PARAM = "size"
    GRID = (3, 5, 7, 9, 11)

    def _radius(self, value: float) -> int:
        return int(value) // 2

    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        return np.asarray(ndi.median_filter(image, size=int(value), mode="reflect"))


@dataclass(frozen=True)
class GaussianConfig(_Params):
    """Standard deviation of the Gaussian in pixels and whether to calibrate it."""

    sigma: float = 1.0
    calibrate: bool = False


@register("gaussian")
class Gaussian(_Filter):
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
class Box(_Filter):
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

    Config = SizeConfig
    PARAM = "size"
    GRID = (3, 5, 7, 9, 11)

    def _radius(self, value: float) -> int:
        return int(value) // 2

    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        return np.asarray(ndi.uniform_filter(image, size=int(value), mode="reflect"))


@dataclass(frozen=True)
class Box3DConfig(_Params):
    """Box width in YX, along Z/T (None: the same), and whether to calibrate it."""

    size: int = 3
    size_z: int | None = None
    calibrate: bool = False


@register("box3d")
class Box3D(_Filter):
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
    supports_3d = True
    IMAGE_NDIM = 3
    PARAM = "size"
    GRID = (3, 5, 7, 9)

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

    References
    ----------
    A. Buades, B. Coll and J.-M. Morel, "A non-local algorithm for image denoising",
    CVPR 2005; J. Darbon et al., "Fast nonlocal filtering applied to electron
    cryomicroscopy", ISBI 2008 (fast mode). Implementation: ``denoise_nl_means``.
    """

    Config = NLMConfig
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

    References
    ----------
    S. G. Chang, B. Yu and M. Vetterli, "Adaptive wavelet thresholding for image denoising
    and compression", IEEE Trans. Image Process. 9, 1532-1546 (2000); D. L. Donoho and
    I. M. Johnstone, Biometrika 81, 425-455 (1994). Implementation: ``denoise_wavelet``.
    """

    Config = WaveletConfig
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

    References
    ----------
    K. Dabov, A. Foi, V. Katkovnik and K. Egiazarian, "Image denoising by sparse 3-D
    transform-domain collaborative filtering", IEEE Trans. Image Process. 16, 2080-2095
    (2007); Y. Makinen, L. Azzari and A. Foi, "Collaborative filtering of correlated
    noise", IEEE Trans. Image Process. 29, 8339-8354 (2020) (the ``bm3d`` package).
    """

    Config = BM3DConfig
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
