"""Every registered method through the same checks (DESIGN.md: the contract test).

Shape and dtype kept, finite output, same seed same output, save/load round trip,
and denoising lowers the error on a seeded synthetic Poisson-Gaussian image.
"""

from __future__ import annotations

import numpy as np
import pytest

from microdenoise import create, denoise_array, list_methods, load, save
from microdenoise.registry import method_class

from ..conftest import blobs, poisson_gaussian

# Small settings so the whole contract runs in seconds; behaviour, not quality.
FAST = {"fm2s": {"fast_steps": 60, "fast_crop": 48}}
# The bm3d package's compiled core is not bit-reproducible (float32 sums, threads).
ATOL = {"bm3d": 1e-6}


def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    if method_class(name).supports_3d:
        clean = np.stack([blobs((64, 64), seed=0)] * 4)
    else:
        clean = blobs((64, 64), seed=0)
    return clean, poisson_gaussian(clean, seed=3)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


@pytest.fixture(params=list_methods())
def name(request) -> str:
    if request.param == "bm3d":
        pytest.importorskip("bm3d", reason="bm3d is the optional extra microdenoise[bm3d]")
    return request.param


def test_pipeline_contract(name: str) -> None:
    clean, noisy = _data(name)
    axes = "ZYX" if noisy.ndim == 3 else "YX"
    params = FAST.get(name, {})
    out = denoise_array(noisy, name, params=params, axes=axes, seed=7)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert _mse(out, clean) < _mse(noisy, clean)
    again = denoise_array(noisy, name, params=params, axes=axes, seed=7)
    np.testing.assert_allclose(out, again, rtol=0, atol=ATOL.get(name, 0.0))


def test_save_load_contract(name: str, tmp_path) -> None:
    _, noisy = _data(name)
    x = np.clip(noisy, 0, 1)
    method = create(name, **FAST.get(name, {})).fit(x)
    before = method.denoise(x)
    loaded = load(save(method, tmp_path / f"{name}.pt"))
    assert type(loaded) is type(method) and loaded.config == method.config
    np.testing.assert_allclose(before, loaded.denoise(x), rtol=0, atol=ATOL.get(name, 0.0))


def test_uint8_input_keeps_its_scale(name: str) -> None:
    clean, noisy = _data(name)
    noisy8 = np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8)
    out = denoise_array(noisy8, name, params=FAST.get(name, {}),
                        axes="ZYX" if noisy.ndim == 3 else "YX")
    assert out.dtype == np.float32 and abs(out.mean() - noisy8.mean()) < 0.1 * 255


def test_receptive_field_declared(name: str) -> None:
    rf = create(name).receptive_field
    assert isinstance(rf, int) and rf >= 0
