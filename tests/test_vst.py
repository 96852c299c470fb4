"""Poisson-Gaussian estimation and the generalized Anscombe transform (microdenoise.vst)."""

from __future__ import annotations

import numpy as np
import pytest

from microdenoise import create, metrics, noise
from microdenoise.vst import (
    PoissonGaussian,
    estimate_poisson_gaussian,
    gat_expected,
    gat_forward,
    gat_inverse,
    gat_slope,
)


def _ramp_image(shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    blobs = 0.5 * np.exp(-((yy - 80.0) ** 2 + (xx - 170.0) ** 2) / 900.0)
    return (0.05 + 0.6 * xx / shape[1] + blobs).astype(np.float64)


@pytest.mark.parametrize(("photons", "sigma"), [(60.0, 0.02), (200.0, 0.0), (1e6, 0.05)])
def test_estimate_recovers_the_noise_model(photons: float, sigma: float) -> None:
    clean = _ramp_image()
    noisy = noise.add_poisson_gaussian(clean, photons=photons, sigma=sigma, seed=0)
    model = estimate_poisson_gaussian(noisy)
    for level in (0.1, 0.4, 0.8):  # predicted variance within 15 % where there is data
        true = level / photons + sigma**2
        assert model.a * level + model.b == pytest.approx(true, rel=0.15)


def test_gat_stabilizes_the_variance_and_its_inverse_is_unbiased() -> None:
    model = PoissonGaussian(a=1 / 50.0, b=0.02**2)
    stds, means = [], []
    for level in (0.1, 0.3, 0.9):
        clean = np.full((200, 200), level)
        noisy = noise.add_poisson_gaussian(clean, photons=50.0, sigma=0.02, seed=1)
        d = gat_forward(noisy, model)
        stds.append(float(d.std()))
        # the inverse of E[f(y)] is the mean of y (that is what "exact unbiased" means)
        means.append(float(gat_inverse(np.array([d.mean()]), model)[0]))
        assert means[-1] == pytest.approx(level, rel=0.03)
    assert np.allclose(stds, 1.0, atol=0.06)


def test_vst_bm3d_beats_mad_sigma_bm3d_on_poisson_noise() -> None:
    pytest.importorskip("bm3d")
    clean = _ramp_image((128, 128))
    noisy = noise.add_poisson(clean, photons=30.0, seed=2)
    scores = {vst: metrics.psnr(create("bm3d", vst=vst).fit(noisy).denoise(noisy), clean,
                                data_range=1.0) for vst in ("none", "gat")}
    assert scores["gat"] > scores["none"]
    assert scores["gat"] > metrics.psnr(noisy, clean, data_range=1.0) + 8


def test_fitted_noise_model_survives_save_and_load(tmp_path) -> None:
    from microdenoise import load, save

    noisy = noise.add_poisson(_ramp_image((64, 64)), photons=40.0, seed=3)
    m = create("nlm", vst="gat").fit(noisy)
    save(m, tmp_path / "nlm.pt")
    again = load(tmp_path / "nlm.pt")
    np.testing.assert_array_equal(again.denoise(noisy), m.denoise(noisy))


def test_pure_gaussian_noise_is_a_plain_rescaling() -> None:
    model = PoissonGaussian(a=0.0, b=0.05**2)
    image = np.linspace(-0.2, 1.2, 50)
    np.testing.assert_allclose(gat_forward(image, model), image / 0.05, rtol=1e-6)
    np.testing.assert_allclose(gat_inverse(gat_forward(image, model), model), image, atol=1e-6)


def test_gat_expected_inverts_gat_inverse_and_gat_slope_is_its_derivative() -> None:
    noise = PoissonGaussian(0.02, 0.0004)
    d = np.linspace(3.0, 30.0, 50)  # below about 2.2 the inverse is clipped at 0
    means = gat_inverse(d.astype(np.float32), noise).astype(np.float64)
    assert np.allclose(gat_expected(means, noise), d, atol=1e-2)
    y = np.linspace(0.2, 5.0, 40)
    h = 1e-4
    numeric = (gat_forward(y + h, noise).astype(np.float64)
               - gat_forward(y - h, noise).astype(np.float64)) / (2 * h)
    assert np.allclose(gat_slope(y, noise), numeric, rtol=2e-2)
    # E[GAT] lies below the GAT of the mean at low counts (the transform's bias)
    assert gat_expected(np.array([0.02]), noise)[0] < gat_forward(np.array([0.02]), noise)[0]
