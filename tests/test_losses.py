"""Loss functions: masked MSE (N2V) and the DecoNoising regularizers."""

from __future__ import annotations

import torch

from microdenoise.losses import deconoising_loss, masked_mse, positivity_penalty, total_variation


def test_masked_mse_uses_only_masked_pixels() -> None:
    pred = torch.zeros(2, 1, 4, 4)
    target = torch.full((2, 1, 4, 4), 100.0)
    mask = torch.zeros(2, 1, 4, 4, dtype=torch.bool)
    mask[0, 0, 1, 1] = mask[1, 0, 2, 3] = True
    target[mask] = torch.tensor([1.0, 3.0])
    assert masked_mse(pred, target, mask).item() == (1 + 9) / 2
    assert masked_mse(pred, target, torch.zeros_like(mask)).item() == 0.0


def test_positivity_penalty_is_zero_for_non_negative_and_l1_otherwise() -> None:
    s = torch.rand(3, 1, 8, 8)
    assert positivity_penalty(s).item() == 0.0
    s[0, 0, 0, 0] = -0.5
    s[1, 0, 2, 2] = -1.5
    assert abs(positivity_penalty(s).item() - 2.0 / s.numel()) < 1e-7


def test_total_variation_of_a_ramp() -> None:
    ramp = torch.arange(8.0).repeat(8, 1)[None, None] * 0.5  # gradient 0.5 along x
    assert abs(total_variation(ramp).item() - 0.5) < 1e-6
    assert total_variation(torch.ones(1, 1, 8, 8)).item() < 1e-7


def test_deconoising_loss_combines_as_the_official_code() -> None:
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(2, 1, 16, 16, generator=gen)
    den = torch.randn(2, 1, 16, 16, generator=gen)
    target = torch.randn(2, 1, 16, 16, generator=gen)
    mask = torch.rand(2, 1, 16, 16, generator=gen) < 0.1
    std = 3.0
    got = deconoising_loss(den, s, target, mask, std=std, positivity=0.7, tv=0.2)
    want = (masked_mse(den, target, mask) / std**2
            + (0.2 * total_variation(s) + 0.7 * positivity_penalty(s)) / std)
    torch.testing.assert_close(got, want)
