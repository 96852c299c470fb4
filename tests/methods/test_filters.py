"""Filter-specific behaviour of the classical methods (the contract test covers the API)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import ndimage as ndi

from microdenoise.errors import InputError
from microdenoise.methods import filters, global_filters
from microdenoise.registry import create, load, save

FILTERS_2D = ["median", "gaussian", "box", "nlm", "tv", "wavelet", "bilateral", "bm3d"]
ALL = [*FILTERS_2D, "box3d"]


def _blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Smooth random blobs scaled to [0.1, 0.9]."""
    rng = np.random.default_rng(seed)
    smooth = ndi.gaussian_filter(rng.random(shape), sigma=(1.0, 4.0, 4.0)[-len(shape):])
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    return (0.1 + 0.8 * smooth).astype(np.float32)


def _noisy(clean: np.ndarray, seed: int) -> np.ndarray:
    """Poisson-Gaussian noise: 30 photons at intensity 1, read noise std 0.03."""
    rng = np.random.default_rng(seed)
    noisy = rng.poisson(clean * 30.0) / 30.0 + rng.normal(0.0, 0.03, clean.shape)
    return noisy.astype(np.float32)


def _make(key: str, **params: Any) -> filters.Filter:
    method = create(key, **params)
    assert isinstance(method, filters.Filter)
    return method


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((np.asarray(a, np.float64) - b) ** 2))


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    clean = _blobs((96, 96), seed=1)
    return clean, _noisy(clean, seed=2)


@pytest.fixture(scope="module")
def stack_pair() -> tuple[np.ndarray, np.ndarray]:
    clean = _blobs((5, 64, 64), seed=3)
    return clean, _noisy(clean, seed=4)


def _data(key: str, pair: tuple[np.ndarray, np.ndarray],
          stack_pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return stack_pair if key == "box3d" else pair


@pytest.mark.parametrize("key", ALL)
def test_denoising_lowers_error(key: str, pair, stack_pair) -> None:
    clean, noisy = _data(key, pair, stack_pair)
    out = create(key).denoise(noisy)
    assert out.shape == noisy.shape
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert _mse(out, clean) < 0.8 * _mse(noisy, clean)


@pytest.mark.parametrize("key", ALL)
def test_flat_image_stays_flat(key: str) -> None:
    flat = np.full((5, 32, 32) if key == "box3d" else (32, 32), 0.3, np.float32)
    out = create(key).denoise(flat)
    np.testing.assert_allclose(out, 0.3, atol=1e-3)


@pytest.mark.parametrize("key", FILTERS_2D)
@pytest.mark.parametrize("shape", [(2, 16, 16), (16,)])
def test_2d_filters_reject_other_shapes(key: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(InputError, match="2D"):
        create(key).denoise(np.zeros(shape, np.float32))


def test_box3d_refuses_a_single_image_and_points_to_box() -> None:
    method = create("box3d")
    assert method.supports_3d
    with pytest.raises(InputError, match=r"needs a stack \(Z or T\).*use 'box'"):
        method.denoise(np.zeros((32, 32), np.float32))
    with pytest.raises(InputError, match="3D"):
        method.denoise(np.zeros((2, 3, 16, 16), np.float32))


def test_box3d_averages_along_z(stack_pair) -> None:
    _, noisy = stack_pair
    flat_z = create("box3d", size=1, size_z=3).denoise(noisy)
    expected = ndi.uniform_filter(noisy, size=(3, 1, 1), mode="reflect")
    np.testing.assert_allclose(flat_z, expected, rtol=1e-6)
    assert create("box3d", size=3, size_z=7).receptive_field == 3


@pytest.mark.parametrize("key", ALL)
def test_calibration_picks_a_grid_value_and_round_trips(
    key: str, pair, stack_pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if key == "bm3d":  # about 0.8 s a call here: two grid values test the mechanism
        monkeypatch.setattr(global_filters.BM3D, "GRID", (0.5, 1.4))
    clean, noisy = _data(key, pair, stack_pair)
    method = _make(key, calibrate=True)
    assert method.state_dict() == {}
    method.fit(noisy)
    state = method.state_dict()
    chosen = state["calibrated"][method.PARAM]
    assert chosen in method.GRID
    assert set(method.calibration_losses) == set(method.GRID)
    out = method.denoise(noisy)
    errors = {v: _mse(out if v == chosen else method._apply(noisy, v), clean)
              for v in method.GRID}
    # the Noise2Self choice beats the worst grid value and is near the best one
    assert errors[chosen] < max(errors.values())
    assert errors[chosen] <= 1.5 * min(errors.values())

    loaded = load(save(method, tmp_path / f"{key}.pt"))
    assert loaded.state_dict() == state
    assert type(loaded.state_dict()["calibrated"][method.PARAM]) is type(chosen)
    if key == "bm3d":  # not bit-reproducible: see assert_same in test_contract.py
        assert float(np.mean(np.abs(loaded.denoise(noisy).astype(np.float64) - out))) < 1e-4
    else:
        np.testing.assert_array_equal(loaded.denoise(noisy), out)


def test_calibration_finds_the_stronger_filter_on_strong_noise(pair) -> None:
    clean, _ = pair
    very_noisy = (clean + np.random.default_rng(5).normal(0, 0.3, clean.shape)).astype(np.float32)
    method = _make("gaussian", calibrate=True).fit(very_noisy)
    losses = method.calibration_losses
    assert method.value >= 1.5
    assert losses[method.value] < losses[0.5]


def test_unfitted_calibrating_method_calibrates_each_call_without_keeping_it(pair) -> None:
    """``denoise`` never changes a model: an uncalibrated filter calibrates on the image
    it is given for that call only (the core fits a fresh copy per image first)."""
    _, noisy = pair
    method = _make("box", calibrate=True)
    assert method.receptive_field == max(method.GRID) // 2  # widest until calibrated
    out = method.denoise(noisy)
    assert method.state_dict() == {} and method.calibration_losses == {}
    assert method.receptive_field == max(method.GRID) // 2
    fitted = method.fresh().fit(noisy)
    np.testing.assert_array_equal(out, fitted.denoise(noisy))
    assert fitted.receptive_field == fitted.value // 2


def test_fit_without_calibrate_is_a_no_op(pair) -> None:
    _, noisy = pair
    method = create("median").fit(noisy)
    assert method.state_dict() == {}
    np.testing.assert_array_equal(method.denoise(noisy), create("median").denoise(noisy))


def test_load_state_dict_rejects_foreign_state() -> None:
    method = create("median")
    method.load_state_dict({})
    with pytest.raises(InputError, match="calibrated"):
        method.load_state_dict({"calibrated": {"sigma": 1.0}})
    with pytest.raises(InputError, match="calibrated"):
        method.load_state_dict({"weights": 1})


def test_receptive_fields() -> None:
    for key in ALL:
        for calibrate in (False, True):
            field = create(key, calibrate=calibrate).receptive_field
            assert isinstance(field, int) and field > 0, key
    assert create("median", size=5).receptive_field == 2
    assert create("box", size=7).receptive_field == 3
    assert create("gaussian", sigma=1.0).receptive_field == 4
    assert create("gaussian", sigma=2.5).receptive_field == 10
    assert create("nlm").receptive_field == 5 // 2 + 6
    assert create("bilateral").receptive_field == 5  # window 2 * ceil(4.5) + 1 = 11
    assert create("bilateral", win_size=7).receptive_field == 3
    for key in ("tv", "wavelet", "bm3d"):
        assert create(key).receptive_field == 32


def test_parameters_are_coerced_and_checked() -> None:
    method = create("median", size="5")
    assert method.config.size == 5 and isinstance(method.config.size, int)
    assert create("tv", weight="0.2", calibrate="true").config.calibrate is True
    assert create("nlm", sigma="none").config.sigma is None
    with pytest.raises(InputError, match="parameter size of method .median. must be > 0"):
        create("median", size=0)
    with pytest.raises(InputError, match="parameter sigma_color of method .bilateral. must be > 0"):
        create("bilateral", sigma_color=-0.1)
    with pytest.raises(InputError, match="unknown wavelet"):
        create("wavelet", wavelet="nope")
    with pytest.raises(InputError, match="whole number"):
        create("box", size="2.5")


def test_classical_metadata() -> None:
    for key in ALL:
        method = create(key)
        assert (method.family, method.needs, method.normalization) == (
            "classical", "nothing", "unit")
        assert method.supports_3d is (key == "box3d")
        assert "References" in (type(method).__doc__ or "")


def test_bilateral_accepts_negative_values(pair) -> None:
    _, noisy = pair
    method = create("bilateral")
    shifted = method.denoise(noisy - 0.5)
    np.testing.assert_allclose(shifted, method.denoise(noisy) - 0.5, atol=1e-4)  # LUT bins


def test_explicit_sigma_is_used(pair) -> None:
    _, noisy = pair
    weak = create("nlm", sigma=0.01).denoise(noisy)
    strong = create("nlm", sigma=0.2).denoise(noisy)
    assert np.std(strong) < np.std(weak)


def test_bm3d_missing_gives_install_hint(pair, monkeypatch: pytest.MonkeyPatch) -> None:
    _, noisy = pair
    monkeypatch.setitem(sys.modules, "bm3d", None)  # makes `import bm3d` raise ImportError
    with pytest.raises(InputError, match=r"microdenoise\[bm3d\].*non-commercial"):
        create("bm3d").denoise(noisy)


def test_invariant_loss_prefers_the_right_smoothing(pair) -> None:
    clean, noisy = pair
    identity = filters.invariant_loss(noisy, lambda x: x)
    smooth = filters.invariant_loss(noisy, lambda x: ndi.gaussian_filter(x, 1.5))
    assert smooth < identity
    with pytest.raises(InputError, match="too small"):
        filters.invariant_loss(np.zeros((1, 8), np.float32), lambda x: x)
