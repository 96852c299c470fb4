"""The one out-of-memory policy: what microdenoise does when a GPU runs out of memory.

A GPU out-of-memory error (:func:`microdenoise.tiling.is_out_of_memory`: torch's
``OutOfMemoryError``, or a CUDA/MPS "out of memory" ``RuntimeError``) is handled the
same way wherever a method runs; host memory (``MemoryError``) is not a GPU problem
and is never retried here.

Prediction of a unit (:func:`microdenoise.core.run`: arrays, streamed files, the Dask
file batch)
    The unit is predicted again in tiles of half its larger side, then of half that,
    each with the method's receptive field as context and on its pooling grid (so the
    output is the one-pass output for methods that tile exactly), down to a floor,
    where an :class:`InputError` says to free GPU memory or use ``--device cpu``
    (:func:`microdenoise.tiling.retry_smaller`). The size that worked is kept for the
    next unit.
Prediction of a block (:func:`predict_block`: a Dask chunk with its margins in
:func:`microdenoise.core.denoise_block`, and each of ``compare``'s candidate runs)
    The block is predicted whole; after an out-of-memory error it is tiled, with the
    same halving, floor and error, as a unit is.
A fit (:func:`fit_retrying`: :func:`microdenoise.core.fit_unit`, the per-image fits of
every driver and of ``compare``)
    Torch's cached GPU memory is freed and the fit is run once more on a fresh copy;
    a second out-of-memory error is an :class:`InputError` saying what to change: fit
    on less data (a smaller crop, a smaller ``--fit-on``) or use ``--device cpu``.
    A fit is not tiled: its result depends on all the data it sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InputError
from .tiling import denoise_tiled, free_gpu_cache, is_out_of_memory, retry_smaller

__all__ = ["fit_retrying", "predict_block"]

T = TypeVar("T")


def predict_block(fn: Callable[[NDArray[np.float32]], ArrayLike], block: ArrayLike, *,
                  overlap: int, multiple: int = 1, scale: int = 1) -> NDArray[np.float32]:
    """``fn(block)``, or, after a GPU out-of-memory error, ``fn`` over tiles of the block.

    Parameters
    ----------
    fn : callable
        Maps a float32 array (..., Y, X) to one of the same shape, Y and X times ``scale``.
    block : array_like
        The data, at least 2D; tiles are cut over its last two axes.
    overlap : int
        Context of each tile (the method's receptive field: then the tiles give the
        whole block's output for a method whose output is local).
    multiple : int, optional
        Tiles start on multiples of this (the method's pooling grid, counted from the
        block's first pixel).
    scale : int, optional
        ``fn``'s output pixels per input pixel along Y and X.

    Returns
    -------
    numpy.ndarray
        float32, the block's shape, Y and X times ``scale``.

    Raises
    ------
    InputError
        The GPU ran out of memory even with the smallest tile
        (:func:`microdenoise.tiling.smaller_tile`).
    """
    arr = np.asarray(block, dtype=np.float32)
    result: list[NDArray[np.float32]] = []

    def attempt(size: int | None) -> None:
        if size is None:
            result.append(np.asarray(fn(arr), dtype=np.float32))
        else:
            result.append(denoise_tiled(fn, arr, tile=size, overlap=overlap, scale=scale,
                                        multiple=multiple))

    retry_smaller(attempt, tile=None, overlap=overlap, multiple=multiple, shape=arr.shape)
    return result[-1]


def fit_retrying(fit: Callable[[], T], *, what: str) -> T:
    """``fit()``; after a GPU out-of-memory error, free torch's cached memory and run it
    once more.

    Parameters
    ----------
    fit : callable
        Fits and returns a model; it must start afresh each call (a fresh copy).
    what : str
        What is fitted on what, for the error (``"fm2s on a 2048x2048 plane"``).

    Returns
    -------
    object
        What ``fit`` returned.

    Raises
    ------
    InputError
        The second try ran out of GPU memory too.
    """
    try:
        return fit()
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
    # Out of the except block: the failed fit's tensors are released before this empties
    # torch's cache.
    free_gpu_cache()
    try:
        return fit()
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        raise InputError(
            f"out of GPU memory fitting {what}, also after freeing torch's cached memory "
            "and trying again: fit on less data (a smaller crop of the image, or a "
            "smaller --fit-on), free GPU memory, or use --device cpu") from None
