"""Simulated noise: Gaussian, Poisson (shot) and Poisson-Gaussian.

Randomness is explicit: every function takes a keyword-only ``seed``, an
``int`` or a :class:`numpy.random.Generator`. The same integer seed gives the
same output; a Generator is advanced, so successive calls differ.

Images are on a [0, 1]-like scale for the Poisson models: ``photons`` is the
expected photon count of a pixel of value 1, so a pixel of value ``v`` becomes
``Poisson(v * photons) / photons`` (mean ``v``, variance ``v / photons``).
Outputs are float32 and are not clipped unless ``clip=True`` (then to [0, 1]).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InputError

__all__ = ["add_gaussian", "add_poisson", "add_poisson_gaussian"]


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    """Return a Generator for ``seed`` (a Generator is used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise InputError(
            f"seed must be an int or a numpy.random.Generator, got {type(seed).__name__}"
        )
    return np.random.default_rng(int(seed))


def _image(image: ArrayLike) -> NDArray[np.float64]:
    """Return ``image`` as a finite float64 array."""
    arr = np.asarray(image, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError("the image contains NaN or infinite values: replace them first")
    return arr


def _check_sigma(sigma: float) -> float:
    value = float(sigma)
    if not math.isfinite(value) or value < 0:
        raise InputError(f"sigma must be a finite number >= 0, got {sigma!r}")
    return value


def _check_photons(photons: float) -> float:
    value = float(photons)
    if not math.isfinite(value) or value <= 0:
        raise InputError(
            f"photons must be a positive finite number (the count of a pixel of value 1), "
            f"got {photons!r}"
        )
    return value


def _poisson(
    arr: NDArray[np.float64], photons: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    if np.any(arr < 0):
        raise InputError(
            "Poisson noise needs non-negative intensities: the image has values below 0; "
            "normalize it to [0, 1] first"
        )
    return rng.poisson(arr * photons).astype(np.float64) / photons


def _finish(arr: NDArray[np.float64], clip: bool) -> NDArray[np.float32]:
    if clip:
        arr = np.clip(arr, 0.0, 1.0)
    return arr.astype(np.float32)


def add_gaussian(
    image: ArrayLike, sigma: float, *, seed: int | np.random.Generator, clip: bool = False
) -> NDArray[np.float32]:
    """Add zero-mean Gaussian noise of standard deviation ``sigma``.

    Parameters
    ----------
    image : array_like
        Clean image, any shape.
    sigma : float
        Noise standard deviation, in the image's units.
    seed : int or numpy.random.Generator
        Source of randomness.
    clip : bool, optional
        Clip the result to [0, 1].

    Returns
    -------
    numpy.ndarray
        float32 array of the image's shape.

    Raises
    ------
    InputError
        If ``sigma`` is negative or the image is not finite.
    """
    value = _check_sigma(sigma)
    arr = _image(image)
    rng = _rng(seed)
    return _finish(arr + rng.normal(0.0, value, size=arr.shape), clip)


def add_poisson(
    image: ArrayLike, *, photons: float, seed: int | np.random.Generator, clip: bool = False
) -> NDArray[np.float32]:
    """Apply Poisson (shot) noise: ``Poisson(image * photons) / photons``.

    Parameters
    ----------
    image : array_like
        Clean, non-negative image, typically in [0, 1].
    photons : float
        Expected photon count of a pixel of value 1 (lower is noisier).
    seed : int or numpy.random.Generator
        Source of randomness.
    clip : bool, optional
        Clip the result to [0, 1].

    Returns
    -------
    numpy.ndarray
        float32 array with mean ``image`` and variance ``image / photons``.

    Raises
    ------
    InputError
        If ``photons`` is not positive or the image has negative or non-finite values.
    """
    value = _check_photons(photons)
    arr = _image(image)
    rng = _rng(seed)
    return _finish(_poisson(arr, value, rng), clip)


def add_poisson_gaussian(
    image: ArrayLike,
    *,
    photons: float,
    sigma: float,
    seed: int | np.random.Generator,
    clip: bool = False,
) -> NDArray[np.float32]:
    """Apply Poisson noise, then add Gaussian read noise.

    Parameters
    ----------
    image : array_like
        Clean, non-negative image, typically in [0, 1].
    photons : float
        Expected photon count of a pixel of value 1.
    sigma : float
        Standard deviation of the additive Gaussian noise, in the image's units.
    seed : int or numpy.random.Generator
        Source of randomness.
    clip : bool, optional
        Clip the result to [0, 1].

    Returns
    -------
    numpy.ndarray
        float32 array with mean ``image`` and variance ``image / photons + sigma**2``.

    Raises
    ------
    InputError
        If a parameter is out of range or the image has negative or non-finite values.
    """
    p = _check_photons(photons)
    s = _check_sigma(sigma)
    arr = _image(image)
    rng = _rng(seed)
    shot = _poisson(arr, p, rng)
    return _finish(shot + rng.normal(0.0, s, size=arr.shape), clip)
