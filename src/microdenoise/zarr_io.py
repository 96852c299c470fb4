"""OME-Zarr (OME-NGFF) images: read 0.4 and 0.5, write 0.4 (Zarr v2 format), chunked.

:func:`microdenoise.io.read_image` and :func:`~microdenoise.io.write_image` call
this module for ``.zarr`` paths. One resolution level is written (path ``"0"``),
or with ``levels=N`` a pyramid of N levels (``"0"`` .. ``"N-1"``), each the
previous one averaged over 2x2 pixels in YX, built chunk by chunk after level 0
is complete; reading takes the first multiscale's full-resolution level. Axes map between
NGFF names (``t``, ``c``, ``z``, ``y``, ``x``) and microdenoise letters
(``S`` for other names); the pixel size, Z step and time step are the
``scale`` coordinate transformation, with UDUNITS units (``micrometer``...).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .axes import ImageData, resolve_axes
from .errors import InputError

__all__ = ["CHUNK", "check_levels", "check_zarr_size", "create_zarr", "read_zarr",
           "set_processing", "write_zarr"]

CHUNK = 1024  # chunk size along Y and X; 1 along other axes
NGFF_VERSION = "0.4"
_TO_NGFF = {"µm": "micrometer", "um": "micrometer", "micron": "micrometer",
            "nm": "nanometer", "mm": "millimeter", "cm": "centimeter", "m": "meter",
            "s": "second", "ms": "millisecond", "min": "minute", "h": "hour"}
_FROM_NGFF = {"micrometer": "µm", "nanometer": "nm", "millimeter": "mm",
              "centimeter": "cm", "meter": "m", "angstrom": "Å"}
_TYPES = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}


def _multiscales(attrs: dict[str, Any]) -> list[Any] | None:
    found = attrs.get("multiscales")
    if found is None and isinstance(attrs.get("ome"), dict):  # NGFF 0.5 (Zarr v3)
        found = attrs["ome"].get("multiscales")
    return found if isinstance(found, list) and found else None


def read_zarr(path: Path, *, axes: str | None = None, lazy: bool = False) -> ImageData:
    """Read an OME-Zarr image as :class:`~microdenoise.io.ImageData`.

    ``lazy=True`` keeps the pixels in a (read-only) zarr array; index it to read.

    Raises
    ------
    InputError
        If the path is not a Zarr group with OME-NGFF ``multiscales`` metadata.
    """
    import zarr


    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001  (zarr raises several kinds)
        raise InputError(f"{path} is not an OME-Zarr image (no Zarr group: "
                         f"{type(exc).__name__}); pass the .ome.zarr folder itself") from None
    scales = _multiscales(dict(group.attrs))
    if scales is None:
        raise InputError(f"{path} is a Zarr group without OME-NGFF 'multiscales' metadata; "
                         "microdenoise reads OME-Zarr images (write them with microdenoise, "
                         "ome-zarr-py or bioformats2raw), or save the data as TIFF")
    ms = scales[0]
    try:
        dataset = ms["datasets"][0]
        array: Any = group[str(dataset["path"])]
        names = [str(a["name"] if isinstance(a, dict) else a).lower() for a in ms["axes"]]
    except (KeyError, IndexError, TypeError) as exc:
        raise InputError(f"{path}: invalid OME-NGFF multiscales metadata ({exc!r})") from None
    if not isinstance(array, zarr.Array):
        raise InputError(f"{path}: the first dataset of the multiscales is not an array")
    if len(names) != array.ndim:
        raise InputError(f"{path}: the metadata name {len(names)} axes but the array has "
                         f"{array.ndim} dimensions")
    units = [a.get("unit") if isinstance(a, dict) else None for a in ms["axes"]]
    scale = np.ones(array.ndim)
    for transforms in (dataset.get("coordinateTransformations"),
                       ms.get("coordinateTransformations")):
        for t in transforms or []:
            if t.get("type") == "scale" and len(t.get("scale", ())) == array.ndim:
                scale = scale * np.asarray(t["scale"], dtype=float)
    letters = "".join(n.upper() if n in ("t", "c", "z", "y", "x") else "S" for n in names)
    pixel_size, unit, meta = None, None, {}
    if letters.endswith("YX"):
        y, x = float(scale[-2]), float(scale[-1])
        unit = _FROM_NGFF.get(str(units[-1]), units[-1]) if units[-1] else None
        if unit is not None or (y, x) != (1.0, 1.0):
            pixel_size = (y, x)
        if "Z" in letters:
            meta["spacing"] = float(scale[letters.index("Z")])
        if "T" in letters and units[letters.index("T")] == "second":
            meta["finterval"] = float(scale[letters.index("T")])
    if np.dtype(array.dtype).kind not in "uif":
        raise InputError(f"{path} holds {array.dtype} values, not intensities")
    check_zarr_size(path, str(dataset["path"]), tuple(array.shape), np.dtype(array.dtype),
                    in_memory=not lazy)
    data: Any = array if lazy else np.asarray(array[...])
    final = resolve_axes(path, axes, letters, tuple(array.shape))
    return ImageData(data, final, pixel_size, unit, path, meta)


#: Declared sizes above which the stored chunks must hold at least 1/1000 of them:
#: below it a sparse image (chunks equal to the fill value are not written) passes.
SPARSE_OK_BYTES = 1 << 30


def check_zarr_size(path: Path, dataset: str, shape: tuple[int, ...], dtype: np.dtype, *,
                    in_memory: bool) -> None:
    """Refuse an OME-Zarr array whose metadata declare more pixels than memory holds
    (``in_memory``) or, above :data:`SPARSE_OK_BYTES`, over 1000 times the bytes its
    chunk files hold (a 1 KB folder declaring 149 GiB): before any pixel is read, as
    :func:`microdenoise.tiff_io.check_declared_size` does for TIFF headers."""
    from .tiff_io import check_declared_size

    declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    stored = 0
    if declared > SPARSE_OK_BYTES:
        for root, _, files in os.walk(path / dataset, followlinks=False):
            stored += sum(os.path.getsize(os.path.join(root, f)) for f in files
                          if os.path.isfile(os.path.join(root, f)))
    else:
        stored = declared  # small enough: only the memory check applies
    check_declared_size(path, shape, dtype, compressed=True, in_memory=in_memory,
                        on_disk=stored, kind="OME-Zarr")


def _attrs(axes: str, pixel_size: tuple[float, float] | None, unit: str | None,
           metadata: dict[str, Any], name: str, levels: int = 1) -> dict[str, Any]:
    space = _TO_NGFF.get(unit or "", unit) if unit else None
    entries, scale = [], []
    for letter in axes:
        entry: dict[str, Any] = {"name": letter.lower() if letter != "S" else "s"}
        if letter in _TYPES:
            entry["type"] = _TYPES[letter]
        value = 1.0
        if letter in "YX" and pixel_size is not None:
            value = float(pixel_size[0 if letter == "Y" else 1])
        elif letter == "Z" and metadata.get("spacing") is not None:
            value = float(metadata["spacing"])
        elif letter == "T" and metadata.get("finterval") is not None:
            value = float(metadata["finterval"])
            entry["unit"] = "second"
        if letter in "ZYX" and space:
            entry["unit"] = space
        entries.append(entry)
        scale.append(value)
    datasets = [{"path": str(k), "coordinateTransformations": [{"type": "scale", "scale": [
        v * 2**k if letter in "YX" else v for letter, v in zip(axes, scale, strict=True)]}]}
        for k in range(levels)]
    ms: dict[str, Any] = {"version": NGFF_VERSION, "name": name, "axes": entries,
                          "datasets": datasets}
    if levels > 1:
        ms.update(type="mean", metadata={"description": "2x2 mean in YX per level",
                                         "method": "microdenoise.zarr_io._downsample"})
    attrs: dict[str, Any] = {"multiscales": [ms]}
    if metadata.get("processing"):
        attrs["microdenoise"] = {"processing": str(metadata["processing"])}
    return attrs


def set_processing(array: Any, note: str) -> None:
    """Record ``note`` (what ran: e.g. what the default chose) in the attributes of the
    group holding ``array`` (one :func:`create_zarr` is writing)."""
    import zarr

    group = zarr.open_group(store=array.store, mode="r+", zarr_format=2)
    group.attrs["microdenoise"] = {"processing": note}


def check_levels(levels: int, shape: tuple[int, ...]) -> int:
    """``levels`` as an int if an image of ``shape`` has that many 2x levels (>= 1 px)."""
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer) or levels < 1:
        raise InputError(f"--pyramid takes a number of levels >= 1, got {levels!r}")
    most = int(min(shape[-2:])).bit_length()  # halving a side n gives >= 1 px this often
    if levels > most:
        raise InputError(f"--pyramid {levels}: a {shape[-2]}x{shape[-1]} image has at most "
                         f"{most} levels of 2x downsampling; use --pyramid {most} or fewer")
    return int(levels)


def _downsample(group: Any, level: int) -> None:
    """Write ``group[level]``: ``group[level - 1]`` averaged over 2x2 pixels, chunk by chunk.

    Odd sizes drop the last row or column (NGFF's scale doubles exactly); integer
    types are rounded to nearest.
    """
    src = group[str(level - 1)]
    ny, nx = src.shape[-2] // 2, src.shape[-1] // 2
    shape = (*src.shape[:-2], ny, nx)
    dst = group.create_array(str(level), shape=shape, dtype=src.dtype, chunks=_chunks(shape),
                             fill_value=0, chunk_key_encoding={"name": "v2", "separator": "/"})
    integer = np.dtype(src.dtype).kind in "ui"
    for index in np.ndindex(*shape[:-2]):
        for y in range(0, ny, CHUNK):
            for x in range(0, nx, CHUNK):
                h, w = min(CHUNK, ny - y), min(CHUNK, nx - x)
                block = np.asarray(src[(*index, slice(2 * y, 2 * (y + h)),
                                        slice(2 * x, 2 * (x + w)))], dtype=np.float64)
                mean = block.reshape(h, 2, w, 2).mean(axis=(1, 3))
                dst[(*index, slice(y, y + h), slice(x, x + w))] = (
                    np.rint(mean) if integer else mean).astype(src.dtype)


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(1 for _ in shape[:-2]) + tuple(min(CHUNK, n) for n in shape[-2:])


@contextlib.contextmanager
def create_zarr(
    path: str | Path,
    shape: tuple[int, ...],
    dtype: Any,
    *,
    axes: str,
    pixel_size: tuple[float, float] | None = None,
    unit: str | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    levels: int = 1,
) -> Iterator[Any]:
    """Create an OME-Zarr image and yield its (writable) full-resolution zarr array.

    The store is built in a temporary folder beside ``path`` and renamed to
    ``path`` when the ``with`` block ends without error (else it is removed).
    With ``levels > 1`` the lower resolutions are computed from the array
    once the block has filled it (see :func:`check_levels`).
    """
    import zarr

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite to replace it")
    if len(axes) > 5:
        raise InputError(f"OME-Zarr (NGFF {NGFF_VERSION}) holds at most 5 axes, got {axes!r}; "
                         "write a .tif instead")
    levels = check_levels(levels, shape)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(str(tmp), mode="w", zarr_format=2)
        group.attrs.update(_attrs(axes, pixel_size, unit, metadata or {}, path.name, levels))
        array = group.create_array("0", shape=shape, dtype=np.dtype(dtype),
                                   chunks=_chunks(shape), fill_value=0,
                                   chunk_key_encoding={"name": "v2", "separator": "/"})
        yield array
        for level in range(1, levels):
            _downsample(group, level)
        old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        old.unlink(missing_ok=True)
    except OSError as exc:
        raise InputError(f"could not write {path} ({exc.strerror or exc}); check that the "
                         "folder is writable and has free space") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_zarr(
    path: str | Path,
    data: np.ndarray,
    *,
    axes: str,
    pixel_size: tuple[float, float] | None = None,
    unit: str | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
    levels: int = 1,
) -> Path:
    """Write ``data`` (already in its output dtype) as a chunked OME-Zarr image
    with ``levels`` resolution levels (2x2 means in YX)."""
    with create_zarr(path, data.shape, data.dtype, axes=axes, pixel_size=pixel_size, unit=unit,
                     metadata=metadata, overwrite=overwrite, levels=levels) as array:
        array[...] = data
    return Path(path)
