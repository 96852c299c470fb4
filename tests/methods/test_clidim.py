"""CLIDiM (Fuentes-Hurtado, Sibarita, Viasnoff; pix2pix, Isola et al., CVPR 2017).

Defaults, variants, one training iteration, the projection head flag, fitting,
inference at any size, save/load, errors and the CLI, on tiny networks (4
downsamplings, 8 filters) and 32x32 crops: behaviour, not quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from microdenoise import InputError, create, io, load, save
from microdenoise.cli import main
from microdenoise.methods.clidim import CLIDiM
from microdenoise.methods.clidim_train import TrainState, train_step

from ..conftest import blobs, poisson_gaussian
from .conftest import apply_model

TINY = {"num_downs": 4, "ngf": 8, "ndf": 8, "crop": 32, "batch_size": 4, "n_epochs": 2,
        "n_epochs_decay": 2, "steps_per_epoch": 3, "lr": 2e-3, "val_from": 0,
        "normalization": "training"}


def _pairs(n: int, shape: tuple[int, int] = (64, 64)) -> tuple[list[np.ndarray],
                                                                list[np.ndarray]]:
    cleans = [blobs(shape, seed=s) for s in range(n)]
    return [poisson_gaussian(c, seed=10 + s) for s, c in enumerate(cleans)], cleans


def _state(method: CLIDiM) -> TrainState:
    method.net, method.disc, method.head = method.build(4)  # 32 crop: 2x2 logit map
    return TrainState.create(method, torch.device("cpu"))


def _batch() -> torch.Tensor:
    x = torch.rand(4, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    return 2 * x - 1


def _copy(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_defaults_are_the_official_command() -> None:
    cfg = create("clidim").config
    assert (cfg.num_downs, cfg.ngf, cfg.ndf, cfg.n_layers_d, cfg.crop) == (8, 64, 64, 3, 256)
    assert (cfg.lr, cfg.beta1, cfg.beta2, cfg.batch_size) == (2e-4, 0.5, 0.999, 128)
    assert (cfg.lambda_l1, cfg.lambda_ssim, cfg.lambda_tv, cfg.cl_temperature) == \
        (100.0, 10.0, 1e-4, 0.1)
    assert (cfg.n_epochs, cfg.n_epochs_decay, cfg.steps_per_epoch) == (500, 300, 3)
    assert cfg.variant == "cl+tv+ssim" and cfg.terms == {"cl", "tv", "ssim"}
    assert cfg.cl_head_trainable and cfg.percentiles == (1.0, 99.8)
    assert cfg.target_percentiles == (0.0, 100.0)
    assert create("clidim", preset="paper").config.lambda_l1 == 1.0
    assert create("clidim").receptive_field == 1020
    assert CLIDiM.needs == "pairs"


@pytest.mark.parametrize(("variant", "terms"), [
    ("baseline", set()), ("tv", {"tv"}), ("ssim", {"ssim"}), ("cl", {"cl"})])
def test_variants(variant: str, terms: set[str]) -> None:
    method = create("clidim", variant=variant, **TINY)
    assert method.config.terms == terms
    state = _state(method)  # type: ignore[arg-type]
    assert (state.head is not None) == ("cl" in terms)
    losses = train_step(state, _batch(), torch.Generator().manual_seed(1))
    assert ("loss_cl" in losses) == ("cl" in terms)
    assert all(np.isfinite(v) for v in losses.values())


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(InputError, match="variant"):
        create("clidim", variant="cl+tv")


@pytest.mark.parametrize("trainable", [True, False])
def test_one_iteration_updates_g_and_d_and_the_head_only_if_trainable(trainable: bool) -> None:
    method = create("clidim", cl_head_trainable=trainable, **TINY)
    torch.manual_seed(0)
    state = _state(method)  # type: ignore[arg-type]
    assert state.head is not None
    g, d, head = _copy(state.g), _copy(state.d), _copy(state.head)
    losses = train_step(state, _batch(), torch.Generator().manual_seed(1))
    assert set(losses) == {"loss_cl", "loss_d", "loss_g"}
    assert _changed(g, state.g) and _changed(d, state.d)
    assert _changed(head, state.head) == trainable
    assert all(p.requires_grad for p in state.d.parameters())  # restored after the G step


def test_bf16_steps_match_fp32_and_release_restores_the_layout() -> None:
    losses = {}
    for precision in ("fp32", "bf16"):
        method = create("clidim", precision=precision, **TINY)
        torch.manual_seed(0)
        state = _state(method)  # type: ignore[arg-type]
        assert (state.g_step is state.g) == (precision == "fp32")
        torch.manual_seed(2)  # the same dropout masks
        losses[precision] = train_step(state, _batch(), torch.Generator().manual_seed(1))
        state.release()
        assert all(p.is_contiguous() for p in state.g.parameters())
        assert not state.g.training and not state.d.training
    for key, value in losses["fp32"].items():
        assert losses["bf16"][key] == pytest.approx(value, rel=0.05), key


@pytest.fixture(scope="module")
def trained() -> CLIDiM:
    noisy, clean = _pairs(3)
    params = {**TINY, "n_epochs": 4, "n_epochs_decay": 2, "steps_per_epoch": 5}
    return create("clidim", **params).fit(noisy, clean)  # type: ignore[return-value]


def test_fit_denoises_and_records_history(trained: CLIDiM) -> None:
    assert trained.epoch == 6 and len(trained.history) == 6
    assert {"loss_g", "loss_d", "loss_cl", "val_psnr", "lr"} <= set(trained.history[0])
    # Constant, then linear decay: 1 - max(0, e + 1 - 4) / 3 for e = 0..5.
    lrs = [h["lr"] / 2e-3 for h in trained.history]
    np.testing.assert_allclose(lrs, [1.0, 1.0, 1.0, 1.0, 2 / 3, 1 / 3])
    assert np.isfinite(trained.best)
    noisy, clean = _pairs(1)
    out = apply_model(trained, noisy[0])
    assert out.shape == noisy[0].shape and out.dtype == np.float32
    assert np.mean((out - clean[0]) ** 2) < np.mean((noisy[0] - clean[0]) ** 2)


def test_any_size_and_stacks(trained: CLIDiM) -> None:
    image = poisson_gaussian(blobs((50, 70), seed=5), seed=6)
    assert apply_model(trained, image).shape == (50, 70)
    assert apply_model(trained, np.stack([image, image])).shape == (2, 50, 70)


def test_normalization_uses_training_percentiles_not_the_ground_truth(trained: CLIDiM) -> None:
    noisy, clean = _pairs(3)
    inputs, targets, _, _ = trained.pairs(noisy, clean)
    low, high = np.percentile(np.concatenate([p.ravel() for p in inputs]), [1.0, 99.8])
    n_in, n_out = trained.normalizers  # affine maps onto Tanh's [-1, 1]
    np.testing.assert_allclose(n_in(np.array([low, high])), [-1.0, 1.0], atol=1e-4)
    assert n_in.to_dict()["kind"] == n_out.to_dict()["kind"] == "mean_std"
    # Targets by their min/max: every training target is inside Tanh's [-1, 1].
    mapped = [n_out(t) for t in targets]
    assert min(m.min() for m in mapped) == pytest.approx(-1, abs=1e-5)
    assert max(m.max() for m in mapped) == pytest.approx(1, abs=1e-5)
    # Denoising uses the stored statistics only: no target is needed.
    assert np.isfinite(apply_model(trained, noisy[0])).all()


def test_save_load_round_trip(trained: CLIDiM, tmp_path: Path) -> None:
    noisy, _ = _pairs(1)
    loaded = load(save(trained, tmp_path / "clidim.pt"))
    assert isinstance(loaded, CLIDiM) and loaded.config == trained.config
    np.testing.assert_array_equal(apply_model(loaded, noisy[0]), apply_model(trained, noisy[0]))
    assert loaded.epoch == 6 and loaded.head is not None and loaded.disc is not None
    assert "opt_g" not in torch.load(tmp_path / "clidim.pt", weights_only=True)["state"]


def test_continuing_runs_another_schedule(tmp_path: Path) -> None:
    noisy, clean = _pairs(2)
    params = {**TINY, "n_epochs": 1, "n_epochs_decay": 0, "checkpoint_dir": str(tmp_path)}
    method = create("clidim", **params).fit(noisy, clean)
    first = tmp_path / "first.pt"
    (tmp_path / "best.pt").replace(first)
    assert "opt_g" in torch.load(first, weights_only=True)["state"]
    method.fit(noisy, clean)  # a finished run starts another schedule
    assert method.epoch == 2
    resumed = create("clidim", **{**params, "resume": str(first),
                                  "checkpoint_dir": None}).fit(noisy, clean)
    assert resumed.epoch == 2 and len(resumed.history) == 2


def test_few_shot_and_errors() -> None:
    noisy, clean = _pairs(3)
    method = create("clidim", n_train=2, **TINY)
    assert len(method.pairs(noisy, clean)[0]) == 2  # type: ignore[attr-defined]
    with pytest.raises(InputError, match="n_train=5"):
        create("clidim", n_train=5, **TINY).fit(noisy, clean)
    with pytest.raises(InputError, match="clean targets"):
        create("clidim", **TINY).fit(noisy)
    with pytest.raises(InputError, match="num_downs=5 or less"):
        create("clidim", **TINY | {"num_downs": 6}).fit(noisy, clean)
    with pytest.raises(InputError, match="not trained"):
        create("clidim").denoise(noisy[0])


def test_cli_train_then_denoise(tmp_path: Path) -> None:
    noisy_dir, clean_dir = tmp_path / "noisy", tmp_path / "clean"
    noisy_dir.mkdir()
    clean_dir.mkdir()
    noisy, clean = _pairs(3, (48, 40))
    for s, (x, y) in enumerate(zip(noisy, clean, strict=True)):
        io.write_image(noisy_dir / f"img{s}.tif", (x * 1000).clip(0, None).astype(np.uint16))
        io.write_image(clean_dir / f"img{s}.tif", (y * 1000).astype(np.uint16))
    params = [a for k, v in {**TINY, "n_epochs": 1, "n_epochs_decay": 0}.items()
              for a in ("--param", f"{k}={v}")]
    model = tmp_path / "clidim.pt"
    assert main(["train", "--method", "clidim", "--input", str(noisy_dir), "--target",
                 str(clean_dir), "--n-train", "2", "--out", str(model), *params,
                 "--device", "cpu"]) == 0
    assert load(model).config.n_train == 2  # type: ignore[attr-defined]
    out = tmp_path / "out"
    assert main(["denoise", "--model", str(model), str(noisy_dir), "-o", str(out)]) == 0
    assert io.read_image(out / "img0.tif").data.shape == (48, 40)


def test_a_test_image_brighter_than_the_training_targets_saturates(trained: CLIDiM) -> None:
    """Tanh caps the output at the training targets' max (their exact min/max map to
    -1/1): an image far brighter than anything in training comes out at most at that
    max, whatever its own intensities."""
    noisy, clean = _pairs(3)
    top = max(float(c.max()) for c in clean)
    assert trained.normalizers[1].inverse(np.float32(1.0)) == pytest.approx(top, rel=1e-5)
    bright = apply_model(trained, noisy[0] * 50 + 10 * top)
    assert bright.max() <= top * (1 + 1e-5) and bright.min() >= min(c.min() for c in clean) - 1e-5
    assert bright.max() > 0.9 * top  # pinned near the cap, not scaled up with the input


def test_per_image_minmax_maps_each_image_by_its_own_range(tmp_path: Path) -> None:
    """``normalization="per_image_minmax"``: the leak-free counterpart of the official
    per-batch min/max: training pairs scaled by their noisy plane's min..max (the
    target by the same map), prediction by the core's per-image "unit" scaling."""
    from microdenoise import denoise_array
    from microdenoise.methods.clidim import per_image_minmax

    noisy, clean = _pairs(3)
    xs, ys = per_image_minmax([noisy[0] * 3 + 5], [clean[0] * 3 + 5])
    assert xs[0].min() == pytest.approx(-1) and xs[0].max() == pytest.approx(1)
    lo, hi = float(noisy[0].min()) * 3 + 5, float(noisy[0].max()) * 3 + 5
    np.testing.assert_allclose(ys[0], 2 * (clean[0] * 3 + 5 - lo) / (hi - lo) - 1, atol=1e-5)
    assert create("clidim").normalization == "unit"  # the default (issue #15 rule)
    model = create("clidim", **{**TINY, "normalization": "per_image_minmax"}).fit(noisy, clean)
    assert model.normalization == "unit"
    out = denoise_array(noisy[0], model)
    np.testing.assert_allclose(denoise_array(noisy[0] * 4 + 2, model), out * 4 + 2,
                               rtol=1e-4, atol=1e-4)
    loaded = load(save(model, tmp_path / "m.pt"))
    np.testing.assert_array_equal(denoise_array(noisy[0], loaded), out)


def test_files_from_before_the_normalization_option_keep_their_scaling(
        trained: CLIDiM, tmp_path: Path) -> None:
    """Model files without ``normalization`` (older than the option, whose default is
    now per_image_minmax) store affine normalizers: they load as ``"training"``."""
    path = save(trained, tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    del payload["config"]["normalization"]
    torch.save(payload, path)
    loaded = load(path)
    assert loaded.config.normalization == "training" and loaded.normalization == "model"
    noisy, _ = _pairs(1)
    np.testing.assert_array_equal(apply_model(loaded, noisy[0]), apply_model(trained, noisy[0]))
