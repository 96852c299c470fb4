"""TIFF images (ImageJ hyperstacks, OME-TIFF, plain TIFF): read and write.

:func:`microdenoise.io.read_image` and :func:`~microdenoise.io.write_image` call
this module for ``.tif``/``.tiff`` paths, and the streamed path
(:mod:`microdenoise.streaming`) uses :func:`read_tiff` (``lazy=True``) and
:func:`tiff_plan` directly. Before any pixel is read, the size the header
declares is checked against the file and memory (:func:`check_declared_size`).
Axes come from the series (tifffile's letters; others become ``S``), with
size-1 axes and the axes order restored from our ImageJ description key; the
pixel size, unit, Z step and time step from OME-XML, the ImageJ description,
our plain-TIFF JSON or the resolution tags; ImageJ display ranges and LUTs
into ``metadata["ranges"]``/``["luts"]``. Writing: an ImageJ hyperstack, an
OME-TIFF or a plain TIFF, as :mod:`microdenoise.tiff_out` decides.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .axes import AXES_LETTERS, drop_colour
from .errors import InputError
from .tiff_out import (
    AXES_KEY,
    CARRIED,
    PIXEL_SIZE_KEY,
    PROCESSING_KEY,
    UM_PER,
    processing_line,
    tiff_plan,
)

__all__ = ["Calibration", "check_declared_size", "physical_memory", "read_tiff", "tiff_plan",
           "write_tiff"]

COMPRESSION_RATIO = 1000  # compressed pixels declared > 1000x the file size: implausible
_SECONDS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "min": 60.0, "h": 3600.0}

Calibration = tuple[tuple[float, float] | None, str | None, dict[str, Any]]


def physical_memory() -> int | None:
    """This machine's memory in bytes (None when the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_declared_size(path: Path, shape: tuple[int, ...], dtype: np.dtype, *,
                        compressed: bool, in_memory: bool, on_disk: int | None = None,
                        kind: str = "TIFF") -> None:
    """Refuse an image (a TIFF; ``kind``: another format, e.g. OME-Zarr) whose header
    declares more pixels than the file or memory can hold.

    Uncompressed pixels cannot be larger than the file; compressed ones more than
    :data:`COMPRESSION_RATIO` times the file are implausible; ``in_memory``: the
    pixels must also fit in this machine's memory (:func:`physical_memory`).
    Checked before any pixel is read, so a malformed header cannot allocate.
    ``on_disk``: the bytes of all the files holding the pixels (default: ``path``'s).
    """
    declared = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    on_disk = path.stat().st_size if on_disk is None else on_disk
    what = f"declares {'x'.join(map(str, shape))} {np.dtype(dtype)} pixels ({_gib(declared)})"
    if declared > on_disk * (COMPRESSION_RATIO if compressed else 1):
        held = "compressed in" if compressed else "in"
        raise InputError(f"could not read {path} as {kind} (its header {what} {held} "
                         f"{on_disk} bytes of files); the file may be corrupt or truncated")
    memory = physical_memory() if in_memory else None
    if memory is not None and declared > memory:
        raise InputError(f"{path}: the image {what}, more than this machine's memory "
                         f"({_gib(memory)}); stream it with --tile or --max-memory "
                         "(denoise_file(..., tile=...) in Python)")


def add_processing(path: Path, note: str, *, kind: str) -> None:
    """Add ``note`` (what ran) to the description of the TIFF ``path`` written as ``kind``
    (``imagej``: a ``microdenoise_processing=`` line; ``plain``: the JSON's
    ``processing``); an OME-TIFF written tile by tile keeps its OME-XML as it is."""
    line = processing_line({"processing": note})
    with tifffile.TiffFile(path) as tif:
        text = tif.pages.first.description
    if kind == "imagej":
        text = f"{text.rstrip()}\n{PROCESSING_KEY}={line}\n"
    elif kind == "plain":
        try:
            meta = json.loads(text)
        except ValueError:
            return
        meta["processing"] = line
        text = json.dumps(meta)
    else:
        return
    tifffile.tiffcomment(path, text.encode("ascii"))


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**27 else f"{nbytes / 2**20:.2f} MiB"


def read_tiff(
    path: Path, axes: str | None, *, lazy: bool = False
) -> tuple[np.ndarray, str, Calibration]:
    """Pixels, axes and calibration; ``lazy``: a read-only memmap or zarr array of the pixels.

    The declared size is checked first (:func:`check_declared_size`; against
    memory only when not ``lazy``). Axes stored in ImageJ order by
    :func:`write_tiff` come back in the order they were written from.
    """
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = series.keyframe
        check_declared_size(path, tuple(series.shape), series.dtype, in_memory=not lazy,
                            compressed=int(page.compression) != 1,
                            on_disk=_files_size(path, tif, series))
        data = series.asarray() if not lazy else _lazy_tiff(path, series)
        letters = list(series.axes)
        ij = tif.imagej_metadata or {}
        shaped = (tif.shaped_metadata or ({},))[0] or {}
        data, letters = _our_axes(data, letters, series, ij.get(AXES_KEY), lazy=lazy)
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
        calibration = _tiff_calibration(tif, page, ij, shaped)
        calibration[2].update(_display(ij))
        return data, mapped, calibration


def _files_size(path: Path, tif: tifffile.TiffFile, series: Any) -> int:
    """Bytes of the files holding the series: a multi-file OME-TIFF spans several."""
    if not tif.is_ome:
        return path.stat().st_size
    names = {Path(p.parent.filehandle.path) for p in series.pages if p is not None}
    return sum(n.stat().st_size for n in names | {path} if n.exists())


def _our_axes(data: Any, letters: list[str], series: Any, ours: Any, *, lazy: bool
              ) -> tuple[Any, list[str]]:
    """Restore the size-1 axes and the axes order that :func:`write_tiff` recorded."""
    if not isinstance(ours, str) or not isinstance(data, np.ndarray):
        return data, letters
    if len(ours) > data.ndim:  # restore size-1 axes
        full_axes, full_shape = series.get_axes(False), series.get_shape(False)
        keep = [i for i, a in enumerate(full_axes) if full_shape[i] > 1 or a in ours]
        if len(keep) == len(ours):
            data = data.reshape([full_shape[i] for i in keep])
            letters = [full_axes[i] for i in keep]
    if sorted(ours) == sorted(letters) and "".join(letters) != ours:  # ImageJ order -> ours
        data = data.transpose([letters.index(a) for a in ours])
        data = data if lazy else np.ascontiguousarray(data)
        letters = list(ours)
    return data, letters


def _display(ij: dict[str, Any]) -> dict[str, Any]:
    """ImageJ display ranges (``Ranges``, else ``min``/``max``) and LUTs, to carry."""
    out: dict[str, Any] = {}
    ranges = ij.get("Ranges")
    if ranges is None and isinstance(ij.get("min"), int | float) and isinstance(
            ij.get("max"), int | float):
        ranges = (ij["min"], ij["max"])
    if ranges is not None and len(ranges) % 2 == 0 and len(ranges) > 0:
        out["ranges"] = tuple(float(v) for v in ranges)
    luts = ij.get("LUTs")
    if luts:
        out["luts"] = [np.asarray(lut, dtype=np.uint8) for lut in luts]
    return out


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
            if y_unit != unit and y_unit in UM_PER and unit in UM_PER:
                y = y * UM_PER[y_unit] / UM_PER[unit]
            meta = {"spacing": float(a["PhysicalSizeZ"])} if "PhysicalSizeZ" in a else {}
            if "TimeIncrement" in a:
                per_s = _SECONDS.get(a.get("TimeIncrementUnit", "s"), 1.0)
                meta["finterval"] = float(a["TimeIncrement"]) * per_s
            return (y, x), (None if unit == "pixel" else unit), meta
    source = ij or shaped
    meta = {k: source[k] for k in CARRIED if k in source}
    stored = shaped.get("pixel_size")
    if isinstance(stored, list) and len(stored) == 2:  # written by write_image: exact
        return (float(stored[0]), float(stored[1])), shaped.get("unit"), meta
    xres, yres = (_rational(page.tags.get(t)) for t in ("XResolution", "YResolution"))
    if not xres or not yres:
        return None, None, meta
    size = _exact(ij.get(PIXEL_SIZE_KEY), (1.0 / yres, 1.0 / xres))
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
    *,
    ome: bool = False,
) -> str:
    """Write ``data`` as the TIFF :func:`~microdenoise.tiff_out.tiff_plan` chooses; return its kind.

    ``ome``: the output is named ``*.ome.tif(f)``, so it is written as OME-TIFF.
    """
    plan = tiff_plan(axes, data.shape, data.dtype, pixel_size, unit, metadata, ome=ome)
    tifffile.imwrite(path, data.transpose(plan.order), **plan.kwargs)
    return plan.kind
