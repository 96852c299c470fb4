"""The drivers keep the contract for every model: the Dask model cache (keyed by what a
model computes and the device, bounded), a third-party package in a Dask file batch, and
``compare`` on networks fitted per image."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest

import microdenoise as md
from microdenoise import dask_models
from microdenoise import distributed as mdd

from .conftest import blobs, poisson_gaussian

BLIND = {"epochs": 1, "steps_per_epoch": 4, "batch_size": 4, "patch_size": 32, "filters": 8}


def _noisy(shape: tuple[int, int] = (48, 64), seed: int = 0) -> np.ndarray:
    return (poisson_gaussian(blobs(shape, seed=seed), seed=seed + 1) * 1000 + 100
            ).astype(np.float32)


@pytest.fixture(scope="module")
def n2v() -> md.Denoiser:
    model = md.create("n2v", **BLIND)
    model.fit(_noisy((64, 64), seed=3))
    return model


def _dask(image: np.ndarray, model: md.Denoiser, **options: str) -> np.ndarray:
    lazy = da.from_array(image, chunks=(24, 32))
    return np.asarray(mdd.denoise_dask(lazy, model, **options).compute(scheduler="synchronous"))


def test_dask_caches_one_model_per_model_and_device(n2v: md.Denoiser, tmp_path: Path) -> None:
    """Each denoise_dask call used to add a full model to a module-global dict (its key
    hashed pickled tensors, which differ on every call) and ignored the device."""
    image = _noisy()
    cache = dask_models.MODELS
    cache.clear()
    built = cache.built
    copy = md.load(md.save(n2v, tmp_path / "n2v.pt"))  # another object, the same model
    expected = md.denoise_array(image, n2v)
    for model in (n2v, n2v, copy):
        np.testing.assert_allclose(_dask(image, model), expected, rtol=1e-5, atol=1e-3)
    assert (len(cache), cache.built - built) == (1, 1)
    _dask(image, n2v, device="cpu")  # another device: another entry
    assert (len(cache), cache.built - built) == (2, 2)
    assert dask_models.model_digest(copy) == dask_models.model_digest(n2v)
    state = copy.state_dict()
    weight = next(iter(state["net"]))
    state["net"][weight] = state["net"][weight] + 1e-3  # one weight differs: another model
    copy.load_state_dict(state)
    assert dask_models.model_digest(copy) != dask_models.model_digest(n2v)


def test_dask_cache_never_exceeds_its_bound() -> None:
    image = _noisy((40, 48))
    cache = dask_models.MODELS
    cache.clear()
    built = cache.built
    sigmas = [0.5 + 0.25 * k for k in range(2 * dask_models.CACHE_SIZE + 1)]
    for k, sigma in enumerate(sigmas):
        _dask(image, md.create("gaussian", sigma=sigma))
        assert len(cache) == min(k + 1, dask_models.CACHE_SIZE)
    assert cache.built - built == len(sigmas)
    _dask(image, md.create("gaussian", sigma=sigmas[-1]))  # recently used: kept
    assert cache.built - built == len(sigmas)
    _dask(image, md.create("gaussian", sigma=sigmas[0]))  # the oldest: dropped, built again
    assert (len(cache), cache.built - built) == (dask_models.CACHE_SIZE, len(sigmas) + 1)


def test_dask_file_batch_runs_a_third_party_package(tmp_path: Path) -> None:
    """A model loaded from a package that is no registered method was refused by a Dask
    batch ("unknown method 'bmz'"); it is shipped by its path and loaded on the worker
    with the user's trust, and gives what the local batch gives."""
    pytest.importorskip("bioimageio.core")
    from .test_bmz import third_party

    (tmp_path / "pkg").mkdir()
    package, _ = third_party(tmp_path / "pkg")
    model = md.load(package, trust=True)  # TorchScript: code, run only when trusted
    for i in range(2):
        md.write_image(tmp_path / "in" / f"img{i}.tif", _noisy((40, 48), seed=10 + i))
    local = md.denoise_files([tmp_path / "in"], tmp_path / "local", model)
    result = mdd.denoise_files_distributed([tmp_path / "in"], tmp_path / "dist", model,
                                           scheduler="local:1")
    assert not result.failed, result.failed
    assert sorted(p.name for p in result.written) == ["img0.tif", "img1.tif"]
    assert len(local.written) == 2
    for name in ("img0.tif", "img1.tif"):
        np.testing.assert_array_equal(md.read_image(tmp_path / "dist" / name).data,
                                      md.read_image(tmp_path / "local" / name).data)
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == ["img0.tif", "img1.tif"]


@pytest.mark.parametrize(("method", "extra"), [("n2v", {}),
                                               ("deconoising", {"depth": 2, "psf_sigma": 1.0})])
def test_compare_fits_blind_spot_networks_per_image(method: str, extra: dict) -> None:
    """compare read the normalizers of the unfitted template and failed ("n2v is not
    trained ... or --param fit_per_image=true"); it fits per image as the core does."""
    params = {**BLIND, **extra, "fit_per_image": True}
    spec = ":".join([method, *(f"{k}={v}" for k, v in params.items())])
    image = _noisy((64, 64), seed=5)
    result = md.compare(image, methods=[spec], grid=False, seed=0)
    row = result.rows[0]
    assert row.error == "" and np.isfinite(row.estimate) and row.estimate > 0
    # The same fit and prediction as the core's for this image and seed.
    np.testing.assert_allclose(result.outputs[row.label],
                               md.denoise_array(image, method, params=params, seed=0),
                               rtol=1e-5, atol=1e-2)
