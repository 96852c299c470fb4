"""Streaming tiled prediction: images larger than memory, tile by tile.

:func:`denoise_file_streamed` is what :func:`microdenoise.denoise_file` runs
when tiling is on (``tile=`` or ``max_memory=``). The input is opened without
loading it (:func:`open_image`: a read-only memory map of an uncompressed TIFF
or NPY, a zarr array of a compressed TIFF or an OME-Zarr); the output is a
TIFF pre-allocated on disk (``tifffile.memmap`` on a temporary file, laid out as
:func:`microdenoise.io.write_image` lays it out, renamed when complete) or an
OME-Zarr. In between runs the same prediction core as
:func:`microdenoise.denoise_array` (:func:`microdenoise.core.run`), so the
result equals the in-memory one with the same ``tile``:

1. one pass over the input in row bands checks it (NaN/Inf, constant) and
   computes the normalization per channel, globally;
2. methods fitted per image (FM2S, self-calibrating filters) are fitted on each
   whole plane (that plane is held in memory while fitting; ``fit_on`` fits once);
3. each tile is read, normalized, denoised, cropped, denormalized, converted
   and written; memory-mapped pages are released after each row of tiles, so
   the peak memory is about a row of tiles, not the image. 3D methods read
   their ZYX volumes tile by tile in YX too.

PNG outputs are written whole (there is no way to write a PNG by pieces).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import mmap
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from . import core, io, tiff_io
from . import feedback as fb
from .errors import InputError
from .registry import DEFAULT_METHOD, Denoiser

__all__ = ["DEFAULT_BYTES_PER_PIXEL", "denoise_file_streamed", "open_image", "parse_size",
           "release", "tile_for_memory"]

DEFAULT_BYTES_PER_PIXEL = Denoiser.bytes_per_pixel  # when a method declares none
BASELINE_BYTES = 512 * 2**20  # the interpreter, numpy, torch, the method itself
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
    tile, see ``benchmarks/results/bytes_per_pixel/table.md``), else the conservative
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
        data, file_axes, (size, unit, meta) = io.read_tiff(path, axes, lazy=True)
    except (InputError, ValueError, OSError):
        return io.read_image(path, axes=axes)  # the full reader words its errors
    if data.dtype.kind not in "uif" or 0 in data.shape:
        return io.read_image(path, axes=axes)
    final = io.resolve_axes(path, axes, file_axes, tuple(data.shape))
    return io.ImageData(data, final, size, unit, path, meta)


def release(*arrays: Any) -> None:
    """Drop memory-mapped pages from this process (written pages are flushed first)."""
    for arr in arrays:
        mm = getattr(arr, "_mmap", None)
        if mm is None:
            continue
        if getattr(arr, "mode", "r") != "r":
            arr.flush()
        with contextlib.suppress(OSError, ValueError, AttributeError):
            mm.madvise(mmap.MADV_DONTNEED)


def denoise_file_streamed(
    path: str | Path,
    target: str | Path,
    method: str | Denoiser = DEFAULT_METHOD,
    *,
    dtype: str = "float32",
    overwrite: bool = False,
    axes: str | None = None,
    max_memory: str | int | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    preset: str | None = None,
    params: dict[str, Any] | None = None,
    device: str | None = None,
    seed: int | None = None,
    fit_on: int | None = None,
    progress: Callable[[int], None] | None = None,
    pyramid: int = 1,
) -> Path:
    """Denoise the file ``path`` into the file ``target`` tile by tile, in bounded memory.

    Like :func:`microdenoise.denoise_file` (which calls this when ``tile`` or
    ``max_memory`` is given); ``tile`` defaults to :func:`tile_for_memory`, ``device``
    to the model's own (:func:`microdenoise.core.run_device`). With
    ``pyramid=N`` (OME-Zarr) the lower levels are built after level 0 is written.
    """
    path, target = Path(path), Path(target)
    den, fresh = core.prepare(method, preset=preset, params=params, seed=seed)
    up = den.upscale
    if up != 1 and max_memory is not None:
        raise InputError(f"--max-memory streams same-size outputs; this model writes "
                         f"{up}x larger images (upscale={up}): drop --max-memory (use "
                         "--tile to bound the network's memory)")
    _, ov = core.check_tiling(den, tile=None, overlap=overlap)
    if tile is None:
        tile = tile_for_memory(max_memory if max_memory is not None else "2GB", den, overlap=ov)
    tile, ov = core.check_tiling(den, tile=tile, overlap=ov)
    if pyramid != 1 and target.suffix.lower() != ".zarr":
        raise InputError(f"a pyramid of {pyramid} levels needs an OME-Zarr output (.ome.zarr), "
                         f"not {target.suffix}")
    img = open_image(path, axes=axes)
    source = img.data
    lay = core.layout(tuple(source.shape), img.axes, den)
    out_dtype = io.target_dtype(dtype, source.dtype)
    shape = (*source.shape[:-2], source.shape[-2] * up, source.shape[-1] * up)
    pixel_size = img.pixel_size
    if pixel_size is not None and up != 1:
        pixel_size = (pixel_size[0] / up, pixel_size[1] / up)

    report = dataclasses.replace(fb.current(), choices={})  # this file's routing choices

    def into(sink: Any) -> None:
        with fb.reporting(report), core.on_device(den, device):
            core.run(den, source, sink, fresh=fresh, lay=lay, tile=tile, overlap=ov,
                     fit_on=fit_on, progress=progress,
                     convert=lambda a: io.convert(a, out_dtype),
                     after_row=lambda: release(source, sink))

    suffix = target.suffix.lower()
    if suffix == ".zarr":
        from . import zarr_io

        with zarr_io.create_zarr(target, shape, out_dtype, axes=img.axes,
                                 pixel_size=pixel_size, unit=img.unit,
                                 metadata=img.metadata, overwrite=overwrite,
                                 levels=pyramid) as sink:
            into(sink)
            note = fb.processing_note(report.choices)
            if note:  # known once the core has routed: written before the folder is published
                zarr_io.set_processing(sink, note)
        return target
    if suffix not in (".tif", ".tiff"):  # PNG/NPY: computed in memory, written whole
        result = np.empty(shape, dtype=np.float32)
        into(result)
        note = fb.processing_note(report.choices)
        return io.write_image(target, result, axes=img.axes, pixel_size=pixel_size,
                              unit=img.unit, metadata={**img.metadata, "processing": note}
                              if note else img.metadata, dtype=dtype,
                              source_dtype=source.dtype, overwrite=overwrite, levels=pyramid)
    if target.exists() and not overwrite:
        raise InputError(f"{target} exists; pass --overwrite to replace it")
    plan = io.tiff_plan(img.axes, shape, out_dtype, pixel_size, img.unit, img.metadata,
                        ome=io.is_ome_name(target))
    back = tuple(int(i) for i in np.argsort(plan.order))  # stored order -> img.axes
    with io.atomic_file(target) as tmp:
        sink = tifffile.memmap(tmp, shape=plan.shape, dtype=out_dtype, **plan.kwargs)
        try:
            into(sink.transpose(back))
            sink.flush()
        finally:
            del sink
        note = fb.processing_note(report.choices)
        if note:  # known once the core has routed; added before the file is published
            tiff_io.add_processing(tmp, note, kind=plan.kind)
    return target
