"""Every registered method through the same checks (DESIGN.md: the contract test).

Shape and dtype kept, finite output, same seed same output, save/load round trip,
and denoising lowers the error on a seeded synthetic Poisson-Gaussian image.
Methods trained on pairs (``needs == "pairs"``) are first fitted on another
(noisy, clean) pair of the same kind (other blobs, other noise) and scored on the
pair they never saw.
"""

from __future__ import annotations

import numpy as np
import pytest

from microdenoise import create, denoise_array, list_methods, load, save
from microdenoise.registry import Denoiser, method_class

from ..conftest import blobs, poisson_gaussian

# Small settings so the whole contract runs in seconds; behaviour, not quality.
FAST = {"fm2s": {"fast_steps": 60, "fast_crop": 48}}
# Blind-spot methods train on each image in the pipeline only with fit_per_image=true.
_TINY = {"fit_per_image": True, "epochs": 2, "steps_per_epoch": 10, "batch_size": 4,
         "patch_size": 32, "masked_percentage": 5.0, "filters": 8}
FAST.update({"n2v": _TINY, "deconoising": _TINY})
# Supervised methods are fitted on the (noisy, clean) pair before the checks.
FAST["care"] = {"epochs": 4, "steps_per_epoch": 10, "batch_size": 4, "patch_size": 32,
                "filters": 8, "kernel_size": 3, "lr": 3e-3}
# Few-shot cGAN: a pix2pix U-Net of 4 downsamplings with 8 filters on 32x32 crops.
FAST["clidim"] = {"num_downs": 4, "ngf": 8, "ndf": 8, "crop": 32, "batch_size": 4,
                  "n_epochs": 4, "n_epochs_decay": 2, "steps_per_epoch": 5, "lr": 2e-3,
                  "val_from": 0, "val_every": 2}


def assert_same(a: np.ndarray, b: np.ndarray, name: str) -> None:
    """Bit-equal, except bm3d: its compiled core is not bit-reproducible (float32 sums
    over threads), and a last-bit change can flip a block-matching choice, which moves
    a few pixels visibly; so for bm3d, and auto (which runs bm3d on white noise), the
    mean difference must stay negligible."""
    if name in ("bm3d", "auto"):
        assert float(np.mean(np.abs(a.astype(np.float64) - b))) < 1e-4
    else:
        np.testing.assert_array_equal(a, b)


def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    if create(name).supports_3d:
        clean = np.stack([blobs((64, 64), seed=0)] * 4)
    else:
        clean = blobs((64, 64), seed=0)
    return clean, poisson_gaussian(clean, seed=3)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


def _supervised(name: str) -> bool:
    return method_class(name).needs == "pairs"


def _training_pair(like: np.ndarray, clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Another scene (other blobs, other noise) in the units and dtype of ``like``/``clean``:
    a supervised method is scored on a pair it was not trained on."""
    scale = float(clean.max()) / max(float(blobs(clean.shape[-2:], seed=0).max()), 1e-12)
    other = np.stack([blobs(clean.shape[-2:], seed=11)] * clean.shape[0]) \
        if clean.ndim == 3 else blobs(clean.shape, seed=11)
    noisy = poisson_gaussian(other, seed=12) * scale
    if like.dtype == np.uint8:
        noisy = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return noisy.astype(like.dtype, copy=False), other * scale


def _denoise(noisy: np.ndarray, name: str, clean: np.ndarray, **options) -> np.ndarray:
    """denoise_array with FAST params; a supervised method is first fitted on another pair
    (:func:`_training_pair`), never on the one it is scored on."""
    params = FAST.get(name, {})
    if _supervised(name):
        model: Denoiser = create(name, **params).fit(*_training_pair(noisy, clean))
        return denoise_array(noisy, model, **options)
    return denoise_array(noisy, name, params=params, **options)


@pytest.fixture(params=list_methods())
def name(request) -> str:
    if request.param == "bm3d":
        pytest.importorskip("bm3d", reason="bm3d is the optional extra microdenoise[bm3d]")
    return request.param


def test_pipeline_contract(name: str) -> None:
    clean, noisy = _data(name)
    axes = "ZYX" if noisy.ndim == 3 else "YX"
    out = _denoise(noisy, name, clean, axes=axes, seed=7)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert _mse(out, clean) < _mse(noisy, clean)
    again = _denoise(noisy, name, clean, axes=axes, seed=7)
    assert_same(out, again, name)


def test_save_load_contract(name: str, tmp_path) -> None:
    clean, noisy = _data(name)
    x = np.clip(noisy, 0, 1)
    method = create(name, **FAST.get(name, {}))
    method = method.fit(x, clean) if _supervised(name) else method.fit(x)
    before = _apply(method, x)
    loaded = load(save(method, tmp_path / f"{name}.pt"))
    assert type(loaded) is type(method) and loaded.config == method.config
    assert_same(before, _apply(loaded, x), name)


def _apply(method: Denoiser, x: np.ndarray) -> np.ndarray:
    """``denoise`` on ``x``; a trained model's stored normalizers around it."""
    if method.normalization != "model":
        return method.denoise(x)
    n_in, n_out = method.normalizers  # type: ignore[attr-defined]
    return n_out.inverse(method.denoise(n_in(x)))


def test_uint8_input_is_denoised_in_its_own_units(name: str) -> None:
    clean, noisy = _data(name)
    noisy8 = np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8)
    out = _denoise(noisy8, name, clean * 255, axes="ZYX" if noisy.ndim == 3 else "YX")
    assert out.dtype == np.float32
    assert _mse(out, clean * 255) < _mse(noisy8, clean * 255)


# skimage's bilateral sizes its lookup table from each tile's maximum.
TILE_ATOL = {"bilateral": 1e-3}


def test_tiled_equals_untiled_at_the_receptive_field(name: str) -> None:
    if create(name).global_field or create(name).supports_3d:
        pytest.skip(f"{name} is not a local 2D method: tiles cannot equal the whole image")
    clean = blobs((96, 80), seed=4)
    noisy = poisson_gaussian(clean, seed=5)
    params = FAST.get(name, {})
    rf = create(name, **params).receptive_field
    assert isinstance(rf, int) and rf >= 0
    whole = _denoise(noisy, name, clean, seed=3)
    tiled = _denoise(noisy, name, clean, seed=3, tile=2 * rf + 24, overlap=rf)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=TILE_ATOL.get(name, 1e-5))
