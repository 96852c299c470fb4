"""The classical filters' shared base: calibration, noise level, VST, state.

:class:`Filter` is the base of every classical method. The filters themselves
are grouped by how far one output pixel reaches, which is what tiling cares
about: :mod:`microdenoise.methods.local_filters` (median, Gaussian, box, 3D box,
bilateral, NLM: a finite neighbourhood, so tiled output equals untiled) and
:mod:`microdenoise.methods.global_filters` (TV, wavelet, BM3D: the whole image).

Each filter takes a float32 image scaled to about [0, 1] (``normalization =
"unit"``) and returns float32 of the same shape. All but ``box3d`` take one 2D
(YX) image; the prediction core runs them plane by plane.

Self-calibration: with ``calibrate=True``, ``fit(noisy)`` picks the main
parameter ``PARAM`` from the grid ``GRID`` by minimising the J-invariant loss
of Noise2Self (Batson & Royer, ICML 2019) on the central ``CROP`` x ``CROP``
pixels, in the manner of :func:`skimage.restoration.calibrate_denoiser` (which
averages all stride**2 mask phases; we average ``MASKS`` of them for speed). The
choice is the learned state, ``{"calibrated": {PARAM: value}}``. A filter that
calibrates or estimates its noise level has ``fit_policy == "per_image"``: the
prediction core fits it on each whole image, which fixes the parameter and the
noise level of NLM, wavelet and BM3D once per image, so tiles share them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
from scipy import ndimage as ndi
from skimage import restoration

from ..errors import InputError
from ..registry import Denoiser
from ..vst import PoissonGaussian, estimate_poisson_gaussian, gat_forward, gat_inverse

MIN_SIGMA = 1e-6  # a flat image estimates sigma = 0; NLM and BM3D need a positive one
GLOBAL_FIELD = 32  # receptive field declared for TV, wavelet and BM3D (see their notes)


@dataclass(frozen=True)
class FilterParams:
    """Base of the filters' configs: every number given must be > 0 (None means default)."""

    #: Upper bounds of the sizes that set an allocation or a window (config.check_range),
    #: by field name across the filters (``sigma``: Gaussian px, or a noise level).
    MAXIMA: ClassVar[dict[str, float]] = {
        "size": 255, "size_z": 255, "sigma": 100, "sigma_spatial": 100, "win_size": 255,
        "bins": 1_000_000, "patch_size": 63, "patch_distance": 63, "wavelet_levels": 16}

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, int | float) and not isinstance(value, bool) and not value > 0:
                raise InputError(f"{field.name} must be > 0, got {value!r}")


def estimate_sigma(image: np.ndarray) -> float:
    """Gaussian noise std by the wavelet MAD of Donoho & Johnstone (skimage)."""
    with warnings.catch_warnings():  # a flat image has no non-zero detail: NaN, warned
        warnings.simplefilter("ignore", RuntimeWarning)
        sigma = float(restoration.estimate_sigma(image))
    return sigma if math.isfinite(sigma) and sigma > MIN_SIGMA else MIN_SIGMA


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


class Filter(Denoiser):
    """Shared machinery: input checks, calibration of ``PARAM`` over ``GRID``, state."""

    family = "classical"
    bytes_per_pixel = 32  # see benchmarks/results/bytes_per_pixel/table.md
    needs = "nothing"
    normalization = "unit"
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
        self._noise_model: PoissonGaussian | None = None  # fitted for vst="gat"
        #: J-invariant loss of each grid value in the last calibration.
        self.calibration_losses: dict[float, float] = {}

    @abstractmethod
    def _apply(self, image: np.ndarray, value: float) -> np.ndarray:
        """Filter a checked float32 image with main parameter ``value``."""

    def _radius(self, value: float) -> int:
        return GLOBAL_FIELD

    @property
    def global_field(self) -> bool:
        """True for filters whose reach is the whole image (no finite ``_radius``)."""
        return type(self)._radius is Filter._radius

    @property
    def fit_policy(self) -> str:
        """``"per_image"`` when ``fit`` learns from the image (calibration, noise level)."""
        c = self.config
        estimates = self._uses_vst or (self.USES_SIGMA and getattr(c, "sigma", None) is None)
        return "per_image" if c.calibrate or estimates else "none"

    @property
    def fitted(self) -> bool:
        """Whether everything ``fit`` learns is held: the calibrated parameter (with
        ``calibrate=True``), the noise level (NLM, wavelet, BM3D without ``sigma``), the
        Poisson-Gaussian model (``vst="gat"``). A filter with nothing to fit is fitted."""
        c = self.config
        if c.calibrate and not self._calibrated:
            return False
        if self._uses_vst:
            return self._noise_model is not None
        if self.USES_SIGMA and getattr(c, "sigma", None) is None:
            return self._sigma is not None
        return True

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
        if self._uses_vst:
            self._noise_model = estimate_poisson_gaussian(image)
        elif self.USES_SIGMA and getattr(self.config, "sigma", None) is None:
            self._sigma = estimate_sigma(image)
        if self.config.calibrate:
            self._calibrate(image)
        return self

    def _noise_sigma(self, image: np.ndarray) -> float:
        """1 after the VST, else the config's sigma, the one fitted, or estimated on ``image``."""
        if self._uses_vst:
            return 1.0
        given = getattr(self.config, "sigma", None)
        if given is not None:
            return float(given)
        return self._sigma if self._sigma is not None else estimate_sigma(image)

    def _calibrate(self, image: np.ndarray) -> None:
        self.calibration_losses = self._losses(image)
        losses = self.calibration_losses
        self._calibrated = {self.PARAM: min(losses, key=losses.__getitem__)}

    def _losses(self, image: np.ndarray) -> dict[float, float]:
        """The J-invariant loss of each grid value on the central crop of ``image``."""
        y, x = (max(0, (n - self.CROP) // 2) for n in image.shape[-2:])
        patch = np.ascontiguousarray(image[..., y : y + self.CROP, x : x + self.CROP])
        return {
            v: invariant_loss(patch, functools.partial(self._filter, value=v), masks=self.MASKS)
            for v in self.GRID
        }

    def denoise(self, image: np.ndarray) -> np.ndarray:
        """Denoise a float32 image scaled to about [0, 1]; float32, same shape.

        Never changes the model: an uncalibrated ``calibrate=True`` filter calibrates
        on ``image`` for this call only (the core fits a fresh copy on each whole image
        first, so that tiles share one choice), as the noise level is estimated on
        ``image`` when none was fitted.
        """
        checked = self._check(image)
        value = self.value
        if self.config.calibrate and not self._calibrated:
            losses = self._losses(checked)
            value = min(losses, key=losses.__getitem__)
        return self._filter(checked, value)

    @property
    def _uses_vst(self) -> bool:
        """``vst="gat"`` and no explicit ``sigma`` (a given sigma is for the image as it is)."""
        c = self.config
        return getattr(c, "vst", "none") == "gat" and getattr(c, "sigma", None) is None

    def _filter(self, image: np.ndarray, value: float) -> np.ndarray:
        """``_apply``, inside the generalized Anscombe transform when ``vst="gat"``."""
        if not self._uses_vst:
            return np.asarray(self._apply(image, value), dtype=np.float32)
        model = self._noise_model or estimate_poisson_gaussian(image)
        return gat_inverse(self._apply(gat_forward(image, model), value), model)

    def state_dict(self) -> dict[str, Any]:
        """``{"calibrated": {PARAM: value}, "sigma": s}`` as far as fitted, else ``{}``."""
        state: dict[str, Any] = {}
        if self._calibrated:
            state["calibrated"] = dict(self._calibrated)
        if self._sigma is not None:
            state["sigma"] = float(self._sigma)
        if self._noise_model is not None:
            state["poisson_gaussian"] = [self._noise_model.a, self._noise_model.b]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the calibrated parameter saved by :meth:`state_dict`."""
        calibrated = state.get("calibrated", {}) if isinstance(state, dict) else None
        if (not isinstance(calibrated, dict)
                or set(state) - {"calibrated", "sigma", "poisson_gaussian"}
                or set(calibrated) - {self.PARAM}):
            raise InputError(
                f"state for method {self.key!r} must be {{}} or {{'calibrated': "
                f"{{{self.PARAM!r}: value}}}}, got {state!r}; was it saved by another method?"
            )
        kind = type(getattr(self.config, self.PARAM))
        self._calibrated = {k: kind(v) for k, v in calibrated.items()}
        self._sigma = float(state["sigma"]) if "sigma" in state else None
        pg = state.get("poisson_gaussian")
        self._noise_model = PoissonGaussian(float(pg[0]), float(pg[1])) if pg else None
