"""One prediction core: every driver gives the same answer, for every registered method.

In memory (``denoise_array``, whole and tiled), the streamed file path (``denoise_file``
with ``tile``), a Dask array (``denoise_dask``: ``map_overlap``) and a Dask file batch
(``denoise_files_distributed`` on a running local cluster) all run
:mod:`microdenoise.core`; on an image larger than the tile they agree to float32
precision. Methods whose output depends on the whole image (TV, wavelet, BM3D) agree
exactly where the pieces are the same (tiled in memory vs streamed, whole vs the file
batch) and approximately, with a warning, where they are not.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from microdenoise import create, denoise_array, denoise_file, list_methods, write_image
from microdenoise.core import fit_unit, layout
from microdenoise.intensity import channel_normalizers
from microdenoise.registry import Denoiser, method_class

from .conftest import blobs, poisson_gaussian
from .methods.test_contract import FAST

SEED = 1


def _setup(name: str) -> tuple[np.ndarray, str, str | Denoiser, dict[str, Any], int]:
    """(noisy image, axes, method or fitted model, params, tile) for ``name``."""
    params = {k: v for k, v in FAST.get(name, {}).items() if k != "fit_per_image"}
    probe = create(name, **params)
    volume = probe.supports_3d
    rf = probe.receptive_field
    tile = max(64, 2 * rf + 24)
    shape = (tile + 37, tile + 21)
    clean = np.stack([blobs(shape, seed=z) for z in range(3)]) if volume else blobs(shape)
    noisy = (poisson_gaussian(clean, seed=3) * 1000 + 100).astype(np.float32)
    axes = "ZYX" if volume else "YX"
    needs = method_class(name).needs
    if needs == "pairs":
        model: Denoiser = probe.fit(noisy, clean * 1000 + 100)
        return noisy, axes, model, {}, tile
    if needs == "noisy images":
        return noisy, axes, probe.fit(noisy), {}, tile
    return noisy, axes, name, params, tile


# Relative to the image's range; bilateral's range kernel makes tiles agree to 1e-3 only
# (as docs/cli.md says), bm3d's compiled core is not bit-reproducible.
TOLERANCE = {"bilateral": 1e-3, "bm3d": 1e-3}


# Whole-image methods in pieces: the mean |difference| from one whole pass over the image's
# range, about twice what each measured on this image (tile 88, 125x109; 2026-12-08:
# wavelet 0.019 tiled / 0.011 Dask, bm3d and auto 0.0024 / 0.0011, tv 0.0): a method
# whose pieces drift further from the whole image fails.
GLOBAL_TOLERANCE = {"tv": 1e-4, "wavelet": 0.04, "bm3d": 0.005, "auto": 0.005}


def _close(a: np.ndarray, b: np.ndarray, name: str, what: str) -> None:
    scale = float(np.abs(b).max())
    np.testing.assert_allclose(a, b, rtol=0, atol=TOLERANCE.get(name, 2e-5) * scale,
                               err_msg=f"{name}: {what}")


@pytest.fixture(scope="module")
def scheduler():
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    yield cluster.scheduler_address
    cluster.close()


@pytest.fixture(params=list_methods())
def name(request) -> str:
    if request.param == "bm3d":
        pytest.importorskip("bm3d", reason="bm3d is the optional extra microdenoise[bm3d]")
    return request.param


def test_every_driver_gives_the_same_answer(name: str, tmp_path: Path, scheduler: str) -> None:
    import dask.array as da

    from microdenoise.distributed import denoise_dask, denoise_files_distributed

    noisy, axes, method, params, tile = _setup(name)
    opts: dict[str, Any] = {"params": params, "seed": SEED} if params else {"seed": SEED}
    global_field = create(name, **params).global_field if isinstance(method, str) \
        else method.global_field
    whole = denoise_array(noisy, method, axes=axes, **opts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiled = denoise_array(noisy, method, axes=axes, tile=tile, **opts)
    assert any("whole image" in str(w.message) for w in caught) == global_field

    src = write_image(tmp_path / "in.tif", noisy, axes=axes)
    streamed = denoise_file(src, tmp_path / "streamed.tif", method, axes=axes, tile=tile,
                            **opts)
    from microdenoise import read_image

    _close(read_image(streamed).data, tiled, name, "streamed file vs tiled array")

    batch = denoise_files_distributed([src], tmp_path / "batch", method, scheduler=scheduler,
                                      axes=axes, **opts)
    assert not batch.failed, batch.failed
    _close(read_image(batch.written[0]).data, whole, name, "Dask file batch vs array")

    chunks = (-1, tile, tile) if noisy.ndim == 3 else (tile, tile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lazy = denoise_dask(da.from_array(noisy, chunks=chunks), method, axes=axes, **opts)
        blocks = lazy.compute(scheduler="synchronous")
    if global_field:
        # Pieces see 32 px of context, not the whole image: close, not equal (wavelet's
        # BayesShrink thresholds come from each piece's own coefficients).
        scale = float(np.abs(whole).max())
        bound = GLOBAL_TOLERANCE[name] * scale
        assert float(np.mean(np.abs(tiled - whole))) < bound, f"{name}: tiled vs whole"
        assert float(np.mean(np.abs(blocks - whole))) < bound, f"{name}: Dask vs whole"
    else:
        _close(tiled, whole, name, "tiled vs whole")
        _close(blocks, whole, name, "Dask map_overlap vs array")


def test_per_image_fit_trains_a_fresh_network_on_each_plane(monkeypatch) -> None:
    """fit_per_image: plane 2 does not continue plane 1's network (each fit starts fresh)."""
    from microdenoise.methods.n2v import N2V

    params = {**FAST["n2v"], "epochs": 1, "steps_per_epoch": 2}
    started: list[bool] = []
    original = N2V.fit

    def spy(self, noisy, clean=None):
        started.append(self.net is None)
        return original(self, noisy, clean)

    monkeypatch.setattr(N2V, "fit", spy)
    stack = np.stack([poisson_gaussian(blobs((48, 48), seed=s), seed=s) for s in range(2)])
    denoise_array(stack, "n2v", params=params, axes="SYX")
    assert started == [True, True]
    one = denoise_array(stack[1], "n2v", params=params)
    both = denoise_array(stack, "n2v", params=params, axes="SYX")
    np.testing.assert_allclose(both[1], one, rtol=1e-5, atol=1e-6)


def test_fit_unit_fits_a_copy_and_leaves_the_template_alone() -> None:
    image = poisson_gaussian(blobs((64, 64)), seed=0).astype(np.float32)
    den = create("fm2s", fast_steps=3, fast_crop=32)
    norms = channel_normalizers(image, den.normalization, cax=None)
    lay = layout(image.shape, "YX", den)
    fitted = fit_unit(den, image, lay.units(), lay, norms)
    assert fitted is not den and fitted.net is not None and den.net is None


def test_a_callers_model_keeps_its_device(monkeypatch) -> None:
    """The run uses the device asked for, and the caller's model keeps its own after: both
    halves are checked (the first alone would pass if the core ignored ``device``)."""
    from microdenoise.methods.fm2s import FM2S

    image = poisson_gaussian(blobs((48, 48)), seed=0).astype(np.float32)
    model = create("fm2s", fast_steps=3, fast_crop=32)
    model.fit(image)
    model.device = "auto"
    seen: list[str] = []
    original = FM2S.denoise

    def spy(self, x):
        seen.append(self.device)
        return original(self, x)

    monkeypatch.setattr(FM2S, "denoise", spy)
    denoise_array(image, model, device="cpu")
    assert seen == ["cpu"] and model.device == "auto"
