"""U-Nets: shapes, variants and the declared receptive field against autograd."""

from __future__ import annotations

import pytest
import torch

from microdenoise.networks import AddUNet, MaxBlurPool, UNet, receptive_field


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    yield
    torch.set_num_threads(threads)


def _measured_radius(net: torch.nn.Module, size: int = 96) -> int:
    """Largest distance from an output pixel to an input pixel it depends on, all phases."""
    net.eval()
    worst = 0
    for phase in range(net.multiple):
        x = torch.randn(1, 1, size, size, requires_grad=True)
        c = size // 2 + phase
        net(x)[0, 0, c, c].backward()
        ys, xs = torch.nonzero(x.grad[0, 0], as_tuple=True)
        worst = max(worst, int((ys - c).abs().max()), int((xs - c).abs().max()))
    return worst


@pytest.mark.parametrize("make", [
    lambda: UNet(filters=4), lambda: UNet(filters=4, n2v2=True),
    lambda: UNet(filters=8, depth=3), lambda: AddUNet(filters=4),
])
def test_declared_receptive_field_bounds_the_true_one(make) -> None:
    torch.manual_seed(0)
    net = make()
    measured = _measured_radius(net, size=160 if net.multiple > 4 else 96)
    assert measured <= net.receptive_field <= measured + 8  # a tight upper bound


def test_receptive_field_values() -> None:
    assert receptive_field(2) == 29  # N2V: depth 2, 3x3 convs
    assert receptive_field(2, blur=True) == 32  # N2V2
    assert receptive_field(2, upsample="transpose") == 26  # DecoNoising depth 3


def test_unet_shapes_and_parameters() -> None:
    net = UNet()  # CAREamics N2V default: depth 2, 32 filters, batch norm
    assert net(torch.zeros(2, 1, 64, 48)).shape == (2, 1, 64, 48)
    assert net.multiple == 4
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert sum(p.numel() for p in net.parameters()) == 333_729


def test_n2v2_has_blur_pool_and_no_top_skip() -> None:
    net = UNet(filters=8, n2v2=True)
    assert isinstance(net.pool, MaxBlurPool)
    assert net.up[-1].body[0].in_channels == 8  # upsampled features only, no skip concat
    assert UNet(filters=8).up[-1].body[0].in_channels == 16


def test_add_unet_matches_the_official_layout() -> None:
    net = AddUNet()  # depth 3, 64 filters, additive skips, no batch norm
    assert net(torch.zeros(1, 1, 100, 100)).shape == (1, 1, 100, 100)
    assert net.multiple == 4
    assert [b.body[0].out_channels for b in net.down] == [64, 128, 256]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert all(m.out_channels == m.in_channels // 2 for m in net.upconv)


def test_max_blur_pool_halves_and_keeps_constants() -> None:
    x = torch.ones(1, 3, 16, 16)
    y = MaxBlurPool()(x)
    assert y.shape == (1, 3, 8, 8)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], torch.ones(1, 3, 6, 6))
