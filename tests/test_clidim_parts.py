"""CLIDiM's building blocks: pix2pix networks, SSIM/TV/InfoNCE/GAN losses, augmentations.

Fuentes-Hurtado, Sibarita, Viasnoff (CLIDiM); Isola et al., CVPR 2017 (pix2pix).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from microdenoise.contrastive import ProjectionHead, augment_pairs, gaussian_blur3
from microdenoise.losses import anisotropic_tv, gan_loss, info_nce, ssim_loss
from microdenoise.networks import NLayerDiscriminator, UnetGenerator, pix2pix_receptive_field


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_unet_256_matches_pix2pix() -> None:
    torch.manual_seed(0)
    g = UnetGenerator()  # unet_256: 8 downsamplings, ngf 64, batch norm, dropout
    # pix2pix `--netG unet_256 --norm batch`, input_nc = output_nc = 1: 54,407,809.
    assert _count(g) == 54_407_809
    assert sum(isinstance(m, nn.Dropout) for m in g.modules()) == 3
    convs = [m for m in g.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert len(convs) == 16 and [c.bias is not None for c in convs].count(True) == 1
    assert isinstance(list(g.modules())[-1], nn.Tanh) and g.multiple == 256
    with torch.no_grad():
        out = g.eval()(torch.zeros(1, 1, 256, 256))
    assert out.shape == (1, 1, 256, 256)


def test_patchgan_gives_30x30_logits_at_256() -> None:
    d = NLayerDiscriminator()  # n_layers 3, ndf 64, 2 input channels (noisy, candidate)
    # 2*64*16+64 + 64*128*16 + 256 + 128*256*16 + 512 + 256*512*16 + 1024 + 512*16+1
    assert _count(d) == 2_764_609
    with torch.no_grad():
        assert d(torch.zeros(2, 2, 256, 256)).shape == (2, 1, 30, 30)
    assert d.output_side(256) == 30 and d.output_side(32) == 2


def test_gan_init_is_normal_002() -> None:
    torch.manual_seed(0)
    d = NLayerDiscriminator()
    w = d.model[2].weight.detach()  # second conv
    assert abs(float(w.mean())) < 2e-3 and float(w.std()) == pytest.approx(0.02, rel=0.05)
    bn = d.model[3]
    assert float(bn.weight.detach().mean()) == pytest.approx(1.0, abs=0.01)
    assert float(bn.bias.detach().abs().max()) == 0.0


def test_small_generator_receptive_field_bound() -> None:
    torch.manual_seed(0)
    g = UnetGenerator(num_downs=3, ngf=4).eval()
    rf = pix2pix_receptive_field(3)
    x = torch.randn(1, 1, 96, 96, requires_grad=True)
    g(x)[0, 0, 48, 48].backward()
    assert x.grad is not None
    ys, xs = torch.nonzero(x.grad[0, 0]).unbind(1)
    reach = int(torch.maximum((ys - 48).abs().max(), (xs - 48).abs().max()))
    assert 0 < reach <= rf == 28


def test_ssim_loss_zero_for_equal_and_positive_otherwise() -> None:
    a = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert float(ssim_loss(a, a)) == pytest.approx(0.0, abs=1e-6)
    b = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    assert 0.2 < float(ssim_loss(a, b)) <= 1.0


def test_anisotropic_tv() -> None:
    assert float(anisotropic_tv(torch.full((2, 1, 8, 8), 0.3))) == 0.0
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0  # one jump of 1 per row: 4 rows
    assert float(anisotropic_tv(step)) == 4.0


def test_gan_loss_is_bce_with_logits() -> None:
    z = torch.zeros(1, 1, 3, 3)
    assert float(gan_loss(z, True)) == pytest.approx(float(torch.log(torch.tensor(2.0))))
    assert float(gan_loss(z + 20, True)) < 1e-6 and float(gan_loss(z - 20, False)) < 1e-6


def test_info_nce_is_minimal_for_identical_views() -> None:
    q = torch.eye(6, 16)  # distinct unit vectors: logit gap 1 / 0.1 = 10
    low = float(info_nce(q, q.clone()))
    assert low == pytest.approx(float(torch.log(1 + 5 * torch.exp(torch.tensor(-10.0)))),
                                rel=1e-3)
    assert float(info_nce(q, q[torch.tensor([1, 0, 2, 3, 4, 5])])) > 3  # wrong positives
    shifted = q[torch.tensor([1, 2, 3, 4, 5, 0])]
    losses = [float(info_nce(q, (1 - t) * q + t * shifted)) for t in (0.1, 0.3, 0.5)]
    assert low < losses[0] < losses[1] < losses[2]  # views less alike: larger loss


def test_augment_pairs_same_view_on_both_channels_and_seeded() -> None:
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    pairs = torch.cat([x, x], dim=1)
    a = augment_pairs(pairs, torch.Generator().manual_seed(5), blur_p=1.0)
    b = augment_pairs(pairs, torch.Generator().manual_seed(5), blur_p=1.0)
    assert a.shape == pairs.shape and torch.equal(a, b)
    assert torch.allclose(a[:, 0], a[:, 1])
    other = augment_pairs(pairs, torch.Generator().manual_seed(6))
    assert not torch.allclose(a, other)


def test_augment_identity_settings_flip_only() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(1, 2, 1, 1)
    out = augment_pairs(x, torch.Generator().manual_seed(0), flip_p=1.0, blur_p=0.0,
                        scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(out, x.flip(-1), atol=1e-5)


def test_blur_keeps_constants() -> None:
    c = torch.full((1, 2, 6, 6), 0.7)
    assert torch.allclose(gaussian_blur3(c), c)


def test_projection_head_shapes() -> None:
    head = ProjectionHead(900)
    assert head(torch.zeros(3, 1, 30, 30)).shape == (3, 128)
    layers = [m for m in head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features, m.bias) for m in layers] == [
        (900, 900, None), (900, 128, None)]
