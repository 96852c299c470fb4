"""Networks shared by the learned methods: two U-Net flavours.

:class:`UNet`
    The CAREamics U-Net used by Noise2Void (Krull et al., CVPR 2019): ``depth``
    max-pool levels, blocks of two 3x3 conv (+ batch norm) + ReLU, a bottleneck,
    bilinear upsampling, skips merged by concatenation and a linear 1x1 output
    conv. ``n2v2=True`` gives the N2V2 variant (Höck et al., ECCV-W 2022):
    max-blur-pool instead of max-pool and no skip connection at the top level,
    which removes the checkerboard artefacts of N2V. With ``kernel_size=5``,
    ``upsample="nearest"`` and no batch norm it is the U-Net of CSBDeep's CARE
    (Weigert et al., Nature Methods 2018).
:class:`AddUNet`
    The U-Net of pn2v / DecoNoising (Goncharova et al., ECCV-W 2020): ``depth``
    levels (``depth - 1`` poolings), no batch norm, 2x2 transposed-conv
    upsampling that halves the channels, skips merged by *addition*, linear
    1x1 output conv, Xavier-normal initialization.

Both need inputs whose height and width are multiples of ``net.multiple``;
``net.receptive_field`` is an upper bound of the half-width (in pixels) of the
input window that one output pixel depends on, computed layer by layer by
:func:`receptive_field` (a test checks it against autograd).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AddUNet", "MaxBlurPool", "Net", "UNet", "receptive_field"]


def receptive_field(pools: int, *, convs: int = 2, blur: bool = False,
                    upsample: str = "bilinear", kernel: int = 3) -> int:
    """Half-width of a U-Net's receptive field, an upper bound over pooling phases.

    Walks the network from input to output, tracking the radius ``r`` and the
    stride ``j`` (input pixels per feature pixel): a ``k`` x ``k`` conv adds
    ``(k // 2) * j``, a 2x2 pool adds ``j`` (plus ``j`` for the 3x3 blur of
    max-blur-pool), an upsampling adds one coarse pixel (bilinear) or one fine
    pixel (2x2 transposed conv, nearest).

    Parameters
    ----------
    pools
        Number of 2x downsamplings.
    convs
        3x3 convolutions per block (the bottleneck block included).
    blur
        Max-blur-pool (N2V2) instead of max-pool.
    upsample
        ``"bilinear"`` (CAREamics), ``"nearest"`` (CSBDeep) or ``"transpose"``
        (pn2v / DecoNoising).
    kernel
        Side of the square convolution kernels (3; CSBDeep's CARE uses 5).
    """
    r, j = 0, 1
    convs *= kernel // 2
    for _ in range(pools):
        r += convs * j
        r += j * (2 if blur else 1)
        j *= 2
    r += convs * j  # bottleneck
    for _ in range(pools):
        r += j if upsample == "bilinear" else j // 2
        j //= 2
        r += convs * j
    return r


class Net(nn.Module):
    """A fully convolutional network for images whose sides are multiples of ``multiple``."""

    multiple: int = 1
    receptive_field: int = 0


class ConvBlock(nn.Module):
    """conv3x3 [-> BN] -> ReLU -> conv3x3 [-> BN] -> ReLU (CAREamics ``Conv_Block``).

    ``kernel`` sets the convolutions' side (odd; ``same`` zero padding).
    """

    def __init__(self, cin: int, cout: int, *, mid: int | None = None,
                 batch_norm: bool = True, kernel: int = 3) -> None:
        super().__init__()
        mid = cout if mid is None else mid
        layers: list[nn.Module] = [nn.Conv2d(cin, mid, kernel, padding=kernel // 2)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(mid))
        layers += [nn.ReLU(), nn.Conv2d(mid, cout, kernel, padding=kernel // 2)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MaxBlurPool(nn.Module):
    """2x2 max (stride 1), then a 3x3 binomial blur with stride 2 (Zhang 2019; N2V2)."""

    kernel: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16.0)[None, None],
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(x, 2, stride=1)
        weight = self.kernel.to(x.dtype).expand(x.shape[1], 1, 3, 3)
        return F.conv2d(x, weight, padding=1, stride=2, groups=x.shape[1])


class UNet(Net):
    """CAREamics U-Net (N2V; N2V2 with ``n2v2=True``), linear output.

    Parameters
    ----------
    in_channels, out_channels
        Channels of input and output.
    depth
        Number of poolings (CAREamics ``depth``; N2V default 2).
    filters
        Channels of the first block (``num_channels_init``; N2V default 32).
    batch_norm
        Batch normalization after every conv.
    n2v2
        Max-blur-pool and no top-level skip connection (Höck et al. 2022).
    kernel_size
        Side of the convolution kernels, odd (3; CSBDeep's CARE: 5).
    upsample
        ``"bilinear"`` (CAREamics) or ``"nearest"`` (CSBDeep's ``UpSampling2D``).
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, depth: int = 2,
                 filters: int = 32, batch_norm: bool = True, n2v2: bool = False,
                 kernel_size: int = 3, upsample: str = "bilinear") -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd and >= 1")
        if upsample not in ("bilinear", "nearest"):
            raise ValueError("upsample must be 'bilinear' or 'nearest'")
        self.depth, self.n2v2, self.upsample = depth, n2v2, upsample
        self.multiple = 2**depth
        self.receptive_field = receptive_field(depth, blur=n2v2, upsample=upsample,
                                               kernel=kernel_size)
        k = kernel_size
        self.pool: nn.Module = MaxBlurPool() if n2v2 else nn.MaxPool2d(2)
        self.down = nn.ModuleList()
        cin = in_channels
        for n in range(depth):
            self.down.append(ConvBlock(cin, filters * 2**n, batch_norm=batch_norm, kernel=k))
            cin = filters * 2**n
        self.bottleneck = ConvBlock(cin, cin, mid=2 * cin, batch_norm=batch_norm, kernel=k)
        self.up = nn.ModuleList()
        for n in range(depth):
            width = filters * 2 ** (depth - n - 1)
            last = n == depth - 1
            cin = width if (n2v2 and last) else 2 * width
            cout = width if last else width // 2
            self.up.append(ConvBlock(cin, cout, mid=cout if last else 2 * cout,
                                     batch_norm=batch_norm, kernel=k))
        self.head = nn.Conv2d(filters, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for n, block in enumerate(self.up):
            x = F.interpolate(x, scale_factor=2, mode=self.upsample)
            if not (self.n2v2 and n == self.depth - 1):
                x = torch.cat([x, skips[-1 - n]], dim=1)
            x = block(x)
        return self.head(x)


class AddUNet(Net):
    """pn2v / DecoNoising U-Net: additive skips, transposed-conv upsampling, no batch norm.

    Parameters
    ----------
    in_channels, out_channels
        Channels of input and output.
    depth
        Number of levels, the bottom one included (``depth - 1`` poolings; official 3).
    filters
        Channels of the first level (official 64), doubled per level.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, depth: int = 3,
                 filters: int = 64) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError("depth must be >= 2")
        self.multiple = 2 ** (depth - 1)
        self.receptive_field = receptive_field(depth - 1, upsample="transpose")
        widths = [filters * 2**n for n in range(depth)]
        self.down = nn.ModuleList()
        cin = in_channels
        for width in widths:
            self.down.append(ConvBlock(cin, width, batch_norm=False))
            cin = width
        self.upconv = nn.ModuleList()
        self.up = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upconv.append(nn.ConvTranspose2d(2 * width, width, 2, stride=2))
            self.up.append(ConvBlock(width, width, batch_norm=False))
        self.head = nn.Conv2d(filters, out_channels, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.xavier_normal_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for n, block in enumerate(self.down):
            x = block(x)
            if n < len(self.down) - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for upconv, block, skip in zip(self.upconv, self.up, reversed(skips), strict=True):
            x = block(upconv(x) + skip)
        return self.head(x)
