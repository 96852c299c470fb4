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
from collections.abc import Callable, Sequence
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
    return _samples(data, name=name, ndim=2)


def as_volumes(data: Any, *, name: str = "the training data") -> list[np.ndarray]:
    """Validate training data for a 3D network and return its ZYX volumes (float32).

    ``data`` is a ZYX stack, an array whose axes before ZYX are samples, or a list of
    such arrays (the volumes may differ in size). Errors as :func:`as_planes`, and a
    2D image is refused (a 3D network needs a Z axis).
    """
    return _samples(data, name=name, ndim=3)


def _samples(data: Any, *, name: str, ndim: int) -> list[np.ndarray]:
    items = list(data) if isinstance(data, list | tuple) else [data]
    if not items:
        raise InputError(f"{name} is an empty list; pass at least one image")
    samples: list[np.ndarray] = []
    for i, item in enumerate(items):
        label = name if len(items) == 1 else f"{name} (item {i})"
        if not isinstance(item, np.ndarray) or item.dtype.kind not in "uifb":
            kind = getattr(item, "dtype", type(item).__name__)
            raise InputError(f"{label} must be a numeric array (one image or stack), got "
                             f"{kind}; pass a list of arrays, not nested lists")
        if item.ndim < ndim:
            raise InputError(f"{label} has shape {item.shape}; " + (
                "an image needs 2 dimensions (YX)" if ndim == 2 else
                "a 3D network (dims=3) needs ZYX stacks; train 2D images with dims=2"))
        stack = item.reshape(-1, *item.shape[-ndim:]).astype(np.float32)
        bad = int(np.count_nonzero(~np.isfinite(stack)))
        if bad:
            raise InputError(f"{label} has {bad} NaN/Inf pixel(s); replace them (e.g. by the "
                             "median of their neighbours) before training")
        samples.extend(stack)
    low, high = min(float(p.min()) for p in samples), max(float(p.max()) for p in samples)
    if low == high:
        raise InputError(f"{name} is constant ({low:g} everywhere): there is nothing to "
                         "learn from; check the file")
    return samples


def choose_patch(planes: Sequence[np.ndarray], patch: int, *, multiple: int = 1) -> int:
    """The patch size used: ``patch``, or the smallest plane side if that is smaller.

    Rounded down to a multiple of ``multiple`` (the network's); it must stay at
    least :data:`MIN_PATCH` (16) pixels, else an :class:`InputError`. Only the last
    two axes (Y, X) count (see :func:`choose_depth` for the Z of volumes).
    """
    side = min(min(p.shape[-2:]) for p in planes)
    size = min(patch, side) // multiple * multiple
    if size < MIN_PATCH:
        raise InputError(f"the training images are too small ({side} px on their shortest "
                         f"side): training needs patches of at least {MIN_PATCH}x{MIN_PATCH} "
                         "pixels; use larger images")
    return size


def choose_depth(volumes: Sequence[np.ndarray], depth: int, *, multiple: int = 1) -> int:
    """The Z size of training patches from ZYX ``volumes``: ``depth``, or the smallest
    volume's Z if that is smaller, rounded down to a multiple of ``multiple``, which
    it must reach (else an :class:`InputError`)."""
    z = min(v.shape[0] for v in volumes)
    size = min(depth, z) // multiple * multiple
    if size < multiple:
        raise InputError(f"the training stacks have {z} slice(s) along Z; the 3D network "
                         f"needs at least {multiple} (a multiple of 2**depth); use taller "
                         "stacks or dims=2")
    return size


def hold_out(planes: Sequence[np.ndarray], *, fraction: float,
             patch: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Split planes into training and validation data.

    With ``round(fraction * n) >= 1`` of ``n >= 2`` planes, the last planes are held
    back. Otherwise every plane whose longer side fits two patches gives a strip
    of ``fraction`` of that side (at least one patch) at its end. If nothing can be
    held back (one small image), the validation list is empty and the caller
    validates on the training data. ZYX volumes are split the same way, along Y or X.
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
        axis = plane.ndim - 2 + int(plane.shape[-1] > plane.shape[-2])
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
                   gen: torch.Generator, *, depth: int = 0) -> torch.Tensor:
    """``n`` random ``size`` x ``size`` patches, (n, 1, size, size); planes weighted by area.

    With ``depth`` > 0, ``planes`` are ZYX volumes and the patches ``depth`` x ``size``
    x ``size`` (n, 1, depth, size, size), volumes weighted by their number of voxels.
    """
    shape = (depth, size, size) if depth else (size, size)
    usable = [p for p in planes
              if all(a >= b for a, b in zip(p.shape, shape, strict=True))]
    weights = torch.tensor([float(p.size) for p in usable], dtype=torch.float64)
    which = torch.multinomial(weights, n, replacement=True, generator=gen).tolist()
    out = np.empty((n, 1, *shape), dtype=np.float32)
    for k, i in enumerate(which):
        corner = [int(torch.randint(0, a - b + 1, (1,), generator=gen))
                  for a, b in zip(usable[i].shape[-2:], shape[-2:], strict=True)]
        if depth:  # Z last, so that 2D draws are unchanged
            corner.insert(0, int(torch.randint(0, usable[i].shape[0] - depth + 1, (1,),
                                               generator=gen)))
        out[k, 0] = usable[i][tuple(slice(c, c + b) for c, b in zip(corner, shape,
                                                                        strict=True))]
    return torch.from_numpy(out)


def augment(batch: torch.Tensor, gen: torch.Generator, *, rotate: bool = True) -> torch.Tensor:
    """Random 90-degree rotation and horizontal flip per patch (the 8 dihedral views).

    ``rotate=False``: a random flip along Y and one along X instead (identity, either
    mirror, or the 180-degree rotation), the 4 views that keep every row a row and
    every column a column, so noise correlated along X (or Y) stays so: structN2V's
    line mask then still lies along the correlation (a 90-degree rotation would turn
    it across).
    """
    if not rotate:
        flips = torch.randint(0, 2, (batch.shape[0], 2), generator=gen).tolist()
        out = []
        for patch, (fy, fx) in zip(batch, flips, strict=True):
            dims = [d for d, f in ((-2, fy), (-1, fx)) if f]
            out.append(patch.flip(dims) if dims else patch)
        return torch.stack(out)
    ks = torch.randint(0, 4, (batch.shape[0],), generator=gen).tolist()
    flips = torch.randint(0, 2, (batch.shape[0],), generator=gen).tolist()
    views = []
    for patch, k, flip in zip(batch, ks, flips, strict=True):
        view = torch.rot90(patch, k, dims=(-2, -1))
        views.append(view.flip(-1) if flip else view)
    return torch.stack(views)


def stratified_coords(n: int, shape: tuple[int, ...], percentage: float,
                      gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Blind-spot positions: one uniform point per cell of a grid of spacing
    (100/p)^(1/d) in d = 2 (YX) or 3 (ZYX) dimensions (CAREamics' stratified grid).

    Returns ``(b, y, x)`` (or ``(b, z, y, x)``) index tensors, each pixel once; points
    outside ``shape`` are dropped, so the fraction of masked pixels is about
    ``percentage`` %.
    """
    d = len(shape)
    # math.sqrt in 2D: bit for bit the spacing (and so the masks) of the 2D-only version.
    step = (100.0 / percentage) ** (1.0 / d) if d != 2 else math.sqrt(100.0 / percentage)
    cells = [math.ceil(side / step) for side in shape]
    jitter = torch.rand((n, *cells, d), generator=gen, dtype=torch.float64)
    points = []
    for axis, count in enumerate(cells):
        view = [1] * (d + 1)
        view[axis + 1] = count
        grid = torch.arange(count, dtype=torch.float64).reshape(view)
        points.append(((grid + jitter[..., axis]) * step).long())
    b = torch.arange(n).reshape(n, *([1] * d)).expand(n, *cells)
    keep = torch.ones_like(b, dtype=torch.bool)
    for g, side in zip(points, shape, strict=True):
        keep = keep & (g < side)
    flat = b[keep]
    for g, side in zip(points, shape, strict=True):
        flat = flat * side + g[keep]
    # Neighbouring cells can floor to the same pixel: keep it once.
    flat = torch.unique(flat)
    coords = []
    for side in reversed(shape):
        coords.append(flat % side)
        flat = flat // side
    return (flat, *reversed(coords))


@dataclass(frozen=True)
class Masked:
    """A masked batch: network ``inputs``, boolean ``mask`` of the blind spots,
    their ``coords`` ``(b, y, x)`` (``(b, z, y, x)`` for volumes) and, for uniform
    replacement, the ``sources`` ``(y, x)`` (``(z, y, x)``) whose values were copied
    (``None`` for median replacement)."""

    inputs: torch.Tensor
    mask: torch.Tensor
    coords: tuple[torch.Tensor, ...]
    sources: tuple[torch.Tensor, ...] | None


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

    Volumes (n, 1, z, y, x) get 3D blind spots with uniform replacement from the
    (2 radius + 1)^3 cube around each, centre excluded (CAREamics' 3D N2V);
    ``replacement="median"`` and structN2V are 2D only.
    """
    if patches.ndim == 5:
        if replacement != "uniform" or struct_axis != "none":
            raise ValueError("3D blind spots use uniform replacement and no struct mask")
        return _blind_spot_mask_3d(patches, percentage=percentage, radius=radius, gen=gen)
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
        dy, dx = _neighbour_offsets(
            (y, x), (h, w), radius, gen,
            excluded=lambda oy, ox: _on_line(oy, ox, struct_axis, half))
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


def _neighbour_offsets(centre: tuple[torch.Tensor, ...], sizes: tuple[int, ...],
                       radius: int, gen: torch.Generator,
                       excluded: Callable[..., torch.Tensor]) -> list[torch.Tensor]:
    """Uniform offsets within +-``radius`` of each ``centre`` point (one tensor per axis),
    clipped to the patch ``sizes``, redrawn by rejection where ``excluded(*offsets)``
    (the centre, or structN2V's line): N2V's uniform replacement, in 2D or 3D."""
    lows = [(-c).clamp(min=-radius) for c in centre]
    highs = [(s - 1 - c).clamp(max=radius) for c, s in zip(centre, sizes, strict=True)]
    offsets = [torch.zeros_like(c) for c in centre]
    todo = torch.ones_like(centre[0], dtype=torch.bool)
    while bool(todo.any()):
        for k, c in enumerate(centre):
            u = torch.rand(c.shape, generator=gen, dtype=torch.float64)
            offsets[k] = torch.where(todo, lows[k] + (u * (highs[k] - lows[k] + 1)).long(),
                                     offsets[k])
        todo = excluded(*offsets)
    return offsets


def _blind_spot_mask_3d(patches: torch.Tensor, *, percentage: float, radius: int,
                        gen: torch.Generator) -> Masked:
    n, _, depth, h, w = patches.shape
    b, z, y, x = stratified_coords(n, (depth, h, w), percentage, gen)
    offsets = _neighbour_offsets(  # never the centre itself
        (z, y, x), (depth, h, w), radius, gen,
        excluded=lambda oz, oy, ox: (oz == 0) & (oy == 0) & (ox == 0))
    sources = (z + offsets[0], y + offsets[1], x + offsets[2])
    inputs = patches.clone()
    inputs[b, 0, z, y, x] = patches[b, 0, *sources]
    mask = torch.zeros_like(patches, dtype=torch.bool)
    mask[b, 0, z, y, x] = True
    return Masked(inputs=inputs, mask=mask, coords=(b, z, y, x), sources=sources)


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
