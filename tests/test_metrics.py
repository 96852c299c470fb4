"""Tests for microdenoise.metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import normalized_root_mse, peak_signal_noise_ratio, structural_similarity

from microdenoise.errors import InputError
from microdenoise.metrics import affine_fit, gt_range, nrmse, psnr, si_psnr, snr, ssim


def _pair(seed: int, shape: tuple[int, ...] = (48, 40)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0, 200, size=shape)
    x = gt + rng.normal(0, 15, size=shape)
    return x, gt


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_psnr_matches_skimage(seed: int) -> None:
    x, gt = _pair(seed)
    for data_range in (255.0, gt_range(gt)):
        expected = peak_signal_noise_ratio(gt, x, data_range=data_range)
        assert psnr(x, gt, data_range=data_range) == pytest.approx(expected, abs=1e-6)


def test_psnr_uint8_matches_skimage() -> None:
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)
    x = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)
    expected = peak_signal_noise_ratio(gt, x, data_range=255)
    assert psnr(x, gt, data_range=255) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("normalization", ["euclidean", "min-max", "mean"])
@pytest.mark.parametrize("seed", [0, 1])
def test_nrmse_matches_skimage(seed: int, normalization: str) -> None:
    x, gt = _pair(seed)
    expected = normalized_root_mse(gt, x, normalization=normalization)
    assert nrmse(x, gt, normalization=normalization) == pytest.approx(expected, abs=1e-6)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_skimage(seed: int) -> None:
    x, gt = _pair(seed)
    expected = structural_similarity(gt, x, data_range=255.0)
    assert ssim(x, gt, data_range=255.0) == pytest.approx(expected, abs=1e-6)


def test_ssim_stack_is_mean_over_planes() -> None:
    x, gt = _pair(4, shape=(3, 20, 24))
    expected = np.mean(
        [structural_similarity(g, p, data_range=200.0) for p, g in zip(x, gt, strict=True)]
    )
    assert ssim(x, gt, data_range=200.0) == pytest.approx(expected, abs=1e-12)


def test_ssim_identical_is_one_and_small_images_rejected() -> None:
    _, gt = _pair(5)
    assert ssim(gt, gt, data_range=255) == pytest.approx(1.0)
    with pytest.raises(InputError, match="7x7"):
        ssim(np.zeros((5, 20)), np.zeros((5, 20)), data_range=1.0)
    with pytest.raises(InputError):
        ssim(np.zeros(20), np.zeros(20), data_range=1.0)


def test_identical_is_inf() -> None:
    _, gt = _pair(6)
    assert psnr(gt, gt, data_range=255) == math.inf
    assert si_psnr(gt, gt, data_range=255) == math.inf
    assert snr(gt, gt) == math.inf


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_si_psnr_at_least_psnr(seed: int) -> None:
    x, gt = _pair(seed)
    scaled = 0.5 * x + 30.0
    for img in (x, scaled):
        assert si_psnr(img, gt, data_range=255) >= psnr(img, gt, data_range=255) - 1e-9
    # A badly scaled copy gains a lot from the fit.
    assert si_psnr(scaled, gt, data_range=255) > psnr(scaled, gt, data_range=255) + 3
    # Scale invariance.
    assert si_psnr(scaled, gt, data_range=255) == pytest.approx(
        si_psnr(x, gt, data_range=255), abs=1e-9
    )


def test_si_psnr_equals_psnr_when_already_fitted() -> None:
    x, gt = _pair(7)
    fitted = affine_fit(x, gt)
    assert si_psnr(fitted, gt, data_range=255) == pytest.approx(
        psnr(fitted, gt, data_range=255), abs=1e-9
    )


def test_affine_fit_is_least_squares() -> None:
    x, gt = _pair(8)
    fitted = affine_fit(x.astype(np.float32), gt)
    assert fitted.dtype == np.float64
    design = np.stack([x.ravel(), np.ones(x.size)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, gt.ravel(), rcond=None)
    np.testing.assert_allclose(fitted, a * x.astype(np.float32) + b, rtol=1e-6, atol=1e-6)
    # Exact recovery of an affine relation.
    np.testing.assert_allclose(affine_fit(3 * gt - 7, gt), gt, atol=1e-9)
    # A constant image fits to the mean.
    np.testing.assert_allclose(affine_fit(np.ones_like(gt), gt), np.full_like(gt, gt.mean()))


def test_snr_formula() -> None:
    x, gt = _pair(9)
    expected = 10 * np.log10(np.sum(gt**2) / np.sum((gt - x) ** 2))
    assert snr(x, gt) == pytest.approx(expected, abs=1e-9)
    assert snr(x.astype(np.float32), gt.astype(np.float32)) == pytest.approx(expected, abs=1e-3)


def test_gt_range() -> None:
    gt = np.array([[3, 10], [250, 7]], dtype=np.uint8)
    assert gt_range(gt) == 247.0
    assert isinstance(gt_range(gt), float)


def test_data_range_required_and_validated() -> None:
    x, gt = _pair(10)
    for fn in (psnr, ssim, si_psnr):
        with pytest.raises(TypeError):
            fn(x, gt)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            fn(x, gt, 255)  # type: ignore[call-arg]
        for bad in (0, -1.0, float("nan"), float("inf")):
            with pytest.raises(InputError, match="data_range"):
                fn(x, gt, data_range=bad)


def test_shape_mismatch() -> None:
    a, b = np.zeros((8, 8)), np.zeros((8, 9))
    for call in (
        lambda: psnr(a, b, data_range=1),
        lambda: ssim(a, b, data_range=1),
        lambda: nrmse(a, b),
        lambda: snr(a, b),
        lambda: affine_fit(a, b),
        lambda: si_psnr(a, b, data_range=1),
    ):
        with pytest.raises(InputError, match="shape"):
            call()


def test_nrmse_errors() -> None:
    x, gt = _pair(11)
    with pytest.raises(InputError, match="normalization"):
        nrmse(x, gt, normalization="max")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="zero"):
        nrmse(x, np.zeros_like(gt))
