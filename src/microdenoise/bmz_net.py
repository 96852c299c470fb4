"""The network of a BioImage Model Zoo package: a trained method's prediction as one module.

A bioimage.io model (spec 0.5, https://bioimage.io/spec) runs its weights on the
pre-processed input tensor and hands the result to the post-processing; all that
a consumer (deepImageJ, ilastik, QuPath, bioimageio.core) knows of the network is
``forward``. The affine normalizers become the package's ``scale_linear`` /
``fixed_zero_mean_unit_variance`` steps (:mod:`microdenoise.bmz_export`); every
non-affine part of a method's ``denoise`` is inside :class:`PackagedNet`:

* the padding the method predicts with (reflection by the receptive field and up
  to the pooling multiple, :func:`microdenoise.methods.trained_parts.predict_phases`;
  CLIDiM: bottom/right to ``2**num_downs``; 3D N2V: Y/X by the receptive field,
  Z to the multiple), and the crop back;
* ``shift_average`` (the mean over the pooling phases);
* CARE ``upscale=2``: the bilinear 2x upsampling of the input;
* DecoNoising: the output scaling (x10) and, for ``output="denoised"``, the
  convolution with the Gaussian PSF;
* CLIDiM: the generator's Tanh (part of the network), and with its default
  ``normalization="per_image_minmax"`` the image's own min..max scaling and its
  inverse: the spec's post-processing cannot undo a per-image scaling (it has no
  inverse of ``scale_range``), so the module computes the range of the tensor it is
  given and maps the output back. A consumer that tiles the image therefore scales
  each tile by its own range; the package's README says so.

So ``PackagedNet(...)(x)`` equals ``method.denoise(x)`` for a normalized
(batch, 1, [z,] y, x) tensor, up to float32 rounding. The same class is the
``pytorch_state_dict`` architecture of the package (``ArchitectureFromLibraryDescr``:
``from microdenoise.bmz_net import PackagedNet`` with ``method`` and ``params``), and,
with its network traced and itself scripted, the TorchScript weights.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError
from .methods.care import CARE
from .methods.clidim import CLIDiM
from .methods.deconoising import OUT_SCALE, DecoNoising
from .methods.n2v import BlindSpotMethod
from .registry import Denoiser, create

__all__ = ["PREDICTION_FIELDS", "PackagedNet", "halo", "min_side", "package_net", "packageable",
           "packaged_input",
           "prediction_params", "trace"]

#: Config fields that change prediction beyond the method's ``ARCHITECTURE``.
PREDICTION_FIELDS = ("shift_average", "psf_sigma", "output", "upscale", "normalization")


def prediction_params(method: Denoiser) -> dict[str, Any]:
    """The config fields that fix ``method``'s prediction network, as plain values."""
    cfg = method.config
    names = tuple(getattr(method, "ARCHITECTURE", ())) + PREDICTION_FIELDS
    return {n: getattr(cfg, n) for n in names if hasattr(cfg, n)}


class PackagedNet(nn.Module):
    """A trained method's ``denoise`` on normalized tensors (module docstring).

    Parameters
    ----------
    method : str
        Registry key of a trained method (``n2v``, ``deconoising``, ``care``, ``clidim``).
    params : dict
        Its prediction parameters (:func:`prediction_params`: architecture fields,
        ``shift_average``, ``psf_sigma``, ``output``, ``upscale``).
    """

    def __init__(self, method: str, params: dict[str, Any]) -> None:
        super().__init__()
        if method == "clidim":  # packages written before the option existed: "training"
            params = {"normalization": "training", **params}
        den = create(method, **params)
        modules = den.build_modules({})  # type: ignore[attr-defined]
        net = modules["net"]
        self.method = method
        self.dims = int(getattr(den.config, "dims", 2))
        self.scale = int(den.upscale)
        self.out_scale = 1.0
        m = int(net.multiple)
        phases = [(0, 0)]
        if isinstance(den, BlindSpotMethod):
            self.pad, self.multiple, self.extra = int(net.receptive_field), m, m
        elif isinstance(den, CARE):
            self.pad, self.multiple = int(den.receptive_field), max(1, m // self.scale)
            self.extra = self.multiple
        elif isinstance(den, CLIDiM):
            self.pad, self.multiple, self.extra = 0, m, 0
        else:
            raise InputError(f"{method!r} is not a trained method; nothing to package")
        packageable(den)
        #: CLIDiM per_image_minmax: the image's own min..max, inside the module.
        self.own_range = den.normalization == "unit"
        if getattr(den.config, "shift_average", False):
            q = self.multiple
            phases = [(sy, sx) for sy in range(q) for sx in range(q)]
        self.phase_y = [p[0] for p in phases]
        self.phase_x = [p[1] for p in phases]
        psf = torch.zeros(0, 0)
        if isinstance(den, DecoNoising):
            self.out_scale = OUT_SCALE
            if den.config.output == "denoised":
                psf = torch.from_numpy(den.psf)
        self.register_buffer("psf", psf, persistent=False)
        self.psf_pad = int(psf.shape[-1]) // 2
        self.net = net.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The normalized prediction of a normalized (b, 1, [z,] y, x) float32 tensor
        (with ``own_range``: the prediction of a raw tensor, in its units)."""
        if self.dims == 3:
            return self._volume(x)
        if not self.own_range:
            return self._plane(x)
        flat = x.flatten(2)
        low = flat.amin(dim=2)[:, :, None, None]
        span = (flat.amax(dim=2)[:, :, None, None] - low).clamp_min(1e-12)
        y = self._plane(2.0 * (x - low) / span - 1.0)  # onto [-1, 1], as CLIDiM trains
        return (y + 1.0) / 2.0 * span + low

    def _plane(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction of one normalized 2D batch: padding, phases, network, crop."""
        h, w = x.shape[-2], x.shape[-1]
        q, pad, s, extra = self.multiple, self.pad, self.scale, self.extra
        ey = (-(h + 2 * pad + extra)) % q
        ex = (-(w + 2 * pad + extra)) % q
        total = torch.zeros(0)
        for k in range(len(self.phase_y)):
            sy, sx = self.phase_y[k], self.phase_x[k]
            view = F.pad(x, [pad + sx, pad + extra - sx + ex, pad + sy, pad + extra - sy + ey],
                         mode="reflect")
            if s != 1:
                view = F.interpolate(view, scale_factor=float(s), mode="bilinear",
                                     align_corners=False)
            y = self.net(view)
            y0, x0 = (pad + sy) * s, (pad + sx) * s
            crop = y[:, :, y0:y0 + h * s, x0:x0 + w * s]
            total = crop if k == 0 else total + crop
        out = total / float(len(self.phase_y)) * self.out_scale
        if self.psf_pad > 0:
            k = self.psf_pad
            out = F.conv2d(F.pad(out, [k, k, k, k], mode="reflect"),
                           self.psf.to(out.dtype)[None, None])  # type: ignore[index]
        return out

    def _volume(self, x: torch.Tensor) -> torch.Tensor:
        """3D N2V (``BlindSpotMethod._denoise_volume``): Z padded to the multiple (centred),
        Y/X by the receptive field and to the multiple, predicted whole, cropped back."""
        z, h, w = x.shape[-3], x.shape[-2], x.shape[-1]
        m, rf = self.multiple, self.pad
        ez, ey, ex = (-z) % m, (-(h + 2 * rf)) % m, (-(w + 2 * rf)) % m
        padded = F.pad(x, [rf, rf + ex, rf, rf + ey, ez // 2, ez - ez // 2], mode="reflect")
        y = self.net(padded)
        return y[:, :, ez // 2:ez // 2 + z, rf:rf + h, rf:rf + w] * self.out_scale


def packageable(method: Denoiser) -> None:
    """Raise an :class:`InputError` if ``method``'s scaling cannot be packaged: a
    per-image percentile scaling (CARE ``normalization="per_image"``) must map the
    output back with the input's percentiles, which the spec's post-processing cannot
    express (CLIDiM's per-image min..max is computed inside :class:`PackagedNet`)."""
    if method.normalization not in ("model", "unit"):
        raise InputError(
            f"a {method.key} model with normalization="
            f"{getattr(method.config, 'normalization', '?')!r} scales each image by its own "
            "percentiles and maps the output back with them, which a bioimage.io package "
            "cannot express (its post-processing has no per-image inverse); export a model "
            "trained with normalization='percentile' or 'meanstd'")


def halo(method: Denoiser) -> int:
    """The package's halo in input pixels: the receptive field rounded up to the pooling
    multiple (``tile_multiple``). A consumer pads the input by the halo before the
    network; padding off the pooling grid would shift the U-Net's grid against the
    image, and change every output pixel."""
    q = max(1, method.tile_multiple)
    return -(-method.receptive_field // q) * q


def package_net(method: Denoiser) -> PackagedNet:
    """The :class:`PackagedNet` of a trained ``method``, with its weights, in eval mode."""
    trained = getattr(method, "net", None)
    if trained is None:
        raise InputError(f"{method.key} is not trained: nothing to package")
    packaged = PackagedNet(method.key, prediction_params(method))
    packaged.net.load_state_dict(trained.state_dict())
    return packaged.eval()


def min_side(method: Denoiser) -> int:
    """The smallest Y/X input size (a multiple of ``tile_multiple``) that a package of
    ``method`` accepts: more than twice its :func:`halo` (bioimage.io requires
    ``min - 2 * halo >= 1``) and enough for one reflection of the padding."""
    q = max(1, method.tile_multiple)
    need = 2 * halo(method) + 1
    packaged_pad = method.receptive_field + 2 * q
    side = max(need, packaged_pad, q)
    return -(-side // q) * q


def trace(packaged: PackagedNet, example: torch.Tensor) -> torch.jit.ScriptModule:
    """TorchScript of ``packaged``: its network traced on ``example`` (the padded input
    it sees), the padding, phases, upsampling and PSF scripted around it, so that any
    valid input size works."""
    with torch.no_grad():
        padded = packaged_input(packaged, example)
        traced = torch.jit.trace(packaged.net, padded, check_trace=False)
    original = packaged.net
    packaged.net = traced
    try:
        return torch.jit.script(packaged)
    finally:
        packaged.net = original


def packaged_input(packaged: PackagedNet, x: torch.Tensor) -> torch.Tensor:
    """What :class:`PackagedNet`'s network sees for ``x`` (the first phase's view)."""
    if packaged.dims == 3:
        z, h, w = x.shape[-3:]
        m, rf = packaged.multiple, packaged.pad
        ez, ey, ex = (-z) % m, (-(h + 2 * rf)) % m, (-(w + 2 * rf)) % m
        return F.pad(x, [rf, rf + ex, rf, rf + ey, ez // 2, ez - ez // 2], mode="reflect")
    h, w = x.shape[-2:]
    q, pad, s, extra = packaged.multiple, packaged.pad, packaged.scale, packaged.extra
    ey, ex = (-(h + 2 * pad + extra)) % q, (-(w + 2 * pad + extra)) % q
    view = F.pad(x, [pad, pad + extra + ex, pad, pad + extra + ey], mode="reflect")
    if s != 1:
        view = F.interpolate(view, scale_factor=float(s), mode="bilinear", align_corners=False)
    return view
