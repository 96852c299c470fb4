"""Loss functions of the learned methods: pure functions of tensors.

* :func:`masked_mse`: the Noise2Void loss (Krull et al., CVPR 2019), the mean
  squared error over the blind-spot pixels only.
* :func:`positivity_penalty`, :func:`total_variation` and :func:`deconoising_loss`:
  DecoNoising (Goncharova et al., ECCV-W 2020), as in ``juglab/DecoNoising``
  ``training.py: lossFunction``.
"""

from __future__ import annotations

import torch

__all__ = ["deconoising_loss", "masked_mse", "positivity_penalty", "total_variation"]


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
