"""DecoNoising: PSF, loss wiring, outputs, paper preset, save/load and tiling."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from microdenoise import InputError, create, denoise_array, load, save
from microdenoise.methods.deconoising import DecoNoising, convolve_psf, gaussian_psf
from microdenoise.metrics import psnr
from microdenoise.patches import blind_spot_mask, sample_patches
from microdenoise.training import generator

from ..conftest import blobs, poisson_gaussian
from .conftest import apply_model

TINY = {"epochs": 3, "steps_per_epoch": 10, "batch_size": 4, "patch_size": 32,
        "masked_percentage": 5.0, "filters": 8}


@pytest.fixture(scope="module")
def trained(pair) -> DecoNoising:
    model = create("deconoising", **TINY).fit(pair[1])
    return model  # type: ignore[return-value]


@pytest.mark.parametrize(("sigma", "size"), [(1.0, 9), (0.5, 5), (1.3, 11), (2.0, 17)])
def test_psf_is_normalized_symmetric_and_8_sigma_wide(sigma: float, size: int) -> None:
    psf = gaussian_psf(sigma)
    assert psf.shape == (size, size) and psf.dtype == np.float32
    assert abs(float(psf.sum(dtype=np.float64)) - 1.0) < 1e-6
    np.testing.assert_array_equal(psf, psf[::-1])
    np.testing.assert_array_equal(psf, psf.T)
    assert psf.argmax() == psf.size // 2


def test_psf_matches_the_official_filtered_delta() -> None:
    from scipy import ndimage

    delta = np.zeros((81, 81))
    delta[40, 40] = 1.0
    official = ndimage.gaussian_filter(delta, 1.0)  # artificial_psf(size=81, std=1.0)
    official /= official.sum()
    np.testing.assert_allclose(gaussian_psf(1.0), official[36:45, 36:45], atol=1e-7)


def test_convolve_psf_keeps_size_and_constants() -> None:
    psf = torch.from_numpy(gaussian_psf(1.0))
    s = torch.full((2, 1, 20, 17), 3.0)
    torch.testing.assert_close(convolve_psf(s, psf), s)
    x = torch.rand(1, 1, 20, 17)
    assert convolve_psf(x, psf).shape == x.shape


def test_defaults_follow_the_official_script_and_paper_preset() -> None:
    cfg = create("deconoising").config
    assert (cfg.depth, cfg.filters, cfg.patch_size, cfg.roi_radius) == (3, 64, 100, 2)
    assert (cfg.epochs, cfg.steps_per_epoch, cfg.lr, cfg.lr_factor, cfg.lr_patience) == \
        (200, 10, 1e-3, 0.5, 10)
    assert (cfg.psf_sigma, cfg.positivity, cfg.tv, cfg.output) == (1.0, 1.0, 0.0, "denoised")
    paper = create("deconoising", preset="paper").config
    assert (paper.batch_size, paper.accumulate, paper.precision) == (1, 20, "fp32")
    patches = torch.rand(200, 1, 100, 100, generator=generator(0))
    masked = blind_spot_mask(patches, percentage=cfg.masked_percentage, radius=2,
                             gen=generator(1))
    assert 0.026 < masked.mask.float().mean().item() < 0.03  # ~2.8 %: 1 per 6x6 box
    assert create("deconoising").receptive_field == 26 + 4  # U-Net + PSF radius


def test_training_improves_psnr_and_outputs_are_consistent(pair, trained) -> None:
    clean, noisy = pair
    denoised = apply_model(trained, noisy)
    gain = psnr(denoised, clean, data_range=1.0) - psnr(noisy, clean, data_range=1.0)
    assert gain > 2.0  # dB, after 30 steps
    deconv = DecoNoising(dataclasses.replace(trained.config, output="deconvolved"))
    deconv.load_state_dict(trained.state_dict())
    s = apply_model(deconv, noisy)
    assert s.shape == denoised.shape and s.dtype == denoised.dtype
    reblurred = convolve_psf(torch.from_numpy(s)[None, None].double(),
                             torch.from_numpy(gaussian_psf(1.0)).double())[0, 0].numpy()
    np.testing.assert_allclose(reblurred, denoised, atol=1e-5)
    assert s.std() > denoised.std()  # deconvolution sharpens


def test_loss_is_the_official_combination(pair, trained) -> None:
    std = (pair[1] - trained.mean) / trained.std
    patches = sample_patches([std], 4, 32, generator(2))
    masked = blind_spot_mask(patches, percentage=5.0, radius=2, gen=generator(3))
    with torch.no_grad():
        s = trained.net(masked.inputs) * 10 * trained.std + trained.mean
        den = convolve_psf(s, torch.from_numpy(gaussian_psf(1.0)))
        raw = patches * trained.std + trained.mean
        n2v = ((den - raw)[masked.mask] ** 2).mean() / trained.std**2
        pos = (s.abs() * (s < 0)).mean() / trained.std
        torch.testing.assert_close(trained.loss(trained.net, masked, patches), n2v + pos)


def test_paper_preset_accumulates_gradients(pair) -> None:
    model = create("deconoising", preset="paper", epochs=1, steps_per_epoch=2, patch_size=32,
                   filters=4, masked_percentage=5.0).fit(pair[1])
    assert model.epoch == 1 and np.isfinite(apply_model(model, pair[1])).all()


def test_save_load_and_tiling(pair, trained, tmp_path) -> None:
    loaded = load(save(trained, tmp_path / "d.pt"))
    np.testing.assert_array_equal(apply_model(loaded, pair[1]), apply_model(trained, pair[1]))
    img = poisson_gaussian(blobs((110, 97), seed=6), seed=7)
    rf = trained.receptive_field
    whole = denoise_array(img, trained)
    tiled = denoise_array(img, trained, tile=2 * rf + 24, overlap=rf)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
    assert apply_model(trained, img[:37, :53]).shape == (37, 53)


def test_bad_parameters_and_data() -> None:
    with pytest.raises(InputError, match="psf_sigma"):
        create("deconoising", psf_sigma=0)
    with pytest.raises(InputError, match="PSF wider"):
        create("deconoising", psf_sigma=5.0, patch_size=32)
    with pytest.raises(InputError, match="constant"):
        create("deconoising", **TINY).fit(np.zeros((64, 64)))


def test_background_is_subtracted_for_positivity_and_added_back(pair) -> None:
    """``background``: the camera offset (official ``--meanValue``) subtracted before the
    positivity term acts. Data shifted by 100 with the background shifted by 100 train
    the same network (standardization removes the shift), so the output is shifted by
    exactly 100: the offset is an affine shift inside the model's mean/std."""
    noisy = pair[1].astype(np.float64) * 50
    fast = {**TINY, "epochs": 1}
    a = create("deconoising", **fast, background=10.0, precision="fp32").fit(noisy)
    b = create("deconoising", **fast, background=110.0, precision="fp32").fit(noisy + 100)
    assert (a.background, b.background) == (10.0, 110.0)
    np.testing.assert_allclose(apply_model(b, noisy + 100), apply_model(a, noisy) + 100,
                               atol=2e-2)
    auto = create("deconoising", **fast, background="auto").fit(noisy)
    assert auto.background == pytest.approx(np.percentile(noisy, 0.5))
    assert create("deconoising", **fast).fit(noisy).background == 0.0  # "none"


def test_background_is_stored_and_loaded(pair, tmp_path) -> None:
    model = create("deconoising", **{**TINY, "epochs": 1}, background=520.0).fit(pair[1])
    loaded = load(save(model, tmp_path / "d.pt"))
    assert isinstance(loaded, DecoNoising) and loaded.background == 520.0
    np.testing.assert_array_equal(apply_model(loaded, pair[1]), apply_model(model, pair[1]))
    with pytest.raises(InputError, match="background"):
        create("deconoising", background="dark")
