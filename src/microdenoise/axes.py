"""The image in memory and the axes convention shared by every image format.

Holds :class:`ImageData` (pixels, axes, calibration), :data:`AXES_LETTERS`
(``"STCZYX"``, S = sample), :func:`check_axes`, which validates an axes string
against the data, :func:`resolve_axes`, which chooses between given axes and a
file's own, and :func:`drop_colour`, which keeps the one channel of a gray image
stored as RGB(A) or gray + alpha, and :func:`volume_axis`, the axis a 3D
method filters along. :mod:`microdenoise.io`,
:mod:`microdenoise.tiff_io` and :mod:`microdenoise.zarr_io` import it; it imports
none of them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import AxesWarning, InputError

__all__ = ["AXES_LETTERS", "ImageData", "check_axes", "drop_colour", "resolve_axes",
           "volume_axis"]

AXES_LETTERS = "STCZYX"
_RGB_MESSAGE = (
    "{} is an {} image; microdenoise denoises single-channel fluorescence images: split "
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
    raise InputError(_RGB_MESSAGE.format(path, "RGBA" if colour.shape[0] == 4 else "RGB"))


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

    def __repr__(self) -> str:
        """Shape, dtype, axes, calibration and file; never the pixels."""
        size = None if self.pixel_size is None else tuple(float(v) for v in self.pixel_size)
        return (f"ImageData(shape={tuple(self.data.shape)}, dtype={self.data.dtype}, "
                f"axes={self.axes!r}, pixel_size={size}, unit={self.unit!r}, "
                f"path={None if self.path is None else str(self.path)!r})")


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


def volume_axis(axes: str) -> int | None:
    """The axis a 3D method filters along: Z, else T (never S: samples are unrelated)."""
    for letter in "ZT":
        if letter in axes[:-2]:
            return axes.index(letter)
    return None
