"""Training data for the learned methods: checks, validation split, patches, blind spots.

Supervised methods sample (input, target) patch pairs at the same place with
:func:`sample_pairs`; :func:`upsample` gives 2x inputs for super-resolution.

Everything random takes a :class:`torch.Generator`, so the same seed gives the
same patches and masks.

Blind-spot masking follows Noise2Void as CAREamics 0.3.5 does it (Krull et al.,
CVPR 2019): about ``percentage`` % of the pixels of each patch, one per cell of a
jittered grid of spacing ``(100 / percentage) ** 0.5`` (:func:`stratified_coords`),
are replaced by a random neighbour within ``+-radius`` pixels. Unlike CAREamics
(whose border clamping can return the pixel itself), offsets are uniform over the
part of the window inside the patch, never the centre. Options: median
replacement (N2V2, Höck et al., ECCV-W 2022) and a struct mask (structN2V,
Broaddus et al., ISBI 2020) that also overwrites a line of ``struct_span`` pixels
along ``struct_axis`` around each blind spot with uniform random values between
the patch's min and max, for noise correlated along that axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError

__all__ = ["Masked", "as_planes", "augment", "blind_spot_mask", "choose_patch", "hold_out",
           "sample_pairs", "sample_patches", "stratified_coords", "upsample"]

MIN_PATCH = 16


def as_planes(data: Any, *, name: str = "the training data") -> list[np.ndarray]:
    """Validate training data and return its YX planes as float32 arrays.

    Parameters
    ----------
    data
        A 2D image, an array whose leading axes (S, T, Z, C) are samples, or a
        list/tuple of such arrays; every YX plane is a sample, so list items may
        differ in size and mix images and stacks.

    Raises
    ------
    InputError
        An empty list, an item that is not a numeric array (e.g. a nested list of
        differently shaped images), fewer than 2 dimensions, NaN/Inf, or constant data.
    """
    items = list(data) if isinstance(data, list | tuple) else [data]
    if not items:
        raise InputError(f"{name} is an empty list; pass at least one image")
    planes: list[np.ndarray] = []
    for i, item in enumerate(items):
        label = name if len(items) == 1 else f"{name} (item {i})"
        if not isinstance(item, np.ndarray) or item.dtype.kind not in "uifb":
            kind = getattr(item, "dtype", type(item).__name__)
            raise InputError(f"{label} must be a numeric array (one image or stack), got "
                             f"{kind}; pass a list of arrays, not nested lists")
        if item.ndim < 2:
            raise InputError(f"{label} has shape {item.shape}; an image needs 2 dimensions (YX)")
        stack = item.reshape(-1, *item.shape[-2:]).astype(np.float32)
        bad = int(np.count_nonzero(~np.isfinite(stack)))
        if bad:
            raise InputError(f"{label} has {bad} NaN/Inf pixel(s); replace them (e.g. by the "
                             "median of their neighbours) before training")
        planes.extend(stack)
    low, high = min(float(p.min()) for p in planes), max(float(p.max()) for p in planes)
    if low == high:
        raise InputError(f"{name} is constant ({low:g} everywhere): there is nothing to "
                         "learn from; check the file")
    return planes


def choose_patch(planes: Sequence[np.ndarray], patch: int, *, multiple: int = 1) -> int:
    """The patch size used: ``patch``, or the smallest plane side if that is smaller.

    Rounded down to a multiple of ``multiple`` (the network's); it must stay at
    least :data:`MIN_PATCH` (16) pixels, else an :class:`InputError`.
    """
    side = min(min(p.shape) for p in planes)
    size = min(patch, side) // multiple * multiple
    if size < MIN_PATCH:
        raise InputError(f"the training images are too small ({side} px on their shortest "
                         f"side): training needs patches of at least {MIN_PATCH}x{MIN_PATCH} "
                         "pixels; use larger images")
    return size


def hold_out(planes: Sequence[np.ndarray], *, fraction: float,
             patch: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split planes into training and validation data.

    With ``round(fraction * n) >= 1`` of ``n >= 2`` planes, the last planes are held
    back. Otherwise every plane whose longer side fits two patches gives a strip
    of ``fraction`` of that side (at least one patch) at its end. If nothing can be
    held back (one small image), the validation list is empty and the caller
    validates on the training data.
    """
    n_val = round(fraction * len(planes))
    if fraction <= 0:
        return list(planes), []
    if len(planes) >= 2 and n_val >= 1:
        n_val = min(n_val, len(planes) - 1)
        return list(planes[:-n_val]), list(planes[-n_val:])
    train: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for plane in planes:
        axis = int(plane.shape[1] > plane.shape[0])
        length = plane.shape[axis]
        if length < 2 * patch:
            train.append(plane)
            continue
        strip = min(max(round(fraction * length), patch), length - patch)
        head, tail = np.split(plane, [length - strip], axis=axis)
        train.append(head)
        val.append(tail)
    return train, val


def sample_patches(planes: Sequence[np.ndarray], n: int, size: int,
                   gen: torch.Generator) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` patches, (n, 1, size, size); planes weighted by area."""
    usable = [p for p in planes if min(p.shape) >= size]
    weights = torch.tensor([float(p.size) for p in usable], dtype=torch.float64)
    which = torch.multinomial(weights, n, replacement=True, generator=gen).tolist()
    out = np.empty((n, 1, size, size), dtype=np.float32)
    for k, i in enumerate(which):
        h, w = usable[i].shape
        y = int(torch.randint(0, h - size + 1, (1,), generator=gen))
        x = int(torch.randint(0, w - size + 1, (1,), generator=gen))
        out[k, 0] = usable[i][y:y + size, x:x + size]
    return torch.from_numpy(out)


def augment(batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random 90-degree rotation and horizontal flip per patch (the 8 dihedral views)."""
    ks = torch.randint(0, 4, (batch.shape[0],), generator=gen).tolist()
    flips = torch.randint(0, 2, (batch.shape[0],), generator=gen).tolist()
    views = []
    for patch, k, flip in zip(batch, ks, flips, strict=True):
        view = torch.rot90(patch, k, dims=(-2, -1))
        views.append(view.flip(-1) if flip else view)
    return torch.stack(views)


def stratified_coords(n: int, shape: tuple[int, int], percentage: float,
                      gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blind-spot positions: one uniform point per cell of a grid of spacing (100/p)^(1/2).

    Returns ``(b, y, x)`` index tensors, each pixel once; points falling outside
    ``shape`` are dropped, so the fraction of masked pixels is about ``percentage`` %.
    """
    step = math.sqrt(100.0 / percentage)
    h, w = shape
    ny, nx = math.ceil(h / step), math.ceil(w / step)
    jitter = torch.rand((n, ny, nx, 2), generator=gen, dtype=torch.float64)
    gy = ((torch.arange(ny, dtype=torch.float64)[None, :, None] + jitter[..., 0]) * step).long()
    gx = ((torch.arange(nx, dtype=torch.float64)[None, None, :] + jitter[..., 1]) * step).long()
    b = torch.arange(n)[:, None, None].expand(n, ny, nx)
    keep = (gy < h) & (gx < w)
    # Neighbouring cells can floor to the same pixel: keep it once.
    flat = torch.unique((b[keep] * h + gy[keep]) * w + gx[keep])
    return flat // (h * w), flat // w % h, flat % w


@dataclass(frozen=True)
class Masked:
    """A masked batch: network ``inputs``, boolean ``mask`` of the blind spots,
    their ``coords`` ``(b, y, x)`` and, for uniform replacement, the ``sources``
    ``(y, x)`` whose values were copied (``None`` for median replacement)."""

    inputs: torch.Tensor
    mask: torch.Tensor
    coords: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    sources: tuple[torch.Tensor, torch.Tensor] | None


def _on_line(dy: torch.Tensor, dx: torch.Tensor, axis: str, half: int) -> torch.Tensor:
    if axis == "x":
        return (dy == 0) & (dx.abs() <= half)
    if axis == "y":
        return (dx == 0) & (dy.abs() <= half)
    return (dy == 0) & (dx == 0)


def blind_spot_mask(patches: torch.Tensor, *, percentage: float, radius: int,
                    replacement: str = "uniform", struct_axis: str = "none",
                    struct_span: int = 5, gen: torch.Generator) -> Masked:
    """Noise2Void blind spots on ``patches`` (n, 1, h, w); see the module docstring.

    Parameters
    ----------
    percentage
        Expected percentage of masked pixels (CAREamics 0.2).
    radius
        Neighbour window half-width (CAREamics 5, i.e. ``roi_size`` 11).
    replacement
        ``"uniform"`` (N2V: a random neighbour) or ``"median"`` (N2V2: the median
        of the window without the centre and the struct line).
    struct_axis, struct_span
        ``"x"`` or ``"y"``: also hide ``struct_span`` pixels along that axis centred
        on each blind spot (structN2V); ``"none"``: plain N2V.
    gen
        CPU generator (the same seed gives the same mask).
    """
    n, _, h, w = patches.shape
    b, y, x = stratified_coords(n, (h, w), percentage, gen)
    half = struct_span // 2 if struct_axis != "none" else 0
    inputs = patches.clone()
    sources: tuple[torch.Tensor, torch.Tensor] | None = None
    if replacement == "median":
        offs = torch.arange(-radius, radius + 1)
        oy = offs.repeat_interleave(len(offs))
        ox = offs.repeat(len(offs))
        yy, xx = y[:, None] + oy, x[:, None] + ox
        valid = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w) & \
            ~_on_line(oy, ox, struct_axis, half)[None, :]
        values = patches[b[:, None], 0, yy.clamp(0, h - 1), xx.clamp(0, w - 1)]
        values = torch.where(valid, values, torch.full_like(values, float("nan")))
        inputs[b, 0, y, x] = torch.nanmedian(values, dim=1).values
    else:
        lo_y, hi_y = (-y).clamp(min=-radius), (h - 1 - y).clamp(max=radius)
        lo_x, hi_x = (-x).clamp(min=-radius), (w - 1 - x).clamp(max=radius)
        dy = torch.zeros_like(y)
        dx = torch.zeros_like(x)
        todo = torch.ones_like(y, dtype=torch.bool)
        while bool(todo.any()):  # rejection sampling: never the centre (or the struct line)
            uy = torch.rand(y.shape, generator=gen, dtype=torch.float64)
            ux = torch.rand(x.shape, generator=gen, dtype=torch.float64)
            cy = lo_y + (uy * (hi_y - lo_y + 1)).long()
            cx = lo_x + (ux * (hi_x - lo_x + 1)).long()
            dy = torch.where(todo, cy, dy)
            dx = torch.where(todo, cx, dx)
            todo = _on_line(dy, dx, struct_axis, half)
        sources = (y + dy, x + dx)
        inputs[b, 0, y, x] = patches[b, 0, y + dy, x + dx]
    if struct_axis != "none":
        low = patches.amin(dim=(1, 2, 3))
        high = patches.amax(dim=(1, 2, 3))
        for k in range(-half, half + 1):
            if k == 0:
                continue
            ly, lx = (y, x + k) if struct_axis == "x" else (y + k, x)
            ok = (ly >= 0) & (ly < h) & (lx >= 0) & (lx < w)
            bk = b[ok]
            u = torch.rand(bk.shape, generator=gen, dtype=patches.dtype)
            inputs[bk, 0, ly[ok], lx[ok]] = low[bk] + u * (high[bk] - low[bk])
    mask = torch.zeros_like(patches, dtype=torch.bool)
    mask[b, 0, y, x] = True
    return Masked(inputs=inputs, mask=mask, coords=(b, y, x), sources=sources)


def upsample(image: np.ndarray | torch.Tensor, factor: int) -> torch.Tensor:
    """Bilinear ``factor`` x upsampling of the last two axes, as a float32 tensor.

    CARE's input for joint denoising and 2x super-resolution (as CSBDeep's
    ``UpsamplingCARE``: linear interpolation, then the network).
    """
    t = torch.as_tensor(image, dtype=torch.float32)
    if factor == 1:
        return t
    flat = t.reshape(-1, 1, *t.shape[-2:])
    out = F.interpolate(flat, scale_factor=factor, mode="bilinear", align_corners=False)
    return out.reshape(*t.shape[:-2], *out.shape[-2:])


def sample_pairs(inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], n: int,
                 size: int, *, step: int = 1, gen: torch.Generator) -> torch.Tensor:
    """``n`` random pairs of ``size`` x ``size`` patches at the same place, (n, 2, size, size).

    Channel 0 is the input, 1 the target (so :func:`augment` gives both the same
    view); corners are multiples of ``step`` (the low-resolution grid of 2x
    pairs); planes are weighted by area.
    """
    usable = [i for i, p in enumerate(inputs) if min(p.shape) >= size]
    weights = torch.tensor([float(inputs[i].size) for i in usable], dtype=torch.float64)
    which = torch.multinomial(weights, n, replacement=True, generator=gen).tolist()
    out = np.empty((n, 2, size, size), dtype=np.float32)
    for k, i in enumerate(which):
        x, y = inputs[usable[i]], targets[usable[i]]
        h, w = x.shape
        oy = int(torch.randint(0, (h - size) // step + 1, (1,), generator=gen)) * step
        ox = int(torch.randint(0, (w - size) // step + 1, (1,), generator=gen)) * step
        out[k, 0] = x[oy:oy + size, ox:ox + size]
        out[k, 1] = y[oy:oy + size, ox:ox + size]
    return torch.from_numpy(out)
