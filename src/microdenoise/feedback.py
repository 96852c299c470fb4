"""What the prediction core tells its caller while it works, and how strict it is.

:class:`Feedback` carries a file's name for messages, the method's label, two
callbacks (``info``: one line saying which method and which intensity scaling
run; ``progress``: units done of units total, with fractions inside a unit as
tiles finish) and ``strict`` (a constant plane is an error, not a notice).

A driver sets it for a block of work with :func:`reporting`; :func:`microdenoise.core.run`
reads it with :func:`current`. So every driver (in memory, streamed, Dask
files) gets the same messages without passing them through each signature.

Notices (constant planes passed through, clipped pixels, skipped files) are
:class:`~microdenoise.errors.NoticeWarning` warnings: the CLI prints each as one
line on stderr, Python callers see ordinary warnings.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import NoticeWarning
from .version import __version__

__all__ = ["ClipCounter", "Feedback", "count_clipped", "current", "describe_scaling", "notice",
           "notice_once", "processing_note", "reporting", "warn_clipped"]


@dataclass(frozen=True)
class Feedback:
    """How the core reports on one image (see the module docstring)."""

    name: str = "the image"
    label: str | None = None  # e.g. "fm2s (preset confocal)"; default the method's key
    strict: bool = False
    info: Callable[[str], None] | None = None
    progress: Callable[[float, int, str], None] | None = None  # (done, total, what)
    #: What a routing method chose, per channel, with the reason (the file drivers
    #: write it into the output's metadata); filled by the core, fresh per file.
    choices: dict[int, str] = field(default_factory=dict)
    #: Notices given once per run (:func:`notice_once`), shared by a run's files.
    said: set[str] = field(default_factory=set)


_CURRENT: contextvars.ContextVar[Feedback] = contextvars.ContextVar(
    "microdenoise_feedback", default=Feedback())  # noqa: B039  (frozen, so shared safely)


def current() -> Feedback:
    """The :class:`Feedback` set by the innermost :func:`reporting` (a silent default)."""
    return _CURRENT.get()


@contextlib.contextmanager
def reporting(feedback: Feedback) -> Iterator[Feedback]:
    """Use ``feedback`` for the core's work inside the block."""
    token = _CURRENT.set(feedback)
    try:
        yield feedback
    finally:
        _CURRENT.reset(token)


def notice(message: str) -> None:
    """Tell the user something they must not miss (one line in the CLI)."""
    warnings.warn(message, NoticeWarning, stacklevel=3)


def notice_once(message: str) -> None:
    """:func:`notice`, unless this run (the :class:`Feedback` in effect and the ones
    made from it per file) has said it already."""
    said = current().said
    if message not in said:
        said.add(message)
        warnings.warn(message, NoticeWarning, stacklevel=3)


def processing_note(choices: dict[int, str]) -> str:
    """What a routing method chose (``Feedback.choices``) as the output's ``processing``
    metadata ("" when nothing was routed)."""
    if not choices:
        return ""
    return f"microdenoise {__version__}: " + "; ".join(choices[c] for c in sorted(choices))


def describe_scaling(den: Any, dtype: Any) -> str:
    """How ``den``'s input intensities are scaled, in words, for data of ``dtype``."""
    kind = den.normalization
    if kind == "unit":
        if np.dtype(dtype) == np.uint8:
            return "intensities scaled by the 8-bit range 0..255"
        return "intensities scaled by the image's min..max"
    if kind == "percentile":
        return "intensities scaled by the image's percentiles 1/99.8"
    if kind == "model":
        stored = getattr(den.normalizers[0], "kind", "stored")
        words = {"mean_std": "mean/std", "percentile": "percentiles",
                 "fixed_range": "range"}.get(stored, stored)
        return f"intensities scaled by the model's stored {words}"
    return "intensities used as they are"


def count_clipped(data: np.ndarray, dtype: Any) -> int:
    """Pixels of ``data`` that rounding into the integer ``dtype`` clips (0 for floats)."""
    target = np.dtype(dtype)
    if target.kind not in "ui":
        return 0
    info = np.iinfo(target)
    values = np.rint(np.asarray(data, dtype=np.float64))
    return int(np.count_nonzero((values < info.min) | (values > info.max)))


def warn_clipped(name: str, clipped: int, total: int, dtype: Any) -> None:
    """Say how many pixels an integer output clipped (nothing when none were)."""
    if clipped <= 0:
        return
    info = np.iinfo(np.dtype(dtype))
    notice(f"{name}: {clipped} of {total} pixels ({100 * clipped / max(total, 1):.1f}%) "
           f"clipped to the {np.dtype(dtype)} range {info.min}..{info.max}")


class ClipCounter:
    """Counts the pixels an integer sink clips, piece by piece (nothing for a float sink)."""

    def __init__(self, sink: Any) -> None:
        dtype = np.dtype(getattr(sink, "dtype", np.float32))
        self.dtype = dtype if dtype.kind in "ui" else None
        self.clipped = self.total = 0

    def wrap(self, convert: Callable[[np.ndarray], np.ndarray] | None
             ) -> Callable[[np.ndarray], np.ndarray] | None:
        """``convert``, counting what it will clip first."""
        if self.dtype is None:
            return convert

        def counted(piece: np.ndarray) -> np.ndarray:
            self.clipped += count_clipped(piece, self.dtype)
            self.total += piece.size
            return piece if convert is None else convert(piece)

        return counted
