"""Pipeline: stacks, axes, tiling without seams, zero-shot fitting, bad arrays."""

from __future__ import annotations

import numpy as np
import pytest

from microdenoise import InputError, create, denoise_array

from .conftest import blobs, poisson_gaussian


def test_stack_runs_plane_by_plane(clean_noisy) -> None:
    _, noisy = clean_noisy
    stack = np.stack([noisy, noisy[::-1], noisy[:, ::-1]])
    out = denoise_array(stack, "median", axes="TYX")
    # One global normalization for the stack, so each plane equals the 2D result
    # of the same plane normalized with the stack's range.
    lo, hi = stack.min(), stack.max()
    for i in range(3):
        plane = (stack[i] - lo) / (hi - lo)
        expected = create("median").denoise(plane) * (hi - lo) + lo
        np.testing.assert_allclose(out[i], expected, atol=1e-5)


def test_tiled_equals_untiled_for_a_local_method(clean_noisy) -> None:
    _, noisy = clean_noisy
    big = np.tile(noisy, (3, 3))[:181, :173]
    whole = denoise_array(big, "median", params={"size": 5})
    tiled = denoise_array(big, "median", params={"size": 5}, tile=48, overlap=8)
    np.testing.assert_array_equal(whole, tiled)


def test_fm2s_tiled_inference_has_no_seams(clean_noisy) -> None:
    _, noisy = clean_noisy
    big = np.tile(noisy, (2, 2))
    params = {"fast_steps": 20, "fast_crop": 32}
    whole = denoise_array(big, "fm2s", params=params, seed=1)
    tiled = denoise_array(big, "fm2s", params=params, seed=1, tile=64, overlap=5)
    np.testing.assert_allclose(whole, tiled, atol=1e-6)


def test_overlap_below_receptive_field_is_refused(clean_noisy) -> None:
    _, noisy = clean_noisy
    with pytest.raises(InputError, match="receptive field"):
        denoise_array(noisy, "fm2s", tile=32, overlap=2)
    with pytest.raises(InputError, match="larger than twice"):
        denoise_array(noisy, "median", tile=4, overlap=2)


def test_fit_on_fits_once(clean_noisy, monkeypatch) -> None:
    _, noisy = clean_noisy
    stack = np.stack([noisy] * 5)
    calls = []
    from microdenoise.methods.fm2s import FM2S

    original = FM2S.fit

    def counting(self, image, clean=None):
        calls.append(image.shape)
        return original(self, image, clean)

    monkeypatch.setattr(FM2S, "fit", counting)
    denoise_array(stack, "fm2s", params={"fast_steps": 5, "fast_crop": 32}, fit_on=2)
    assert calls == [(64, 128)]  # one fit on a montage of 2 planes
    calls.clear()
    denoise_array(stack, "fm2s", params={"fast_steps": 5, "fast_crop": 32})
    assert len(calls) == 5


def test_loaded_zero_shot_model_is_not_refitted(clean_noisy, monkeypatch) -> None:
    _, noisy = clean_noisy
    x = np.clip(noisy, 0, 1)
    m = create("fm2s", fast_steps=10, fast_crop=32).fit(x)
    from microdenoise.methods.fm2s import FM2S

    def refuse(self, image, clean=None):
        raise AssertionError("a given model must not be refitted")

    monkeypatch.setattr(FM2S, "fit", refuse)
    out = denoise_array(x * 3.0 + 1.0, m)
    lo, hi = 1.0 + 3.0 * x.min(), 1.0 + 3.0 * x.max()
    expected = m.denoise((x * 3.0 + 1.0 - lo) / (hi - lo)) * (hi - lo) + lo
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_volume_methods_filter_along_z_per_channel() -> None:
    from scipy import ndimage

    clean = np.stack([blobs((32, 32), seed=s) for s in range(4)])
    noisy = poisson_gaussian(clean)
    # ZCYX: channel 1 is channel 0 scaled, so per-channel normalization gives equal results.
    zc = np.stack([noisy, 10.0 * noisy + 5.0], axis=1)
    out = denoise_array(zc, "box3d", axes="ZCYX")
    assert out.shape == zc.shape
    expected = ndimage.uniform_filter(noisy, size=3, mode="reflect")
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-5)
    np.testing.assert_allclose(out[:, 1], 10.0 * expected + 5.0, atol=1e-4)


def test_box3d_never_mixes_unrelated_samples() -> None:
    noisy = poisson_gaussian(np.stack([blobs((32, 32), seed=s) for s in range(3)]))
    with pytest.raises(InputError, match="stack"):
        denoise_array(noisy, "box3d", axes="SYX")


def test_channels_are_normalized_separately(clean_noisy) -> None:
    _, noisy = clean_noisy
    cyx = np.stack([noisy, 1000.0 * noisy])
    out = denoise_array(cyx, "median", axes="CYX")
    np.testing.assert_allclose(out[1], 1000.0 * out[0], rtol=1e-4, atol=1e-3)


def test_fm2s_default_settings_on_small_non_square_images() -> None:
    noisy = poisson_gaussian(blobs((40, 100), seed=2))
    for image in (noisy, noisy.T):
        out = denoise_array(image, "fm2s", params={"fast_steps": 5})
        assert out.shape == image.shape and np.isfinite(out).all()


def test_fm2s_seed_changes_the_result(clean_noisy) -> None:
    _, noisy = clean_noisy
    params = {"fast_steps": 10, "fast_crop": 32}
    a = denoise_array(noisy, "fm2s", params=params, seed=1)
    b = denoise_array(noisy, "fm2s", params=params, seed=2)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("image, message", [
    (np.zeros((1, 1), np.float32), "1x1 pixels"),
    (np.zeros((3, 5), np.float32), "3x5 pixels"),
    (np.array([[np.nan] * 32] * 32, np.float32), "NaN/Inf"),
    (np.zeros(40, np.float32), "at least 2 dimensions"),
    (np.zeros((32, 32), complex), "numeric"),
])
def test_bad_arrays_are_clear_errors(image, message) -> None:
    with pytest.raises(InputError, match=message):
        denoise_array(image, "median")


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_constant_images_pass_through_unless_strict(dtype) -> None:
    """Issue #14: a constant image is returned unchanged with a notice; strict refuses it."""
    from microdenoise.errors import NoticeWarning
    from microdenoise.feedback import Feedback, reporting

    image = np.full((32, 32), 7, dtype)
    with pytest.warns(NoticeWarning, match=r"the image is constant \(value 7\): passed"):
        out = denoise_array(image, "median")
    assert out.dtype == np.float32 and np.all(out == 7)
    with reporting(Feedback(strict=True)), pytest.raises(InputError, match="constant"):
        denoise_array(image, "median")


def test_constant_planes_of_a_stack_pass_through(clean_noisy) -> None:
    """Issue #14: a blank frame in a stack is passed through; the others are denoised, and
    a fully blank channel does not stop the other channels."""
    from microdenoise.errors import NoticeWarning

    _, noisy = clean_noisy
    stack = np.stack([noisy, np.zeros_like(noisy), noisy[:, ::-1]])  # same min..max
    with pytest.warns(NoticeWarning, match="plane S=1 of the image is constant"):
        out = denoise_array(stack, "fm2s", axes="SYX", fast_steps=5, fast_crop=32)
    assert np.all(out[1] == 0)
    np.testing.assert_allclose(out[0], denoise_array(noisy, "fm2s", fast_steps=5, fast_crop=32))
    channels = np.stack([noisy, np.full_like(noisy, 3.0)])
    with pytest.warns(NoticeWarning, match="plane C=1 of the image is constant"):
        out = denoise_array(channels, "median", axes="CYX")
    np.testing.assert_allclose(out[0], denoise_array(noisy, "median"))
    assert np.all(out[1] == 3)


def test_axes_must_match(clean_noisy) -> None:
    _, noisy = clean_noisy
    with pytest.raises(InputError, match="letters"):
        denoise_array(noisy, "median", axes="ZYX")
    with pytest.raises(InputError, match="STCZYX"):
        denoise_array(noisy[None], "median", axes="QYX")
