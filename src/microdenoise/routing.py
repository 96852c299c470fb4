"""Which method runs on which unit: routing per channel, then fitting as each method says.

A method that ``routes`` (:class:`microdenoise.methods.auto.Auto`, the default)
chooses another method from the data. :func:`route_channels` asks it once per
channel of an image, showing it up to ``planes`` evenly spaced planes of that
channel (normalized as the core normalizes them), so that the planes of one
acquisition get one method while channels, whose noise can differ, may get
different ones. It says each choice and why (``Feedback.info``), gives the
route's notice once per run (the BM3D licence), and records the choice for the
output's metadata (``Feedback.choices``).

:func:`unit_methods` is what both the core's loop and the Dask array driver use:
for each unit to denoise, the method to fit (or apply) and the group of units it is
fitted with under ``fit_on`` (one group, or one per channel for a routed method).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import feedback as fb
from .normalize import Normalizer
from .registry import Denoiser

__all__ = ["channel_of", "fit_picks", "route_channels", "unit_methods"]


def fit_picks(n: int, k: int) -> list[int]:
    """``min(k, n)`` evenly spaced positions in ``range(n)`` (first and last included)."""
    return [int(i) for i in np.linspace(0, n - 1, min(k, n)).round()]


def channel_of(cax: int | None, unit: tuple[Any, ...]) -> int:
    """The channel a unit (index tuple over the leading axes) belongs to."""
    return 0 if cax is None else int(unit[cax])


def route_channels(den: Denoiser, source: Any, units: list[tuple[Any, ...]], cax: int | None,
                   norm_of: Callable[[tuple[Any, ...]], Normalizer]) -> dict[int, Denoiser]:
    """The (unfitted) method ``den`` chooses for each channel of ``units``.

    Parameters
    ----------
    den
        A method that ``routes``.
    source
        The image, indexable by a unit.
    units
        The units to denoise (constant ones left out).
    cax
        The channel axis among the leading axes, or None.
    norm_of
        The input normalizer of a unit.
    """
    report = fb.current()
    by_channel: dict[int, list[tuple[Any, ...]]] = {}
    for unit in units:
        by_channel.setdefault(channel_of(cax, unit), []).append(unit)
    chosen: dict[int, Denoiser] = {}
    for c, members in sorted(by_channel.items()):
        picks = [members[i] for i in fit_picks(len(members), int(getattr(den.config, "planes", 3)))]
        planes = [norm_of(u)(np.asarray(source[u], dtype=np.float32)) for u in picks]
        route = den.route(planes)
        chosen[c] = route.method
        reason = route.reason + (f" (channel {c})" if len(by_channel) > 1 or cax is not None
                                 else "")
        report.choices[c] = reason
        if report.info is not None:
            report.info(reason)
        if route.notice:
            fb.notice_once(route.notice)
    return chosen


def unit_methods(den: Denoiser, source: Any, units: list[tuple[Any, ...]], cax: int | None,
                 norm_of: Callable[[tuple[Any, ...]], Normalizer], *, fresh: bool
                 ) -> tuple[list[Denoiser], list[int]]:
    """For each of ``units``: the method to fit or apply, and its ``fit_on`` group.

    A routing method made or passed unfitted (``fresh``) is routed per channel
    (:func:`route_channels`), with one group per channel; any other method serves
    every unit, in one group.
    """
    if not (fresh and den.routes) or not units:
        return [den] * len(units), [0] * len(units)
    chosen = route_channels(den, source, units, cax, norm_of)
    groups = [channel_of(cax, u) for u in units]
    return [chosen[g] for g in groups], groups
