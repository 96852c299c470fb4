"""How a TIFF output is laid out: ImageJ hyperstack, OME-TIFF or plain TIFF.

:func:`tiff_plan` decides, for the axes, dtype and size of an output, which kind
of TIFF other tools will read correctly, and gives the ``tifffile.imwrite`` (or
``tifffile.memmap``) keywords and the axes order to store:

- **ImageJ hyperstack** (``imagej=True``) when every axis is one ImageJ knows
  (T, Z, C, Y, X), the dtype is uint8, uint16 or float32 and the data fit a
  classic TIFF (< 4 GB). Axes are stored in ImageJ's TZCYX order (a
  channel-first ``CZYX`` is stored as ``ZCYX``); the original order is kept in
  the description (:data:`AXES_KEY`) and restored on reading. The pixel size
  goes in the resolution tags with ResolutionUnit NONE and ImageJ's ``unit=``
  (as Fiji writes it), the Z step and time step as ``spacing``/``finterval``,
  display ranges and LUTs as ImageJ's ``Ranges``/``LUTs``.
- **OME-TIFF** (``ome=True``, OME-XML with the axes in any order and
  PhysicalSizeX/Y/Z with units) when the output is named ``*.ome.tif(f)``, the
  dtype is not one ImageJ holds, or the data exceed 4 GB: ImageJ hyperstacks
  cannot be BigTIFF (tifffile writes a "nonconformant BigTIFF ImageJ" that
  ImageJ cannot open), so a large output becomes an OME BigTIFF, which Fiji
  opens with Bio-Formats, and a :class:`~microdenoise.errors.FormatWarning` says so.
- **plain TIFF** (tifffile's JSON description records the axes) for axes with
  S (samples: neither ImageJ nor OME has them) or dtypes OME lacks (64-bit integers).

No kind writes ResolutionUnit INCH: OME and plain TIFFs use CENTIMETER with
converted values for length units, else NONE. BigTIFF whenever the data may
exceed 4 GB (:data:`BIGTIFF_BYTES`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import FormatWarning

__all__ = ["AXES_KEY", "BIGTIFF_BYTES", "CARRIED", "PIXEL_SIZE_KEY", "PROCESSING_KEY",
           "processing_line", "UM_PER", "TiffPlan",
           "drop_display", "ome_unit", "tiff_plan"]

BIGTIFF_BYTES = 2**32 - 2**25  # above this, classic TIFF offsets may overflow: BigTIFF
CARRIED = ("spacing", "finterval")  # metadata keys carried from input to output
AXES_KEY = "microdenoise_axes"  # in ImageJ descriptions: the axes order and size-1 axes
#: In ImageJ descriptions (and ``processing`` in plain TIFF / the OME Description / OME-Zarr
#: attributes): what ran, e.g. what the default chose and why (``metadata["processing"]``).
PROCESSING_KEY = "microdenoise_processing"
PIXEL_SIZE_KEY = "microdenoise_pixel_size"  # exact "y x" (resolution tags are rationals)
UM_PER = {"nm": 1e-3, "µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "mm": 1e3,
          "cm": 1e4, "m": 1e6}
IMAGEJ_ORDER = "TZCYX"
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_OME_DTYPES = tuple(np.dtype(t) for t in ("uint8", "uint16", "uint32", "int8", "int16",
                                          "int32", "float32", "float64"))
_OME_UNITS = {"nm": "nm", "µm": "µm", "um": "µm", "micron": "µm", "microns": "µm",
              "mm": "mm", "cm": "cm", "m": "m"}
_DISPLAY = ("ranges", "luts")  # ImageJ display ranges and LUTs in ImageData.metadata


@dataclass(frozen=True)
class TiffPlan:
    """A TIFF output: its kind, the stored axes and the ``tifffile`` keywords.

    Attributes
    ----------
    kind : str
        ``"imagej"``, ``"ome"`` or ``"plain"``.
    order : tuple of int
        ``data.transpose(order)`` is what is stored (ImageJ's TZCYX order).
    shape : tuple of int
        The stored shape.
    kwargs : dict
        Keywords for ``tifffile.imwrite`` / ``tifffile.memmap``.
    """

    kind: str
    order: tuple[int, ...]
    shape: tuple[int, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def ome_unit(unit: str | None) -> str | None:
    """The OME name of a length unit (``"um"`` -> ``"µm"``), or None if OME has none."""
    return None if unit is None else _OME_UNITS.get(unit.strip().lower().replace("μ", "µ"))


def tiff_plan(
    axes: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
    pixel_size: tuple[float, float] | None,
    unit: str | None,
    metadata: dict[str, Any],
    *,
    ome: bool = False,
) -> TiffPlan:
    """The layout of a TIFF output (see the module docstring); ``ome``: named ``*.ome.tif``.

    Warns (:class:`~microdenoise.errors.FormatWarning`, once per output) when the
    size forces OME-TIFF instead of an ImageJ hyperstack, and when display
    ranges or LUTs of the input cannot be kept.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    big = nbytes > BIGTIFF_BYTES
    fits_imagej = "S" not in axes and dtype in _IMAGEJ_DTYPES
    if fits_imagej and not ome and not big:
        return _imagej(axes, shape, pixel_size, unit, metadata)
    if fits_imagej and not ome:
        warnings.warn(f"the output is {nbytes / 1e9:.1f} GB, more than a classic TIFF holds; "
                      "writing an OME-TIFF (BigTIFF), which ImageJ hyperstacks cannot be: open "
                      "it in Fiji with File > Import > Bio-Formats", FormatWarning, stacklevel=3)
    kind = "ome" if "S" not in axes and dtype in _OME_DTYPES else "plain"
    drop_display(metadata, "OME-TIFF" if kind == "ome" else "plain TIFF")
    extra = {k: float(metadata[k]) for k in CARRIED if metadata.get(k) is not None}
    resolution, resolution_unit = _resolution_cm(pixel_size, unit)
    kwargs: dict[str, Any] = {"resolution": resolution, "resolutionunit": resolution_unit,
                              "photometric": "minisblack", "bigtiff": big}
    note = processing_line(metadata)
    if kind == "ome":
        ome_meta = _ome_metadata(axes, pixel_size, unit, extra)
        if note:
            ome_meta["Description"] = note
        kwargs.update(ome=True, metadata=ome_meta)
    else:
        plain: dict[str, Any] = {"axes": axes, **extra}
        if note:
            plain["processing"] = note
        if pixel_size is not None:
            plain["pixel_size"] = [float(v) for v in pixel_size]
        if unit:
            plain["unit"] = unit
        kwargs["metadata"] = plain
    return TiffPlan(kind, tuple(range(len(axes))), tuple(shape), kwargs)


def _imagej(axes: str, shape: tuple[int, ...], pixel_size: tuple[float, float] | None,
            unit: str | None, metadata: dict[str, Any]) -> TiffPlan:
    order = tuple(sorted(range(len(axes)), key=lambda i: IMAGEJ_ORDER.index(axes[i])))
    stored = "".join(axes[i] for i in order)
    extra = {k: float(metadata[k]) for k in CARRIED if metadata.get(k) is not None}
    ij: dict[str, Any] = {"axes": stored, **extra, AXES_KEY: axes}
    if pixel_size is not None:
        ij[PIXEL_SIZE_KEY] = f"{float(pixel_size[0])!r} {float(pixel_size[1])!r}"
    if unit:
        ij["unit"] = unit.replace("µ", "\\u00B5").encode("ascii", "replace").decode()
    if processing_line(metadata):
        ij[PROCESSING_KEY] = processing_line(metadata)
    ij.update(_imagej_display(metadata, shape[axes.index("C")] if "C" in axes else 1))
    resolution = None if pixel_size is None else (1 / pixel_size[1], 1 / pixel_size[0])
    kwargs = {"imagej": True, "resolution": resolution, "resolutionunit": "NONE",
              "metadata": ij, "photometric": "minisblack"}
    return TiffPlan("imagej", order, tuple(shape[i] for i in order), kwargs)


def processing_line(metadata: dict[str, Any]) -> str:
    """``metadata["processing"]`` as one ASCII line ("" when absent): ImageJ description
    values are ``key=value`` lines."""
    text = str(metadata.get("processing") or "")
    return " ".join(text.split()).encode("ascii", "replace").decode()


def _imagej_display(metadata: dict[str, Any], channels: int) -> dict[str, Any]:
    """ImageJ ``Ranges`` (and ``min``/``max``) and ``LUTs`` that fit ``channels``."""
    out: dict[str, Any] = {}
    ranges, luts = metadata.get("ranges"), metadata.get("luts")
    dropped = []
    if ranges is not None:
        values = [float(v) for v in ranges]
        if len(values) == 2 * channels:
            out["Ranges"] = tuple(values)
            if channels == 1:
                out["min"], out["max"] = values
        else:
            dropped.append(f"display ranges ({len(values) // 2} for {channels} channels)")
    if luts is not None:
        arrays = [np.asarray(lut, dtype=np.uint8) for lut in luts]
        if len(arrays) == channels and all(a.shape == (3, 256) for a in arrays):
            out["LUTs"] = arrays
        else:
            dropped.append(f"LUTs ({len(arrays)} for {channels} channels)")
    if dropped:
        warnings.warn(f"the input's ImageJ {' and '.join(dropped)} do not fit the output; "
                      "dropped", FormatWarning, stacklevel=4)
    return out


def drop_display(metadata: dict[str, Any], kind: str) -> None:
    """Warn once that the display ranges/LUTs in ``metadata`` cannot be kept in ``kind``."""
    names = {"ranges": "display ranges", "luts": "LUTs"}
    dropped = [names[k] for k in _DISPLAY if metadata.get(k) is not None]
    if dropped:
        warnings.warn(f"the input's ImageJ {' and '.join(dropped)} are dropped: {kind} "
                      "outputs do not hold them", FormatWarning, stacklevel=4)


def _resolution_cm(pixel_size: tuple[float, float] | None, unit: str | None
                   ) -> tuple[tuple[float, float] | None, str]:
    """Resolution tags: pixels per cm for length units, else per (unknown) unit, never INCH."""
    if pixel_size is None:
        return None, "NONE"
    scale = UM_PER.get((unit or "").strip().lower().replace("μ", "µ"))
    if scale is None:
        return (1 / pixel_size[1], 1 / pixel_size[0]), "NONE"
    return (1e4 / (pixel_size[1] * scale), 1e4 / (pixel_size[0] * scale)), "CENTIMETER"


def _ome_metadata(axes: str, pixel_size: tuple[float, float] | None, unit: str | None,
                  extra: dict[str, float]) -> dict[str, Any]:
    meta: dict[str, Any] = {"axes": axes}
    name = ome_unit(unit)
    if unit and name is None:
        warnings.warn(f"OME-TIFF has no length unit {unit!r}; the pixel size is written in "
                      "pixels", FormatWarning, stacklevel=4)
    name = name or "pixel"
    if pixel_size is not None:
        meta.update(PhysicalSizeX=float(pixel_size[1]), PhysicalSizeXUnit=name,
                    PhysicalSizeY=float(pixel_size[0]), PhysicalSizeYUnit=name)
    if "spacing" in extra:
        meta.update(PhysicalSizeZ=extra["spacing"], PhysicalSizeZUnit=name)
    if "finterval" in extra:
        meta.update(TimeIncrement=extra["finterval"], TimeIncrementUnit="s")
    return meta
