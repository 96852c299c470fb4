"""Fixtures shared by the learned methods' tests (tests/conftest.py sets one torch thread)."""

from __future__ import annotations

import numpy as np
import pytest

from ..conftest import blobs, poisson_gaussian


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A seeded 64x64 clean image and its Poisson-Gaussian noisy version."""
    clean = blobs((64, 64), seed=0)
    return clean, poisson_gaussian(clean, seed=3)


def apply_model(model, image: np.ndarray) -> np.ndarray:
    """A trained model on a raw image, as the pipeline applies it (untiled): normalize
    with its input normalizer, ``denoise``, map back with its output normalizer."""
    if model.normalization != "model":  # scaled by the image itself (per-image options)
        from microdenoise.intensity import make_normalizer

        n_in = n_out = make_normalizer(model.normalization, image)
    else:
        n_in, n_out = model.normalizers
    return n_out.inverse(model.denoise(n_in(image)))
