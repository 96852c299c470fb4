"""Tests for microdenoise.normalize."""

from __future__ import annotations

import json

import numpy as np
import pytest

from microdenoise.errors import InputError
from microdenoise.intensity import make_normalizer, unit_range
from microdenoise.normalize import (
    FixedRange,
    Identity,
    MeanStd,
    Normalizer,
    Percentile,
    normalizer_from_dict,
)


def _images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "uint8": rng.integers(0, 256, size=(40, 50), dtype=np.uint8),
        "uint16": rng.integers(100, 65536, size=(2, 40, 50), dtype=np.uint16),
        "float32": rng.normal(1000.0, 50.0, size=(40, 50)).astype(np.float32),
        "float64": rng.normal(-3.0, 0.01, size=(40, 50)),
    }


def _normalizers(image: np.ndarray) -> list[Normalizer]:
    return [
        unit_range(image),
        Percentile.fit(image),
        MeanStd.fit(image),
        FixedRange(0.0, 255.0),
        Identity(),
    ]


def _scale(norm: Normalizer) -> float:
    if isinstance(norm, FixedRange | Percentile):
        return norm.high - norm.low
    if isinstance(norm, MeanStd):
        return norm.std
    return 1.0


@pytest.mark.parametrize("name", ["uint8", "uint16", "float32", "float64"])
def test_round_trip(name: str) -> None:
    image = _images()[name]
    for norm in _normalizers(image):
        y = norm(image)
        assert y.dtype == np.float32 and y.shape == image.shape
        back = norm.inverse(y)
        assert back.dtype == np.float32
        # Exact to float32 rounding, relative to the normalizer's scale and the values.
        tol = 1e-6 * max(_scale(norm), float(np.abs(image).max()))
        np.testing.assert_allclose(back, image.astype(np.float64), rtol=0, atol=tol)


def test_unit_range() -> None:
    imgs = _images()
    assert unit_range(imgs["uint8"]) == FixedRange(0.0, 255.0)
    u16 = imgs["uint16"]
    norm = unit_range(u16)
    assert norm == FixedRange(float(u16.min()), float(u16.max()))
    y = norm(u16)
    assert y.min() == 0.0 and y.max() == 1.0
    np.testing.assert_allclose(FixedRange(0, 255)(np.array([0, 51, 255])), [0.0, 0.2, 1.0])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_constant_image_is_rejected(dtype: type) -> None:
    image: np.ndarray = np.full((16, 16), 7, dtype=dtype)
    if dtype is np.uint8:
        assert unit_range(image) == FixedRange(0.0, 255.0)
    else:
        with pytest.raises(InputError, match=r"the image is constant \(every pixel = 7\)"):
            unit_range(image)
    with pytest.raises(InputError, match="constant"):
        Percentile.fit(image)
    with pytest.raises(InputError, match="constant"):
        MeanStd.fit(image)


def test_percentile_values() -> None:
    image = np.arange(10_001, dtype=np.float64)
    norm = Percentile.fit(image, p_low=1.0, p_high=99.8)
    assert norm.low == pytest.approx(100.0)
    assert norm.high == pytest.approx(9980.0)
    # Sparse image with a flat background: falls back to min/max.
    sparse = np.zeros((100, 100))
    sparse[0, 0] = 5.0
    assert Percentile.fit(sparse) == Percentile(0.0, 5.0)


def test_percentile_subsamples_huge_images_deterministically() -> None:
    rng = np.random.default_rng(1)
    huge = rng.gamma(2.0, 100.0, size=(1500, 1500)).astype(np.float32)  # 2.25 Mpx
    a = Percentile.fit(huge, max_samples=100_000, seed=0)
    b = Percentile.fit(huge, max_samples=100_000, seed=0)
    c = Percentile.fit(huge, max_samples=100_000, seed=1)
    assert a == b
    assert a != c
    exact = np.percentile(huge, [1.0, 99.8])
    assert a.low == pytest.approx(exact[0], rel=0.05)
    assert a.high == pytest.approx(exact[1], rel=0.05)
    # Non-contiguous views are sampled without a full copy and agree with the copy.
    view = huge[:, ::2]
    assert Percentile.fit(view, max_samples=1000) == Percentile.fit(view.copy(), max_samples=1000)


def test_mean_std_fit() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(5.0, 2.0, size=(30, 30))
    b = rng.normal(5.0, 2.0, size=(10, 7))
    norm = MeanStd.fit([a, b])
    pooled = np.concatenate([a.ravel(), b.ravel()])
    assert norm.mean == pytest.approx(pooled.mean())
    assert norm.std == pytest.approx(pooled.std())
    assert MeanStd.fit(a) == MeanStd(float(a.mean()), float(a.std()))
    z = norm(pooled)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(z.std()) == pytest.approx(1.0, abs=1e-5)


def test_to_dict_from_dict() -> None:
    image = _images()["uint16"]
    for norm in _normalizers(image):
        data = norm.to_dict()
        data = json.loads(json.dumps(data))  # plain data only
        again = normalizer_from_dict(data)
        assert again == norm
        assert type(norm).from_dict(data) == norm  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="unknown normalizer kind"):
        normalizer_from_dict({"kind": "zscore"})
    with pytest.raises(InputError):
        normalizer_from_dict({"kind": "fixed_range", "low": 0.0})
    with pytest.raises(InputError):
        FixedRange.from_dict({"kind": "percentile", "low": 0.0, "high": 1.0})


def test_make_normalizer() -> None:
    image = _images()["uint16"]
    assert make_normalizer("unit", image) == unit_range(image)
    assert make_normalizer("percentile", image) == Percentile.fit(image)
    assert make_normalizer("none", image) == Identity()
    with pytest.raises(InputError, match="unknown normalization"):
        make_normalizer("zscore", image)


def test_invalid_parameters() -> None:
    with pytest.raises(InputError):
        FixedRange(1.0, 1.0)
    with pytest.raises(InputError):
        Percentile(2.0, 1.0)
    with pytest.raises(InputError):
        MeanStd(0.0, 0.0)
    with pytest.raises(InputError):
        FixedRange(0.0, float("nan"))
    with pytest.raises(InputError):
        Percentile.fit(np.arange(10.0), p_low=50, p_high=10)
    with pytest.raises(InputError, match="empty"):
        unit_range(np.zeros((0, 3)))
    with pytest.raises(InputError, match="NaN"):
        unit_range(np.array([1.0, np.nan]))
