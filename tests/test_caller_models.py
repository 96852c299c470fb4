"""The contract for models the caller passes in (issue 27).

* An unfitted per-image model passed as an object is fitted by the core exactly as its
  name is (a fresh copy per image, in every driver), and ``denoise`` never changes a
  model: the caller's object is the same after any call.
* A run uses the model's own device unless told otherwise, and leaves the model (its
  ``device`` and its network's weights) where it was.
* Models trained on pairs scaled one by one (CLIDiM ``per_image_minmax``, CARE
  ``per_image``) scale each plane by its own statistics at prediction too: a plane
  gives the same output alone as inside a stack, tiled or not, and CLIDiM's packaged
  network agrees.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import microdenoise as md
from microdenoise import comparison
from microdenoise.distributed import denoise_dask
from microdenoise.intensity import unit_range
from microdenoise.registry import Denoiser

from .conftest import blobs, poisson_gaussian

FM2S = {"fast_steps": 3, "fast_crop": 32}
#: (name, params) of the per-image methods checked object against name.
PER_IMAGE = [("nlm", {}), ("median", {"calibrate": True}), ("fm2s", FM2S)]


def _image(seed: int = 0, *, photons: float = 30.0, shape: tuple[int, int] = (96, 96)
           ) -> np.ndarray:
    return poisson_gaussian(blobs(shape, seed=seed), photons=photons, seed=seed + 1)


def _state(den: Denoiser) -> dict[str, Any]:
    return copy.deepcopy(den.state_dict())


# --- 1. per-image models passed as objects ---------------------------------------------
def test_fitted_says_whether_a_model_holds_what_fit_learns() -> None:
    x = unit_range(_image())(_image())
    assert md.create("median").fitted and md.create("nlm", sigma=0.1).fitted
    for name, params in PER_IMAGE:
        den = md.create(name, **params)
        assert not den.fitted, name
        assert den.fit(x).fitted, name
    assert not md.create("n2v").fitted


@pytest.mark.parametrize(("name", "params"), PER_IMAGE, ids=[n for n, _ in PER_IMAGE])
def test_an_unfitted_object_is_fitted_per_image_like_its_name(name: str, params: dict[str, Any]
                                                              ) -> None:
    stack = np.stack([_image(0), _image(5, photons=3.0)])
    obj = md.create(name, **params)
    before = _state(obj)
    for tile in (None, 64):
        by_name = md.denoise_array(stack, name, params=params, axes="SYX", tile=tile)
        by_object = md.denoise_array(stack, obj, axes="SYX", tile=tile)
        np.testing.assert_array_equal(by_object, by_name, err_msg=f"{name}, tile {tile}")
    assert _state(obj) == before and not obj.fitted


def test_nlm_object_tiled_equals_whole() -> None:
    """The issue's case: NLM estimated its noise on each tile when passed as an object."""
    x = _image(2, shape=(160, 160))
    whole = md.denoise_array(x, md.create("nlm"))
    tiled = md.denoise_array(x, md.create("nlm"), tile=64)
    np.testing.assert_array_equal(tiled, whole)


def test_one_calibrating_object_calibrates_each_image_on_its_own() -> None:
    gentle, strong = _image(0, photons=300.0), _image(7, photons=2.0)
    chosen = [md.create("median", calibrate=True).fit(unit_range(x)(x)).value
              for x in (gentle, strong)]
    assert chosen[0] != chosen[1]  # the two images call for different windows
    obj = md.create("median", calibrate=True)
    for x in (gentle, strong):
        np.testing.assert_array_equal(md.denoise_array(x, obj),
                                      md.denoise_array(x, "median", calibrate=True))
    assert obj.state_dict() == {} and obj.calibration_losses == {}


def test_a_fitted_object_is_applied_as_it_is() -> None:
    first, second = _image(0, photons=300.0), _image(7, photons=2.0)
    obj = md.create("median", calibrate=True).fit(unit_range(first)(first))
    before = _state(obj)
    norm = unit_range(second)
    expected = norm.inverse(obj.denoise(norm(second)))  # image 1's window, not refitted
    np.testing.assert_allclose(md.denoise_array(second, obj), expected, rtol=1e-6)
    assert _state(obj) == before


def test_filter_denoise_never_changes_the_model() -> None:
    x = unit_range(_image())(_image())
    for name in ("median", "nlm", "wavelet"):
        den = md.create(name, calibrate=True)
        out = den.denoise(x)
        assert den.state_dict() == {} and den.calibration_losses == {} and not den.fitted
        np.testing.assert_array_equal(out, den.fresh().fit(x).denoise(x), err_msg=name)


def test_every_driver_fits_an_unfitted_object(tmp_path: Path) -> None:
    import dask.array as da

    x = _image(3, shape=(128, 128))
    obj = md.create("nlm")
    whole = md.denoise_array(x, "nlm")
    src = md.write_image(tmp_path / "in.tif", x)
    streamed = md.denoise_file(src, tmp_path / "out.tif", obj, tile=64)
    np.testing.assert_allclose(md.read_image(streamed).data, whole, rtol=1e-6)
    lazy = denoise_dask(da.from_array(x, chunks=64), obj)
    np.testing.assert_allclose(lazy.compute(scheduler="synchronous"), whole, rtol=1e-6)
    f_obj = comparison.applier(obj, {}, x, seed=0)
    f_name = comparison.applier("nlm", {}, x, seed=0)
    np.testing.assert_array_equal(f_obj(x), f_name(x))
    assert obj.state_dict() == {}


# --- 2. the device a run uses -------------------------------------------------------
@dataclass(frozen=True)
class _NoParams:
    pass


class _Movable(nn.Linear):
    """A network whose "other device" is ``meta``: moved there, its weights are kept
    aside, and restored when it is moved back (a CPU stand-in for a GPU)."""

    def to(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        target = torch.device(args[0] if args else kwargs["device"])
        if target.type == "meta":
            self.held = {k: v.detach().clone() for k, v in self.state_dict().items()}
            return super().to(target)
        if self.weight.device.type == "meta":
            self.to_empty(device=target)
            self.load_state_dict(self.held)
            return self
        return super().to(*args, **kwargs)


class _Spy(Denoiser):
    """Records the device it is asked to run on; moves its network there (``"gpu"`` is
    the stand-in device ``meta``), as a network method does."""

    key = "spy"
    Config = _NoParams

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self.net = _Movable(2, 2)

    def denoise(self, image: np.ndarray) -> np.ndarray:
        self.seen.append(self.device)
        self.net.to("meta" if self.device == "gpu" else "cpu")
        return image


def test_a_model_runs_on_its_own_device_by_default(tmp_path: Path) -> None:
    x = _image()
    spy = _Spy()
    spy.device = "cpu"
    md.denoise_array(x, spy)
    src = md.write_image(tmp_path / "in.tif", x)
    md.denoise_file(src, tmp_path / "a.tif", spy)
    md.denoise_file(src, tmp_path / "b.tif", spy, tile=64)
    assert set(spy.seen) == {"cpu"} and spy.device == "cpu"
    spy.seen.clear()
    md.denoise_array(x, "median")  # a name: auto, as before
    md.denoise_array(x, spy, device="gpu")
    assert spy.seen == ["gpu"] and spy.device == "cpu"


def test_a_dask_array_runs_on_the_models_own_device() -> None:
    import dask.array as da

    from microdenoise.distributed import denoise_dask

    spy = _Spy()
    spy.device = "cpu"
    out = denoise_dask(da.from_array(_image(), chunks=32), spy).compute(scheduler="sync")
    assert out.shape == _image().shape
    assert spy.seen and set(spy.seen) == {"cpu"} and spy.device == "cpu"


def test_a_run_leaves_the_weights_where_they_were() -> None:
    spy = _Spy()
    spy.device = "gpu"
    weights = spy.net.weight.detach().clone()
    md.denoise_array(_image(), spy, device="gpu")
    assert spy.seen == ["gpu"] and spy.net.weight.device.type == "cpu"
    torch.testing.assert_close(spy.net.weight.detach(), weights)
    assert spy.device == "gpu"


def test_a_trained_network_stays_on_its_device() -> None:
    x = _image(shape=(64, 64))
    model = md.create("n2v", epochs=1, steps_per_epoch=2, batch_size=4, patch_size=32,
                      filters=8).fit(x)
    model.device = "cpu"
    seen: list[str] = []
    original = type(model).denoise

    def spy(self: Any, image: np.ndarray) -> np.ndarray:
        seen.append(self.device)
        return original(self, image)

    type(model).denoise = spy  # type: ignore[method-assign]
    try:
        md.denoise_array(x, model)
        md.denoise_array(x, model, device="cpu")
    finally:
        type(model).denoise = original  # type: ignore[method-assign]
    assert seen == ["cpu", "cpu"] and model.device == "cpu"
    assert {p.device.type for p in model.net.parameters()} == {"cpu"}


# --- 3. per-unit statistics for models trained on pairs scaled one by one -------------
CLIDIM = {"num_downs": 3, "ngf": 4, "ndf": 4, "crop": 32, "batch_size": 4, "n_epochs": 1,
          "n_epochs_decay": 0, "steps_per_epoch": 2, "val_from": 0,
          "normalization": "per_image_minmax"}
CARE = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "patch_size": 32, "filters": 8,
        "kernel_size": 3, "normalization": "per_image", "val_fraction": 0}


def _trained(key: str) -> Any:
    """A tiny model (seconds) trained on raw-unit pairs."""
    noisy = [_image(s, shape=(64, 64)) * 1000 + 100 for s in range(2)]
    clean = [blobs((64, 64), seed=s) * 1000 + 100 for s in range(2)]
    with warnings.catch_warnings():  # CARE: no validation split (val_fraction=0)
        warnings.simplefilter("ignore", UserWarning)
        return md.create(key, **(CLIDIM if key == "clidim" else CARE)).fit(noisy, clean)


def _stack() -> np.ndarray:
    """Three 96x96 planes with very different ranges (the first is the one checked)."""
    a, b = _image(20), _image(21)
    return np.stack([a * 1000 + 100, b * 3000 + 600, a * 200 + 20]).astype(np.float32)


@pytest.mark.parametrize("key", ["clidim", "care"])
def test_a_plane_gives_the_same_output_alone_and_inside_a_stack(key: str) -> None:
    model = _trained(key)
    assert model.per_unit_statistics
    stack = _stack()
    alone = md.denoise_array(stack[0], model)
    span = float(alone.max() - alone.min())
    for tile in (None, 64):  # tiles use the whole plane's statistics, not their own
        inside = md.denoise_array(stack, model, axes="SYX", tile=tile)
        np.testing.assert_allclose(inside[0], alone, rtol=0, atol=1e-5 * span + 1e-3,
                                   err_msg=f"tile {tile}")
        np.testing.assert_allclose(inside[2], md.denoise_array(stack[2], model), rtol=0,
                                   atol=1e-5 * span + 1e-3)


def test_per_unit_statistics_hold_in_dask() -> None:
    import dask.array as da

    model, stack = _trained("care"), _stack()
    lazy = denoise_dask(da.from_array(stack, chunks=(1, 96, 96)), model, axes="SYX")
    np.testing.assert_allclose(lazy.compute(scheduler="synchronous"),
                               md.denoise_array(stack, model, axes="SYX"), rtol=1e-5,
                               atol=1e-2)


def test_clidims_package_agrees_with_microdenoise_on_a_plane() -> None:
    from microdenoise.bmz_net import package_net

    model, stack = _trained("clidim"), _stack()
    net = package_net(model)
    with torch.no_grad():
        packaged = net(torch.from_numpy(np.ascontiguousarray(stack[:, None]))).numpy()[:, 0]
    ours = md.denoise_array(stack, model, axes="SYX")
    for k in range(len(stack)):
        span = float(ours[k].max() - ours[k].min())
        np.testing.assert_allclose(packaged[k], ours[k], rtol=0, atol=1e-4 * span + 1e-4)
