"""Invertible intensity normalizers with global statistics.

A normalizer is a small frozen dataclass: calling it maps raw intensities to
the scale a method expects (float32), and :meth:`inverse` maps a prediction
back, so that denoised intensities stay quantitative. Statistics are always
global (the whole image or stack, or the training data), never per tile:
per-tile statistics make seams.

``to_dict()`` gives a plain dict of floats and a ``"kind"`` to store in a model
file; :func:`normalizer_from_dict` (or the class's ``from_dict``) rebuilds it.

=============  ================================================================
kind           meaning
=============  ================================================================
``"unit"``     :func:`unit_range`: uint8 data by the 8-bit range 0..255, other
               data by the image's own min..max (the FM2S/classical convention)
``"percentile"`` :class:`Percentile`: 1st/99.8th percentiles map to 0/1
``"none"``     :class:`Identity`: float32 cast only
``"model"``    a trained model's own normalizers (``Denoiser.normalizers``),
               computed from its training data and stored in the model
=============  ================================================================

Building them from an image's statistics (the ``"unit"`` and ``"percentile"``
kinds, per channel, band by band) is :mod:`microdenoise.intensity`'s job.

Round trips are exact up to float32 rounding: ``inverse(n(x))`` equals ``x``
to about 1e-7 of the normalizer's range ``high - low``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InputError

__all__ = [
    "FixedRange",
    "Identity",
    "MeanStd",
    "Normalizer",
    "Percentile",
    "constant_error",
    "normalizer_from_dict",
]

P_LOW, P_HIGH = 1.0, 99.8  # default percentiles mapped to 0 and 1
MAX_SAMPLES = 1_000_000  # above this many pixels, percentiles come from a seeded subsample


@runtime_checkable
class Normalizer(Protocol):
    """What every normalizer offers."""

    def __call__(self, x: ArrayLike) -> NDArray[np.float32]:
        """Normalize ``x``."""
        ...

    def inverse(self, y: ArrayLike) -> NDArray[np.float32]:
        """Undo the normalization of ``y``."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """Return the parameters as plain data, with a ``"kind"`` key."""
        ...


def _work(x: ArrayLike) -> NDArray[np.floating[Any]]:
    """Return ``x`` as float32, or float64 when float32 would lose precision."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"cannot normalize an array of dtype {arr.dtype}: pass numeric data")
    dtype = np.result_type(arr.dtype, np.float32)
    return arr.astype(dtype, copy=False)


def _affine(x: ArrayLike, offset: float, scale: float) -> NDArray[np.float32]:
    """Return ``(x - offset) / scale`` as float32."""
    arr = _work(x)
    return ((arr - offset) / scale).astype(np.float32, copy=False)


def _affine_inverse(y: ArrayLike, offset: float, scale: float) -> NDArray[np.float32]:
    """Return ``y * scale + offset`` as float32."""
    arr = _work(y)
    return (arr * scale + offset).astype(np.float32, copy=False)


def _finite(name: str, value: float) -> float:
    out = float(value)
    if not math.isfinite(out):
        raise InputError(f"{name} must be finite, got {value!r}")
    return out


def _check_kind(data: Mapping[str, Any], kind: str) -> None:
    if data.get("kind") != kind:
        raise InputError(f"expected a normalizer of kind {kind!r}, got {data.get('kind')!r}")


def constant_error(value: float) -> InputError:
    return InputError(
        f"the image is constant (every pixel = {value:g}): there is no signal or noise to separate"
    )


@dataclass(frozen=True)
class Identity:
    """No normalization: values are only cast to float32."""

    kind: ClassVar[str] = "none"

    def __call__(self, x: ArrayLike) -> NDArray[np.float32]:
        """Return ``x`` as float32."""
        return np.asarray(x, dtype=np.float32)

    def inverse(self, y: ArrayLike) -> NDArray[np.float32]:
        """Return ``y`` as float32."""
        return np.asarray(y, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"kind": "none"}``."""
        return {"kind": self.kind}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output."""
        _check_kind(data, cls.kind)
        return cls()


@dataclass(frozen=True)
class FixedRange:
    """Map ``low..high`` to ``0..1``: ``(x - low) / (high - low)``.

    Parameters
    ----------
    low, high : float
        Intensities mapped to 0 and 1, ``high > low`` (e.g. 0 and 255 for 8-bit data).
    """

    low: float
    high: float
    kind: ClassVar[str] = "fixed_range"

    def __post_init__(self) -> None:
        low = _finite("low", self.low)
        high = _finite("high", self.high)
        if not high > low:
            raise InputError(f"high must be greater than low, got low={low:g}, high={high:g}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def __call__(self, x: ArrayLike) -> NDArray[np.float32]:
        """Return ``(x - low) / (high - low)`` as float32."""
        return _affine(x, self.low, self.high - self.low)

    def inverse(self, y: ArrayLike) -> NDArray[np.float32]:
        """Return ``y * (high - low) + low`` as float32."""
        return _affine_inverse(y, self.low, self.high - self.low)

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"kind": "fixed_range", "low": ..., "high": ...}``."""
        return {"kind": self.kind, "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output."""
        _check_kind(data, cls.kind)
        return cls(float(data["low"]), float(data["high"]))


@dataclass(frozen=True)
class Percentile:
    """Map the ``low`` and ``high`` percentile values to 0 and 1 (CSBDeep/CARE style).

    Build it with :meth:`fit`; the mapping is ``(x - low) / (high - low)``,
    not clipped, so values outside the percentiles fall outside [0, 1].

    Parameters
    ----------
    low, high : float
        Intensities (not percents) mapped to 0 and 1, ``high > low``.
    """

    low: float
    high: float
    kind: ClassVar[str] = "percentile"

    def __post_init__(self) -> None:
        low = _finite("low", self.low)
        high = _finite("high", self.high)
        if not high > low:
            raise InputError(f"high must be greater than low, got low={low:g}, high={high:g}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @classmethod
    def fit(
        cls,
        image: ArrayLike,
        *,
        p_low: float = P_LOW,
        p_high: float = P_HIGH,
        max_samples: int = MAX_SAMPLES,
        seed: int = 0,
    ) -> Self:
        """Compute the percentiles of the whole image or stack.

        Parameters
        ----------
        image : array_like
            Image or stack; all pixels count (global statistics).
        p_low, p_high : float, optional
            Percents mapped to 0 and 1, ``0 <= p_low < p_high <= 100``.
        max_samples : int, optional
            Above this many pixels, the percentiles are taken on this many
            pixels drawn uniformly (with replacement) by a generator seeded
            with ``seed``: deterministic and cheap for huge images or memmaps.
        seed : int, optional
            Seed of the subsampling.

        Returns
        -------
        Percentile
            If the two percentiles coincide (e.g. a sparse image with a flat
            background), the image's min and max are used instead.

        Raises
        ------
        InputError
            If the percents are out of range, the image is empty, non-finite or constant.
        """
        if not 0.0 <= p_low < p_high <= 100.0:
            raise InputError(
                f"need 0 <= p_low < p_high <= 100, got p_low={p_low!r}, p_high={p_high!r}"
            )
        if max_samples < 1:
            raise InputError(f"max_samples must be at least 1, got {max_samples!r}")
        arr = np.asarray(image)
        if arr.size == 0:
            raise InputError("the image is empty: pass an image with at least one pixel")
        if arr.size > max_samples:
            rng = np.random.default_rng(seed)
            flat = np.sort(rng.integers(0, arr.size, size=max_samples))
            sample = np.asarray(arr[np.unravel_index(flat, arr.shape)], dtype=np.float64)
        else:
            sample = np.asarray(arr, dtype=np.float64).ravel()
        if not np.all(np.isfinite(sample)):
            raise InputError("the image contains NaN or infinite values: replace them first")
        low, high = (float(v) for v in np.percentile(sample, [p_low, p_high]))
        if not high > low:
            low, high = float(np.min(arr)), float(np.max(arr))
            if not high > low:
                raise constant_error(low)
        return cls(low, high)

    def __call__(self, x: ArrayLike) -> NDArray[np.float32]:
        """Return ``(x - low) / (high - low)`` as float32."""
        return _affine(x, self.low, self.high - self.low)

    def inverse(self, y: ArrayLike) -> NDArray[np.float32]:
        """Return ``y * (high - low) + low`` as float32."""
        return _affine_inverse(y, self.low, self.high - self.low)

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"kind": "percentile", "low": ..., "high": ...}``."""
        return {"kind": self.kind, "low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output."""
        _check_kind(data, cls.kind)
        return cls(float(data["low"]), float(data["high"]))


@dataclass(frozen=True)
class MeanStd:
    """Standardize: ``(x - mean) / std`` (Noise2Void/DecoNoising style).

    Parameters
    ----------
    mean : float
        Mean of the training data.
    std : float
        Standard deviation of the training data, ``> 0``.
    """

    mean: float
    std: float
    kind: ClassVar[str] = "mean_std"

    def __post_init__(self) -> None:
        mean = _finite("mean", self.mean)
        std = _finite("std", self.std)
        if not std > 0:
            raise InputError(f"std must be positive, got {std:g}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def fit(cls, images: ArrayLike | Sequence[ArrayLike]) -> Self:
        """Compute the global mean and standard deviation of all pixels.

        Parameters
        ----------
        images : array_like or sequence of array_like
            One array, or several arrays (possibly of different shapes) whose
            pixels are pooled.

        Returns
        -------
        MeanStd

        Raises
        ------
        InputError
            If there are no pixels, or they are non-finite or all equal.
        """
        if isinstance(images, np.ndarray):
            arrays = [images]
        elif isinstance(images, Sequence) and not isinstance(images, str | bytes):
            arrays = [np.asarray(a) for a in images]
        else:
            arrays = [np.asarray(images)]
        count = sum(int(a.size) for a in arrays)
        if count == 0:
            raise InputError("no pixels to fit: pass at least one non-empty image")
        total = sum(float(np.sum(a, dtype=np.float64)) for a in arrays)
        mean = total / count
        sq = sum(float(np.sum((np.asarray(a, dtype=np.float64) - mean) ** 2)) for a in arrays)
        if not (math.isfinite(mean) and math.isfinite(sq)):
            raise InputError("the images contain NaN or infinite values: replace them first")
        std = math.sqrt(sq / count)
        if std == 0.0:
            raise constant_error(mean)
        return cls(mean, std)

    def __call__(self, x: ArrayLike) -> NDArray[np.float32]:
        """Return ``(x - mean) / std`` as float32."""
        return _affine(x, self.mean, self.std)

    def inverse(self, y: ArrayLike) -> NDArray[np.float32]:
        """Return ``y * std + mean`` as float32."""
        return _affine_inverse(y, self.mean, self.std)

    def to_dict(self) -> dict[str, Any]:
        """Return ``{"kind": "mean_std", "mean": ..., "std": ...}``."""
        return {"kind": self.kind, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output."""
        _check_kind(data, cls.kind)
        return cls(float(data["mean"]), float(data["std"]))


_CLASSES: dict[str, type[Identity] | type[FixedRange] | type[Percentile] | type[MeanStd]] = {
    cls.kind: cls for cls in (Identity, FixedRange, Percentile, MeanStd)
}


def normalizer_from_dict(data: Mapping[str, Any]) -> Normalizer:
    """Rebuild any normalizer from its ``to_dict()`` output.

    Parameters
    ----------
    data : mapping
        A dict with a ``"kind"`` key and the normalizer's parameters.

    Returns
    -------
    Normalizer

    Raises
    ------
    InputError
        If the kind is unknown or a parameter is missing or invalid.
    """
    kind = data.get("kind")
    cls = _CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise InputError(
            f"unknown normalizer kind {kind!r}: expected one of {', '.join(sorted(_CLASSES))}"
        )
    try:
        return cls.from_dict(data)
    except (KeyError, TypeError) as exc:
        raise InputError(f"invalid {kind} normalizer parameters {dict(data)!r}: {exc}") from exc
