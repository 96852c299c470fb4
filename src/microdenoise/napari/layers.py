"""napari layers in and out: the array and axes a layer is denoised with, and the
keyword arguments of a result layer (the input's scale, translate and metadata).

napari layers carry no axes letters, so the widgets ask, with a guess by the number
of dimensions as the default (``YX``, ``ZYX``, ``TZYX``, ...; an RGB layer is
denoised channel by channel, its colour axis as ``C`` before ``YX``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["GUESSES", "guess_axes", "layer_data", "layer_shape", "result_data", "result_kwargs"]

GUESSES = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX", 6: "STCZYX"}


def guess_axes(ndim: int, rgb: bool = False) -> str:
    """The axes assumed for a layer whose data have ``ndim`` dimensions (RGB: the colour
    axis, last in napari, counts, and is ``C`` before ``YX``)."""
    if rgb:
        return GUESSES.get(ndim - 1, "")[:-2] + "CYX" if ndim >= 3 else ""
    return GUESSES.get(ndim, "")


def layer_shape(layer: Any) -> tuple[int, ...]:
    """The shape :func:`layer_data` gives, without reading the pixels."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    shape = tuple(int(n) for n in data.shape)
    if getattr(layer, "rgb", False):
        shape = (*shape[:-3], shape[-1], *shape[-3:-1])
    return shape


def layer_data(layer: Any) -> np.ndarray:
    """The layer's pixels as a NumPy array, an RGB layer's colour axis moved before YX
    (multiscale: the full-resolution level)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    arr = np.asarray(data)
    if getattr(layer, "rgb", False):
        arr = np.moveaxis(arr, -1, -3)
    if arr.dtype.kind not in "uif":
        raise InputError(f"layer {layer.name!r} holds {arr.dtype} data; microdenoise "
                         "denoises numeric images")
    return arr


def result_data(layer: Any, out: np.ndarray) -> np.ndarray:
    """``out`` (float32 in the input's units) laid out as the layer: an RGB layer's
    colour axis back last, in its integer type (napari shows float RGB as 0..1)."""
    if not getattr(layer, "rgb", False):
        return out
    out = np.moveaxis(out, -3, -1)
    dtype = np.asarray(layer.data[0] if getattr(layer, "multiscale", False)
                       else layer.data).dtype
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out


def result_kwargs(layer: Any, label: str, *, upscale: int = 1) -> dict[str, Any]:
    """A result layer's keyword arguments: named ``<input> (<label>)``, with the input's
    scale (Y and X divided by ``upscale``), translate, metadata, colormap and contrast."""
    scale = np.array(layer.scale, dtype=float)
    if upscale != 1:
        scale[-2:] = scale[-2:] / upscale
    kwargs: dict[str, Any] = {
        "name": f"{layer.name} ({label})",
        "scale": scale,
        "translate": np.array(layer.translate, dtype=float),
        "metadata": dict(layer.metadata),
        "rgb": bool(getattr(layer, "rgb", False)),
    }
    if not kwargs["rgb"]:
        kwargs["colormap"] = layer.colormap.name
        kwargs["contrast_limits"] = list(layer.contrast_limits)
    return kwargs
