"""The axes convention shared by every image format.

Holds :data:`AXES_LETTERS` (``"STCZYX"``, S = sample), :func:`check_axes`,
which validates an axes string against the data, and :func:`drop_colour`,
which keeps the one channel of a gray image stored as RGB(A) or gray + alpha.
:mod:`microdenoise.io` and :mod:`microdenoise.tiff_io` both import it; it
imports neither.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["AXES_LETTERS", "check_axes", "drop_colour"]

AXES_LETTERS = "STCZYX"
_RGB_MESSAGE = (
    "{} is an RGB image; microdenoise denoises single-channel fluorescence images: split "
    "the channels (e.g. in Fiji: Image > Color > Split Channels) and denoise each"
)


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


def drop_colour(path: Path, data: np.ndarray, axis: int) -> np.ndarray:
    """Return the one channel of a gray image stored as RGB(A) or gray + alpha."""
    colour = np.moveaxis(data, axis, 0)
    n = 1 if colour.shape[0] == 2 else min(colour.shape[0], 3)  # alpha is not a colour
    if all(np.array_equal(colour[0], colour[i]) for i in range(1, n)):
        return np.ascontiguousarray(colour[0])
    raise InputError(_RGB_MESSAGE.format(path))
