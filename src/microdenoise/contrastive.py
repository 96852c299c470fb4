"""Contrastive regularisation of a discriminator, as CLIDiM does it.

Fuentes-Hurtado, Sibarita, Viasnoff, "CLIDiM: contrastive learning for image
denoising in microscopy" (code: ``ffuhu/cl-microscopy-image-denoising``,
``util/contrastive_learning.py``), on a pix2pix PatchGAN (Isola et al., CVPR 2017):
each (noisy, candidate) pair gets two random views (:func:`augment_pairs`), the
discriminator's flattened logit map goes through a :class:`ProjectionHead`, and
:func:`microdenoise.losses.info_nce` pulls the two views of a pair together.

The official code uses kornia; these are the same transforms in plain torch,
drawn from a seeded :class:`torch.Generator`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ProjectionHead", "augment_pairs", "gaussian_blur3"]


class ProjectionHead(nn.Module):
    """``Linear(F, F, bias=False) -> LeakyReLU -> Linear(F, dim, bias=False)``
    (BYOL-style ``MLP`` of the official code; PyTorch default initialization)."""

    def __init__(self, features: int, *, dim: int = 128) -> None:
        super().__init__()
        self.features = features
        self.net = nn.Sequential(nn.Linear(features, features, bias=False), nn.LeakyReLU(),
                                 nn.Linear(features, dim, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


def gaussian_blur3(x: torch.Tensor, *, sigma: float = 1.5) -> torch.Tensor:
    """3x3 Gaussian blur of each channel with reflection padding (kornia ``GaussianBlur2d``)."""
    t = torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype, device=x.device)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    kernel = (g[:, None] * g[None, :]).expand(c, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), kernel, groups=c)


def _crop_boxes(n: int, h: int, w: int, gen: torch.Generator, *,
                scale: tuple[float, float], ratio: tuple[float, float]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Relative crop sizes (n, 2) = (height, width) fractions and centres (n, 2) in [-1, 1].

    torchvision's ``RandomResizedCrop`` sampling: area fraction uniform in ``scale``,
    log aspect ratio uniform in ``log(ratio)``; 10 tries, then the whole image.
    """
    sizes = torch.ones(n, 2, dtype=torch.float64)
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for i in range(n):
        for _ in range(10):
            u = torch.rand(2, generator=gen, dtype=torch.float64)
            area = (scale[0] + (scale[1] - scale[0]) * float(u[0])) * h * w
            r = math.exp(log_r[0] + (log_r[1] - log_r[0]) * float(u[1]))
            cw, ch = round(math.sqrt(area * r)), round(math.sqrt(area / r))
            if 0 < cw <= w and 0 < ch <= h:
                sizes[i, 0], sizes[i, 1] = ch / h, cw / w
                break
    room = 1.0 - sizes
    centres = (torch.rand(n, 2, generator=gen, dtype=torch.float64) * 2 - 1) * room
    return sizes, centres


def augment_pairs(batch: torch.Tensor, gen: torch.Generator, *, flip_p: float = 0.5,
                  blur_p: float = 0.1, scale: tuple[float, float] = (0.08, 1.0),
                  ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """One random view of each (n, c, h, w) sample, the same transform on all channels.

    As the official augmentation: a 3x3 Gaussian blur (sigma 1.5) of the whole
    batch with probability ``blur_p`` (one coin per call, kornia ``RandomApply``),
    then per sample a horizontal flip with probability ``flip_p`` and a random
    resized crop (area ``scale``, aspect ``ratio``) resized back to h x w
    (bilinear). Parameters come from ``gen`` (CPU), so the same seed gives the
    same views.
    """
    n, _, h, w = batch.shape
    if float(torch.rand(1, generator=gen)) < blur_p:
        batch = gaussian_blur3(batch)
    flips = torch.rand(n, generator=gen) < flip_p
    sizes, centres = _crop_boxes(n, h, w, gen, scale=scale, ratio=ratio)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = sizes[:, 1] * torch.where(flips, -1.0, 1.0).double()
    theta[:, 0, 2] = centres[:, 1]
    theta[:, 1, 1] = sizes[:, 0]
    theta[:, 1, 2] = centres[:, 0]
    grid = F.affine_grid(theta.to(batch), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="border",
                         align_corners=False)
