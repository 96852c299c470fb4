"""Reading and writing images: TIFF (ImageJ, OME, plain), PNG and NPY.

The only module that opens image files. ``read_image(write_image(...))``
gives back the same data, axes, pixel size, unit and metadata. Image size and
values (NaN, tiny images) are the pipeline's business, not this module's.
"""

from __future__ import annotations

import contextlib
import math
import os
import uuid
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import tifffile
from numpy.typing import DTypeLike

from .errors import AxesWarning, InputError

__all__ = ["AXES_LETTERS", "SUPPORTED_EXTENSIONS", "ImageData", "check_axes", "convert",
           "is_zarr", "list_images", "read_image", "read_tiff", "same_file", "target_dtype",
           "tiff_options", "write_image"]

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy", ".zarr")
AXES_LETTERS = "STCZYX"
_FORMAT = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".npy": "NPY", ".zarr": "OME-Zarr"}
_IMAGEJ_DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
_CARRIED = ("spacing", "finterval")  # metadata keys carried from input to output
_AXES_KEY = "microdenoise_axes"  # in ImageJ descriptions: keeps size-1 axes
_PX_KEY = "microdenoise_pixel_size"  # exact "y x" (resolution tags are rationals)
_UM_PER = {"nm": 1e-3, "µm": 1.0, "um": 1.0, "micron": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}
_RGB_MESSAGE = (
    "{} is an RGB image; microdenoise denoises single-channel fluorescence images: split "
    "the channels (e.g. in Fiji: Image > Color > Split Channels) and denoise each"
)

Calibration = tuple[tuple[float, float] | None, str | None, dict[str, Any]]


@dataclass(frozen=True, eq=False)
class ImageData:
    """An image with its axes and calibration.

    Attributes
    ----------
    data : numpy.ndarray
        The pixels, in the file's own dtype.
    axes : str
        One letter per dimension of ``data`` from ``"STCZYX"`` (S = sample), ending in YX.
    pixel_size : tuple of float or None
        ``(y, x)`` pixel size in ``unit``; None when the file is not calibrated.
    unit : str or None
        Unit of ``pixel_size`` (``"µm"``, ``"nm"``, ...); None when unknown.
    path : pathlib.Path or None
        The file the image was read from.
    metadata : dict
        ImageJ/OME information worth carrying to the output: ``"spacing"`` (Z
        step, in ``unit``) and ``"finterval"`` (time step, s), when known.
    """

    data: np.ndarray
    axes: str
    pixel_size: tuple[float, float] | None = None
    unit: str | None = None
    path: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        axes = check_axes(self.axes, ndim=self.data.ndim, shape=self.data.shape)
        object.__setattr__(self, "axes", axes)


def check_axes(
    axes: str, *, ndim: int | None = None, shape: tuple[int, ...] = (), source: str = "the image"
) -> str:
    """Return ``axes`` upper-cased after checking it.

    Letters must come from ``"STCZYX"``, each at most once, ending in ``"YX"``,
    and number ``ndim`` if given (``shape`` and ``source`` describe the data in
    the :class:`InputError` raised otherwise).
    """
    up = str(axes).upper()
    if set(up) - set(AXES_LETTERS) or len(set(up)) != len(up) or not up.endswith("YX"):
        raise InputError(f"invalid axes {axes!r}: use letters from {AXES_LETTERS} (S = sample),"
                         " each at most once, ending in YX, e.g. 'YX', 'ZYX' or 'TCYX'")
    if ndim is not None and len(up) != ndim:
        dims = f" of shape {tuple(shape)}" if shape else ""
        raise InputError(f"{source} has {ndim} dimensions{dims} but the axes given ({up!r}) "
                         f"have {len(up)} letters; give one letter per dimension")
    return up


def _ext(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InputError(f"{path}: unsupported file type {path.suffix or '(no extension)'!r}; "
                         f"use one of {', '.join(SUPPORTED_EXTENSIONS)}")
    return ext


def is_zarr(path: str | Path) -> bool:
    """True for a ``.zarr`` path (an OME-Zarr image is a folder, read as one image)."""
    return Path(path).suffix.lower() == ".zarr"


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
        data, file_axes = _drop_colour(path, data, 2), "YX"
    elif file_axes is None and axes is None:  # NPY: guess
        if data.ndim == 3 and data.shape[-1] in (3, 4) and min(data.shape[:2]) > 4:
            data, file_axes = _drop_colour(path, data, 2), "YX"
        elif data.ndim in (2, 3):
            file_axes = "YX" if data.ndim == 2 else "SYX"
        else:
            raise InputError(f"{path} has {data.ndim} dimensions of shape {data.shape}; say "
                             "what they are with axes= (e.g. 'TZYX') or --axes")
    known = file_axes if ext in (".tif", ".tiff") else None  # PNG/NPY axes are guesses
    final = resolve_axes(path, axes, known if axes is not None else file_axes, data.shape)
    return ImageData(data, final, calibration[0], calibration[1], path, calibration[2])


def resolve_axes(path: Path, given: str | None, found: str | None, shape: tuple[int, ...]) -> str:
    """The axes to use: ``given`` (checked) over the file's ``found`` (from its metadata).

    When both are known and differ, an :class:`AxesWarning` names both; if the
    given ones do not have one letter per dimension, an :class:`InputError` does.
    ``found`` with ``S`` (unknown axes) is a guess, not metadata: no warning.
    """
    if given is None:
        return check_axes(str(found), ndim=len(shape), shape=shape, source=str(path))
    up = check_axes(given)
    if found and "S" not in found and up != found:
        if len(up) != len(shape):
            raise InputError(f"{path}: the file's metadata give axes {found!r} (shape "
                             f"{tuple(shape)}) but the axes given are {up!r} ({len(up)} "
                             "letters); leave out --axes to use the file's, or give one "
                             "letter per dimension")
        warnings.warn(f"{path}: the file's metadata give axes {found!r}; using the axes "
                      f"given, {up!r}", AxesWarning, stacklevel=3)
    return check_axes(up, ndim=len(shape), shape=shape, source=str(path))


def _drop_colour(path: Path, data: np.ndarray, axis: int) -> np.ndarray:
    """Return the one channel of a gray image stored as RGB(A) or gray + alpha."""
    colour = np.moveaxis(data, axis, 0)
    n = 1 if colour.shape[0] == 2 else min(colour.shape[0], 3)  # alpha is not a colour
    if all(np.array_equal(colour[0], colour[i]) for i in range(1, n)):
        return np.ascontiguousarray(colour[0])
    raise InputError(_RGB_MESSAGE.format(path))


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
                data = _drop_colour(path, np.asarray(data), letters.index("S"))
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

    TIFF is an ImageJ hyperstack when the axes are in ImageJ order (a
    subsequence of ``TZCYX``) and the dtype is uint8, uint16 or float32, else a
    plain TIFF whose description records the axes; :func:`read_image` gives
    back the same data, axes, pixel size, unit and metadata. PNG holds one 2D
    uint8/uint16 plane; NPY holds the array only.

    Parameters
    ----------
    path : str or pathlib.Path
        Output file; the extension picks the format. Missing folders are created.
    data : numpy.ndarray
        The image, with ``axes`` (letters from ``"STCZYX"``).
    pixel_size, unit, metadata
        ``(y, x)`` pixel size in ``unit``; ``{"spacing", "finterval"}`` to record.
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
        if target not in _IMAGEJ_DTYPES[:2]:
            source = None if source_dtype is None else np.dtype(source_dtype)
            if source not in _IMAGEJ_DTYPES[:2]:
                raise InputError(f"PNG stores only uint8 or uint16, not {target}; pass "
                                 "dtype='uint8' or 'uint16', or write a .tif")
            target = np.dtype(source)
    out = convert(data, target)
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
            _write_tiff(tmp, out, axes, pixel_size, unit, metadata or {})
    return path


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary name beside ``path``; rename it to ``path`` when the block succeeds.

    The folder is created first. On any failure the temporary file is removed, so no
    partial output is ever left, and OS errors (disk full, no permission) become
    :class:`InputError`.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder {path.parent} ({exc.strerror}); "
                         "choose another output location") from exc
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"could not write {path} ({exc.strerror or exc}); check that the "
                         "folder is writable and has free space") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _write_tiff(
    path: Path,
    data: np.ndarray,
    axes: str,
    pixel_size: tuple[float, float] | None,
    unit: str | None,
    metadata: dict[str, Any],
) -> None:
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


def same_file(a: str | Path, b: str | Path) -> bool:
    """Return True if ``a`` and ``b`` name the same file (symlinks resolved)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def list_images(paths: Iterable[str | Path]) -> list[Path]:
    """Expand folders into their images (sorted, not recursive, hidden files skipped).

    Files are kept as given (a file named twice is listed once).

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
            images = sorted(f for f in p.iterdir() if (f.is_file() or is_zarr(f))
                            and not f.name.startswith(".")
                            and f.suffix.lower() in SUPPORTED_EXTENSIONS)
            if not images:
                raise InputError(f"folder {p} contains no images "
                                 f"({', '.join(SUPPORTED_EXTENSIONS)})")
        else:
            _ext(p)
            images = [p]
        for f in images:
            found.setdefault(f.resolve(), f)
    return list(found.values())
