"""Tests for microdenoise.noise."""

from __future__ import annotations

import numpy as np
import pytest

from microdenoise.errors import InputError
from microdenoise.noise import add_gaussian, add_poisson, add_poisson_gaussian


def _clean() -> np.ndarray:
    return np.linspace(0.0, 1.0, 64 * 64).reshape(64, 64)


def test_seeded_determinism() -> None:
    img = _clean()
    calls = (
        lambda s: add_gaussian(img, 0.1, seed=s),
        lambda s: add_poisson(img, photons=50, seed=s),
        lambda s: add_poisson_gaussian(img, photons=50, sigma=0.05, seed=s),
    )
    for call in calls:
        a, b, c = call(3), call(3), call(4)
        assert a.dtype == np.float32 and a.shape == img.shape
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        # A Generator is advanced; the same fresh Generator reproduces.
        np.testing.assert_array_equal(call(np.random.default_rng(3)), a)
        gen = np.random.default_rng(3)
        assert not np.array_equal(call(gen), call(gen))


def test_gaussian_std() -> None:
    img = np.full((400, 400), 0.5)
    out = add_gaussian(img, 0.1, seed=0)
    assert out.mean() == pytest.approx(0.5, abs=2e-3)
    assert out.std() == pytest.approx(0.1, rel=1e-2)
    np.testing.assert_array_equal(add_gaussian(img, 0.0, seed=0), img.astype(np.float32))


@pytest.mark.parametrize("value", [0.05, 0.3, 0.9])
def test_poisson_mean_variance(value: float) -> None:
    photons = 40.0
    out = add_poisson(np.full((300, 300), value), photons=photons, seed=1)
    assert out.mean() == pytest.approx(value, rel=2e-2)
    assert out.var() == pytest.approx(value / photons, rel=4e-2)
    # Values are multiples of 1 / photons.
    np.testing.assert_allclose(out * photons, np.round(out * photons), atol=1e-3)


def test_poisson_gaussian_variance() -> None:
    photons, sigma, value = 30.0, 0.05, 0.4
    out = add_poisson_gaussian(np.full((300, 300), value), photons=photons, sigma=sigma, seed=2)
    assert out.mean() == pytest.approx(value, rel=2e-2)
    assert out.var() == pytest.approx(value / photons + sigma**2, rel=4e-2)


def test_clip() -> None:
    img = _clean()
    raw = add_gaussian(img, 0.3, seed=0)
    assert raw.min() < 0 and raw.max() > 1
    clipped = add_gaussian(img, 0.3, seed=0, clip=True)
    assert clipped.min() >= 0 and clipped.max() <= 1
    np.testing.assert_array_equal(clipped, np.clip(raw, 0, 1))
    pg = add_poisson_gaussian(img, photons=5, sigma=0.2, seed=0, clip=True)
    assert pg.min() >= 0 and pg.max() <= 1


def test_invalid_input() -> None:
    img = _clean()
    with pytest.raises(InputError):
        add_gaussian(img, -1.0, seed=0)
    with pytest.raises(InputError):
        add_poisson(img, photons=0, seed=0)
    with pytest.raises(InputError, match="non-negative"):
        add_poisson(img - 0.5, photons=10, seed=0)
    with pytest.raises(InputError, match="seed"):
        add_gaussian(img, 0.1, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="NaN"):
        add_gaussian(np.array([np.nan, 1.0]), 0.1, seed=0)
    with pytest.raises(TypeError):
        add_poisson(img, photons=10)  # type: ignore[call-arg]
