"""CARE: defaults, normalization, training, save/load/resume, 2x output and bad input.

Trainings are tiny (tens of steps of 8-filter U-Nets with 3x3 kernels on 64x64
synthetic pairs, a higher learning rate): behaviour and a clear gain, not quality.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from microdenoise import InputError, create, denoise_array, denoise_file, io, load, save
from microdenoise.methods.care import CARE, fit_normalizers
from microdenoise.metrics import psnr

from ..conftest import blobs, poisson_gaussian
from .conftest import apply_model

TINY = {"epochs": 4, "steps_per_epoch": 10, "batch_size": 4, "patch_size": 32,
        "filters": 8, "kernel_size": 3, "lr": 3e-3, "normalization": "percentile"}


def _pairs(n: int, shape: tuple[int, int] = (64, 64)) -> tuple[list[np.ndarray],
                                                                list[np.ndarray]]:
    cleans = [blobs(shape, seed=s) for s in range(n)]
    return [poisson_gaussian(c, seed=10 + s) for s, c in enumerate(cleans)], cleans


def _shrink(image: np.ndarray) -> np.ndarray:
    """2x2 mean: the low-resolution version of a high-resolution image."""
    h, w = image.shape[-2] // 2, image.shape[-1] // 2
    return image.reshape(*image.shape[:-2], h, 2, w, 2).mean(axis=(-3, -1))


@pytest.fixture(scope="module")
def trained() -> CARE:
    noisy, clean = _pairs(4)
    return create("care", **TINY).fit(noisy, clean)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def trained_2x() -> CARE:
    clean = [blobs((64, 64), seed=s) for s in range(3)]
    noisy = [poisson_gaussian(_shrink(c), seed=20 + s) for s, c in enumerate(clean)]
    params = {**TINY, "patch_size": 16, "epochs": 2, "upscale": 2}
    return create("care", **params).fit(noisy, clean)  # type: ignore[return-value]


def test_defaults_are_csbdeep() -> None:
    model = create("care")
    cfg = model.config
    assert (cfg.depth, cfg.filters, cfg.kernel_size, cfg.batch_norm) == (2, 32, 5, False)
    assert (cfg.residual, cfg.loss, cfg.normalization, cfg.percentiles) == (
        True, "l1", "percentile", (1.0, 99.8))
    assert (cfg.lr, cfg.batch_size, cfg.epochs, cfg.steps_per_epoch) == (4e-4, 16, 100, 400)
    assert (cfg.lr_factor, cfg.lr_patience, cfg.upscale) == (0.5, 10, 1)
    assert model.family == "supervised" and model.needs == "pairs"
    assert model.normalization == "model" and model.upscale == 1
    assert create("care", normalization="per_image").normalization == "percentile"
    assert model.patch_size == 128 and create("care", upscale=2).patch_size == 64
    net = model.build_net()
    assert sum(p.numel() for p in net.parameters()) == 922_977  # CSBDeep's 2D CARE
    assert model.receptive_field == net.receptive_field == 46
    assert create("care", upscale=2).receptive_field == 24  # ceil(46 / 2) + 1 input pixels


def test_declared_receptive_field_bounds_the_true_one() -> None:
    from ..test_networks import _measured_radius

    torch.manual_seed(0)
    net = create("care", filters=4).build_net()  # 5x5 kernels, nearest upsampling
    measured = _measured_radius(net, size=128)
    assert measured <= net.receptive_field <= measured + 8


def test_dataset_normalization_round_trips(tmp_path) -> None:
    noisy, clean = _pairs(3)
    scaled = [x * 500 + 100 for x in noisy]
    values = np.concatenate([x.ravel() for x in scaled]).astype(np.float64)
    ms_in, ms_out = fit_normalizers(scaled, clean, kind="meanstd")
    assert ms_in is ms_out  # the inputs' statistics, for inputs and targets alike
    assert (ms_in.mean, ms_in.std) == (pytest.approx(values.mean()), pytest.approx(values.std()))
    y = clean[0] * 700 + 3
    np.testing.assert_allclose(ms_out.inverse(ms_out(y)), y, rtol=1e-5)
    pc_in, pc_out = fit_normalizers(scaled, clean)  # percentiles, each side its own
    assert (pc_in.low, pc_in.high) == tuple(pytest.approx(v)
                                            for v in np.percentile(values, [1, 99.8]))
    assert pc_out.high - pc_out.low < 1 < pc_in.high - pc_in.low
    np.testing.assert_allclose(pc_out.inverse(pc_out(clean[1])), clean[1], atol=1e-6)
    model = create("care", **{**TINY, "epochs": 1, "steps_per_epoch": 1,
                              "normalization": "meanstd"}).fit(scaled, clean)
    assert model.norm_in == ms_in == model.norm_out  # computed once, stored in the model
    loaded = load(save(model, tmp_path / "ms.pt"))
    assert loaded.norm_in == ms_in and loaded.norm_out == ms_out


def test_training_lowers_validation_loss_and_beats_the_noisy_input(trained: CARE) -> None:
    losses = [h["val_loss"] for h in trained.history]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0]
    clean = blobs((64, 64), seed=99)
    noisy = poisson_gaussian(clean, seed=98)  # an image it has not seen
    out = apply_model(trained, noisy)
    assert psnr(out, clean, data_range=1.0) > psnr(noisy, clean, data_range=1.0) + 1.5


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_precisions_train_and_denoise(precision: str) -> None:
    noisy, clean = _pairs(4)
    model = create("care", **{**TINY, "precision": precision}).fit(noisy, clean)
    assert all(p.is_contiguous() for p in model.net.parameters())  # back from channels-last
    test_clean = blobs((64, 64), seed=99)
    test_noisy = poisson_gaussian(test_clean, seed=98)
    gain = psnr(apply_model(model, test_noisy), test_clean, data_range=1.0) - psnr(
        test_noisy, test_clean, data_range=1.0)
    assert gain > 1.5


def test_save_load_reproduces_outputs(trained: CARE, tmp_path) -> None:
    noisy = poisson_gaussian(blobs((48, 40), seed=5), seed=6)
    loaded = load(save(trained, tmp_path / "care.pt"))
    assert isinstance(loaded, CARE) and loaded.config == trained.config
    assert loaded.norm_in == trained.norm_in and loaded.norm_out == trained.norm_out
    assert loaded.epoch == 4
    np.testing.assert_array_equal(apply_model(loaded, noisy), apply_model(trained, noisy))


def test_any_size_works(trained: CARE) -> None:
    img = poisson_gaussian(blobs((37, 53), seed=2), seed=4)
    out = apply_model(trained, img)
    assert out.shape == img.shape and out.dtype == np.float32 and np.isfinite(out).all()
    stack = np.stack([img, img[::-1]])
    both = apply_model(trained, stack)
    assert both.shape == stack.shape
    np.testing.assert_allclose(both[0], out, atol=1e-6)
    assert apply_model(trained, img[:17, :23]).shape == (17, 23)


def test_2x_output_tiles_and_halves_the_pixel_size(trained_2x: CARE, tmp_path) -> None:
    clean = blobs((96, 80), seed=7)
    low = poisson_gaussian(_shrink(clean), seed=8)
    out = denoise_array(low, trained_2x)
    assert out.shape == (96, 80) and np.isfinite(out).all()
    rf = trained_2x.receptive_field
    tiled = denoise_array(low, trained_2x, tile=2 * rf + 8, overlap=rf)
    np.testing.assert_allclose(tiled, out, rtol=0, atol=1e-5)
    src = io.write_image(tmp_path / "low.tif", low, pixel_size=(0.2, 0.25), unit="µm")
    written = io.read_image(denoise_file(src, tmp_path / "high.tif", trained_2x))
    assert written.data.shape == (96, 80)
    assert written.pixel_size == pytest.approx((0.1, 0.125)) and written.unit == "µm"
    with pytest.raises(InputError, match="drop --max-memory"):
        denoise_file(src, tmp_path / "x.tif", trained_2x, max_memory="1GB")
    pytest.importorskip("dask")
    from microdenoise.distributed import denoise_dask

    with pytest.raises(InputError, match="2x larger images"):
        denoise_dask(low, trained_2x)


def test_n_train_takes_the_first_k_pairs_after_a_seeded_shuffle() -> None:
    noisy, clean = _pairs(4, (32, 32))
    model = create("care", n_train=2)
    xs, ys, spare_x, _ = model.pairs(noisy, clean)  # type: ignore[attr-defined]
    assert len(xs) == 2 and len(spare_x) == 2
    again, *_ = model.pairs(noisy, clean)  # type: ignore[attr-defined]
    assert all(a is b or np.array_equal(a, b) for a, b in zip(xs, again, strict=True))
    chosen = [next(i for i, x in enumerate(noisy) if np.array_equal(x, xi)) for xi in xs]
    assert chosen == list(np.random.default_rng(42).permutation(4)[:2])
    for x, y in zip(xs, ys, strict=True):
        assert np.array_equal(y, clean[[np.array_equal(x, n) for n in noisy].index(True)])
    with pytest.raises(InputError, match="n_train=5 but only 4 pair"):
        create("care", n_train=5).fit(noisy, clean)


def test_checkpoints_resume_keep_best_and_early_stop(tmp_path) -> None:
    noisy, clean = _pairs(2)  # 64 px: a validation strip of each
    fast = {**TINY, "epochs": 2, "steps_per_epoch": 3}
    first = create("care", **fast, checkpoint_dir=str(tmp_path)).fit(noisy, clean)
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "last.pt").is_file()
    best = load(tmp_path / "best.pt")
    np.testing.assert_array_equal(apply_model(best, noisy[0]), apply_model(first, noisy[0]))
    resumed = create("care", **{**fast, "epochs": 3},
                     resume=str(tmp_path / "last.pt")).fit(noisy, clean)
    assert [h["epoch"] for h in resumed.history] == [1.0, 2.0, 3.0]
    with pytest.raises(InputError, match="different filters"):
        create("care", **{**fast, "filters": 4}, resume=str(tmp_path / "last.pt")).fit(
            noisy, clean)
    # A learning rate too small to change float32 weights: no epoch improves on the first.
    frozen = create("care", **{**fast, "epochs": 6, "lr": 1e-30, "stop_patience": 2})
    assert len(frozen.fit(noisy, clean).history) == 3


def test_bad_input_says_what_to_do() -> None:
    noisy, clean = _pairs(2, (32, 32))
    with pytest.raises(InputError, match="train it first: microdenoise train --method care"):
        create("care").denoise(noisy[0])
    with pytest.raises(InputError, match="needs the clean targets"):
        create("care").fit(noisy)
    with pytest.raises(InputError, match="2 noisy image.* but 1 clean"):
        create("care").fit(noisy, clean[:1])
    with pytest.raises(InputError, match="same shape"):
        create("care").fit(noisy[0], clean[0][:, :30])
    with pytest.raises(InputError, match="exactly 2x the noisy"):
        create("care", upscale=2).fit(noisy[0][:, :16], clean[0])
    with pytest.raises(InputError, match="upscale must be 1"):
        create("care", upscale=3)


def test_continuing_without_improvement_keeps_the_weights_it_started_from() -> None:
    import dataclasses

    noisy, clean = _pairs(2)  # 64 px: a validation strip of each
    model = create("care", **{**TINY, "epochs": 2, "steps_per_epoch": 3}).fit(noisy, clean)
    before = apply_model(model, noisy[0])
    # Continue with a fresh optimizer at a learning rate that wrecks every epoch.
    model.config = dataclasses.replace(model.config, lr=50.0)
    model.train_state = {}
    model.fit(noisy, clean)
    assert len(model.history) == 4
    assert all(h["val_loss"] > model.best for h in model.history[2:])
    np.testing.assert_array_equal(apply_model(model, noisy[0]), before)


def test_without_a_terminal_each_epoch_status_goes_to_stderr_as_a_line(capsys) -> None:
    """Batch jobs and log files get plain progress lines (the bar is off there): the
    first epoch, then at most one a minute, and the last one."""
    noisy, clean = _pairs(2)
    create("care", **{**TINY, "epochs": 3, "steps_per_epoch": 2}).fit(noisy, clean)
    lines = [s for s in capsys.readouterr().err.splitlines() if ": epoch " in s]
    assert len(lines) == 2, lines
    assert lines[0].startswith("training care: epoch 1/3 loss ") and " val " in lines[0]
    assert lines[1].startswith("training care: epoch 3/3 loss ")


@pytest.mark.parametrize("method", ["care", "clidim"])
def test_n_train_k_trains_on_exactly_k_pairs_and_validates_on_others(method: str) -> None:
    """K means K training pairs: validation comes from the pairs outside the K
    (``max(1, round(val_fraction * given))`` of them); with none left, the no-validation
    path (a warning, the last weights)."""
    noisy, clean = _pairs(6, (32, 32))
    model = create(method, n_train=3, val_fraction=0.3)
    xs, ys, sx, sy = model.pairs(noisy, clean)  # type: ignore[attr-defined]
    tx, ty, vx, vy, validated = model.split(xs, ys, patch=16,  # type: ignore[attr-defined]
                                            spare=(sx, sy))
    assert validated and len(tx) == 3 and len(vx) == 2  # round(0.3 * 6) = 2 of the 3 others
    assert all(t is x for t, x in zip(tx, xs, strict=True))  # whole pairs, none cut
    assert not any(np.array_equal(v, t) for v in vx for t in tx)
    assert all(any(np.array_equal(v, s) for s in sx) for v in vx)
    every = create(method, n_train=6)
    xs, ys, sx, sy = every.pairs(noisy, clean)  # type: ignore[attr-defined]
    with pytest.warns(UserWarning, match="none is left to validate on"):
        tx, _, vx, _, validated = every.split(xs, ys, patch=16,  # type: ignore[attr-defined]
                                              spare=(sx, sy))
    assert not validated and len(tx) == 6 and vx is tx


def test_per_image_normalization_is_csbdeeps(tmp_path) -> None:
    """``normalization="per_image"``: training pairs each scaled by their own jittered
    percentiles (CSBDeep's create_patches); at prediction the core scales the image by
    its own percentiles and maps the output back with them, so a brighter copy of an
    image gives a proportionally brighter output."""
    from microdenoise import denoise_array
    from microdenoise.methods.care import per_image_percentiles

    noisy, clean = _pairs(2)
    xs, ys = per_image_percentiles([noisy[0] * 7 + 3], [clean[0] * 5], np.random.default_rng(0))
    assert abs(np.percentile(xs[0], 2)) < 0.05 and abs(np.percentile(xs[0], 99.7) - 1) < 0.05
    assert abs(np.percentile(ys[0], 2)) < 0.05 and abs(np.percentile(ys[0], 99.7) - 1) < 0.05
    model = create("care", **{**TINY, "epochs": 1, "steps_per_epoch": 2,
                              "normalization": "per_image"}).fit(noisy, clean)
    assert model.normalization == "percentile"
    with pytest.raises(InputError, match="stores no normalizers"):
        model.normalizers  # noqa: B018
    out = denoise_array(noisy[0], model)
    brighter = denoise_array(noisy[0] * 10 + 100, model)
    np.testing.assert_allclose(brighter, out * 10 + 100, rtol=1e-4, atol=1e-3)
    loaded = load(save(model, tmp_path / "p.pt"))
    np.testing.assert_array_equal(denoise_array(noisy[0], loaded), out)
