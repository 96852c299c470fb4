"""Shared fixtures: seeded synthetic images and the shared benchmark data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from microdenoise import datasets

# The tests train tiny networks on tiny images: one thread is as fast as two and
# stays fast when other work shares the 2 cores.
torch.set_num_threads(1)


def blobs(shape: tuple[int, int] = (64, 64), *, seed: int = 0) -> np.ndarray:
    """A smooth clean image in [0.1, 0.9]: random blobs, seeded."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random(shape), sigma=4.0)
    img = (img - img.min()) / (img.max() - img.min())
    return (0.1 + 0.8 * img).astype(np.float32)


def poisson_gaussian(clean: np.ndarray, *, photons: float = 30.0, sigma: float = 0.05,
                     seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noisy = rng.poisson(clean * photons) / photons + rng.normal(0, sigma, clean.shape)
    return noisy.astype(np.float32)


@pytest.fixture
def clean_noisy() -> tuple[np.ndarray, np.ndarray]:
    clean = blobs((64, 64))
    return clean, poisson_gaussian(clean)


@pytest.fixture
def data_root() -> Path:
    root = datasets.data_root_or_none()
    if root is None:
        pytest.skip("shared data not found (../shared/data); CI has it")
    return root
