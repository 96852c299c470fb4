"""The prediction core: one path from a method and an image to the denoised image.

Every driver calls :func:`run` (or, for Dask blocks, :func:`denoise_block`):
:func:`microdenoise.denoise_array` (arrays in memory), the streamed file path
(:mod:`microdenoise.streaming`: memory-mapped input, output written tile by
tile), and the Dask paths (:mod:`microdenoise.distributed`). The drivers only
decide how data arrive and leave (``source`` is anything indexable like a numpy
array; ``sink`` anything assignable), so they give the same answer.

For each *unit* (a YX plane, or a ZYX volume for 3D methods) :func:`run`

1. picks the unit's normalizers: the image's own, computed per channel over the
   whole image (:func:`microdenoise.intensity.channel_normalizers`, never per
   tile), or per unit for models trained on pairs scaled one by one
   (``per_unit_statistics``), or a trained model's stored ones
   (``normalization == "model"``);
2. fits, as the method's :attr:`~microdenoise.registry.Denoiser.fit_policy`
   says: ``"per_image"`` methods (FM2S, self-calibrating filters, blind-spot
   networks with ``fit_per_image``), by name or as an unfitted object, get a
   fresh copy fitted on the whole unit (or once on ``fit_on`` evenly spaced
   units); fitted models, ``"none"`` and ``"trained"`` methods are applied as
   they are;
3. predicts the whole unit, or tile by tile with at least the receptive field
   as overlap and tiles on the method's pooling grid
   (:func:`microdenoise.tiling.plan_tiles`), retrying with smaller tiles when a
   GPU runs out of memory (:func:`microdenoise.tiling.retry_smaller`);
4. undoes the normalization and hands each piece to ``convert`` and the sink.

Methods see normalized float32 arrays only; files, tiles and raw intensities
stay out here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import feedback as fb
from .axes import volume_axis
from .errors import InputError
from .intensity import channel_normalizers
from .normalize import Identity, Normalizer
from .oom import fit_retrying, predict_block
from .registry import Denoiser, create, method_class
from .routing import fit_picks, unit_methods
from .tiling import plan_tiles, retry_smaller

__all__ = ["Layout", "MIN_SIZE", "check_tiling", "constant_units", "denoise_block", "fit_unit",
           "image_normalizers", "layout", "normalizers", "on_device", "predict_unit",
           "prepare", "run", "run_device", "warn_global"]

MIN_SIZE = 16
Convert = Callable[[np.ndarray], np.ndarray]


def prepare(method: str | Denoiser, *, preset: str | None = None,
            params: dict[str, Any] | None = None, seed: int | None = None
            ) -> tuple[Denoiser, bool]:
    """The method to run and whether the core fits it per image (``fresh``).

    A name is created with ``preset``/``params`` (and ``seed`` where its config has
    one) and is fresh. A :class:`Denoiser` the caller passes is fresh when it is not
    :attr:`~microdenoise.registry.Denoiser.fitted` and its fit policy is
    ``per_image`` (an NLM or a ``calibrate=True`` filter from ``create``, an unfitted
    FM2S): the core then fits a :meth:`~microdenoise.registry.Denoiser.fresh` copy on
    each image, exactly as for its name, and the caller's object is never changed. A
    fitted model is applied as it is (never refitted).
    """
    if isinstance(method, Denoiser):
        if preset or params:
            raise InputError("preset/params apply to a method name, not to a loaded model")
        return method, method.fit_policy == "per_image" and not method.fitted
    params = dict(params or {})
    fields = {f.name for f in dataclasses.fields(method_class(method).Config)}
    if seed is not None and "seed" in fields and "seed" not in params:
        params["seed"] = seed
    return create(method, preset=preset, **params), True


def run_device(den: Denoiser, device: str | None) -> str:
    """The device a run uses: ``device``, or the model's own (``None``, the drivers'
    default: ``"auto"`` for a method made from its name)."""
    return den.device if device is None else device


@contextlib.contextmanager
def on_device(den: Denoiser, device: str | None) -> Iterator[Denoiser]:
    """Run ``den`` on ``device`` (``None``: its own, :func:`run_device`) and give the
    caller's model back as it was: its ``device`` and its networks' weights where they
    were (a run on another device moves them; they are moved back)."""
    old, where = den.device, _weights(den)
    den.device = run_device(den, device)
    try:
        yield den
    finally:
        den.device = old
        for module, was in where:
            if _weights(module) != [(module, was)]:
                module.to(was)


def _weights(den: Any) -> list[tuple[Any, Any]]:
    """The networks ``den`` holds (``den`` itself if it is one: torch modules among its
    attributes) and the device of each one's first tensor."""
    import torch

    modules = [den] if isinstance(den, torch.nn.Module) else \
        [m for m in vars(den).values() if isinstance(m, torch.nn.Module)]
    return [(m, t.device) for m in modules
            for t in [*m.parameters(), *m.buffers()][:1]]


@dataclass(frozen=True)
class Layout:
    """Where the units of an image are: its shape and axes, the volume and channel axes."""

    shape: tuple[int, ...]
    axes: str
    vax: int | None  # the axis 3D methods filter along (a unit spans it), or None
    cax: int | None  # the channel axis, or None
    per_unit: bool = False  # each unit normalized by its own statistics (see layout)

    def units(self) -> list[tuple[Any, ...]]:
        """Index tuples over the leading axes; each selects a YX plane or a ZYX volume."""
        lead = [1 if i == self.vax else n for i, n in enumerate(self.shape[:-2])]
        return [tuple(slice(None) if i == self.vax else k for i, k in enumerate(index))
                for index in np.ndindex(*lead)]

    def channel(self, unit: tuple[Any, ...]) -> int:
        """Which of :func:`image_normalizers`' normalizers serves ``unit``: its channel (0
        without a channel axis), or with ``per_unit`` its own position in :meth:`units`."""
        if self.per_unit:
            lead = [1 if i == self.vax else n for i, n in enumerate(self.shape[:-2])]
            index = [0 if isinstance(k, slice) else int(k) for k in unit]
            return int(np.ravel_multi_index(index, lead)) if lead else 0
        return 0 if self.cax is None else int(unit[self.cax])

    def planes(self, unit: tuple[Any, ...]) -> list[tuple[int, ...]]:
        """The YX planes (index tuples over the leading axes) a unit is made of."""
        depth = 1 if self.vax is None else self.shape[self.vax]
        return [tuple(z if isinstance(k, slice) else int(k) for k in unit)
                for z in range(depth)]

    def describe(self, unit: tuple[Any, ...], name: str) -> str:
        """``"plane T=2, C=0 of NAME"`` (indices from 0), or ``NAME`` for a single image."""
        where = ", ".join(f"{self.axes[i]}={k}" for i, k in enumerate(unit)
                          if not isinstance(k, slice))
        kind = "volume" if self.vax is not None else "plane"
        return f"{kind} {where} of {name}" if where else name


class _Planes:
    """Some YX planes of a source, indexable like a stack of them (one leading axis)."""

    def __init__(self, source: Any, planes: list[tuple[int, ...]]) -> None:
        self.source, self.planes = source, planes
        self.shape = (len(planes), *tuple(source.shape)[-2:])
        self.dtype = source.dtype

    def __getitem__(self, index: tuple[Any, ...]) -> Any:
        return self.source[(*self.planes[index[0]], *index[1:])]


def constant_units(source: Any, lay: Layout, *, after_row: Callable[[], None] | None = None
                   ) -> dict[int, float]:
    """The units of ``source`` (positions in ``lay.units()``) whose pixels all have one
    value, and that value.

    Read in row bands (memory-mapped pages are released by ``after_row``), so a
    streamed file is never held whole.
    """
    ny, nx = lay.shape[-2:]
    rows = max(1, (1 << 22) // max(1, nx * max(1, _depth(lay))))
    found: dict[int, float] = {}
    for k, unit in enumerate(lay.units()):
        low, high = np.inf, -np.inf
        for r0 in range(0, ny, rows):
            band = np.asarray(source[(*unit, slice(r0, r0 + rows), slice(None))])
            if after_row is not None:
                after_row()
            low, high = min(low, float(band.min())), max(high, float(band.max()))
            if not low == high:  # also NaN: not constant (the normalizers refuse it)
                break
        if low == high:
            found[k] = low
    return found


def _depth(lay: Layout) -> int:
    return 1 if lay.vax is None else lay.shape[lay.vax]


def image_normalizers(den: Denoiser, source: Any, lay: Layout,
                      constant: dict[int, float], *,
                      after_row: Callable[[], None] | None = None) -> list[Normalizer]:
    """Per-channel normalizers of the image, from its units that are not constant
    (with ``lay.per_unit``: one per unit, from that unit alone); index them with
    :meth:`Layout.channel`.

    Constant units are passed through, never fed to a method, so they do not enter
    the statistics either (a blank frame does not stretch the others' range). With
    none, this is :func:`~microdenoise.intensity.channel_normalizers` of the image;
    a channel (or unit) with only constant units gets an (unused) identity.
    """
    units = lay.units()
    if len(constant) == len(units):
        return []
    kind = den.normalization
    if lay.per_unit and kind != "model":
        return [Identity() if k in constant else
                channel_normalizers(_Planes(source, lay.planes(unit)), kind, cax=None,
                                    after_band=after_row)[0]
                for k, unit in enumerate(units)]
    if not constant or kind == "model":
        return channel_normalizers(source, kind, cax=lay.cax, after_band=after_row)
    position = {tuple(None if isinstance(i, slice) else i for i in u): k
                for k, u in enumerate(units)}
    live: list[list[tuple[int, ...]]] = [[] for _ in range(_channels(lay))]
    for plane in np.ndindex(*lay.shape[:-2]):
        key = tuple(None if i == lay.vax else k for i, k in enumerate(plane))
        if position[key] not in constant:
            live[0 if lay.cax is None else plane[lay.cax]].append(plane)
    return [channel_normalizers(_Planes(source, planes), kind, cax=None,
                                after_band=after_row)[0] if planes else Identity()
            for planes in live]


def _channels(lay: Layout) -> int:
    return 1 if lay.cax is None else lay.shape[lay.cax]


def layout(shape: tuple[int, ...], axes: str, den: Denoiser) -> Layout:
    """The units ``den`` runs on: volumes along Z (else T) for 3D methods, else planes;
    ``per_unit`` when the method scales each unit by its own statistics (its
    ``per_unit_statistics``: models trained on pairs scaled one by one)."""
    ny, nx = shape[-2:]
    if ny < MIN_SIZE or nx < MIN_SIZE:
        raise InputError(f"the image is {ny}x{nx} pixels; microdenoise needs at least "
                         f"{MIN_SIZE}x{MIN_SIZE}")
    vax = volume_axis(axes) if den.supports_3d else None
    if vax is not None and den.upscale != 1:
        raise InputError(f"{den.key}: upscale={den.upscale} works on 2D planes, not volumes")
    return Layout(tuple(shape), axes, vax, axes.index("C") if "C" in axes else None,
                  den.per_unit_statistics)


def check_tiling(den: Denoiser, *, tile: int | None, overlap: int | None) -> tuple[int | None,
                                                                                  int]:
    """The tile (None: whole units) and overlap to use; errors before any work.

    ``overlap`` defaults to, and may not be below, the method's receptive field; a
    tile is raised to at least twice the overlap plus the pooling multiple.
    """
    rf = den.receptive_field
    if overlap is not None and overlap < rf:
        raise InputError(f"--overlap {overlap} is below {den.key}'s receptive field ({rf} px): "
                         f"tiles would show seams; use --overlap {rf} or more")
    ov = rf if overlap is None else overlap
    if tile is not None and tile <= 2 * ov:
        raise InputError(f"--tile {tile} must be larger than twice the overlap ({ov} px)")
    if tile is not None:
        tile = max(tile, 2 * ov + den.tile_multiple)  # aligned tiles keep their context
    return tile, ov


AUTO_TILE_BYTES = 2 * 2**30  # a fitted U-Net's whole-plane working memory above which
# it predicts in tiles (benchmarks/results/speed/notes.md: N2V on a 2048^2 plane, 3.6 GB
# in one pass, 248-525 MB in 512-1024-pixel tiles, the same output and about the same
# time); with N2V's declared 2 KB per pixel, planes above ~890^2 go in 880-pixel tiles


def auto_tile(den: Denoiser, lay: Layout, tile: int | None, overlap: int) -> int | None:
    """The tile for a fitted pooling network (``tile_multiple > 1``) whose whole plane
    would need more than :data:`AUTO_TILE_BYTES` at once; ``tile`` itself otherwise.

    Aligned tiles with the receptive field as overlap give these networks' untiled
    output exactly (``tests/test_tile_alignment.py``), so this only bounds memory. Not
    for volumes, 2x super-resolution, methods whose tiles are not exact
    (:attr:`Denoiser.tiles_exactly`: shift averaging, whole-image methods), nor where
    the context would be over a quarter of the tile. Says so when it tiles.
    """
    if (tile is not None or den.tile_multiple <= 1 or not den.tiles_exactly
            or den.upscale != 1 or lay.vax is not None):
        return tile
    from .streaming import BASELINE_BYTES, tile_for_memory

    h, w = lay.shape[-2:]
    need = h * w * int(den.bytes_per_pixel)  # tile_for_memory's model, whole plane
    if BASELINE_BYTES + need <= AUTO_TILE_BYTES:
        return None

    chosen = tile_for_memory(AUTO_TILE_BYTES, den, overlap=overlap)
    if chosen < 4 * overlap:
        return None
    fb.notice(f"{den.key}: a {h}x{w} plane needs about {need / 2**30:.1f} GB in one pass; "
              f"predicting it in {chosen}-pixel tiles with {overlap} px of context (the "
              "same output; give --tile to choose the size)")
    return chosen


def normalizers(den: Denoiser, norms: list[Normalizer], channel: int
                ) -> tuple[Normalizer, Normalizer]:
    """(input, output) normalizers of a channel: the model's own, or the image's for both."""
    if den.normalization == "model":
        pair: tuple[Normalizer, Normalizer] = den.normalizers
        return pair
    return norms[channel], norms[channel]


def fit_unit(den: Denoiser, source: Any, units: list[tuple[Any, ...]], lay: Layout,
             norms: list[Normalizer]) -> Denoiser:
    """A fresh copy of ``den`` fitted on ``units`` (several: side by side along X).

    Image-normalized methods are fitted on normalized data; methods that keep their
    own normalizers (``normalization == "model"``) on raw data, from which they
    compute them. A GPU out-of-memory error is met as :func:`microdenoise.oom.fit_retrying`
    says: torch's cache freed, one more try on a new copy, then an :class:`InputError`.
    """

    def data(unit: tuple[Any, ...]) -> np.ndarray:
        raw = np.asarray(source[unit])
        return raw if den.normalization == "model" else norms[lay.channel(unit)](raw)

    pieces = [data(u) for u in units]
    x = pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=-1)

    def fit() -> Denoiser:
        model = den.fresh()
        model.fit(x)
        return model

    what = "volume" if lay.vax is not None else "plane"
    return fit_retrying(fit, what=f"{den.key} on a {'x'.join(map(str, x.shape))} {what}"
                        + (f" ({len(units)} {what}s side by side)" if len(units) > 1 else ""))


def run(den: Denoiser, source: Any, sink: Any, *, fresh: bool, lay: Layout,
        tile: int | None, overlap: int, fit_on: int | None = None,
        convert: Convert | None = None, progress: Callable[[int], None] | None = None,
        after_row: Callable[[], None] | None = None) -> None:
    """Denoise every unit of ``source`` into ``sink`` (the one prediction path).

    Parameters
    ----------
    den
        The method; fitted per unit when ``fresh`` and its fit policy is ``per_image``.
    source, sink
        Indexable like numpy arrays: ``sink`` has ``source``'s shape, Y and X times
        ``den.upscale``.
    fresh
        From :func:`prepare`: ``den`` was made from a name here, or is a caller's
        unfitted model (a fitted model is never refitted, and the caller's object is
        never changed: copies are fitted).
    lay, tile, overlap
        From :func:`layout` and :func:`check_tiling`.
    fit_on
        Fit once on this many evenly spaced units instead of on each.
    convert
        Maps each denoised float32 piece (in raw units) to the sink's type.
    progress
        Called with 1 after each unit.
    after_row
        Called after each row of tiles (e.g. to release memory-mapped pages).

    Notes
    -----
    The :class:`~microdenoise.feedback.Feedback` in effect (see
    :func:`microdenoise.feedback.reporting`) names the image in messages, hears
    which method and scaling run and how far the work is (per unit and per tile),
    and says whether a constant unit is an error (``strict``). Otherwise a
    constant unit (a blank frame) is copied to the output unchanged, with a
    :class:`~microdenoise.errors.NoticeWarning`. Pixels that an integer ``sink``
    clips are counted and reported the same way.
    """
    if fit_on is not None and fit_on < 1:
        raise InputError("--fit-on must be at least 1")
    report = fb.current()
    units = lay.units()
    constant = constant_units(source, lay, after_row=after_row)
    for k, value in constant.items():
        where = lay.describe(units[k], report.name)
        if report.strict:
            raise InputError(f"{where} is constant (every pixel = {value:g}): nothing to "
                             "denoise (--strict refuses it; without it, it is passed through)")
        fb.notice(f"{where} is constant (value {value:g}): passed through unchanged")
    norms = image_normalizers(den, source, lay, constant, after_row=after_row)
    work = [u for k, u in enumerate(units) if k not in constant]
    if report.info is not None and work:
        report.info(f"{report.label or den.key}, "
                    f"{fb.describe_scaling(den, np.dtype(source.dtype))}")
    if tile is not None and den.global_field and tile < max(lay.shape[-2:]):
        warn_global(den, f"{tile}-pixel tiles")
    clip = fb.ClipCounter(sink)
    bases, groups = unit_methods(den, source, work, lay.cax,
                                 lambda u: normalizers(den, norms, lay.channel(u))[0],
                                 fresh=fresh)
    live = [k for k in range(len(units)) if k not in constant]
    base_of = dict(zip(live, zip(bases, groups, strict=True), strict=True))
    per_image = fresh and den.fit_policy == "per_image"
    once: dict[int, Denoiser] = {}  # fit_on: the model fitted once per group
    if per_image and fit_on is not None and work:
        for g in sorted(set(groups)):
            members = [u for u, h in zip(work, groups, strict=True) if h == g]
            base = bases[groups.index(g)]
            once[g] = fit_unit(base, source, [members[i] for i in
                                              fit_picks(len(members), fit_on)], lay, norms) \
                if base.fit_policy == "per_image" else base
        per_image = False
    what = "volumes" if lay.vax is not None else "planes"
    model, said = den, ""
    for k, unit in enumerate(units):
        if k in constant:
            full = np.full(_out_shape(lay, den.upscale), constant[k], dtype=np.float32)
            sink[unit] = full if convert is None else convert(full)
        else:
            base, group = base_of[k]
            model = once.get(group, base)
            if per_image and base.fit_policy == "per_image":
                if report.progress is not None:
                    report.progress(float(k), len(units), f"{what} (fitting)")
                model = fit_unit(base, source, [unit], lay, norms)
            said = _say_fit(report, model, said)
            pair = normalizers(model, norms, lay.channel(unit))

            def on_tile(done: int, total: int, k: int = k) -> None:
                if report.progress is not None:
                    report.progress(k + done / total, len(units), what)

            tile = predict_unit(model, source, sink, unit, pair, tile=tile, overlap=overlap,
                                convert=clip.wrap(convert), after_row=after_row,
                                on_tile=on_tile)
        if report.progress is not None:
            report.progress(float(k + 1), len(units), what)
        if progress is not None:
            progress(1)
    fb.warn_clipped(report.name, clip.clipped, clip.total, clip.dtype)


def _say_fit(report: fb.Feedback, model: Denoiser, said: str) -> str:
    """Tell what a fit chose (``describe_fit``: preset, noise constants, corrections),
    once, and again only when it changes from unit to unit."""
    text = model.describe_fit()
    if text and text != said and report.info is not None:
        report.info(text)
    return text


def _out_shape(lay: Layout, s: int) -> tuple[int, ...]:
    lead = tuple(n for i, n in enumerate(lay.shape[:-2]) if i == lay.vax)
    return (*lead, lay.shape[-2] * s, lay.shape[-1] * s)


def warn_global(den: Denoiser, pieces: str) -> None:
    """Say that a whole-image method run in pieces differs from one pass."""
    warnings.warn(f"{den.key} depends on the whole image: with {pieces} its output differs "
                  f"from one whole pass (each piece sees {den.receptive_field} px of "
                  "context); run without tiling for the exact result", stacklevel=3)


def predict_unit(den: Denoiser, source: Any, sink: Any, unit: tuple[Any, ...],
                 pair: tuple[Normalizer, Normalizer], *, tile: int | None, overlap: int,
                 convert: Convert | None = None, after_row: Callable[[], None] | None = None,
                 on_tile: Callable[[int, int], None] | None = None) -> int | None:
    """Denoise one unit, whole (``tile=None``) or tile by tile; return the tile that worked.

    ``on_tile(done, total)`` is called after each tile (once, ``(1, 1)``, untiled)."""
    norm_in, norm_out = pair
    s, m = den.upscale, den.tile_multiple
    shape = source.shape[-2:]

    def put(target: tuple[Any, ...], piece: np.ndarray) -> None:
        out = norm_out.inverse(piece)
        sink[(*unit, *target)] = out if convert is None else convert(out)

    def attempt(size: int | None) -> None:
        if size is None:
            x = norm_in(np.asarray(source[unit]))
            put((), _checked(den, den.denoise(x), x.shape))
            if on_tile is not None:
                on_tile(1, 1)
            return
        plan = plan_tiles(shape, tile=size, overlap=overlap, multiple=m)
        for k, spec in enumerate(plan):
            x = norm_in(np.asarray(source[(*unit, *spec.source)]))
            y = _checked(den, den.denoise(x), x.shape)
            crop: tuple[Any, ...] = (Ellipsis, *_scaled(spec.crop, s))
            put(_scaled(spec.target, s), y[crop])
            if on_tile is not None:
                on_tile(k + 1, len(plan))
            if after_row is not None and (k + 1 == len(plan)
                                          or plan[k + 1].target[0] != spec.target[0]):
                after_row()

    return retry_smaller(attempt, tile=tile, overlap=overlap, multiple=m, shape=shape)


def _scaled(slices: tuple[slice, ...], s: int) -> tuple[slice, ...]:
    if s == 1:
        return slices
    return tuple(slice(x.start * s, x.stop * s) for x in slices)


def _checked(den: Denoiser, result: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The method's output as float32, after checking its shape (Y, X times upscale)."""
    out = np.asarray(result, dtype=np.float32)
    s = den.upscale
    want = (*shape[:-2], shape[-2] * s, shape[-1] * s)
    if out.shape != want:
        raise ValueError(f"{den.key} returned shape {out.shape} for an input of shape {shape}; "
                         f"it must return {want}")
    return out


def denoise_block(den: Denoiser, block: np.ndarray, pair: tuple[Normalizer, Normalizer], *,
                  volume: bool = False) -> np.ndarray:
    """Denoise one raw block holding one unit (a Dask chunk with its margins: every leading
    axis of length 1, but the volume axis of a 3D method); float32 in raw units.

    Predicted whole; after a GPU out-of-memory error in tiles with the receptive field as
    context, on the method's pooling grid (:func:`microdenoise.oom.predict_block`)."""
    norm_in, norm_out = pair
    x = norm_in(block.reshape((-1, *block.shape[-2:]) if volume else block.shape[-2:]))
    y = predict_block(lambda t: _checked(den, den.denoise(t), t.shape), x,
                      overlap=den.receptive_field, multiple=den.tile_multiple,
                      scale=den.upscale)
    return norm_out.inverse(y).reshape(block.shape)
