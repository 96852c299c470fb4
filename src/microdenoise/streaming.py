"""Streaming tiled prediction: images larger than memory, tile by tile.

:func:`denoise_file_streamed` is what :func:`microdenoise.denoise_file` runs
when tiling is on (``tile=`` or ``max_memory=``). The input is opened without
loading it (:func:`open_image`: a read-only memory map of an uncompressed TIFF
or NPY, a zarr array of a compressed TIFF or an OME-Zarr); the output is a
TIFF pre-allocated on disk (``tifffile.memmap`` on a temporary file, renamed
when complete) or an OME-Zarr. In between:

1. one pass over the input in row bands checks it (NaN/Inf, constant) and
   computes the normalization per channel, globally: min/max exactly, the
   percentiles on the same seeded subsample as :meth:`Percentile.fit`, so the
   result equals :func:`microdenoise.denoise_array` with the same ``tile``;
2. zero-shot methods (FM2S, self-calibrating filters) are fitted once per
   plane on its central ``FIT_CROP`` x ``FIT_CROP`` pixels (the whole plane
   when smaller);
3. each tile is read, normalized, denoised, cropped, denormalized, converted
   and written; memory-mapped pages are released after each row of tiles, so
   the peak memory is about a row of tiles, not the image.

Methods that filter volumes (3D methods on Z/T stacks) and PNG files are read
whole and run through :func:`microdenoise.denoise_array`.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from . import io
from .errors import InputError
from .normalize import FixedRange, Identity, Normalizer, Percentile, _constant_error
from .registry import Denoiser
from .tiling import Tile, is_out_of_memory, plan_tiles, smaller_tile

__all__ = ["DEFAULT_BYTES_PER_PIXEL", "FIT_CROP", "denoise_file_streamed", "open_image",
           "parse_size", "tile_for_memory"]

FIT_CROP = 1024  # zero-shot methods fit on the central FIT_CROP x FIT_CROP pixels of a plane
DEFAULT_BYTES_PER_PIXEL = Denoiser.bytes_per_pixel  # when a method declares none
BASELINE_BYTES = 512 * 2**20  # the interpreter, numpy, torch, the method itself
BAND_PIXELS = 2**22  # pixels per row band in the statistics pass
P_LOW, P_HIGH, MAX_SAMPLES = 1.0, 99.8, 1_000_000  # Percentile.fit's defaults
_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20,
          "MIB": 2**20, "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40}


def parse_size(text: str | int) -> int:
    """Bytes in ``"2GB"``, ``"512MB"``, ``"1.5G"`` or a plain number of bytes (binary units)."""
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).upper() if match else ""
        if match is None or unit not in _UNITS:
            raise InputError(f"cannot read the memory size {text!r}: write e.g. 2GB or 512MB")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise InputError(f"the memory size must be positive, got {text!r}")
    return value


def tile_for_memory(max_memory: str | int, method: Denoiser, *, overlap: int = 0) -> int:
    """The largest tile (a multiple of 16, at most 8192) whose working set fits ``max_memory``.

    Model: ``BASELINE_BYTES + tile**2 * bytes_per_pixel``, where ``bytes_per_pixel``
    is the method's :attr:`~microdenoise.registry.Denoiser.bytes_per_pixel` (its
    measured peak working memory per tile pixel plus the pipeline's copies of the
    tile, see ``benchmarks/results/bytes_per_pixel.md``), else the conservative
    :data:`DEFAULT_BYTES_PER_PIXEL`.
    """
    budget = parse_size(max_memory)
    per_pixel = int(getattr(method, "bytes_per_pixel", DEFAULT_BYTES_PER_PIXEL))
    tile = math.isqrt(max(0, budget - BASELINE_BYTES) // max(1, per_pixel)) // 16 * 16
    smallest = (2 * overlap + 16) // 16 * 16 + 16
    if tile < smallest:
        need = BASELINE_BYTES + smallest**2 * per_pixel
        raise InputError(f"--max-memory {max_memory} is too small for {method.key} "
                         f"(about {need / 2**20:.0f} MB needed for one tile); give more")
    return min(tile, 8192)


def open_image(path: str | Path, *, axes: str | None = None) -> io.ImageData:
    """Open an image without loading its pixels where the format allows.

    ``data`` is a read-only :class:`numpy.memmap` (uncompressed TIFF, NPY), a
    zarr array (compressed or tiled TIFF, OME-Zarr) or, for PNG, an array.
    Index it to read a region. Axes, pixel size and metadata as :func:`read_image`.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".zarr" and path.is_dir():
        from .zarr_io import read_zarr

        return read_zarr(path, axes=axes, lazy=True)
    if ext not in (".tif", ".tiff", ".npy") or not path.is_file() or path.stat().st_size == 0:
        return io.read_image(path, axes=axes)  # PNG or an error message
    try:
        if ext == ".npy":
            data = np.load(path, mmap_mode="r", allow_pickle=False)
            guess = {2: "YX", 3: "SYX"}.get(data.ndim)
            if data.dtype.kind not in "uif" or (guess is None and axes is None) or (
                    data.ndim == 3 and data.shape[-1] in (3, 4)):
                return io.read_image(path, axes=axes)  # colour or odd arrays: read_image's rules
            final = io.check_axes(axes or str(guess), ndim=data.ndim, shape=data.shape,
                                  source=str(path))
            return io.ImageData(data, final, path=path)
        data, file_axes, (size, unit, meta) = io._read_tiff(path, axes, lazy=True)
    except (InputError, ValueError, OSError):
        return io.read_image(path, axes=axes)  # the full reader words its errors
    if data.dtype.kind not in "uif" or 0 in data.shape:
        return io.read_image(path, axes=axes)
    final = io.resolve_axes(path, axes, file_axes, tuple(data.shape))
    return io.ImageData(data, final, size, unit, path, meta)


def _release(*arrays: Any) -> None:
    """Drop memory-mapped pages from this process (written pages are flushed first)."""
    for arr in arrays:
        mm = getattr(arr, "_mmap", None)
        if mm is None:
            continue
        if getattr(arr, "mode", "r") != "r":
            arr.flush()
        with contextlib.suppress(OSError, ValueError, AttributeError):
            mm.madvise(mmap.MADV_DONTNEED)


def _bands(source: Any, index: tuple[int, ...]) -> Iterator[tuple[int, np.ndarray]]:
    """Row bands of the plane ``source[index]``: (first row, band as an array)."""
    ny, nx = source.shape[-2:]
    rows = max(1, BAND_PIXELS // nx)
    for r0 in range(0, ny, rows):
        yield r0, np.asarray(source[(*index, slice(r0, r0 + rows), slice(None))])
        _release(source)


def _normalizers(source: Any, kind: str, units: list[tuple[int, ...]], cax: int | None,
                 channels: int) -> list[Normalizer]:
    """Check the image and compute each channel's normalizer in one pass over the data."""
    from .pipeline import MIN_SIZE, _chan

    ny, nx = source.shape[-2:]
    if ny < MIN_SIZE or nx < MIN_SIZE:
        raise InputError(f"the image is {ny}x{nx} pixels; microdenoise needs at least "
                         f"{MIN_SIZE}x{MIN_SIZE}")
    per_plane = ny * nx
    planes = [[u for u in units if _chan(u, cax) == c] for c in range(channels)]
    picks: list[np.ndarray | None] = []
    for group in planes:  # the same subsample as Percentile.fit on np.take(image, c, cax)
        n = len(group) * per_plane
        picks.append(np.sort(np.random.default_rng(0).integers(0, n, size=MAX_SAMPLES))
                     if kind == "percentile" and n > MAX_SAMPLES else None)
    lows, highs = [math.inf] * channels, [-math.inf] * channels
    samples: list[list[np.ndarray]] = [[] for _ in range(channels)]
    bad = 0
    for c, group in enumerate(planes):
        for k, index in enumerate(group):
            for r0, band in _bands(source, index):
                if band.dtype.kind == "f":
                    bad += int(np.count_nonzero(~np.isfinite(band)))
                lows[c] = min(lows[c], float(band.min()))
                highs[c] = max(highs[c], float(band.max()))
                if kind != "percentile":
                    continue
                pick = picks[c]
                start = k * per_plane + r0 * nx
                if pick is None:
                    samples[c].append(band.astype(np.float64).ravel())
                else:
                    lo, hi = np.searchsorted(pick, [start, start + band.size])
                    samples[c].append(band.ravel()[pick[lo:hi] - start].astype(np.float64))
    if bad:
        raise InputError(f"the image has {bad} NaN/Inf pixel(s); replace them (e.g. by the "
                         "median of their neighbours) before denoising")
    if min(lows) == max(highs):
        raise InputError(f"the image is constant (every pixel = {min(lows):g}): there is no "
                         "signal or noise to separate")
    norms: list[Normalizer] = []
    for c in range(channels):
        if kind == "none":
            norms.append(Identity())
        elif kind == "unit" and source.dtype == np.uint8:
            norms.append(FixedRange(0.0, 255.0))
        elif kind == "unit":
            if not highs[c] > lows[c]:
                raise _constant_error(lows[c])
            norms.append(FixedRange(lows[c], highs[c]))
        elif kind == "percentile":
            low, high = (float(v) for v in np.percentile(np.concatenate(samples[c]),
                                                         [P_LOW, P_HIGH]))
            if not high > low:
                low, high = lows[c], highs[c]
                if not high > low:
                    raise _constant_error(low)
            norms.append(Percentile(low, high))
        else:
            raise InputError(f"unknown normalization {kind!r}: use unit, percentile or none")
    return norms


def _central(source: Any, index: tuple[int, ...], norm: Normalizer) -> np.ndarray:
    """The normalized central FIT_CROP x FIT_CROP pixels of a plane (all of a small one)."""
    ny, nx = source.shape[-2:]
    y, x = max(0, (ny - FIT_CROP) // 2), max(0, (nx - FIT_CROP) // 2)
    crop = norm(np.asarray(source[(*index, slice(y, y + FIT_CROP), slice(x, x + FIT_CROP))]))
    _release(source)
    return crop


def denoise_streamed(
    source: Any,
    sink: Any,
    den: Denoiser,
    *,
    axes: str,
    tile: int,
    overlap: int,
    refit: bool,
    fit_on: int | None = None,
    convert: Callable[[np.ndarray], np.ndarray] = lambda a: a,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Denoise the array-like ``source`` into ``sink`` (same shape) tile by tile, plane by plane.

    ``den`` is a 2D method; ``refit``: fit it on each plane's central crop (zero-shot);
    ``convert`` maps each denoised float32 tile to the output type.
    """
    from .pipeline import _chan

    cax = axes.index("C") if "C" in axes else None
    channels = source.shape[cax] if cax is not None else 1
    units = list(np.ndindex(*source.shape[:-2]))
    norms = _normalizers(source, den.normalization, units, cax, channels)
    if refit and fit_on is not None:
        picks = np.linspace(0, len(units) - 1, min(fit_on, len(units))).round().astype(int)
        den.fit(np.concatenate([_central(source, units[i], norms[_chan(units[i], cax)])
                                for i in picks], axis=-1))
        refit = False
    for index in units:
        norm = norms[_chan(index, cax)]
        if refit:
            den.fit(_central(source, index, norm))
        tile = max(tile, 2 * overlap + den.tile_multiple)  # aligned tiles keep their context
        while True:  # out of GPU memory: halve the tile and redo the plane
            try:
                _plane(source, sink, den, index, norm, convert,
                       plan_tiles(source.shape[-2:], tile=tile, overlap=overlap,
                                  multiple=den.tile_multiple))
                break
            except Exception as exc:
                if not is_out_of_memory(exc):
                    raise
            tile = smaller_tile(tile, overlap, multiple=den.tile_multiple, shape=source.shape)
        if progress is not None:
            progress(1)


def _plane(source: Any, sink: Any, den: Denoiser, index: tuple[int, ...], norm: Normalizer,
           convert: Callable[[np.ndarray], np.ndarray], plan: list[Tile]) -> None:
    """Denoise the plane ``source[index]`` into ``sink[index]`` tile by tile."""
    for k, spec in enumerate(plan):
        piece = norm(np.asarray(source[(*index, *spec.source)]))
        result = np.asarray(den.denoise(piece), dtype=np.float32)
        if result.shape != piece.shape:
            raise ValueError(f"{den.key} returned shape {result.shape} for a tile of shape "
                             f"{piece.shape}: it must return an array of the same shape")
        sink[(*index, *spec.target)] = convert(norm.inverse(result[spec.crop]))
        if k + 1 == len(plan) or plan[k + 1].target[0] != spec.target[0]:
            _release(source, sink)  # a row of tiles is done


def denoise_file_streamed(
    path: str | Path,
    target: str | Path,
    method: str | Denoiser = "fm2s",
    *,
    dtype: str = "float32",
    overwrite: bool = False,
    axes: str | None = None,
    max_memory: str | int | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    preset: str | None = None,
    params: dict[str, Any] | None = None,
    device: str = "auto",
    seed: int | None = None,
    fit_on: int | None = None,
    progress: Callable[[int], None] | None = None,
    pyramid: int = 1,
) -> Path:
    """Denoise the file ``path`` into the file ``target`` tile by tile, in bounded memory.

    Like :func:`microdenoise.denoise_file` (which calls this when ``tile`` or
    ``max_memory`` is given); ``tile`` defaults to :func:`tile_for_memory`. With
    ``pyramid=N`` (OME-Zarr) the lower levels are built after level 0 is written.
    """
    from .pipeline import _prepare, _volume_axis, denoise_array

    path, target = Path(path), Path(target)
    den, fresh = _prepare(method, preset, params, seed)
    if hasattr(den, "device"):
        den.device = device
    rf = den.receptive_field
    if overlap is not None and overlap < rf:
        raise InputError(f"--overlap {overlap} is below {den.key}'s receptive field ({rf} px): "
                         f"tiles would show seams; use --overlap {rf} or more")
    ov = rf if overlap is None else overlap
    if tile is None:
        tile = tile_for_memory(max_memory if max_memory is not None else "2GB", den, overlap=ov)
    if fit_on is not None and fit_on < 1:
        raise InputError("--fit-on must be at least 1")
    img = open_image(path, axes=axes)
    source = img.data
    volume = den.supports_3d and _volume_axis(img.axes) is not None
    if volume or target.suffix.lower() not in (".tif", ".tiff", ".zarr"):
        result = denoise_array(np.asarray(source), method, preset=preset, params=params,
                               axes=img.axes, tile=tile, overlap=ov, device=device, seed=seed,
                               fit_on=fit_on, progress=progress)
        return io.write_image(target, result, axes=img.axes, pixel_size=img.pixel_size,
                              unit=img.unit, metadata=img.metadata, dtype=dtype,
                              source_dtype=source.dtype, overwrite=overwrite, levels=pyramid)
    if pyramid != 1 and target.suffix.lower() != ".zarr":
        raise InputError(f"a pyramid of {pyramid} levels needs an OME-Zarr output (.ome.zarr), "
                         f"not {target.suffix}")
    if tile <= 2 * ov:
        raise InputError(f"--tile {tile} must be larger than twice the overlap ({ov} px)")
    out_dtype = io._target_dtype(dtype, source.dtype)
    refit = fresh and (den.zero_shot or bool(getattr(den.config, "calibrate", False))
                       or bool(getattr(den.config, "fit_per_image", False)))
    options: dict[str, Any] = {"axes": img.axes, "tile": tile, "overlap": ov, "refit": refit,
                               "fit_on": fit_on, "progress": progress,
                               "convert": lambda a: io._convert(a, out_dtype)}
    if target.suffix.lower() == ".zarr":
        from . import zarr_io

        with zarr_io.create_zarr(target, source.shape, out_dtype, axes=img.axes,
                                 pixel_size=img.pixel_size, unit=img.unit,
                                 metadata=img.metadata, overwrite=overwrite,
                                 levels=pyramid) as sink:
            denoise_streamed(source, sink, den, **options)
        return target
    return _write_tiff_streamed(target, source, den, img, out_dtype, overwrite, options)


def _write_tiff_streamed(target: Path, source: Any, den: Denoiser, img: io.ImageData,
                         out_dtype: np.dtype, overwrite: bool, options: dict[str, Any]) -> Path:
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists; pass --overwrite to replace it")
    nbytes = int(np.prod(source.shape)) * out_dtype.itemsize
    kwargs = io._tiff_options(img.axes, out_dtype, nbytes, img.pixel_size, img.unit,
                              img.metadata)
    with io.atomic_file(target) as tmp:
        sink = tifffile.memmap(tmp, shape=source.shape, dtype=out_dtype, **kwargs)
        try:
            denoise_streamed(source, sink, den, **options)
            sink.flush()
        finally:
            del sink
    return target
