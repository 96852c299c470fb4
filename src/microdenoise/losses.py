"""Loss functions of the learned methods: pure functions of tensors.

* :func:`masked_mse`: the Noise2Void loss (Krull et al., CVPR 2019), the mean
  squared error over the blind-spot pixels only.
* :func:`positivity_penalty`, :func:`total_variation` and :func:`deconoising_loss`:
  DecoNoising (Goncharova et al., ECCV-W 2020), as in ``juglab/DecoNoising``
  ``training.py: lossFunction``.
* :func:`gan_loss`, :func:`ssim_loss`, :func:`anisotropic_tv` and :func:`info_nce`:
  CLIDiM (Fuentes-Hurtado, Sibarita, Viasnoff), as ``ffuhu/cl-microscopy-image-denoising``
  computes them on top of pix2pix (Isola et al., CVPR 2017).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["anisotropic_tv", "deconoising_loss", "gan_loss", "info_nce", "masked_mse",
           "positivity_penalty", "ssim_loss", "total_variation"]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum(mask * (target - pred)^2) / sum(mask)``: MSE on the masked pixels only.

    Parameters
    ----------
    pred, target
        Tensors of the same shape.
    mask
        Boolean or 0/1 tensor of that shape; at least one pixel should be set
        (an empty mask gives 0).
    """
    weight = mask.to(pred.dtype)
    return (weight * (target - pred) ** 2).sum() / weight.sum().clamp_min(1.0)


def positivity_penalty(s: torch.Tensor) -> torch.Tensor:
    """``mean(|s| * 1[s < 0])``: an L1 penalty on negative values; 0 if ``s >= 0``."""
    return (s.abs() * (s < 0).to(s.dtype)).mean()


def total_variation(s: torch.Tensor) -> torch.Tensor:
    """Mean isotropic TV with central differences over the interior (DecoNoising's ``reg``).

    ``mean(sqrt(((s[y+1] - s[y-1]) / 2)^2 + ((s[x+1] - s[x-1]) / 2)^2 + 1e-15))`` over
    the last two axes, at pixels with both neighbours.
    """
    dy = (s[..., 2:, 1:-1] - s[..., :-2, 1:-1]) / 2
    dx = (s[..., 1:-1, 2:] - s[..., 1:-1, :-2]) / 2
    return torch.sqrt(dy**2 + dx**2 + 1e-15).mean()


def deconoising_loss(denoised: torch.Tensor, deconvolved: torch.Tensor, target: torch.Tensor,
                     mask: torch.Tensor, *, std: float, positivity: float = 1.0,
                     tv: float = 0.0) -> torch.Tensor:
    """DecoNoising loss: ``N2V / std^2 + (tv * TV(s) + positivity * P(s)) / std``.

    Parameters
    ----------
    denoised
        ``s`` convolved with the PSF, in raw intensity units.
    deconvolved
        The network's phantom image ``s``, in raw intensity units.
    target
        The raw noisy pixels (before blind-spot replacement).
    mask
        Blind-spot pixels.
    std
        Standard deviation of the training data (the loss is then scale-free).
    positivity, tv
        Weights of :func:`positivity_penalty` and :func:`total_variation`.
    """
    loss = masked_mse(denoised, target, mask) / std**2
    reg = positivity * positivity_penalty(deconvolved)
    if tv:
        reg = reg + tv * total_variation(deconvolved)
    return loss + reg / std


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Vanilla GAN loss (pix2pix ``gan_mode='vanilla'``): BCE with logits against all-1
    (``real``) or all-0 labels, averaged over the logit map."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_loss(a: torch.Tensor, b: torch.Tensor, *, window: int = 5, sigma: float = 1.5,
              max_val: float = 1.0) -> torch.Tensor:
    """``(1 - SSIM(a, b)) / 2``, as ``kornia.losses.ssim_loss`` (mean over all pixels).

    Gaussian window of side ``window`` and ``sigma`` 1.5, reflection padding (so the
    map has the image's size), ``C1 = (0.01 max_val)^2``, ``C2 = (0.03 max_val)^2``.
    0 for equal images.

    Parameters
    ----------
    a, b
        (n, c, h, w) tensors, e.g. images in [0, 1] with ``max_val=1``.
    """
    c = a.shape[1]
    kernel = _gaussian_window(window, sigma, a).expand(c, 1, window, window)
    pad = window // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), kernel, groups=c)

    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ((1.0 - ssim) / 2).clamp(0.0, 1.0).mean()


def anisotropic_tv(s: torch.Tensor) -> torch.Tensor:
    """``kornia.losses.total_variation`` averaged over batch and channels: per image and
    channel the *sum* of ``|dy|`` and ``|dx|`` over forward differences, then the mean.

    Parameters
    ----------
    s
        (n, c, h, w) tensor; 0 for a constant one.
    """
    dy = (s[..., 1:, :] - s[..., :-1, :]).abs().sum(dim=(-2, -1))
    dx = (s[..., :, 1:] - s[..., :, :-1]).abs().sum(dim=(-2, -1))
    return (dy + dx).mean()


def info_nce(q: torch.Tensor, k: torch.Tensor, *, temperature: float = 0.1) -> torch.Tensor:
    """CLIDiM's contrastive loss: InfoNCE from queries ``q`` to keys ``k`` (n, d).

    ``logits = q @ k.T`` on un-normalised vectors, minus each row's maximum, divided
    by ``temperature``; cross-entropy with targets ``arange(n)``: row ``i``'s positive
    is key ``i``, the other ``n - 1`` keys are its negatives (``contrastive_loss`` of
    ``util/contrastive_learning.py``; not the symmetric, cosine NT-Xent).
    """
    logits = q @ k.t()
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
    return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device))
