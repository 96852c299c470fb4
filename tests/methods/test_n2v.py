"""Noise2Void: training, masking in the loop, save/load/resume, tiling and bad input.

Trainings are tiny (tens of steps on 64x64 images, 8-filter U-Nets, 5 % blind
spots instead of 0.2 % so that tens of steps see enough of them): behaviour and
a clear gain, not quality.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from microdenoise import InputError, create, denoise_array, load, save
from microdenoise.methods.n2v import N2V
from microdenoise.metrics import psnr
from microdenoise.patches import blind_spot_mask, sample_patches
from microdenoise.training import generator

from ..conftest import blobs, poisson_gaussian
from .conftest import apply_model

TINY = {"epochs": 2, "steps_per_epoch": 10, "batch_size": 4, "patch_size": 32,
        "masked_percentage": 5.0, "filters": 8}


@pytest.fixture(scope="module")
def trained(pair) -> N2V:
    model = create("n2v", **{**TINY, "epochs": 3}).fit(pair[1])
    return model  # type: ignore[return-value]


def _masked_loss(model: N2V, net: torch.nn.Module, noisy: np.ndarray) -> float:
    standardized = (noisy - model.mean) / model.std
    patches = sample_patches([standardized], 32, 32, generator(123))
    masked = blind_spot_mask(patches, percentage=5.0, radius=5, gen=generator(124))
    with torch.no_grad():
        return float(model.loss(net.eval(), masked, patches))


def test_defaults_are_careamics() -> None:
    cfg = create("n2v").config
    assert (cfg.depth, cfg.filters, cfg.batch_norm, cfg.patch_size) == (2, 32, True, 64)
    assert (cfg.masked_percentage, cfg.roi_radius, cfg.lr) == (0.2, 5, 1e-3)
    assert create("n2v").receptive_field == 29
    assert create("n2v", preset="n2v2").receptive_field == 32


def test_training_lowers_the_masked_loss_and_improves_psnr(pair, trained) -> None:
    clean, noisy = pair
    torch.manual_seed(trained.config.seed)
    initial = trained.build_net()  # the weights training started from
    assert trained.net.receptive_field == trained.receptive_field
    assert _masked_loss(trained, trained.net, noisy) < 0.8 * _masked_loss(trained, initial, noisy)
    gain = psnr(apply_model(trained, noisy), clean, data_range=1.0) - psnr(noisy, clean,
                                                                      data_range=1.0)
    assert gain > 3.0  # dB, after 30 steps
    assert [h["epoch"] for h in trained.history] == [1.0, 2.0, 3.0]


def test_same_seed_same_result(pair, trained) -> None:
    again = create("n2v", **{**TINY, "epochs": 3}).fit(pair[1])
    np.testing.assert_array_equal(apply_model(again, pair[1]), apply_model(trained, pair[1]))
    other = create("n2v", **{**TINY, "seed": 5}).fit(pair[1])
    assert not np.array_equal(apply_model(other, pair[1]), apply_model(trained, pair[1]))


def test_save_load_reproduces_outputs(pair, trained, tmp_path) -> None:
    loaded = load(save(trained, tmp_path / "n2v.pt"))
    assert loaded.config == trained.config
    np.testing.assert_array_equal(apply_model(loaded, pair[1]), apply_model(trained, pair[1]))
    assert (loaded.mean, loaded.std, loaded.epoch) == (trained.mean, trained.std, 3)


def test_odd_sizes_work(trained) -> None:
    img = poisson_gaussian(blobs((37, 53), seed=2), seed=4)
    out = apply_model(trained, img)
    assert out.shape == img.shape and out.dtype == np.float32 and np.isfinite(out).all()
    stack = np.stack([img, img[::-1]])
    np.testing.assert_allclose(apply_model(trained, stack)[0], out, atol=1e-6)
    model = create("n2v", **{**TINY, "epochs": 1, "steps_per_epoch": 2}).fit(
        poisson_gaussian(blobs((45, 67), seed=5)))
    assert apply_model(model, img).shape == (37, 53)


def test_tiled_equals_untiled(trained) -> None:
    img = poisson_gaussian(blobs((120, 101), seed=6), seed=7)
    rf = trained.receptive_field
    whole = denoise_array(img, trained)
    tiled = denoise_array(img, trained, tile=2 * rf + 24, overlap=rf)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


def test_trains_on_stacks_and_lists_of_images() -> None:
    rng = np.random.default_rng(0)
    stack = rng.poisson(20, (3, 40, 48)).astype(np.uint16)
    tiny = {**TINY, "epochs": 1, "steps_per_epoch": 2}
    assert create("n2v", **tiny).fit(stack).epoch == 1
    images = [rng.normal(size=(40, 48)), rng.normal(size=(64, 36))]
    model = create("n2v", **tiny).fit(images)
    assert apply_model(model, images[1]).shape == (64, 36)


@pytest.mark.parametrize("params", [{"n2v2": True}, {"struct_axis": "x", "struct_span": 7}])
def test_variants_train(pair, params) -> None:
    model = create("n2v", **{**TINY, "epochs": 1, "steps_per_epoch": 3, **params}).fit(pair[1])
    out = apply_model(model, pair[1])
    assert out.shape == pair[1].shape and np.isfinite(out).all()
    if params.get("n2v2"):
        assert model.replacement == "median"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_both_precisions_train_and_denoise(pair, precision) -> None:
    clean, noisy = pair
    model = create("n2v", **{**TINY, "epochs": 3, "precision": precision}).fit(noisy)
    assert all(p.is_contiguous() for p in model.net.parameters())  # back from channels-last
    gain = psnr(apply_model(model, noisy), clean, data_range=1.0) - psnr(noisy, clean,
                                                                    data_range=1.0)
    assert gain > 3.0


def test_untrained_model_says_train_it_first(pair) -> None:
    with pytest.raises(InputError, match="train it first: microdenoise train --method n2v"):
        denoise_array(pair[1], "n2v")
    with pytest.raises(InputError, match="train it first"):
        create("deconoising").denoise(pair[1])


def test_fit_per_image_trains_on_each_image_in_the_pipeline(pair) -> None:
    clean, noisy = pair
    out = denoise_array(noisy, "n2v", params={**TINY, "fit_per_image": True}, seed=1)
    assert psnr(out, clean, data_range=1.0) > psnr(noisy, clean, data_range=1.0)


def test_calibrate_names_its_new_name_fit_per_image() -> None:
    """``calibrate`` means J-invariant calibration of the filters only; a blind-spot
    method given it is told the parameter's name."""
    for name in ("n2v", "deconoising"):
        with pytest.raises(InputError, match="now called fit_per_image: use fit_per_image=True"):
            create(name, calibrate=True)
    assert create("n2v", fit_per_image=True).fit_policy == "per_image"


def test_model_saved_with_calibrate_loads_as_fit_per_image(trained, tmp_path) -> None:
    path = save(trained, tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["config"]["fit_per_image"]  # as saved before the rename
    payload["config"]["calibrate"] = True
    torch.save(payload, path)
    old = load(path)
    assert old.config.fit_per_image
    img = poisson_gaussian(blobs((64, 64), seed=8), seed=9)
    np.testing.assert_array_equal(apply_model(old, img), apply_model(trained, img))


@pytest.mark.parametrize(("data", "words"), [
    (np.random.default_rng(0).random((12, 40)), "at least 16x16"),
    (np.full((64, 64), 7.0), "constant"),
    (np.where(np.eye(64) > 0, np.nan, 1.0), "NaN"),
    ([np.ones((64, 64)), [np.ones((64, 64)), np.ones((32, 32))]], "not nested lists"),
])
def test_bad_training_data(data, words) -> None:
    model = create("n2v", **TINY)
    with pytest.raises(InputError, match=words):
        model.fit(data)
    assert model.state_dict() == {}  # still untrained: denoise says "train it first"


def test_bad_parameters() -> None:
    with pytest.raises(InputError, match="dims must be 2"):
        create("n2v", dims=1)
    with pytest.raises(InputError, match="struct_span"):
        create("n2v", struct_span=4)
    with pytest.raises(InputError, match="patch_size"):
        create("n2v", patch_size=8)


def test_checkpoints_and_resume_match_an_uninterrupted_run(pair, tmp_path) -> None:
    noisy = pair[1]
    short = {**TINY, "steps_per_epoch": 3}
    create("n2v", **short, checkpoint_dir=str(tmp_path)).fit(noisy)  # 2 of 4 epochs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]
    assert load(tmp_path / "last.pt").epoch == 2
    straight = create("n2v", **{**short, "epochs": 4}).fit(noisy)
    resumed = create("n2v", **{**short, "epochs": 4}, resume=str(tmp_path / "last.pt"))
    resumed.fit(noisy)
    assert resumed.epoch == 4
    np.testing.assert_array_equal(apply_model(resumed, noisy), apply_model(straight, noisy))
    with pytest.raises(InputError, match="filters"):
        create("n2v", **{**short, "filters": 4}, resume=str(tmp_path / "last.pt")).fit(noisy)


def test_continue_training_a_loaded_model(pair, trained, tmp_path) -> None:
    model = load(save(trained, tmp_path / "m.pt"))
    model.fit(pair[1])  # finished run: trains `epochs` more
    assert model.epoch == 6 and model.mean == trained.mean and model.std == trained.std
    assert not np.array_equal(apply_model(model, pair[1]), apply_model(trained, pair[1]))


def test_no_progress_bar_when_not_a_terminal_only_epoch_lines(pair, capsys) -> None:
    create("n2v", **{**TINY, "epochs": 1, "steps_per_epoch": 1}).fit(pair[1])
    err = capsys.readouterr().err
    assert "\r" not in err and "%|" not in err  # no tqdm bar in a log file
    plan, epoch = err.splitlines()
    assert plan.startswith("training n2v: 1 epoch x 1 steps of 4 patches (1 steps) on cpu, ")
    assert epoch.startswith("training n2v: epoch 1/1 loss ")


def test_shift_average_off_is_a_single_pass(trained) -> None:
    img = poisson_gaussian(blobs((64, 64), seed=8), seed=9)
    assert not trained.config.shift_average  # the default: aligned tiles make it unneeded
    averaged = N2V(dataclasses.replace(trained.config, shift_average=True))
    averaged.load_state_dict(trained.state_dict())
    out = apply_model(averaged, img)
    assert out.shape == img.shape
    assert not np.array_equal(out, apply_model(trained, img))


@pytest.mark.parametrize(("axis", "rotates"), [("none", True), ("x", False), ("y", False)])
def test_structn2v_patches_are_never_rotated(monkeypatch, pair, axis: str,
                                             rotates: bool) -> None:
    """A 90-degree rotation would turn structN2V's line mask across the correlated
    noise (CAREamics turns augmentation off for it): with ``struct_axis`` set, training
    augments by flips only."""
    import microdenoise.patches as patches

    calls: list[bool] = []
    original = patches.augment

    def spy(batch: torch.Tensor, gen: torch.Generator, *, rotate: bool = True) -> torch.Tensor:
        calls.append(rotate)
        return original(batch, gen, rotate=rotate)

    monkeypatch.setattr(patches, "augment", spy)
    create("n2v", **{**TINY, "epochs": 1, "steps_per_epoch": 3},
           struct_axis=axis).fit(pair[1])
    assert calls and set(calls) == {rotates}
