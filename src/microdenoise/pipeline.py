"""The data flow: read -> normalize -> (fit) -> denoise, tiled -> denormalize -> write.

:func:`denoise_array` works on arrays, :func:`denoise_file` on one file and
:func:`denoise_files` on a batch (a bad file is reported and skipped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import core, io
from . import feedback as fb
from .atomic import check_writable
from .errors import InputError
from .registry import DEFAULT_METHOD, Denoiser, create, method_class

MIN_SIZE = core.MIN_SIZE


def check_image(image: np.ndarray, *, name: str = "the image") -> None:
    """Raise :class:`InputError` for data no method can denoise (NaN/Inf, tiny, not numeric)."""
    if not isinstance(image, np.ndarray) or image.dtype.kind not in "uif":
        kind = getattr(image, "dtype", type(image))
        raise InputError(f"{name} must be a numeric array, got {kind}")
    if image.ndim < 2:
        raise InputError(f"{name} has shape {image.shape}; an image needs at least 2 dimensions")
    h, w = image.shape[-2:]
    if h < MIN_SIZE or w < MIN_SIZE:
        raise InputError(
            f"{name} is {h}x{w} pixels; microdenoise needs at least {MIN_SIZE}x{MIN_SIZE}"
        )


def default_axes(ndim: int) -> str:
    """Axes assumed for a bare array: YX, then S (samples) for each leading dimension."""
    return "S" * (ndim - 2) + "YX" if ndim <= 6 else ""


def denoise_array(
    image: np.ndarray,
    method: str | Denoiser = DEFAULT_METHOD,
    *,
    preset: str | None = None,
    params: dict[str, Any] | None = None,
    axes: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    device: str | None = None,
    seed: int | None = None,
    fit_on: int | None = None,
    progress: Callable[[int], None] | None = None,
    **method_params: Any,
) -> np.ndarray:
    """Denoise ``image`` and return float32 of the same shape in the input's intensity units.

    A method with ``upscale=2`` (``care`` trained for joint denoising and 2x
    super-resolution) returns twice the input's Y and X size; every other axis
    is kept. This is a thin driver around :func:`microdenoise.core.run`, the
    prediction path every driver (files, streaming, Dask) shares.

    Parameters
    ----------
    image
        2D image or stack; leading axes (see ``axes``) are run plane by plane, or as
        volumes for methods that support 3D.
    method
        A registered method name (see :func:`microdenoise.list_methods`; default
        ``"auto"``: the noise of each channel is measured and decides between VST-BM3D
        and FM2S, :mod:`microdenoise.methods.auto`) or a
        :class:`~microdenoise.registry.Denoiser` (e.g. from :func:`microdenoise.load`).
        A fitted model is applied as it is; an unfitted one that is fitted per image
        (``create("nlm")``, a ``calibrate=True`` filter, FM2S) is fitted as its name
        is, on a copy per image: the object itself is never changed.
    preset, params
        Named parameter set and explicit parameters of ``method`` (names only).
    axes
        Letters from STCZYX, one per dimension; default ``YX`` with ``S`` in front.
    tile, overlap
        Tiled prediction; ``overlap`` defaults to (and may not be below) the method's
        receptive field, so tiled output has no seams.
    device
        ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``; default
        (None): a model's own ``device``, ``auto`` for a name. A model passed in is
        left as it was: its ``device`` and its network's weights where they were.
    seed
        Overrides the method's seed; the same seed gives the same output.
    fit_on
        Methods fitted per image (FM2S, calibrating filters) on a stack: fit once on
        this many evenly spaced planes and apply to all (default: fit on every plane).
    progress
        Called with 1 after each plane (or volume).
    **method_params
        Parameters of ``method`` given directly (``fast_steps=100``); the same as
        ``params={...}``, which they update.
    """
    check_image(image)
    if method_params:
        params = {**(params or {}), **method_params}
    axes = io.check_axes(axes or default_axes(image.ndim), ndim=image.ndim, shape=image.shape)
    den, fresh = core.prepare(method, preset=preset, params=params, seed=seed)
    lay = core.layout(image.shape, axes, den)
    tile, ov = core.check_tiling(den, tile=tile, overlap=overlap)
    tile = core.auto_tile(den, lay, tile, ov)
    s = den.upscale
    out = np.empty((*image.shape[:-2], image.shape[-2] * s, image.shape[-1] * s),
                   dtype=np.float32)
    with core.on_device(den, device):
        core.run(den, image, out, fresh=fresh, lay=lay, tile=tile, overlap=ov, fit_on=fit_on,
                 progress=progress)
    return out


@dataclass
class BatchResult:
    """Outputs written, files that failed (with the reason) and outputs kept (already there)."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)

    def record(self, path: Path, written: Path | None, error: BaseException | None,
               on_file: Callable[[Path, Path | None, str | None], None] | None, *,
               internal: bool = True) -> None:
        """Note one file's outcome and tell ``on_file``.

        An error other than :class:`InputError` is reported as an internal error (a bug)
        unless ``internal=False`` (e.g. a Dask worker that died).
        """
        message = None
        if isinstance(error, InputError):
            message = str(error)
        elif error is not None:
            message = f"{type(error).__name__}: {error}"
            if internal:
                message = f"internal error {message} (a bug: please report it)"
        if message is not None:
            self.failed.append((path, message))
        elif written is not None:
            self.written.append(written)
        if on_file is not None:
            on_file(path, written, message)


def output_path(path: Path, out_dir: Path, *, suffix: str = ".tif") -> Path:
    """Where the denoised version of ``path`` goes: ``out_dir/<stem>.tif``.

    An OME-Zarr input (``<stem>.ome.zarr`` or ``<stem>.zarr``) gives ``out_dir/<stem>.ome.zarr``.
    """
    name = path.name
    if io.is_zarr(path):
        stem = name[: -len(".ome.zarr")] if name.lower().endswith(".ome.zarr") else path.stem
        return out_dir / f"{stem}.ome.zarr"
    for ext in sorted(io.SUPPORTED_EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return out_dir / f"{name}{suffix}"


def denoise_file(
    path: str | Path,
    out: str | Path,
    method: str | Denoiser = DEFAULT_METHOD,
    *,
    dtype: str = "float32",
    overwrite: bool = False,
    axes: str | None = None,
    max_memory: str | int | None = None,
    pyramid: int = 1,
    **options: Any,
) -> Path:
    """Read ``path``, denoise it (see :func:`denoise_array` for ``options``), write ``out``.

    ``out`` is a file name or an existing folder (then ``<stem>.tif`` inside it, or
    ``<stem>.ome.zarr`` for an OME-Zarr input or ``pyramid > 1``). ``pyramid=N``
    writes an OME-Zarr with N resolution levels (2x2 means in YX; level 0 is the
    full-resolution output). The output keeps axes, pixel size
    and unit; it is float32 unless ``dtype="same"`` (the input's type, rounded and
    clipped). The input is never overwritten and an existing output only with
    ``overwrite=True``; nothing is written on failure.

    With ``tile`` or ``max_memory`` (e.g. ``"2GB"``: picks ``tile``), the file is
    streamed tile by tile in bounded memory (see :mod:`microdenoise.streaming`):
    the input is memory-mapped, the output written tile by tile into a
    pre-allocated TIFF or OME-Zarr. The result equals the in-memory one with the
    same ``tile``: both run :func:`microdenoise.core.run`, and methods fitted per
    image (FM2S, calibrating filters) are fitted on each whole plane either way.

    A method with ``upscale=2`` writes twice the input's Y and X size with half
    its pixel size; it streams with ``tile`` (``max_memory`` is refused: its
    memory model is for same-size outputs).
    """
    path, out = Path(path), Path(out)
    # choices: what a routing method (the default) chose for this file, for its metadata
    with fb.reporting(dataclasses.replace(fb.current(), name=str(path), choices={})):
        return _denoise_file(path, out, method, dtype=dtype, overwrite=overwrite, axes=axes,
                             max_memory=max_memory, pyramid=pyramid, **options)


def _denoise_file(path: Path, out: Path, method: str | Denoiser, *, dtype: str,
                  overwrite: bool, axes: str | None, max_memory: str | int | None,
                  pyramid: int, **options: Any) -> Path:
    target = output_path(path, out, suffix=output_suffix(pyramid)) \
        if out.is_dir() and not io.is_zarr(out) else out
    if io.same_file(path, target):
        raise InputError(f"output {str(target)!r} is the input file; choose another output")
    if target.exists() and not overwrite:
        raise InputError(f"{str(target)!r} exists; pass --overwrite to replace it")
    if pyramid != 1 and target.suffix.lower() != ".zarr":
        raise InputError(f"a pyramid of {pyramid} levels needs an OME-Zarr output "
                         f"(.ome.zarr), not {str(target)!r}")
    up = _upscale(method, options)
    if up != 1 and max_memory is not None:
        raise InputError(f"--max-memory streams same-size outputs; this model writes "
                         f"{up}x larger images (upscale={up}): drop --max-memory (use "
                         "--tile to bound the network's memory)")
    if options.get("tile") is not None or max_memory is not None:
        from .streaming import denoise_file_streamed

        return denoise_file_streamed(path, target, method, dtype=dtype, overwrite=overwrite,
                                     axes=axes, max_memory=max_memory, pyramid=pyramid,
                                     **options)
    img = io.read_image(path, axes=axes)
    result = denoise_array(img.data, method, axes=img.axes, **options)
    out_dtype = io.target_dtype(dtype, img.data.dtype)
    fb.warn_clipped(str(path), fb.count_clipped(result, out_dtype), result.size, out_dtype)
    pixel_size = img.pixel_size
    if pixel_size is not None and up != 1:
        pixel_size = (pixel_size[0] / up, pixel_size[1] / up)
    note = fb.processing_note(fb.current().choices)
    metadata = {**img.metadata, "processing": note} if note else img.metadata
    return io.write_image(
        target, result, axes=img.axes, pixel_size=pixel_size, unit=img.unit,
        metadata=metadata, dtype=dtype, source_dtype=img.data.dtype, overwrite=overwrite,
        levels=pyramid,
    )


def output_suffix(pyramid: int) -> str:
    """The output extension for a non-Zarr input: a pyramid needs OME-Zarr."""
    return ".ome.zarr" if pyramid != 1 else ".tif"


def _upscale(method: str | Denoiser, options: dict[str, Any]) -> int:
    """The output/input size ratio of ``method`` (a name with its preset/params, or a model)."""
    if isinstance(method, Denoiser):
        return method.upscale
    cls = method_class(method)
    if not any(f.name == "upscale" for f in dataclasses.fields(cls.Config)):
        return 1
    return create(method, preset=options.get("preset"), **(options.get("params") or {})).upscale


def prepare_output_dir(out_dir: str | Path) -> Path:
    """Create ``out_dir``, prove it writable (a temporary file made and removed) and
    remove partial files that killed runs left there (a notice names each): before
    any work, so a batch never computes what it cannot write."""
    out_dir = check_writable(out_dir)
    for path, size in io.remove_stale_partials(out_dir):
        fb.notice(f"removed {path} ({size / 2**20:.1f} MB), a partial output left by an "
                  "interrupted run")
    return out_dir


def plan_batch(paths: list[Path], out_dir: Path, *, pyramid: int = 1, overwrite: bool = False
               ) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path]],
                          list[tuple[Path, str]]]:
    """Split a batch into (input, output) pairs to do, pairs whose output exists (kept
    unless ``overwrite``), and inputs that cannot be done (with the reason)."""
    sources = {p.resolve() for p in paths}
    seen: dict[Path, Path] = {}
    todo: list[tuple[Path, Path]] = []
    kept: list[tuple[Path, Path]] = []
    bad: list[tuple[Path, str]] = []
    for path in paths:
        target = output_path(path, out_dir, suffix=output_suffix(pyramid))
        if target.resolve() in sources:
            bad.append((path, f"output {str(target)!r} would replace an input file; choose "
                              "another output folder"))
        elif target in seen:
            bad.append((path, f"{path} and {seen[target]} would both be written to {target}"))
        elif target.exists() and not overwrite:
            seen[target] = path
            kept.append((path, target))
        else:
            seen[target] = path
            todo.append((path, target))
    return todo, kept, bad


def start_batch(inputs: Iterable[str | Path], out_dir: str | Path, *,
                on_file: Callable[[Path, Path | None, str | None], None] | None = None,
                on_kept: Callable[[Path, Path], None] | None = None, **options: Any
                ) -> tuple[list[tuple[Path, Path]], BatchResult, Path]:
    """What every batch driver does first: list the inputs, prepare ``out_dir`` (before
    any work), report the inputs that cannot be done and the outputs kept; return the
    (input, output) pairs to do, the result so far and the output folder."""
    paths = io.list_images(inputs)
    folder = prepare_output_dir(out_dir)
    todo, kept, bad = plan_batch(paths, folder, pyramid=options.get("pyramid", 1),
                                 overwrite=options.get("overwrite", False))
    result = BatchResult()
    for path, message in bad:
        result.record(path, None, InputError(message), on_file)
    for path, target in kept:
        result.skipped.append(target)
        if on_kept is not None:
            on_kept(path, target)
    return todo, result, folder


def denoise_files(
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    method: str | Denoiser = DEFAULT_METHOD,
    *,
    on_file: Callable[[Path, Path | None, str | None], None] | None = None,
    on_kept: Callable[[Path, Path], None] | None = None,
    **options: Any,
) -> BatchResult:
    """Denoise every image in ``inputs`` (files or folders) into ``out_dir``.

    A file that fails is reported through ``on_file(path, None, message)`` and skipped;
    the others are still processed, and each is reported as it finishes. An output
    that exists is kept (not redone unless ``overwrite=True``): listed in
    ``BatchResult.skipped`` and reported through ``on_kept(path, output)``, so a
    rerun of an interrupted batch resumes. ``options`` go to :func:`denoise_file`.
    """
    todo, result, _ = start_batch(inputs, out_dir, on_file=on_file, on_kept=on_kept,
                                  **options)
    for path, target in todo:
        try:
            written = denoise_file(path, target, method, **options)
        except Exception as exc:  # noqa: BLE001  (report per file, go on with the batch)
            result.record(path, None, exc, on_file)
            continue
        result.record(path, written, None, on_file)
    return result
