"""DecoNoising: joint self-supervised denoising and deconvolution.

Goncharova, Honigmann, Jug, Krull, "Improving Blind Spot Denoising for Microscopy",
ECCV Workshops (BioImage Computing) 2020; official code ``juglab/DecoNoising``.

A U-Net (pn2v flavour: depth 3, 64 filters, additive skips, no batch norm)
predicts a "phantom" image ``s``; convolving ``s`` with a fixed, known PSF gives
the denoised image, which is trained with the Noise2Void blind-spot loss
(Krull et al., CVPR 2019) against the raw noisy pixels. A positivity penalty
(and optionally total variation) regularizes ``s``::

    loss = N2V / std^2 + (tv * TV(s) + positivity * mean(|s| 1[s < 0])) / std

The network output is multiplied by 10 before de-standardization (the official
``outScaling``). Prediction returns ``s * PSF`` (``output="denoised"``, the
default) or ``s`` (``output="deconvolved"``). Both normalizers are the training
data's mean/std (:class:`~microdenoise.normalize.MeanStd`); ``denoise`` works on
standardized images and keeps the PSF convolution, which is not a per-pixel map,
inside: a PSF summing to 1 commutes with the affine de-standardization the core
applies after.

The defaults are the official training script's (2.8 % blind spots per 100x100
patch, replaced from the 5x5 neighbourhood, Adam 1e-3 with ReduceLROnPlateau
(factor 0.5, patience 10) on the validation loss, 30 % of the data held back for
validation, 200 epochs x 10 steps of 20 patches, positivity 1, no TV), with these
differences:

1. a batch of 20 patches instead of 20 accumulated batches of 1: the same gradient
   (no batch norm) in a twentieth of the calls; the ``paper`` preset restores batch 1
   with gradient accumulation over 20 batches;
2. ``precision="auto"``: bfloat16 autocast training steps on CPUs with native bf16
   (the official code, and the ``paper`` preset, train in float32);
3. augmentation by the 8 dihedral views (90-degree rotations and a mirror); the
   official code uses 4 (``rot90`` and ``np.flip`` without an axis, a 180-degree
   rotation: no mirror images);
4. validation on a fixed set of ``val_patches`` (32) patches and masks drawn once
   (seeded) from the held-back data; the official code draws fresh validation
   patches every epoch (``valSize`` 20);
5. :class:`~microdenoise.networks.AddUNet` initializes its transposed convolutions
   with Xavier-normal as well; the official code initializes only its ``Conv2d``
   layers so (``ConvTranspose2d`` keeps PyTorch's default);
6. blind-spot neighbours are drawn without the official off-by-one at the patch
   border;
7. the camera offset: the official script subtracts it by hand (``--meanValue``, 520
   in its notebook) so that the positivity term acts; here ``background`` does it
   (default ``"none"``: no offset, as for data whose dark level is 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import patches
from ..losses import deconoising_loss
from ..networks import AddUNet, receptive_field
from ..registry import register
from .n2v import BlindSpotConfig, BlindSpotMethod

OUT_SCALE = 10.0  # official outScaling


def gaussian_psf(sigma: float, size: int | None = None) -> np.ndarray:
    """A normalized 2D Gaussian PSF, ``size`` x ``size`` (default ``8 * sigma + 1``, odd).

    The sampled Gaussian ``exp(-(y^2 + x^2) / (2 sigma^2))`` divided by its sum, as
    ``scipy.ndimage.gaussian_filter`` of a delta (the official ``artificial_psf``)
    gives within its 4-sigma truncation.
    """
    if not sigma > 0:
        raise ValueError("psf_sigma must be > 0")
    if size is None:
        size = int(round(8 * sigma + 1))
        size += 1 - size % 2
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    psf = g[:, None] * g[None, :]
    return (psf / psf.sum()).astype(np.float32)


def convolve_psf(s: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
    """``s`` (n, 1, h, w) convolved with ``psf`` (k, k), reflect padding, same size."""
    pad = psf.shape[-1] // 2
    padded = F.pad(s, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(padded, psf.to(s.dtype)[None, None])


@dataclass(frozen=True)
class DecoNoisingConfig(BlindSpotConfig):
    """DecoNoising parameters; defaults follow the official training script.

    ``psf_sigma``: std (pixels) of the Gaussian PSF; ``positivity``, ``tv``: weights
    of the penalties on the phantom image; ``output``: ``"denoised"`` (s * PSF) or
    ``"deconvolved"`` (s), both in the input's intensity units.
    ``background``: the camera offset subtracted before the positivity term acts (the
    official script's ``--meanValue``, 520 in its Convallaria notebook): a number in
    raw units, ``"auto"`` (the 0.5th percentile of the training data, computed once and
    stored in the model) or ``"none"`` (0). ``s`` is penalized where it is below it; the
    output is in raw units (the offset added back).
    """

    patch_size: int = 100
    batch_size: int = 20
    masked_percentage: float = 100.0 / 36.0  # one blind spot per 6x6 box
    roi_radius: int = 2
    replacement: Literal["auto", "uniform", "median"] = "uniform"
    epochs: int = 200
    steps_per_epoch: int | None = 10
    lr_factor: float = 0.5
    lr_patience: int = 10
    val_fraction: float = 0.3
    depth: int = 3
    filters: int = 64
    psf_sigma: float = 1.0
    positivity: float = 1.0
    tv: float = 0.0
    output: Literal["denoised", "deconvolved"] = "denoised"
    background: Literal["auto", "none"] | float = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.background, str) and self.background not in ("auto", "none"):
            raise ValueError("background must be a number, 'auto' or 'none'")
        if not 2 <= self.depth <= 6 or self.filters < 1:
            raise ValueError("depth must be in 2..6 and filters >= 1")
        if self.dims != 2:
            raise ValueError("deconoising convolves with a 2D PSF: dims=3 is not supported; "
                             "stacks are trained and denoised plane by plane (dims=2)")
        if not self.psf_sigma > 0 or self.positivity < 0 or self.tv < 0:
            raise ValueError("psf_sigma must be > 0, positivity and tv >= 0")
        if gaussian_psf(self.psf_sigma).shape[0] > self.patch_size:
            raise ValueError(f"psf_sigma {self.psf_sigma} needs a PSF wider than the "
                             f"{self.patch_size} px patches; use a smaller sigma")


@register("deconoising")
class DecoNoising(BlindSpotMethod):
    """DecoNoising (Goncharova et al., ECCV-W 2020): N2V with a Gaussian PSF and positivity.

    Train with ``microdenoise train --method deconoising`` (or ``fit``); the model
    returns the denoised image, or the deconvolved one with ``output="deconvolved"``.
    Presets: ``paper`` (batch 1, 20 accumulated batches per step).
    """

    Config = DecoNoisingConfig
    bytes_per_pixel = 2136  # see benchmarks/results/bytes_per_pixel/table.md
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"batch_size": 1, "accumulate": 20, "precision": "fp32"},  # official: fp32
    }
    ARCHITECTURE = ("depth", "filters")
    BACKGROUND_PERCENTILE = 0.5  # background="auto": this percentile of the training data

    def __init__(self, config: Any = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self.background = 0.0  # raw units; set by a fresh fit, or loaded with the model

    def fit(self, noisy: Any, clean: np.ndarray | None = None) -> Self:
        """Train as :meth:`BlindSpotMethod.fit`; a fresh model first fixes its
        ``background`` (the config's value, or the 0.5th percentile of ``noisy``)."""
        if self.net is None and not self.config.resume:
            self.background = self.background_of(noisy)
        return super().fit(noisy, clean)

    def background_of(self, noisy: Any) -> float:
        """The offset ``background`` asks for, in the raw units of ``noisy``."""
        b = self.config.background
        if b == "none":
            return 0.0
        if b == "auto":
            planes = patches.as_planes(noisy)
            return float(np.percentile(np.concatenate([p.ravel() for p in planes]),
                                       self.BACKGROUND_PERCENTILE))
        return float(b)

    def extra_state(self) -> dict[str, Any]:
        return {"background": self.background}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.background = float(state.get("background", 0.0)) if state else 0.0

    @property
    def receptive_field(self) -> int:
        unet = receptive_field(self.config.depth - 1, upsample="transpose")
        return unet + self.psf.shape[0] // 2

    @property
    def psf(self) -> np.ndarray:
        """The fixed PSF (``psf_sigma``), normalized to sum 1."""
        return gaussian_psf(self.config.psf_sigma)

    def build_net(self) -> AddUNet:
        return AddUNet(depth=self.config.depth, filters=self.config.filters)

    def _raw(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``s`` in raw units less the background (where positivity means s >= 0)."""
        return net(x) * OUT_SCALE * self.std + (self.mean - self.background)

    def loss(self, net: nn.Module, masked: patches.Masked, target: torch.Tensor) -> torch.Tensor:
        s = self._raw(net, masked.inputs)
        psf = torch.from_numpy(self.psf).to(s.device)
        raw = target * self.std + (self.mean - self.background)
        return deconoising_loss(convolve_psf(s, psf), s, raw, masked.mask, std=self.std,
                                positivity=self.config.positivity, tv=self.config.tv)

    def predict(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # Standardized s, averaged over phases; the core's de-standardization (x std +
        # mean) adds the background back, as it is inside the training data's mean.
        return net(x) * OUT_SCALE

    def finish(self, y: np.ndarray) -> np.ndarray:
        """``s`` (``output="deconvolved"``) or ``s * PSF``, standardized."""
        if self.config.output == "deconvolved":
            return y
        s = torch.from_numpy(y)[None, None]
        return convolve_psf(s, torch.from_numpy(self.psf).double())[0, 0].numpy()
