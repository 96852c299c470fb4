"""Reading and writing images: the format-independent API, and PNG and NPY.

Every image file is opened through this module. :func:`read_image` and
:func:`write_image` check paths, dtypes and axes, handle PNG and NPY
themselves, and dispatch TIFF (ImageJ, OME, plain) to
:mod:`microdenoise.tiff_io` and OME-Zarr to :mod:`microdenoise.zarr_io`;
``read_image(write_image(...))`` gives back the same data, axes, pixel size,
unit and metadata. Image size and values (NaN, tiny images) are the
pipeline's business, not this module's. Also here: dtype conversion
(:func:`target_dtype`, :func:`convert`) and file lists (:func:`list_images`,
:func:`same_file`, :func:`is_zarr`). Re-exported: :class:`ImageData`,
:func:`check_axes`, :func:`resolve_axes` (from :mod:`microdenoise.axes`),
:func:`atomic_file`, :func:`remove_stale_partials` (from :mod:`microdenoise.atomic`),
:func:`read_tiff`, :func:`tiff_plan` (from :mod:`microdenoise.tiff_io`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
from numpy.typing import DTypeLike

from .atomic import atomic_file, remove_stale_partials
from .axes import AXES_LETTERS, ImageData, check_axes, drop_colour, resolve_axes
from .errors import InputError, NoticeWarning
from .tiff_io import Calibration, read_tiff, tiff_plan, write_tiff
from .tiff_out import drop_display

__all__ = ["AXES_LETTERS", "SUPPORTED_EXTENSIONS", "ImageData", "check_axes", "convert",
           "atomic_file", "is_ome_name", "is_zarr", "list_images", "read_image", "read_tiff",
           "remove_stale_partials", "resolve_axes", "same_file", "target_dtype", "tiff_plan",
           "write_image"]

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy", ".zarr")
_FORMAT = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".npy": "NPY", ".zarr": "OME-Zarr"}
_PNG_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16))


def _ext(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputError(f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; "
                         f"use one of {', '.join(SUPPORTED_EXTENSIONS)}")
    return ext


def is_zarr(path: str | Path) -> bool:
    """True for a ``.zarr`` path (an OME-Zarr image is a folder, read as one image)."""
    return Path(path).suffix.lower() == ".zarr"


def is_ome_name(path: str | Path) -> bool:
    """True for ``*.ome.tif``/``*.ome.tiff`` names: such outputs are written as OME-TIFF."""
    return Path(path).name.lower().endswith((".ome.tif", ".ome.tiff"))


def _real_dtype(dtype: np.dtype) -> bool:
    return dtype != np.bool_ and (np.issubdtype(dtype, np.integer)
                                  or np.issubdtype(dtype, np.floating))


def read_image(path: str | Path, *, axes: str | None = None) -> ImageData:
    """Read a TIFF (incl. ImageJ and OME-TIFF), PNG, NPY or OME-Zarr image.

    Parameters
    ----------
    path : str or pathlib.Path
        The image file.
    axes : str, optional
        The axes of the data, overriding the file's (e.g. ``"TYX"``). Default:
        from the TIFF metadata; ``"YX"`` for 2D and ``"SYX"`` for 3D PNG/NPY.

    Returns
    -------
    ImageData
        The pixels in the file's dtype, with axes, pixel size, unit and metadata.

    Raises
    ------
    InputError
        If the file is missing, empty, unreadable or of an unsupported type, is
        not a real-valued single-channel image, or ``axes`` does not fit it.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path")
    if is_zarr(path):
        from .zarr_io import read_zarr

        return read_zarr(path, axes=axes)
    if path.is_dir():
        raise InputError(f"{path} is a folder; pass an image file")
    ext = _ext(path)
    if path.stat().st_size == 0:
        raise InputError(f"{path} is empty (0 bytes); export or copy the image again")
    file_axes: str | None = None
    calibration: Calibration = (None, None, {})
    try:
        if ext == ".npy":
            data = np.load(path, allow_pickle=False)
        elif ext == ".png":
            data = iio.imread(path, extension=".png")
        else:
            data, file_axes, calibration = read_tiff(path, axes)
        data = np.asarray(data)
    except InputError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise InputError(f"could not read {path} as {_FORMAT[ext]} ({reason}); the file may "
                         "be corrupt or truncated") from exc
    if np.issubdtype(data.dtype, np.complexfloating):
        raise InputError(f"{path} holds complex numbers ({data.dtype}); save the magnitude or "
                         "the real part as a real-valued image")
    if not _real_dtype(data.dtype):
        raise InputError(f"{path} holds {data.dtype} values, not intensities; microdenoise "
                         "reads integer or floating-point images")
    if data.size == 0:
        raise InputError(f"{path} contains no pixels (shape {data.shape}); check the file")
    if ext == ".png" and data.ndim == 3:  # PNG channels: gray + alpha, RGB or RGBA
        data, file_axes = drop_colour(path, data, 2), "YX"
    elif file_axes is None and axes is None:  # NPY: guess
        if data.ndim == 3 and data.shape[-1] in (3, 4) and min(data.shape[:2]) > 4:
            data, file_axes = drop_colour(path, data, 2), "YX"
        elif data.ndim in (2, 3):
            file_axes = "YX" if data.ndim == 2 else "SYX"
        else:
            raise InputError(f"{path} has {data.ndim} dimensions of shape {data.shape}; say "
                             "what they are with axes= (e.g. 'TZYX') or --axes")
    known = file_axes if ext in (".tif", ".tiff") else None  # PNG/NPY axes are guesses
    final = resolve_axes(path, axes, known if axes is not None else file_axes, data.shape)
    return ImageData(data, final, calibration[0], calibration[1], path, calibration[2])


def target_dtype(dtype: str, source_dtype: DTypeLike | None) -> np.dtype:
    spec: DTypeLike = dtype
    if dtype == "same":
        if source_dtype is None:
            raise InputError("dtype='same' needs the input's dtype; pass source_dtype=")
        spec = source_dtype
    try:
        target = np.dtype(spec)
    except TypeError:
        target = np.dtype(object)
    if not _real_dtype(target):
        raise InputError(f"cannot write images as {spec!r}; use 'float32', 'same', 'uint8', "
                         "'uint16' or another real numeric dtype")
    return target


def convert(data: np.ndarray, target: np.dtype) -> np.ndarray:
    """Cast to ``target``; integer targets are rounded (np.rint) and clipped."""
    if not np.issubdtype(target, np.integer) or np.can_cast(data.dtype, target):
        return data.astype(target, copy=False)
    values = data.astype(np.float64)
    if np.isnan(values).any():
        raise InputError(f"the image contains NaN, which {target} cannot hold; "
                         "write float32 (dtype='float32') instead")
    info = np.iinfo(target)
    return np.clip(np.rint(values), info.min, info.max).astype(target)


def write_image(
    path: str | Path,
    data: np.ndarray,
    *,
    axes: str = "YX",
    pixel_size: tuple[float, float] | None = None,
    unit: str | None = None,
    metadata: dict[str, Any] | None = None,
    dtype: str = "float32",
    source_dtype: DTypeLike | None = None,
    overwrite: bool = False,
    levels: int = 1,
) -> Path:
    """Write an image atomically (temporary file, then rename) as TIFF, PNG, NPY or OME-Zarr.

    TIFF is an ImageJ hyperstack when the axes are ImageJ's (T, Z, C, Y, X, in
    any order: stored in TZCYX order, read back in the given one), the dtype is
    uint8, uint16 or float32 and the data are under 4 GB; else, and for
    ``*.ome.tif(f)`` names, an OME-TIFF (BigTIFF above 4 GB); a plain TIFF whose
    description records the axes for axes with S or 64-bit integers (see
    :mod:`microdenoise.tiff_out`). :func:`read_image` gives back the same data,
    axes, pixel size, unit and metadata. PNG holds one 2D uint8/uint16 plane;
    NPY holds the array only. ImageJ display ranges and LUTs in ``metadata``
    (``"ranges"``, ``"luts"``) are kept in ImageJ TIFFs; a
    :class:`~microdenoise.errors.FormatWarning` says when they are dropped.

    Parameters
    ----------
    path : str or pathlib.Path
        Output file; the extension picks the format. Missing folders are created.
    data : numpy.ndarray
        The image, with ``axes`` (letters from ``"STCZYX"``).
    pixel_size, unit, metadata
        ``(y, x)`` pixel size in ``unit``; ``{"spacing", "finterval", "ranges",
        "luts"}`` to record.
    dtype : str
        ``"float32"``, ``"same"`` (``source_dtype``) or a numpy dtype name; integer
        outputs are rounded (``np.rint``) and clipped. PNG falls back to a
        uint8/uint16 ``source_dtype`` when ``dtype`` is neither.
    overwrite : bool
        Replace an existing file (check :func:`same_file` against the input first).
    levels : int
        OME-Zarr only: resolution levels to write (a pyramid of 2x2 means in YX).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputError
        If the file exists (without ``overwrite``), the extension, dtype, axes
        or pixel size are not supported, or the file cannot be written.
    """
    path = Path(path)
    if path.is_dir() and not is_zarr(path):
        raise InputError(f"{path} is a folder; give a file name for the output")
    ext = _ext(path)
    data = np.asarray(data)
    axes = check_axes(axes, ndim=data.ndim, shape=data.shape)
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite to replace it")
    if pixel_size is not None and (np.shape(pixel_size) != (2,) or not all(
            math.isfinite(v) and v > 0 for v in pixel_size)):
        raise InputError(f"pixel size must be two positive numbers (y, x), got {pixel_size}")
    target = target_dtype(dtype, source_dtype)
    if levels != 1 and ext != ".zarr":
        raise InputError(f"a pyramid of {levels} levels needs an OME-Zarr output (.ome.zarr), "
                         f"not {ext}")
    if ext == ".png":
        if data.ndim != 2:
            raise InputError(f"PNG holds one 2D image but the data have axes {axes!r}; "
                             "write a .tif instead")
        if target not in _PNG_DTYPES:
            source = None if source_dtype is None else np.dtype(source_dtype)
            if source not in _PNG_DTYPES:
                raise InputError(f"PNG stores only uint8 or uint16, not {target}; pass "
                                 "dtype='uint8' or 'uint16', or write a .tif")
            target = np.dtype(source)
    out = convert(data, target)
    if ext != ".tif" and ext != ".tiff":
        drop_display(metadata or {}, _FORMAT[ext])
    if ext == ".zarr":
        from .zarr_io import write_zarr

        return write_zarr(path, out, axes=axes, pixel_size=pixel_size, unit=unit,
                          metadata=metadata, overwrite=overwrite, levels=levels)
    with atomic_file(path) as tmp:
        if ext == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, out, allow_pickle=False)
        elif ext == ".png":
            iio.imwrite(tmp, out, extension=".png")
        else:
            write_tiff(tmp, out, axes, pixel_size, unit, metadata or {}, ome=is_ome_name(path))
    return path


def same_file(a: str | Path, b: str | Path) -> bool:
    """Return True if ``a`` and ``b`` name the same file (symlinks resolved)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def list_images(paths: Iterable[str | Path], *, recursive: bool = False) -> list[Path]:
    """Expand folders into their images (sorted, hidden files skipped).

    Files are kept as given (a file named twice is listed once). Subfolders are
    searched only with ``recursive=True``; files of unsupported types in a folder,
    and subfolders not searched, are named in a
    :class:`~microdenoise.errors.NoticeWarning` (one per folder), never dropped silently.

    Raises
    ------
    InputError
        If a path does not exist, a file's type is not supported, or a folder
        holds no images.
    """
    found: dict[Path, Path] = {}
    for item in paths:
        p = Path(item)
        if not p.exists():
            raise InputError(f"{p} does not exist; check the path")
        if p.is_dir() and not is_zarr(p):
            images = _folder_images(p, recursive=recursive)
        else:
            _ext(p)
            images = [p]
        for f in images:
            found.setdefault(f.resolve(), f)
    return list(found.values())


def _folder_images(folder: Path, *, recursive: bool) -> list[Path]:
    images: list[Path] = []
    others: list[Path] = []
    subfolders: list[Path] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        for f in sorted(current.iterdir()):
            if f.name.startswith("."):
                continue
            if f.is_dir() and not is_zarr(f):
                (pending if recursive else subfolders).append(f)
            elif f.suffix.lower() in SUPPORTED_EXTENSIONS and (f.is_file() or is_zarr(f)):
                images.append(f)
            else:
                others.append(f)
    images.sort()
    if others:
        names = ", ".join(str(f.relative_to(folder)) for f in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        warnings.warn(f"folder {folder}: skipped {len(others)} file(s) of unsupported type "
                      f"({names}{more}); images are {', '.join(SUPPORTED_EXTENSIONS)}",
                      NoticeWarning, stacklevel=3)
    if not images and subfolders:
        raise InputError(f"folder {folder} holds only subfolders ({len(subfolders)}: "
                         f"{', '.join(f.name for f in subfolders[:3])}"
                         f"{', ...' if len(subfolders) > 3 else ''}), no images; add "
                         "--recursive (recursive=True) to search them")
    if not images:
        raise InputError(f"folder {folder} contains no images "
                         f"({', '.join(SUPPORTED_EXTENSIONS)})")
    if subfolders:
        warnings.warn(f"folder {folder}: {len(subfolders)} subfolder(s) not searched "
                      f"({', '.join(f.name for f in subfolders[:3])}"
                      f"{', ...' if len(subfolders) > 3 else ''}); add --recursive to "
                      "include them", NoticeWarning, stacklevel=3)
    return images
