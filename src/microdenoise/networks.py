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
    1x1 output conv. Xavier-normal weights and zero biases on every conv *and
    transposed conv*; the official code initializes only its ``Conv2d`` layers so
    (its ``ConvTranspose2d`` layers keep PyTorch's default).

:class:`UnetGenerator` and :class:`NLayerDiscriminator`
    pix2pix's generator and PatchGAN discriminator (Isola et al., CVPR 2017), as
    CLIDiM uses them (Fuentes-Hurtado, Sibarita, Viasnoff).

The U-Nets need inputs whose height and width are multiples of ``net.multiple``;
``net.receptive_field`` is an upper bound of the half-width (in pixels) of the
input window that one output pixel depends on, computed layer by layer by
:func:`receptive_field` (a test checks it against autograd).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AddUNet", "MaxBlurPool", "NLayerDiscriminator", "Net", "UNet", "UnetGenerator",
           "init_gan_weights", "pix2pix_receptive_field", "receptive_field"]


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

    ``kernel`` sets the convolutions' side (odd; ``same`` zero padding); ``dims=3``
    makes them 3D (``kernel`` cubed).
    """

    def __init__(self, cin: int, cout: int, *, mid: int | None = None,
                 batch_norm: bool = True, kernel: int = 3, dims: int = 2) -> None:
        super().__init__()
        mid = cout if mid is None else mid
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
        layers: list[nn.Module] = [conv(cin, mid, kernel, padding=kernel // 2)]
        if batch_norm:
            layers.append(norm(mid))
        layers += [nn.ReLU(), conv(mid, cout, kernel, padding=kernel // 2)]
        if batch_norm:
            layers.append(norm(cout))
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
    dims
        2 (YX planes, (n, c, y, x)) or 3 (ZYX volumes, (n, c, z, y, x): 3D convolutions,
        2x2x2 max-pooling and trilinear upsampling, as CAREamics' 3D U-Net).
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, depth: int = 2,
                 filters: int = 32, batch_norm: bool = True, n2v2: bool = False,
                 kernel_size: int = 3, upsample: str = "bilinear", dims: int = 2) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be >= 1")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd and >= 1")
        if upsample not in ("bilinear", "nearest"):
            raise ValueError("upsample must be 'bilinear' or 'nearest'")
        if dims not in (2, 3) or (dims == 3 and n2v2):
            raise ValueError("dims must be 2 or 3 (n2v2's max-blur-pool is 2D only)")
        self.depth, self.n2v2, self.dims = depth, n2v2, dims
        self.upsample = "trilinear" if dims == 3 and upsample == "bilinear" else upsample
        self.multiple = 2**depth
        self.receptive_field = receptive_field(depth, blur=n2v2, upsample=upsample,
                                               kernel=kernel_size)
        k = kernel_size
        self.pool: nn.Module = MaxBlurPool() if n2v2 else (nn.MaxPool3d(2) if dims == 3
                                                           else nn.MaxPool2d(2))
        self.down = nn.ModuleList()
        cin = in_channels
        for n in range(depth):
            self.down.append(ConvBlock(cin, filters * 2**n, batch_norm=batch_norm, kernel=k,
                                       dims=dims))
            cin = filters * 2**n
        self.bottleneck = ConvBlock(cin, cin, mid=2 * cin, batch_norm=batch_norm, kernel=k,
                                    dims=dims)
        self.up = nn.ModuleList()
        for n in range(depth):
            width = filters * 2 ** (depth - n - 1)
            last = n == depth - 1
            cin = width if (n2v2 and last) else 2 * width
            cout = width if last else width // 2
            self.up.append(ConvBlock(cin, cout, mid=cout if last else 2 * cout,
                                     batch_norm=batch_norm, kernel=k, dims=dims))
        self.head = (nn.Conv3d if dims == 3 else nn.Conv2d)(filters, out_channels, 1)

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


# --- pix2pix (Isola et al., CVPR 2017), as used by CLIDiM (Fuentes-Hurtado et al.) ---


def pix2pix_receptive_field(num_downs: int) -> int:
    """Half-width bound of the pix2pix U-Net's receptive field: ``4 * (2**num_downs - 1)``.

    A 4x4 stride-2 conv (padding 1) sees 1.5 input pixels either side of its
    centre and a 4x4 stride-2 transposed conv 1.5 output pixels; rounding each up
    to 2 strides gives ``2 * (2**n - 1)`` for the down path and as much for the up
    path. 1020 px for ``unet_256``: in practice every pixel sees the whole image.
    """
    return 4 * (2**num_downs - 1)


def init_gan_weights(module: nn.Module, *, std: float = 0.02) -> None:
    """pix2pix ``init_weights('normal', 0.02)``: conv and linear weights N(0, std), biases
    0, batch-norm weights N(1, std)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


class UnetSkipBlock(nn.Module):
    """One level of the pix2pix ``UnetSkipConnectionBlock``: down, ``inner``, up, concat.

    Down: [LeakyReLU 0.2] -> Conv 4x4 s2 [-> BN]; up: ReLU -> ConvTranspose 4x4 s2
    [-> BN [-> Dropout 0.5]] (-> Tanh at the outermost level). Convolutions
    followed by batch norm have no bias, as in pix2pix with ``norm='batch'``.
    """

    def __init__(self, outer: int, inner_nc: int, *, cin: int | None = None,
                 inner: nn.Module | None = None, outermost: bool = False,
                 dropout: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        cin = outer if cin is None else cin
        down: list[nn.Module] = [] if outermost else [nn.LeakyReLU(0.2, True)]
        down.append(nn.Conv2d(cin, inner_nc, 4, stride=2, padding=1, bias=False))
        innermost = inner is None
        if not (outermost or innermost):
            down.append(nn.BatchNorm2d(inner_nc))
        up_in = inner_nc if innermost else 2 * inner_nc
        up: list[nn.Module] = [nn.ReLU(True)]
        if outermost:
            up += [nn.ConvTranspose2d(up_in, outer, 4, stride=2, padding=1), nn.Tanh()]
        else:
            up += [nn.ConvTranspose2d(up_in, outer, 4, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(outer)]
            if dropout:
                up.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*down, *([] if inner is None else [inner]), *up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], dim=1)


class UnetGenerator(Net):
    """pix2pix ``UnetGenerator`` (``unet_256`` with ``num_downs=8``), batch norm, Tanh output.

    Channels ngf, 2ngf, 4ngf, then 8ngf for the remaining levels; dropout 0.5 in
    the ``num_downs - 5`` innermost 8ngf blocks above the bottom one (3 for
    ``unet_256``). Inputs are in [-1, 1] with sides multiples of ``2**num_downs``.
    Isola et al., "Image-to-image translation with conditional adversarial
    networks", CVPR 2017.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, num_downs: int = 8,
                 ngf: int = 64, dropout: bool = True) -> None:
        super().__init__()
        if num_downs < 1:
            raise ValueError("num_downs must be >= 1")
        self.multiple = 2**num_downs
        self.receptive_field = pix2pix_receptive_field(num_downs)
        self.model = _unet_levels(in_channels, out_channels, num_downs, ngf, dropout)
        init_gan_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _unet_levels(cin: int, cout: int, num_downs: int, ngf: int, dropout: bool) -> nn.Module:
    """Build the nested blocks inside out, as pix2pix does; fewer than 5 levels keep the
    outer ones (ngf, 2ngf, 4ngf) and drop the 8ngf ones."""
    widths = [ngf * min(2**k, 8) for k in range(num_downs)]  # channels after down k
    block: UnetSkipBlock | None = None
    for k in range(num_downs - 1, 0, -1):
        # Level k maps widths[k-1] to widths[k]; pix2pix puts dropout in the 8ngf -> 8ngf
        # levels other than the innermost (k = 4 .. num_downs - 2).
        drop = dropout and 4 <= k <= num_downs - 2
        block = UnetSkipBlock(widths[k - 1], widths[k], inner=block, dropout=drop)
    return UnetSkipBlock(cout, widths[0], cin=cin, inner=block, outermost=True)


class NLayerDiscriminator(nn.Module):
    """pix2pix PatchGAN ``NLayerDiscriminator``: ``n_layers`` 4x4 stride-2 convs, one
    stride-1 conv, a 1-channel logit map (30x30 for 256 input, n_layers=3: 70x70
    patches). Batch norm (and no conv bias) except in the first and last layers.
    """

    def __init__(self, *, in_channels: int = 2, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1),
                                   nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2 if n < n_layers else 1,
                                 padding=1, bias=False),
                       nn.BatchNorm2d(ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        self.n_layers = n_layers
        init_gan_weights(self)

    def output_side(self, side: int) -> int:
        """Side of the logit map for a ``side`` x ``side`` input (30 for 256)."""
        for _ in range(self.n_layers):
            side = side // 2
        return side - 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
