"""TIFF images (ImageJ hyperstacks, OME-TIFF, plain TIFF): read and write.

:func:`microdenoise.io.read_image` and :func:`~microdenoise.io.write_image` call
this module for ``.tif``/``.tiff`` paths, and the streamed path
(:mod:`microdenoise.streaming`) uses :func:`read_tiff` (``lazy=True``) and
:func:`tiff_options` directly. Axes come from the series (tifffile's letters;
others become ``S``), with size-1 axes restored from our ImageJ description
key; the pixel size, unit, Z step and time step from OME-XML, the ImageJ
description, our shaped-TIFF JSON or the resolution tags. Writing gives an
ImageJ hyperstack when the axes are in ImageJ order and the dtype is uint8,
uint16 or float32, else a plain (Big)TIFF whose description records the axes.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .axes import AXES_LETTERS, drop_colour
from .errors import InputError

__all__ = ["Calibration", "read_tiff", "tiff_options", "write_tiff"]

_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_CARRIED = ("spacing", "finterval")  # metadata keys carried from input to output
_AXES_KEY = "microdenoise_axes"  # in ImageJ descriptions: keeps size-1 axes
_PX_KEY = "microdenoise_pixel_size"  # exact "y x" (resolution tags are rationals)
_UM_PER = {"nm": 1e-3, "µm": 1.0, "um": 1.0, "micron": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}

Calibration = tuple[tuple[float, float] | None, str | None, dict[str, Any]]


def read_tiff(
    path: Path, axes: str | None, *, lazy: bool = False
) -> tuple[np.ndarray, str, Calibration]:
    """Pixels, axes and calibration; ``lazy``: a read-only memmap or zarr array of the pixels."""
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = series.keyframe
        data = series.asarray() if not lazy else _lazy_tiff(path, series)
        letters = list(series.axes)
        ij = tif.imagej_metadata or {}
        shaped = (tif.shaped_metadata or ({},))[0] or {}
        ours = ij.get(_AXES_KEY)
        if isinstance(ours, str) and len(ours) > data.ndim:  # restore size-1 axes
            full_axes, full_shape = series.get_axes(False), series.get_shape(False)
            keep = [i for i, a in enumerate(full_axes) if full_shape[i] > 1 or a in ours]
            if len(keep) == len(ours):
                data = np.asarray(data).reshape([full_shape[i] for i in keep])
                letters = [full_axes[i] for i in keep]
        if "S" in letters and page.samplesperpixel > 1:  # tifffile's S: samples per pixel
            if page.photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR):
                data = drop_colour(path, np.asarray(data), letters.index("S"))
                letters.remove("S")
            else:
                letters[letters.index("S")] = "C"  # extra samples are channels
        mapped = "".join(a if a in AXES_LETTERS else "S" for a in letters)  # I, Q, ... -> S
        if axes is None and len(set(mapped)) != len(mapped):
            raise InputError(f"{path}: cannot map the TIFF axes {''.join(letters)!r} (shape "
                             f"{data.shape}) to {AXES_LETTERS}; pass axes= (e.g. 'TZYX')")
        return data, mapped, _tiff_calibration(tif, page, ij, shaped)


def _lazy_tiff(path: Path, series: Any) -> Any:
    """A memmap when the pixels are stored uncompressed in one block, else a zarr array."""
    if series.dataoffset is not None:
        return tifffile.memmap(path, series=0, mode="r")
    import zarr

    return zarr.open_array(tifffile.imread(path, aszarr=True, series=0, level=0), mode="r")


def _tiff_calibration(
    tif: tifffile.TiffFile, page: Any, ij: dict[str, Any], shaped: dict[str, Any]
) -> Calibration:
    if tif.is_ome and tif.ome_metadata:
        pixels = next((e for e in ET.fromstring(tif.ome_metadata).iter()
                       if e.tag.split("}")[-1] == "Pixels"), None)
        if pixels is not None and "PhysicalSizeX" in pixels.attrib:
            a = pixels.attrib
            unit, y_unit = a.get("PhysicalSizeXUnit", "µm"), a.get("PhysicalSizeYUnit", "µm")
            x = float(a["PhysicalSizeX"])
            y = float(a.get("PhysicalSizeY", x))
            if y_unit != unit and y_unit in _UM_PER and unit in _UM_PER:
                y = y * _UM_PER[y_unit] / _UM_PER[unit]
            ome = {"spacing": "PhysicalSizeZ", "finterval": "TimeIncrement"}
            return (y, x), unit, {k: float(a[v]) for k, v in ome.items() if v in a}
    source = ij or shaped
    meta = {k: source[k] for k in _CARRIED if k in source}
    stored = shaped.get("pixel_size")
    if isinstance(stored, list) and len(stored) == 2:  # written by write_image: exact
        return (float(stored[0]), float(stored[1])), shaped.get("unit"), meta
    xres, yres = (_rational(page.tags.get(t)) for t in ("XResolution", "YResolution"))
    if not xres or not yres:
        return None, None, meta
    size = _exact(ij.get(_PX_KEY), (1.0 / yres, 1.0 / xres))
    found = source.get("unit")
    if isinstance(found, str) and found.strip() and found.lower() not in ("pixel", "pixels"):
        return size, found.replace("\\u00B5", "µ").replace("\\u00b5", "µ"), meta
    if ij and not xres == yres == 1:  # ImageJ, calibrated without a unit
        return size, None, meta
    scale = {3: 1e4, 4: 1e3, 5: 1.0}.get(int(getattr(page, "resolutionunit", 1)))
    if scale is None or xres == yres == 1:  # inch (screen dpi), none, or uncalibrated
        return None, None, meta
    return (scale / yres, scale / xres), "µm", meta


def _exact(stored: Any, size: tuple[float, float]) -> tuple[float, float]:
    """Prefer the exact pixel size we stored if it agrees with the tags."""
    try:
        y, x = (float(v) for v in str(stored).split())
    except ValueError:
        return size
    close = math.isclose(y, size[0], rel_tol=1e-6) and math.isclose(x, size[1], rel_tol=1e-6)
    return (y, x) if close else size


def _rational(tag: Any) -> float:
    value = None if tag is None else tag.value
    if isinstance(value, tuple) and len(value) == 2:
        return value[0] / value[1] if value[1] else 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def write_tiff(
    path: Path,
    data: np.ndarray,
    axes: str,
    pixel_size: tuple[float, float] | None,
    unit: str | None,
    metadata: dict[str, Any],
) -> None:
    """Write ``data`` as a TIFF with the keywords of :func:`tiff_options`."""
    kwargs = tiff_options(axes, data.dtype, data.nbytes, pixel_size, unit, metadata)
    tifffile.imwrite(path, data, **kwargs)


def tiff_options(
    axes: str,
    dtype: np.dtype,
    nbytes: int,
    pixel_size: tuple[float, float] | None,
    unit: str | None,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """``tifffile.imwrite`` keywords (also for ``tifffile.memmap``) of :func:`write_image`."""
    extra = {k: float(metadata[k]) for k in _CARRIED if metadata.get(k) is not None}
    resolution = None if pixel_size is None else (1 / pixel_size[1], 1 / pixel_size[0])
    order = iter("TZCYX")
    if all(a in order for a in axes) and dtype in _IMAGEJ_DTYPES:  # ImageJ order
        ij: dict[str, Any] = {"axes": axes, **extra, _AXES_KEY: axes}
        if pixel_size is not None:
            ij[_PX_KEY] = f"{float(pixel_size[0])!r} {float(pixel_size[1])!r}"
        if unit:
            ij["unit"] = unit.replace("µ", "\\u00B5").encode("ascii", "replace").decode()
        return {"imagej": True, "resolution": resolution, "metadata": ij,
                "photometric": "minisblack"}
    shaped: dict[str, Any] = {"axes": axes, **extra}
    if pixel_size is not None:
        shaped["pixel_size"] = [float(v) for v in pixel_size]
    if unit:
        shaped["unit"] = unit
    return {"metadata": shaped, "resolution": resolution, "photometric": "minisblack",
            "bigtiff": nbytes > 2**32 - 2**25}
