"""FM2S's noise model: the pre-denoised target, the noise maps, noise injection, and the
noise constants for data that are not 8-bit.

Liu et al., "FM2S: Towards Spatially-Correlated Noise Modeling in Zero-Shot
Fluorescence Microscopy Image Denoising" (arXiv:2412.10031): the target is a
median-filtered (or Gaussian) version of the image; the injected noise is Gaussian
with a region-wise standard deviation map (``g_map``) plus Poisson-like noise
(``p_map``, ``lam_p``). :func:`fit_constants` scales the preset's constants to a
non-8-bit image by its own Poisson-Gaussian fit (:mod:`microdenoise.vst`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..vst import estimate_poisson_gaussian

if TYPE_CHECKING:
    from .fm2s import FM2SConfig

__all__ = ["fit_constants", "inject_noise", "is_8bit_plane", "noise_maps", "predenoise",
           "preset_name"]

def predenoise(image: np.ndarray, *, kind: str = "median", w_size: int = 3) -> np.ndarray:
    """The pre-denoised training target: ``median_filter(image, w_size)`` (reflect) by default.

    ``gaussian`` (sigma = w_size / 3), ``nlm`` and ``bm3d`` (noise sigma estimated from
    the image) are the pre-denoisers of the paper's ablation (Table 7).
    """
    if kind == "median":
        return ndimage.median_filter(image, size=w_size).astype(np.float32)
    if kind == "gaussian":
        return ndimage.gaussian_filter(image, sigma=w_size / 3.0).astype(np.float32)
    from .. import registry

    method = registry.create(kind)
    return method.denoise(image).astype(np.float32)


def noise_maps(clean: torch.Tensor, *, stride: int, g_map: float, p_map: float,
               region: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel Gaussian std (on [0,1]) and Poisson scale of the region-wise injection.

    ``clean`` is (B, C, H, W). The image is zero-padded bottom/right to a multiple
    of ``stride`` and cut into stride x stride regions; each region's level is
    n = clamp(mean over channels and pixels, 1e-5, 0.15) (padding included, as in the
    official code). With ``region=False`` one level for the whole image (ablation).
    """
    _, _, h, w = clean.shape
    if not region:
        n = clean.mean(dim=(1, 2, 3), keepdim=True).clamp(1e-5, 0.15).expand(-1, 1, h, w)
    else:
        padded = F.pad(clean, (0, (-w) % stride, 0, (-h) % stride))
        level = F.avg_pool2d(padded.mean(dim=1, keepdim=True), stride)
        n = level.clamp(1e-5, 0.15).repeat_interleave(stride, 2).repeat_interleave(stride, 3)
        n = n[..., :h, :w]
    return g_map * n / 255.0, p_map / n


def inject_noise(clean: torch.Tensor, sigma: torch.Tensor, scale: torch.Tensor, *,
                 lam_p: float, gen: torch.Generator, region: bool = True,
                 overall: bool = True, clamp: bool = True) -> torch.Tensor:
    """One FM2S noise sample of ``clean`` given the maps from :func:`noise_maps`.

    y = clamp(Poisson(a c)/a + N(0, sigma^2), 0, 1); z = clamp(Poisson(lam_p y)/lam_p, 0, 1).
    Every pixel and channel gets independent noise. With ``clamp=False`` nothing is
    clamped at 0 (only at 1): y = min(Poisson(a c)/a + N, 1) and the global Poisson is a
    zero-mean fluctuation, z = min(y + Poisson(lam_p y+)/lam_p - y+, 1), y+ = max(y, 0).
    A ``clean`` below 0 gets Poisson(a c+)/a (plus c - c+ with ``clamp=False``); for
    ``clean`` in [0, 1], the official code's range, nothing changes.
    """
    y = clean
    low = 0.0 if clamp else None
    if region:
        # The official code's images lie in [0, 1]; an input below 0 (e.g. a perturbed
        # copy scaled like its original, as compare's SURE makes) gets the Poisson of its
        # positive part, and with clamp=False keeps its negative part as it is.
        pos = clean.clamp(min=0.0)
        y = torch.poisson(scale * pos, generator=gen) / scale + (0.0 if clamp else clean - pos)
        noise = torch.randn(clean.shape, generator=gen, device=clean.device, dtype=clean.dtype)
        y = (y + noise * sigma).clamp(low, 1.0)
    if overall:
        if clamp:
            y = (torch.poisson(lam_p * y, generator=gen) / lam_p).clamp(0.0, 1.0)
        else:
            pos = y.clamp(min=0.0)
            y = (y + torch.poisson(lam_p * pos, generator=gen) / lam_p - pos).clamp(max=1.0)
    return y


# Real noise of the images each preset's constants were tuned for: var = a*y + b on the
# [0, 1] scale (x / 255), the mean of vst.estimate_poisson_gaussian over the FMD tuning
# fold of benchmarks/intensity_bias.py (captures _1 of Confocal_BPAE_B, Confocal_MICE;
# TwoPhoton_BPAE_G, TwoPhoton_MICE; WideField_BPAE_B, WideField_BPAE_R), 8-bit units:
# confocal a=4.555 b=-17.68, twophoton a=7.895 b=-57.64, widefield a=0.180 b=17.55.
# The avgN presets: the same divided by N. srdtrans/base: no reference (kept as is).
_REF_NOISE = {"confocal": (4.555 / 255, -17.68 / 255**2),
              "twophoton": (7.895 / 255, -57.64 / 255**2),
              "widefield": (0.180 / 255, 17.55 / 255**2)}
_MIN_LEVEL = 0.05  # variances are compared at max(image mean, this) on [0, 1]


def is_8bit_plane(plane: np.ndarray) -> bool:
    """True when the [0, 1] plane's values lie on the k/255 grid (8-bit data)."""
    flat = plane.ravel()
    sample = flat[:: max(1, flat.size // 100_000)].astype(np.float64) * 255.0
    return bool(np.all(np.abs(sample - np.rint(sample)) < 1e-3))


def preset_name(config: FM2SConfig, presets: dict[str, dict[str, Any]]) -> str:
    """The preset of ``presets`` whose values ``config`` holds (``custom`` when none)."""
    keys = ("n_chan", "stride", "w_size", "g_map", "p_map", "lam_p")
    names = [name for name, values in presets.items()
             if all(getattr(config, k) == values[k] for k in keys)]
    return min(names, key=len) if names else "custom"  # confocal, not confocal_avg1


def fit_constants(plane: np.ndarray, config: FM2SConfig, presets: dict[str, dict[str, Any]]
                  ) -> tuple[float, float, float, str]:
    """(g_map, p_map, lam_p) scaled to the image's own noise, and a sentence saying how.

    The image's fit var = a*y + b (on [0, 1], :func:`vst.estimate_poisson_gaussian`) and
    the preset's reference noise (``_REF_NOISE``) are compared at the level
    m = max(mean, 0.05): s = var_image(m) / var_ref(m). Every injected variance then
    scales by s: g_map * sqrt(s), p_map / s, lam_p / s.
    """

    name = preset_name(config, presets)
    micro, _, avg = name.partition("_avg")
    fit = estimate_poisson_gaussian(plane)
    g, p, lam = config.g_map, config.p_map, config.lam_p
    said = f"image's Poisson-Gaussian fit on [0,1]: a={fit.a:.3g}, b={fit.b:.3g}"
    if micro not in _REF_NOISE:
        return g, p, lam, f"preset {name}; {said}; no reference noise for this preset: " \
                          f"constants as given g_map={g:g}, p_map={p:g}, lam_p={lam:g}"
    ra, rb = _REF_NOISE[micro]
    n_avg = float(avg) if avg else 1.0
    level = max(float(plane.mean()), _MIN_LEVEL)
    ref = (ra * level + rb) / n_avg
    var = fit.a * level + fit.b
    if not (var > 0 and ref > 0):
        return g, p, lam, f"preset {name}; {said}; variance at level {level:.3g} not " \
                          f"positive: constants as given g_map={g:g}, p_map={p:g}, lam_p={lam:g}"
    s = min(max(var / ref, 1e-3), 1e3)
    g2, p2, lam2 = g * math.sqrt(s), p / s, lam / s
    return g2, p2, lam2, (f"preset {name}; noise constants from the {said}; variance "
                          f"{s:.3g}x the preset's 8-bit reference at level {level:.3g}: "
                          f"g_map={g2:.4g}, p_map={p2:.4g}, lam_p={lam2:.4g}")
