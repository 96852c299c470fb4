"""The trained methods' shared base (n2v, deconoising, care, clidim): the contract with
the prediction core, keep-best with the kept epoch's training state, exports without
optimizer state, seeding, the model format's version, and ``microdenoise.train``.

Trainings are tiny (a few steps of 8-filter networks): behaviour, not quality.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import microdenoise as md
from microdenoise import InputError, create, denoise_array, io, list_methods, load, save
from microdenoise.methods import trained as trained_module
from microdenoise.methods.clidim import CLIDiM
from microdenoise.normalize import MeanStd, Percentile
from microdenoise.registry import FORMAT, FORMAT_VERSION
from microdenoise.training import deterministic, seeded

from ..conftest import blobs, poisson_gaussian
from .conftest import apply_model

TINY = {
    "n2v": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 4, "patch_size": 32,
            "masked_percentage": 5.0, "filters": 8},
    "deconoising": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 4, "patch_size": 32,
                    "masked_percentage": 5.0, "filters": 8},
    "care": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 4, "patch_size": 32,
             "filters": 8, "kernel_size": 3, "lr": 3e-3, "normalization": "percentile"},
    "clidim": {"num_downs": 4, "ngf": 8, "ndf": 8, "crop": 32, "batch_size": 4,
               "n_epochs": 1, "n_epochs_decay": 0, "steps_per_epoch": 2, "val_from": 0,
               "normalization": "training"},
    "fm2s": {"fast_steps": 3, "fast_crop": 32},
}


def _pairs(n: int, shape: tuple[int, int] = (64, 64)) -> tuple[list[np.ndarray],
                                                                list[np.ndarray]]:
    cleans = [blobs(shape, seed=s) for s in range(n)]
    return [poisson_gaussian(c, seed=10 + s) for s, c in enumerate(cleans)], cleans


def _fit(name: str, shape: tuple[int, int] = (64, 64), **params):
    model = create(name, **{**TINY[name], **params})
    noisy, clean = _pairs(2, shape)
    return model.fit(noisy, clean) if model.needs == "pairs" else model.fit(noisy)


class OnDevice(torch.Tensor):
    """A tensor playing an accelerator without float64 (MPS): a float64 result or a
    NumPy view fails; ``.cpu()`` gives a plain CPU tensor."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func is torch.Tensor.cpu:
            with torch._C.DisableTorchFunctionSubclass():
                return args[0].clone()
        if func is torch.Tensor.numpy:
            raise AssertionError("numpy() of a device tensor")
        out = super().__torch_function__(func, types, args, kwargs or {})
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64:
                raise AssertionError(f"float64 computed on the device by {func}")
        return out


@pytest.mark.parametrize("name", ["n2v", "care"])
@pytest.mark.parametrize("shift_average", [False, True])
def test_prediction_computes_no_float64_on_the_device(name: str, shift_average: bool) -> None:
    """Bug 1: MPS has no float64, so predictions leave the device as float32."""
    model = _fit(name, shift_average=shift_average)
    noisy = _pairs(1)[0][0]
    expected = denoise_array(noisy, model)
    forward = model.net.forward
    model.net.forward = lambda x: forward(x).as_subclass(OnDevice)
    np.testing.assert_array_equal(denoise_array(noisy, model), expected)


def test_the_model_contract() -> None:
    """normalization "model": (input, output) normalizers, describable; denoise maps
    normalized input to the output normalizer's space."""
    for name in ("n2v", "deconoising", "care", "clidim"):
        assert create(name, **TINY[name]).normalization == "model", name
        with pytest.raises(InputError, match="train it first"):
            create(name, **TINY[name]).normalizers  # noqa: B018
        model = _fit(name)
        n_in, n_out = model.normalizers
        assert {n_in.to_dict()["kind"], n_out.to_dict()["kind"]} <= {"mean_std", "percentile"}
        x = _pairs(1)[0][0]
        assert model.denoise(n_in(x)).dtype == np.float32
        np.testing.assert_allclose(denoise_array(x, model), apply_model(model, x), atol=1e-6)
    n2v = _fit("n2v")
    assert n2v.normalizers[0] is n2v.normalizers[1] and isinstance(n2v.normalizers[0], MeanStd)
    assert isinstance(_fit("care").normalizers[1], Percentile)


def test_fresh_is_an_untrained_copy_and_fit_policy_says_how_to_fit() -> None:
    """Bug 2: the core fits a fresh copy per image for fit_policy "per_image"."""
    model = _fit("n2v", fit_per_image=True)
    model.device = "cpu"
    copy = model.fresh()
    assert type(copy) is type(model) and copy.config == model.config and copy.device == "cpu"
    assert copy.net is None and copy.epoch == 0 and copy.state_dict() == {}
    with pytest.raises(InputError, match="train it first"):
        copy.normalizers  # noqa: B018
    assert model.fit_policy == copy.fit_policy == "per_image"
    assert create("n2v").fit_policy == create("care").fit_policy == "trained"
    assert create("clidim").fit_policy == "trained" and create("median").fit_policy == "none"
    assert create("median").fresh().config == create("median").config


def test_seeded_forks_the_cpu_and_every_cuda_generator(monkeypatch) -> None:
    """Bug 3: fork_rng(devices=[]) left the CUDA generators reseeded."""
    forked = []
    real = torch.random.fork_rng

    def spy(devices=None, **kwargs):
        forked.append(list(devices))
        return real(devices=[], **kwargs)  # this machine's CUDA devices are pretend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: None)
    monkeypatch.setattr(torch.random, "fork_rng", spy)
    before = torch.random.get_rng_state()
    with seeded(3):
        a = torch.rand(3)
    with seeded(3):
        b = torch.rand(3)
    assert torch.equal(a, b) and forked == [[0, 1], [0, 1]]
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("name", ["n2v", "deconoising", "care", "clidim", "fm2s"])
def test_building_and_training_leave_the_global_generators_alone(name: str) -> None:
    cpu = torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    if name == "fm2s":
        create(name, **TINY[name]).fit(np.clip(_pairs(1)[0][0], 0, 1))
    else:
        _fit(name)
    assert torch.equal(torch.random.get_rng_state(), cpu)
    if cuda is not None:
        assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), cuda,
                                                     strict=True))


def test_deterministic_cudnn_only_on_cuda_and_restored() -> None:
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    try:
        cudnn.deterministic, cudnn.benchmark = False, True
        with deterministic(torch.device("cuda")):
            assert cudnn.deterministic and not cudnn.benchmark
        assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
        with deterministic(torch.device("cpu")):
            assert (cudnn.deterministic, cudnn.benchmark) == (False, True)
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


def _scores(monkeypatch, values: list[float], target=None) -> None:
    """Make the validation return ``values`` epoch by epoch."""
    it = iter(values)
    if target is None:
        monkeypatch.setattr(trained_module, "validate", lambda *args: next(it))
    else:
        monkeypatch.setattr(target, "validate", lambda self, *args: next(it))


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_keep_best_keeps_the_best_epochs_optimizer_state_and_exports_none(
        tmp_path, monkeypatch) -> None:
    """Bug 4: keep=best restored the weights only, with the last epoch's optimizer,
    scheduler and RNG; exports carried optimizer state."""
    _scores(monkeypatch, [1.0, 0.5, 0.9])  # epoch 2 is the best
    model = _fit("care", epochs=3, checkpoint_dir=str(tmp_path))
    best = torch.load(tmp_path / "best.pt", weights_only=True)["state"]
    last = torch.load(tmp_path / "last.pt", weights_only=True)["state"]
    assert (best["epoch"], last["epoch"], model.best) == (2, 3, 0.5)
    state = model.state_dict(training=True)
    for key in ("net", "optimizer", "scheduler", "rng"):
        assert _same(state[key], best[key]), key
        assert not _same(state[key], last[key]), key
    exported = torch.load(save(model, tmp_path / "m.pt"), weights_only=True)["state"]
    assert not {"optimizer", "scheduler", "rng"} & set(exported)
    assert _same(exported["net"], best["net"])


def test_clidim_keep_best_keeps_that_epochs_discriminator_and_optimizers(
        tmp_path, monkeypatch) -> None:
    _scores(monkeypatch, [10.0, 20.0, 15.0], CLIDiM)  # PSNR: epoch 2 is the best
    model = _fit("clidim", n_epochs=3, checkpoint_dir=str(tmp_path))
    best = torch.load(tmp_path / "best.pt", weights_only=True)["state"]
    state = model.state_dict(training=True)
    assert best["epoch"] == 2 and model.epoch == 3
    for key in ("net", "disc", "head", "opt_g", "opt_d", "rng"):
        assert _same(state[key], best[key]), key
    exported = torch.load(save(model, tmp_path / "m.pt"), weights_only=True)["state"]
    assert not {"opt_g", "opt_d", "rng"} & set(exported) and "disc" in exported


@pytest.mark.parametrize("name", ["care", "clidim"])
def test_without_a_validation_split_a_warning_and_the_last_weights(
        name: str, tmp_path, monkeypatch) -> None:
    """Bug 6: with nothing to hold back, keep=best selected on the training data."""
    epochs = {"care": {"epochs": 3}, "clidim": {"n_epochs": 3, "checkpoint_every": 1}}[name]
    _scores(monkeypatch, [0.1, 0.5, 0.9] if name == "care" else [30.0, 20.0, 10.0],
            CLIDiM if name == "clidim" else None)  # the first epoch looks best
    with pytest.warns(UserWarning, match="no validation data could be held back.*keep='last'"):
        model = _fit(name, (32, 32), checkpoint_dir=str(tmp_path), **epochs)
    assert not (tmp_path / "best.pt").exists()
    last = torch.load(tmp_path / "last.pt", weights_only=True)["state"]
    assert last["epoch"] == 3 and _same(model.state_dict()["net"], last["net"])


def _v1(model, tmp_path):
    """``model`` saved as format 1 wrote it."""
    state = model.state_dict(training=True)
    del state["version"]
    n_in, n_out = model.normalizers
    if model.key == "n2v":
        state["mean"], state["std"] = n_in.mean, n_in.std
        del state["norm_in"], state["norm_out"]
    if model.key == "clidim":  # percentiles, mapped to [-1, 1] inside denoise
        for key, n in (("norm_in", n_in), ("norm_out", n_out)):
            state[key] = Percentile(n.mean - n.std, n.mean + n.std).to_dict()
    payload = {"format": FORMAT, "version": 1, "key": model.key,
               "config": dataclasses.asdict(model.config), "state": state}
    torch.save(payload, tmp_path / f"{model.key}-v1.pt")
    return tmp_path / f"{model.key}-v1.pt"


@pytest.mark.parametrize("name", ["n2v", "care", "clidim"])
def test_format_1_models_load_and_predict_the_same(name: str, tmp_path) -> None:
    """Bug 5 / A.7: format 2 stores normalizers; format-1 files are migrated on load."""
    model = _fit(name)
    old = load(_v1(model, tmp_path))
    x = _pairs(1)[0][0]
    assert old.epoch == model.epoch
    np.testing.assert_allclose(denoise_array(x, old), denoise_array(x, model), rtol=0,
                               atol=1e-5 if name == "clidim" else 0)
    again = torch.load(save(old, tmp_path / "v2.pt"), weights_only=True)
    assert again["version"] == FORMAT_VERSION == 2 and again["state"]["version"] == 2


def test_a_newer_format_is_refused(tmp_path) -> None:
    model = _fit("n2v")
    path = save(model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload["version"] = 99
    torch.save(payload, path)
    with pytest.raises(InputError, match="newer microdenoise.*upgrade"):
        load(path)
    with pytest.raises(InputError, match="newer microdenoise.*upgrade"):
        create("n2v").load_state_dict({**model.state_dict(), "version": 99})


def test_every_method_has_a_device() -> None:
    """Bug 7: ``device`` is a plain attribute of every method (the pipeline sets it)."""
    for name in list_methods():
        assert create(name).device == "auto", name


def test_train_takes_arrays_or_files(tmp_path) -> None:
    noisy, clean = _pairs(2)
    params = TINY["n2v"]
    model = md.train(noisy[0], method="n2v", params=params, seed=1, device="cpu",
                     out=tmp_path / "m.pt")
    assert model.epoch == 1 and model.config.seed == 1 and load(tmp_path / "m.pt").epoch == 1
    io.write_image(tmp_path / "n.tif", noisy[0])
    from_file = md.train(tmp_path / "n.tif", method="n2v", params=params, seed=1)
    np.testing.assert_array_equal(apply_model(from_file, noisy[1]), apply_model(model, noisy[1]))
    care = md.train(noisy, method="care", target=clean, params=TINY["care"])
    assert care.epoch == 1 and care.key == "care"
    with pytest.raises(InputError, match="add --target"):
        md.train(noisy, method="care")
    with pytest.raises(InputError, match="both as arrays or both as paths"):
        md.train(noisy, method="care", target=tmp_path)
    with pytest.raises(InputError, match="trains on noisy images only"):
        md.train(noisy, method="n2v", target=clean)
    with pytest.raises(InputError, match="fitted on each image"):
        md.train(noisy, method="median")


@pytest.mark.parametrize("name", ["n2v", "clidim"])
def test_on_epoch_reports_each_epoch_and_a_true_return_stops_with_a_usable_model(
        name: str) -> None:
    noisy, clean = _pairs(2)
    seen: list[tuple[int, int, dict[str, float]]] = []

    def on_epoch(epoch: int, stop: int, row: dict[str, float]) -> bool:
        seen.append((epoch, stop, row))
        return epoch >= 2

    budget = {"epochs": 5} if name == "n2v" else {"n_epochs": 5}
    model = md.train(noisy, method=name, target=clean if name == "clidim" else None,
                     params={**TINY[name], **budget}, device="cpu", on_epoch=on_epoch)
    assert [(e, s) for e, s, _ in seen] == [(1, 5), (2, 5)]
    assert seen[-1][2] == model.history[-1] and model.epoch == 2
    assert np.isfinite(denoise_array(noisy[0], model)).all()
