"""Normalizers from an image's own intensity statistics, per channel, band by band.

The kinds a method can ask for (``Denoiser.normalization``):

=============  ================================================================
kind           meaning
=============  ================================================================
``"unit"``     :func:`unit_range`: uint8 data by the 8-bit range 0..255, other
               data by the image's own min..max (the FM2S/classical convention)
``"percentile"`` :class:`~microdenoise.normalize.Percentile`: the 1st/99.8th
               percentiles map to 0/1
``"none"``     :class:`~microdenoise.normalize.Identity`: float32 cast only
``"model"``    a trained model's own normalizers (``Denoiser.normalizers``),
               computed from its training data and stored in the model
=============  ================================================================

:func:`channel_normalizers` computes them for every channel in one pass over row
bands, so that a memory-mapped or Dask image is never loaded whole; it gives exactly
what :func:`make_normalizer` gives on each channel. Statistics are global (the whole
image or stack), never per tile: per-tile statistics make seams.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .errors import InputError
from .normalize import (
    MAX_SAMPLES,
    P_HIGH,
    P_LOW,
    FixedRange,
    Identity,
    Normalizer,
    Percentile,
    constant_error,
)

__all__ = ["KINDS", "channel_normalizers", "make_normalizer", "unit_range"]

KINDS = ("unit", "percentile", "none", "model")
BAND_PIXELS = 2**22  # pixels per row band when statistics are gathered band by band


def unit_range(image: ArrayLike) -> FixedRange:
    """The FM2S/classical ``[0, 1]`` convention for one image.

    Parameters
    ----------
    image : array_like
        The image (or stack) to be denoised.

    Returns
    -------
    FixedRange
        ``FixedRange(0, 255)`` for uint8 data; otherwise the image's own global
        ``min..max``.

    Raises
    ------
    InputError
        If the image is empty, non-finite, or constant (max == min), since
        a constant image has no signal or noise to separate.
    """
    arr = np.asarray(image)
    if arr.size == 0:
        raise InputError("the image is empty: pass an image with at least one pixel")
    if arr.dtype == np.uint8:
        return FixedRange(0.0, 255.0)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"cannot normalize an array of dtype {arr.dtype}: pass numeric data")
    low, high = float(np.min(arr)), float(np.max(arr))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise InputError("the image contains NaN or infinite values: replace them first")
    if not high > low:
        raise constant_error(low)
    return FixedRange(low, high)


def make_normalizer(kind: str, image: ArrayLike) -> Normalizer:
    """Build the normalizer a method asks for, from the image's global statistics.

    Parameters
    ----------
    kind : {"unit", "percentile", "none"}
        ``"unit"``: :func:`unit_range`; ``"percentile"``: :meth:`Percentile.fit`
        with its defaults (1 / 99.8); ``"none"``: :class:`Identity`.
    image : array_like
        The whole image or stack.

    Returns
    -------
    Normalizer

    Raises
    ------
    InputError
        If ``kind`` is unknown or the image cannot be normalized (e.g. constant).
    """
    if kind == "unit":
        return unit_range(image)
    if kind == "percentile":
        return Percentile.fit(image)
    if kind == "none":
        return Identity()
    raise InputError(f"unknown normalization {kind!r}: use one of {', '.join(KINDS)}")


def channel_normalizers(source: Any, kind: str, *, cax: int | None,
                        after_band: Callable[[], None] | None = None) -> list[Normalizer]:
    """Check ``source`` and build one normalizer of ``kind`` per channel, band by band.

    Parameters
    ----------
    source : array-like
        Image or stack indexable like a numpy array (a numpy array, memory map, zarr
        or Dask array); YX are the last two axes.
    kind : {"unit", "percentile", "none", "model"}
        As :func:`make_normalizer`; ``"model"`` only checks the data and returns ``[]``
        (the model brings its own normalizers).
    cax : int or None
        The channel axis (each channel gets its own statistics), or None.
    after_band : callable, optional
        Called after each row band is read (e.g. to drop memory-mapped pages).

    Returns
    -------
    list of Normalizer
        One per channel (``[]`` for ``"model"``). Equal to ``make_normalizer(kind,
        np.take(source, c, axis=cax))``: min/max exactly, percentiles on the same
        seeded subsample as :meth:`Percentile.fit`.

    Raises
    ------
    InputError
        If the data hold NaN/Inf, are constant, or ``kind`` is unknown.
    """
    if kind not in KINDS:
        raise InputError(f"unknown normalization {kind!r}: use one of {', '.join(KINDS)}")
    ny, nx = source.shape[-2:]
    per_plane = ny * nx
    channels = source.shape[cax] if cax is not None else 1
    planes = list(np.ndindex(*source.shape[:-2]))
    groups = [[u for u in planes if cax is None or u[cax] == c] for c in range(channels)]
    rows = max(1, BAND_PIXELS // max(1, nx))
    lows, highs = [math.inf] * channels, [-math.inf] * channels
    samples: list[list[np.ndarray]] = [[] for _ in range(channels)]
    bad = 0
    for c, group in enumerate(groups):
        n = len(group) * per_plane
        # The subsample Percentile.fit draws on np.take(source, c, cax), in flat order.
        pick = (np.sort(np.random.default_rng(0).integers(0, n, size=MAX_SAMPLES))
                if kind == "percentile" and n > MAX_SAMPLES else None)
        for k, index in enumerate(group):
            for r0 in range(0, ny, rows):
                band = np.asarray(source[(*index, slice(r0, r0 + rows), slice(None))])
                if after_band is not None:
                    after_band()
                if band.dtype.kind == "f":
                    bad += int(np.count_nonzero(~np.isfinite(band)))
                    if bad:
                        continue
                lows[c] = min(lows[c], float(band.min()))
                highs[c] = max(highs[c], float(band.max()))
                if kind != "percentile":
                    continue
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
    if kind == "model":
        return []
    norms: list[Normalizer] = []
    for c in range(channels):
        if kind == "none":
            norms.append(Identity())
        elif kind == "unit" and np.dtype(source.dtype) == np.uint8:
            norms.append(FixedRange(0.0, 255.0))
        elif not highs[c] > lows[c]:
            raise constant_error(lows[c])
        elif kind == "unit":
            norms.append(FixedRange(lows[c], highs[c]))
        else:
            low, high = (float(v) for v in np.percentile(np.concatenate(samples[c]),
                                                         [P_LOW, P_HIGH]))
            norms.append(Percentile(low, high) if high > low else
                         Percentile(lows[c], highs[c]))
    return norms
