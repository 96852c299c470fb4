"""The data flow: read -> normalize -> (fit) -> denoise, tiled -> denormalize -> write.

:func:`denoise_array` works on arrays, :func:`denoise_file` on one file and
:func:`denoise_files` on a batch (a bad file is reported and skipped).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import io
from .errors import InputError
from .normalize import make_normalizer
from .registry import Denoiser, create, method_class
from .tiling import denoise_tiled, is_out_of_memory, smaller_tile

MIN_SIZE = 16


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
    if image.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(image)))
        if bad:
            raise InputError(
                f"{name} has {bad} NaN/Inf pixel(s); replace them (e.g. by the median of "
                "their neighbours) before denoising"
            )
    low, high = image.min(), image.max()
    if low == high:
        raise InputError(f"{name} is constant (every pixel = {low}): there is no signal or "
                         "noise to separate")


def default_axes(ndim: int) -> str:
    """Axes assumed for a bare array: YX, then S (samples) for each leading dimension."""
    return "S" * (ndim - 2) + "YX" if ndim <= 6 else ""


def _units(image: np.ndarray, volume: bool) -> Iterator[tuple[int, ...]]:
    """Index tuples over the leading axes: each selects a YX plane (or a ZYX volume)."""
    lead = image.shape[:-3] if volume else image.shape[:-2]
    yield from np.ndindex(*lead)


def _volume_axis(axes: str) -> int | None:
    """The axis a 3D method filters along: Z, else T (never S: samples are unrelated)."""
    for letter in "ZT":
        if letter in axes[:-2]:
            return axes.index(letter)
    return None


def _prepare(method: str | Denoiser, preset: str | None, params: dict[str, Any] | None,
             seed: int | None) -> tuple[Denoiser, bool]:
    if isinstance(method, Denoiser):
        if preset or params:
            raise InputError("preset/params apply to a method name, not to a loaded model")
        return method, False
    params = dict(params or {})
    fields = {f.name for f in dataclasses.fields(method_class(method).Config)}
    if seed is not None and "seed" in fields and "seed" not in params:
        params["seed"] = seed
    return create(method, preset=preset, **params), True


def denoise_array(
    image: np.ndarray,
    method: str | Denoiser = "fm2s",
    *,
    preset: str | None = None,
    params: dict[str, Any] | None = None,
    axes: str | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    device: str = "auto",
    seed: int | None = None,
    fit_on: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Denoise ``image`` and return float32 of the same shape in the input's intensity units.

    A method with ``upscale=2`` (``care`` trained for joint denoising and 2x
    super-resolution) returns twice the input's Y and X size; every other axis
    is kept.

    Parameters
    ----------
    image
        2D image or stack; leading axes (see ``axes``) are run plane by plane, or as
        volumes for methods that support 3D.
    method
        A registered method name (see :func:`microdenoise.list_methods`) or a fitted
        :class:`~microdenoise.registry.Denoiser` (e.g. from :func:`microdenoise.load`).
    preset, params
        Named parameter set and explicit parameters of ``method`` (names only).
    axes
        Letters from STCZYX, one per dimension; default ``YX`` with ``S`` in front.
    tile, overlap
        Tiled prediction; ``overlap`` defaults to (and may not be below) the method's
        receptive field, so tiled output has no seams.
    device
        ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``.
    seed
        Overrides the method's seed; the same seed gives the same output.
    fit_on
        Zero-shot methods on a stack: fit once on this many evenly spaced planes and
        apply to all (default: fit on every plane).
    progress
        Called with 1 after each plane.
    """
    check_image(image)
    axes = io.check_axes(axes or default_axes(image.ndim), ndim=image.ndim, shape=image.shape)
    den, fresh = _prepare(method, preset, params, seed)
    if hasattr(den, "device"):
        den.device = device
    volume = den.supports_3d and _volume_axis(axes) is not None
    vax = _volume_axis(axes) if volume else None
    work = image if vax is None else np.moveaxis(image, vax, -3)
    # Global statistics (never per tile), separately for each channel.
    cax = axes.index("C") if "C" in axes else None
    if cax is not None and vax is not None and vax < cax:
        cax -= 1  # the volume axis moved behind C
    channels = work.shape[cax] if cax is not None else 1
    model = den.normalization == "model"  # a trained model's stored normalizers, below
    norms = [make_normalizer("none" if model else den.normalization,
                             work if cax is None else np.take(work, c, axis=cax))
             for c in range(channels)]
    rf = den.receptive_field
    if overlap is not None and overlap < rf:
        raise InputError(f"--overlap {overlap} is below {den.key}'s receptive field ({rf} px): "
                         f"tiles would show seams; use --overlap {rf} or more")
    ov = rf if overlap is None else overlap
    if tile is not None and tile <= 2 * ov:
        raise InputError(f"--tile {tile} must be larger than twice the overlap ({ov} px)")
    units = list(_units(work, volume))
    # Zero-shot methods train on each image, calibrating filters choose their parameter on
    # it, and blind-spot networks with fit_per_image train on it.
    refit = fresh and (den.zero_shot or bool(getattr(den.config, "calibrate", False))
                       or bool(getattr(den.config, "fit_per_image", False)))
    if refit and fit_on is not None:
        if fit_on < 1:
            raise InputError("--fit-on must be at least 1")
        picks = np.linspace(0, len(units) - 1, min(fit_on, len(units))).round().astype(int)
        # One fit on a side-by-side montage of the chosen planes.
        den.fit(np.concatenate([norms[_chan(units[i], cax)](work[units[i]]) for i in picks],
                               axis=-1))
        refit = False
    up = den.upscale
    if up != 1 and volume:
        raise InputError(f"{den.key}: upscale={up} works on 2D planes, not volumes")
    out = np.empty((*work.shape[:-2], work.shape[-2] * up, work.shape[-1] * up),
                   dtype=np.float32)
    for index in units:
        norm = norms[_chan(index, cax)]
        plane = norm(work[index])
        if refit:
            den.fit(plane)
        if model:
            n_in, norm = den.normalizers  # type: ignore[attr-defined]
            plane = n_in(plane)
        result = None
        if tile is None or volume:
            try:
                result = den.denoise(plane)
            except Exception as exc:
                if volume or not is_out_of_memory(exc):
                    raise
        if result is None and tile is None:
            # Out of GPU memory on the whole plane: tile it, halving from its size.
            tile = smaller_tile(max(plane.shape[-2:]), ov, multiple=den.tile_multiple)
        if result is None:
            # Tiles start on multiples of tile_multiple and keep ``ov`` of context.
            tile = max(tile or 0, 2 * ov + den.tile_multiple)

            def keep(smaller: int) -> None:
                nonlocal tile
                tile = smaller

            result = denoise_tiled(den.denoise, plane, tile=tile, overlap=ov, scale=up,
                                   multiple=den.tile_multiple, on_shrink=keep)
        out[index] = norm.inverse(np.asarray(result, dtype=np.float32))
        if progress is not None:
            progress(1)
    return out if vax is None else np.moveaxis(out, -3, vax)


def _chan(index: tuple[int, ...], cax: int | None) -> int:
    return 0 if cax is None else index[cax]


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
    method: str | Denoiser = "fm2s",
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
    pre-allocated TIFF or OME-Zarr, and zero-shot methods are fitted on each
    plane's central 1024x1024 pixels (the whole plane when smaller).

    A method with ``upscale=2`` writes twice the input's Y and X size with half
    its pixel size; it is tiled in memory (``tile``), not streamed (``max_memory``
    is refused).
    """
    path, out = Path(path), Path(out)
    target = output_path(path, out, suffix=_suffix(pyramid)) \
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
    if up == 1 and (options.get("tile") is not None or max_memory is not None):
        from .streaming import denoise_file_streamed

        return denoise_file_streamed(path, target, method, dtype=dtype, overwrite=overwrite,
                                     axes=axes, max_memory=max_memory, pyramid=pyramid,
                                     **options)
    img = io.read_image(path, axes=axes)
    result = denoise_array(img.data, method, axes=img.axes, **options)
    pixel_size = img.pixel_size
    if pixel_size is not None and up != 1:
        pixel_size = (pixel_size[0] / up, pixel_size[1] / up)
    return io.write_image(
        target, result, axes=img.axes, pixel_size=pixel_size, unit=img.unit,
        metadata=img.metadata, dtype=dtype, source_dtype=img.data.dtype, overwrite=overwrite,
        levels=pyramid,
    )


def _suffix(pyramid: int) -> str:
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


def denoise_files(
    inputs: Iterable[str | Path],
    out_dir: str | Path,
    method: str | Denoiser = "fm2s",
    *,
    on_file: Callable[[Path, Path | None, str | None], None] | None = None,
    **options: Any,
) -> BatchResult:
    """Denoise every image in ``inputs`` (files or folders) into ``out_dir``.

    A file that fails is reported through ``on_file(path, None, message)`` and skipped;
    the others are still processed. ``options`` go to :func:`denoise_file`.
    """
    paths = io.list_images(inputs)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot use {str(out_dir)!r} as output folder "
                         f"({exc.strerror or exc}); give a folder") from None
    sources = {p.resolve() for p in paths}
    seen: dict[Path, Path] = {}
    result = BatchResult()
    for path in paths:
        target = output_path(path, out_dir, suffix=_suffix(options.get("pyramid", 1)))
        try:
            if target.resolve() in sources:
                raise InputError(f"output {str(target)!r} would replace an input file; "
                                 "choose another output folder")
            if target in seen:
                raise InputError(f"{path} and {seen[target]} would both be written to {target}")
            seen[target] = path
            written = denoise_file(path, target, method, **options)
        except Exception as exc:  # noqa: BLE001  (report per file, go on with the batch)
            result.record(path, None, exc, on_file)
            continue
        result.record(path, written, None, on_file)
    return result
