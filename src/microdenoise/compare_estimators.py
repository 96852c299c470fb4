"""Estimators of a denoiser's mean squared error without the clean image.

Each returns an :class:`Estimate`: the MSE of ``f(x)`` against the unknown clean
image, in the input's intensity units squared, with a standard error from block
means (blocks of ``BLOCK`` x ``BLOCK`` pixels, treated as independent), whether it
can be trusted on these data and why not.

Two captures of one scene (:func:`fit_pair`, :func:`two_capture_mse`)
    For independent, zero-mean noises, E||f(x1) - x2||^2 = MSE(f(x1)) + E||n2||^2:
    the Noise2Noise principle (Lehtinen et al., "Noise2Noise: learning image
    restoration without clean data", ICML 2018), exact for any method. Real captures
    drift: the second is modelled as ``gain * clean1 + offset`` and aligned (phase
    correlation, then a Fourier shift of ``x2``: a unitary operation, so its noise
    stays independent of ``x1`` and zero-mean). The noise of ``x2`` is estimated from
    the pair difference, pixel by pixel, so that the constant term does not change
    the ranking and the estimate approaches the MSE itself.
One image (:func:`sure_gat`)
    Monte-Carlo SURE (Ramani, Blu & Unser, "Monte-Carlo SURE: a black-box
    optimization of regularization parameters for general denoising algorithms",
    IEEE Trans. Image Process. 17, 1540-1554, 2008) in the domain of the generalized
    Anscombe transform (Makitalo & Foi, IEEE Trans. Image Process. 22, 91-103, 2013),
    where Poisson-Gaussian noise is about N(0, 1): the method is applied as
    ``GAT(f(x))`` and its divergence taken by a random probe ``b``,
    ``x + eps * b / GAT'(x)``. Pixel errors are brought back to intensity units with
    the local noise variance (delta method). SURE assumes *pixel-independent* noise:
    :func:`noise_check` compares the noise variance seen at two scales, and marks
    the estimate unreliable when the noise is spatially correlated (widefield
    cameras), where SURE's correction term is wrong and rankings invert.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .errors import InputError
from .vst import PoissonGaussian, estimate_poisson_gaussian, gat_expected, gat_forward, gat_slope

__all__ = ["BLOCK", "Estimate", "MIN_COMPARE_SIZE", "NoiseCheck", "PairFit",
           "WHITE_RATIO_LIMIT", "block_means", "check_plane", "fit_pair", "intensity_weight",
           "noise_check",
           "residual_diagnostics", "sure_gat", "two_capture_mse"]

Denoise = Callable[[np.ndarray], np.ndarray]
BLOCK = 16  # standard errors from means over BLOCK x BLOCK pixels
MIN_COMPARE_SIZE = 2 * BLOCK  # at least 4 blocks
# Noise variance seen on the 2x2-binned image over what white noise predicts (1 for
# white noise). Chosen on FMD captures _1/_2 only: confocal and two-photon 1.2-2.6,
# widefield 7.4-7.9 (its pair differences have lag-1 autocorrelation 0.57-0.64).
WHITE_RATIO_LIMIT = 4.0
# Levels at which SURE measures the stabilised variance. 8 levels brought the estimates
# nearer the truth on FMD Confocal_FISH_1 (est/true 1.07 vs 1.78) but not the rankings
# (5 FMD _1 crops: same regrets), and was worse on synthetic data at 10-30 photons: 1.
VARIANCE_BINS = 1
MAX_SHIFT_FRACTION = 0.1  # larger shifts between captures are refused
SCENE_CORR_FRACTION = 0.5  # refused when the captures correlate less than this x expected
SHARED_NOISE_FRACTION = 0.25  # refused when the pair difference holds less noise than this


@dataclass(frozen=True)
class Estimate:
    """An estimated MSE (intensity units squared) and how far to trust it."""

    value: float
    se: float
    estimator: str
    reliable: bool = True
    reason: str = ""
    blocks: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)


def check_plane(x: np.ndarray, *, name: str = "the image") -> np.ndarray:
    """``x`` as float64 after refusing what no estimator can use (too small, constant)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise InputError(f"{name} must be one 2D plane here, got shape {x.shape}")
    if min(x.shape) < MIN_COMPARE_SIZE:
        raise InputError(f"{name} is {x.shape[0]}x{x.shape[1]} pixels; compare needs at least "
                         f"{MIN_COMPARE_SIZE}x{MIN_COMPARE_SIZE} (standard errors come from "
                         f"{BLOCK}x{BLOCK} blocks)")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{name} holds NaN or infinite values: replace them first")
    if float(x.min()) == float(x.max()):
        raise InputError(f"{name} is constant (every pixel = {float(x.min()):g}): there is no "
                         "noise to measure and nothing to denoise")
    return x


def block_means(t: np.ndarray, *, block: int = BLOCK) -> np.ndarray:
    """Means of ``t`` over whole ``block`` x ``block`` blocks (the remainder left out)."""
    ny, nx = (t.shape[0] // block) * block, (t.shape[1] // block) * block
    return t[:ny, :nx].reshape(ny // block, block, nx // block, block).mean(axis=(1, 3)).ravel()


def _from_blocks(t: np.ndarray, name: str, *, reliable: bool = True, reason: str = "",
                 scale: float = 1.0) -> Estimate:
    means = block_means(t) * scale
    se = float(np.std(means, ddof=1) / math.sqrt(means.size))
    return Estimate(float(np.mean(t) * scale), se, name, reliable, reason, means)


# ---------------------------------------------------------------------------- two captures


@dataclass(frozen=True)
class PairFit:
    """How the second capture relates to the first: ``x2 ~ gain * x1 + offset``, shifted.

    ``weight`` is the share of the pair difference's variance that is the noise of
    ``x2`` (from the two captures' fitted noise models); ``noise_ac1`` the lag-1
    autocorrelation (along X, Y) of the pair difference, i.e. of the noise.
    """

    gain: float
    offset: float
    shift: tuple[float, float]
    corr: float
    expected_corr: float
    weight: float
    noise_var2: float
    noise_ac1: tuple[float, float]
    margin: int

    def describe(self) -> str:
        """One line for the user."""
        return (f"second capture = {self.gain:.3f} x first + {self.offset:.2f}, shifted "
                f"({self.shift[0]:+.2f}, {self.shift[1]:+.2f}) px (corrected); correlation "
                f"{self.corr:.3f} (noise allows up to {self.expected_corr:.3f}); noise "
                f"lag-1 autocorrelation {self.noise_ac1[0]:+.2f} (X), {self.noise_ac1[1]:+.2f} "
                "(Y), which two-capture estimates do not need to be 0")


def _noise_var(x: np.ndarray, model: PoissonGaussian | None = None) -> float:
    """The fitted noise variance at the image's mean level (``model``: fitted here when
    not given)."""
    model = estimate_poisson_gaussian(x) if model is None else model
    return max(float(model.a * np.mean(x) + model.b), 0.0)


def _lag1(d: np.ndarray) -> tuple[float, float]:
    d = d - d.mean()
    v = float(np.mean(d * d)) or 1.0
    return (float(np.mean(d[:, 1:] * d[:, :-1])) / v, float(np.mean(d[1:] * d[:-1])) / v)


def _noise_var_upper(x: np.ndarray) -> float:
    """The per-pixel noise variance, or more: the fine-scale fit times the coarse/fine
    ratio of :func:`noise_check` when that exceeds 1. The fine-scale fit sees only part
    of spatially correlated noise (FMD widefield: about a third); scaled by the ratio
    (7-8 there) it overestimates it a little, which makes the scene test below lenient,
    never strict."""
    check = noise_check(x)
    ratio = check.white_ratio if math.isfinite(check.white_ratio) else 1.0
    return _noise_var(x, check.model) * max(ratio, 1.0)


def _pair_gain(c1: np.ndarray, c2: np.ndarray, white: float, share: float) -> float:
    """The gain of ``c2 = gain * c1 + offset + noise`` (blurred captures), corrected for
    the noise in ``c1``: an errors-in-variables regression. The blurred noise of ``c1`` is
    first the white-noise prediction ``white``, then what the pair difference holds,
    ``var(c2 - gain c1) = gain^2 N1 + N2`` with ``N2 = share * N1`` (``share`` from the
    two captures' fine-scale noise fits), iterated: spatially correlated noise keeps
    more of its power through the blur than white noise, which the fine-scale fit
    cannot see (synthetic blurred noise, true gain 1.3: 1.08 without this, 1.29 with).
    """
    var1, var2 = float(np.var(c1)), float(np.var(c2))
    cov = float(np.cov(c1, c2)[0, 1])
    gain = cov / max(var1 - white, 1e-12)
    for _ in range(8):
        noise1 = max(var2 - 2 * gain * cov + gain * gain * var1, 0.0) / (gain * gain + share)
        gain = cov / max(var1 - max(noise1, white), 1e-12)
    return gain


def _correlations(x1: np.ndarray, x2: np.ndarray) -> tuple[float, float]:
    """(correlation of the captures, the most their noise allows for one scene); the
    latter is 0 when the noise alone explains their variance (then nothing is refused)."""
    var1, var2 = float(np.var(x1)), float(np.var(x2))
    corr = float(np.corrcoef(x1.ravel(), x2.ravel())[0, 1])
    signal = max(var1 - _noise_var_upper(x1), 0.0) * max(var2 - _noise_var_upper(x2), 0.0)
    expected = math.sqrt(signal / (var1 * var2))
    return corr, expected if expected > 0.2 else 0.0


def align_second(x2: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``x2`` moved by ``shift`` (Fourier shift: its noise stays independent and white)."""
    moved = ndi.fourier_shift(np.fft.fft2(x2), shift)
    return np.real(np.fft.ifft2(moved))


def fit_pair(x1: np.ndarray, x2: np.ndarray, *, blur: float = 2.0) -> PairFit:
    """Fit gain, offset and shift between two captures; refuse pairs that are not one scene.

    Raises :class:`InputError` when the shapes differ, the shift exceeds
    ``MAX_SHIFT_FRACTION`` of the image, the captures correlate far less than their
    noise allows (another scene), or their difference holds almost no noise (the same
    frame twice, or noise shared between them: Noise2Noise needs independent noise).
    """
    if x1.shape != x2.shape:
        raise InputError(f"the second capture has shape {x2.shape}, the first {x1.shape}: "
                         "give a second capture of the same scene, same size")
    from skimage.registration import phase_cross_correlation  # lazy: a slow import

    b1, b2 = ndi.gaussian_filter(x1, blur), ndi.gaussian_filter(x2, blur)
    shift, _, _ = phase_cross_correlation(b1, b2, upsample_factor=10, normalization=None)
    dy, dx = float(shift[0]), float(shift[1])
    limit = MAX_SHIFT_FRACTION * min(x1.shape)
    if max(abs(dy), abs(dx)) > limit:
        corr, expected = _correlations(x1, x2)
        if corr < SCENE_CORR_FRACTION * expected:
            raise InputError(f"the two captures correlate {corr:.2f}, far below the "
                             f"{expected:.2f} their noise allows, and no shift within "
                             f"{limit:.0f} px aligns them: they look like different scenes; "
                             "give a second capture of the same field of view")
        raise InputError(f"the second capture is shifted by ({dy:+.1f}, {dx:+.1f}) px from the "
                         f"first (more than {limit:.0f} px): register the captures first, or "
                         "give a capture of the same field of view")
    margin = int(math.ceil(max(abs(dy), abs(dx)))) + 2
    inner = (slice(margin, -margin), slice(margin, -margin))
    a2 = align_second(x2, (dy, dx))
    b2 = ndi.gaussian_filter(a2, blur)
    c1, c2 = b1[inner].ravel(), b2[inner].ravel()
    nv1, nv2 = _noise_var(x1), _noise_var(x2)
    kernel_energy = 1.0 / (4.0 * math.pi * blur * blur)  # sum of a 2D Gaussian kernel squared
    gain = _pair_gain(c1, c2, nv1 * kernel_energy, nv2 / nv1 if nv1 > 0 else 1.0)
    if not gain > 0.05:
        raise InputError(f"the second capture does not follow the first (fitted gain "
                         f"{gain:.3g}): give a capture of the same scene")
    offset = float(np.mean(c2) - gain * np.mean(c1))
    r1, r2 = x1[inner], a2[inner]
    corr, expected = _correlations(r1, r2)
    if corr < SCENE_CORR_FRACTION * expected:
        raise InputError(f"the two captures correlate {corr:.2f}, far below the {expected:.2f} "
                         "their noise allows: they look like different scenes; give a second "
                         "capture of the same field of view")
    d = r2 - (gain * r1 + offset)
    noise_d = float(np.var(d))
    predicted = nv2 + gain * gain * nv1
    if predicted > 0 and noise_d < SHARED_NOISE_FRACTION * predicted:
        raise InputError(f"the two captures differ by far less noise ({noise_d:.3g}) than each "
                         f"holds ({predicted:.3g} expected): the same frame twice, or noise "
                         "shared between them; the two-capture estimate needs independent "
                         "noise in each capture")
    weight = nv2 / predicted if predicted > 0 else 0.5
    return PairFit(gain, offset, (dy, dx), corr, expected, weight, weight * noise_d,
                   _lag1(d), margin)


def two_capture_mse(fx1: np.ndarray, x1: np.ndarray, x2: np.ndarray, pair: PairFit
                    ) -> Estimate:
    """MSE of ``fx1 = f(x1)`` against the clean first capture, from the second capture.

    Per pixel ``(gain * f(x1) + offset - x2')^2 - weight * d^2`` (``x2'`` the aligned
    second capture, ``d`` the pair difference), divided by ``gain^2``; unbiased when
    the noises are independent and zero-mean, whatever the method.
    """
    m = pair.margin
    inner = (slice(m, -m), slice(m, -m))
    a2 = align_second(x2, pair.shift)[inner]
    pred = pair.gain * fx1[inner] + pair.offset
    d = a2 - (pair.gain * x1[inner] + pair.offset)
    t = (pred - a2) ** 2 - pair.weight * d * d
    return _from_blocks(t, "two-capture", scale=1.0 / (pair.gain * pair.gain))


# ---------------------------------------------------------------------------- one image


@dataclass(frozen=True)
class NoiseCheck:
    """The fitted noise model and whether the noise looks pixel-independent."""

    model: PoissonGaussian
    white_ratio: float
    correlated: bool

    def describe(self) -> str:
        """One line for the user."""
        verdict = ("spatially correlated: plain SURE does not apply (compare uses "
                   "correlated-noise SURE)"
                   if self.correlated else "consistent with pixel-independent noise")
        if not math.isfinite(self.white_ratio):
            verdict = "no noise found at one scale: cannot test it, estimates unreliable"
        return (f"noise var = {self.model.a:.4g} * y + {self.model.b:.4g}; coarse/fine noise "
                f"ratio {self.white_ratio:.2f} (white noise: about 1, limit "
                f"{WHITE_RATIO_LIMIT:g}): {verdict}")

    def white_noise_reason(self, consequence: str) -> str:
        """Why an estimator that assumes pixel-independent noise is not to be trusted
        here ("" when the noise looks white); ``consequence`` says what goes wrong."""
        if not math.isfinite(self.white_ratio):
            return "the noise could not be tested for spatial correlation"
        if self.correlated:
            return (f"noise spatially correlated (coarse/fine ratio {self.white_ratio:.1f} > "
                    f"{WHITE_RATIO_LIMIT:g}): {consequence}")
        return ""


def noise_check(x: np.ndarray) -> NoiseCheck:
    """Fit the Poisson-Gaussian model and test the noise for spatial correlation.

    The fine-scale (2x2 Haar) noise variance of ``x`` and that of its 2x2-binned
    image are compared: for pixel-independent noise, binning divides the variance by
    4, so ``white_ratio`` = 4 * var(binned) / var(fine) is about 1. Positively
    correlated noise hides from the fine scale and survives binning, so the ratio
    grows (FMD widefield: 7-8). Image structure raises it a little (up to 2.6 on
    FMD confocal); above ``WHITE_RATIO_LIMIT`` the noise is called correlated.
    """
    model = estimate_poisson_gaussian(x)
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    binned = x[:h:2, :w:2] + x[1:h:2, :w:2] + x[:h:2, 1:w:2] + x[1:h:2, 1:w:2]
    coarse = estimate_poisson_gaussian(binned / 4.0, bins=max(2, min(24, binned.size // 128)))
    level = float(np.mean(x))
    fine_var = model.a * level + model.b
    coarse_var = coarse.a * level + coarse.b
    ratio = 4.0 * coarse_var / fine_var if fine_var > 0 and coarse_var > 0 else math.nan
    if not math.isfinite(ratio):  # no noise at one of the scales: cannot tell, say so
        return NoiseCheck(model, ratio, True)
    return NoiseCheck(model, float(ratio), bool(ratio > WHITE_RATIO_LIMIT))


def sure_gat(x: np.ndarray, f: Denoise, check: NoiseCheck, *, fx: np.ndarray | None = None,
             eps: float = 0.02, probes: int = 1, seed: int = 0) -> Estimate:
    """Monte-Carlo SURE of ``f`` on ``x`` in the GAT domain, in intensity units squared.

    With ``z = GAT(x)`` (noise about N(0, 1)) and ``g = GAT(f(x))``, per pixel
    ``(g - z)^2 - 1 + 2 * b * (GAT(f(x + eps * b / GAT'(x))) - g) / eps``, with
    ``b`` ~ N(0, 1) (``probes`` draws, averaged), estimates the squared error of
    ``g`` in the GAT domain; it is multiplied by the local noise variance
    ``1 / GAT'(smoothed x)^2`` to give the error in intensity units.
    ``f`` is called ``1 + probes`` times. Marked unreliable when the noise is
    spatially correlated (see :func:`noise_check`) or no noise was found.
    """
    model = check.model
    if model.a <= 0 and model.b <= 0:
        return Estimate(math.nan, math.nan, "sure-gat", False,
                        "no noise found in the image: SURE has nothing to go on")
    fx = f(x) if fx is None else fx
    z = gat_forward(x, model).astype(np.float64)
    g = gat_expected(fx, model)
    slope = gat_slope(x, model)
    rng = np.random.default_rng(seed)
    div = np.zeros_like(x)
    for _ in range(probes):
        b = rng.standard_normal(x.shape)
        moved = gat_expected(f(x + eps * b / slope), model)
        div += b * (moved - g) / eps
    v = _stabilized_variance(z, bins=VARIANCE_BINS)
    t = (g - z) ** 2 - v + 2.0 * v * div / probes
    weight = intensity_weight(x, model)
    reason = check.white_noise_reason("SURE assumes pixel-independent noise and favours "
                                      "smoothing filters here")
    return _from_blocks(t * weight, "sure-gat", reliable=not reason, reason=reason)


def _stabilized_variance(z: np.ndarray, *, bins: int = 1) -> np.ndarray | float:
    """The noise variance left after the GAT (1 if the noise model fits), measured from
    2x2 Haar diagonal details of ``z`` (free of locally linear signal), trimmed of the 2%
    largest (edges): a misfit of the model's scale then does not bias SURE. With
    ``bins`` > 1, per bin of the local level, interpolated at each pixel."""
    h, w = (z.shape[0] // 2) * 2, (z.shape[1] // 2) * 2
    d = ((z[:h:2, :w:2] - z[:h:2, 1:w:2] - z[1:h:2, :w:2] + z[1:h:2, 1:w:2]) / 2.0).ravel()
    level = ndi.uniform_filter((z[:h:2, :w:2] + z[:h:2, 1:w:2] + z[1:h:2, :w:2]
                                + z[1:h:2, 1:w:2]) / 4.0, 3, mode="reflect").ravel()
    centres, variances = [], []
    for chunk in np.array_split(np.argsort(level), bins):
        part = d[chunk]
        part = part[np.abs(part) <= np.quantile(np.abs(part), 0.98)]
        centres.append(float(np.mean(level[chunk])))
        variances.append(float(np.mean(part * part)) / 0.8735)  # undoes the trimming
    if bins == 1:
        return variances[0]
    return np.interp(ndi.uniform_filter(z, 5, mode="reflect"), centres, variances)


def intensity_weight(x: np.ndarray, model: PoissonGaussian) -> np.ndarray:
    """Squared GAT-domain errors times this are intensity errors (delta method): the
    inverse square slope of E[GAT] at the smoothed image (independent of the method).

    Where E[GAT] flattens (intensities at or below the model's zero-photon level, e.g.
    with a negative ``b``), its slope goes to 0 and the conversion is ill-posed: the
    slope of the GAT itself, floored there, bounds the weight by about the noise
    variance at zero photons, ``3/8 alpha^2 + sigma^2``.
    """
    smooth = ndi.gaussian_filter(x, 2.0)
    h = 1e-3 * (float(np.ptp(x)) or 1.0)
    slope = (gat_expected(smooth + h, model) - gat_expected(smooth - h, model)) / (2 * h)
    return 1.0 / np.maximum(slope, gat_slope(smooth, model)) ** 2


def residual_diagnostics(x: np.ndarray, fx: np.ndarray, model: PoissonGaussian
                         ) -> tuple[float, float, np.ndarray]:
    """(variance ratio, lag-1 autocorrelation, structure map) of the residual ``x - f(x)``.

    The ratio is the residual's mean square over the fitted noise variance at ``f(x)``
    (1: the method removed about the noise; below: it kept noise; above: it removed
    signal too). The autocorrelation is the mean of X and Y lag 1 (near 0 for white
    noise removed alone). The map is the local (9x9) correlation of the residual with
    ``f(x)``: structure left in the residual shows as large values.
    """
    r = x - fx
    noise_var = np.maximum(model.a * np.maximum(fx, 0.0) + model.b, 1e-12)
    ratio = float(np.mean(r * r) / np.mean(noise_var))
    ac1 = float(np.mean(_lag1(r)))
    rc = r - ndi.uniform_filter(r, 9)
    fc = fx - ndi.uniform_filter(fx, 9)
    cov = ndi.uniform_filter(rc * fc, 9)
    den = np.sqrt(np.maximum(ndi.uniform_filter(rc * rc, 9) * ndi.uniform_filter(fc * fc, 9),
                           0.0)) + 1e-12
    return ratio, ac1, cov / den
