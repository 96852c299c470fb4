"""GPU out of memory: the tile is halved and the image tiled again, down to a floor, on
every path (arrays, streamed files, Dask blocks, compare's candidates); a fit is retried
once after freeing torch's cache, then a clear error (:mod:`microdenoise.oom`)."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import torch

from microdenoise import (
    InputError,
    compare,
    core,
    denoise_array,
    denoise_file,
    read_image,
    write_image,
)
from microdenoise import distributed as mdd
from microdenoise.methods.local_filters import Gaussian
from microdenoise.tiling import is_out_of_memory

from .conftest import blobs, poisson_gaussian


class _SmallGPU(Gaussian):
    """A Gaussian blur on a "GPU" that holds tiles of at most ``limit`` pixels; it raises
    torch's own OutOfMemoryError above that, as a CUDA allocation would."""

    limit = 60 * 60
    sizes: list[int]

    def denoise(self, image: np.ndarray) -> np.ndarray:
        self.sizes.append(int(image.shape[-1] * image.shape[-2]))
        if image.shape[-1] * image.shape[-2] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().denoise(image)


def _method(limit: int) -> _SmallGPU:
    method = _SmallGPU(sigma=2.0)
    method.limit, method.sizes = limit, []
    return method


def _image(shape: tuple[int, ...] = (150, 170)) -> np.ndarray:
    return (poisson_gaussian(blobs(shape[-2:], seed=1), seed=2) * 1000 + 50).astype(np.float32)


def test_torch_oom_is_recognized() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(MemoryError())  # host RAM: not a tile-size problem here


@pytest.mark.parametrize("tile", [None, 128])
def test_oom_halves_the_tile_and_output_equals_untiled(tile: int | None) -> None:
    stack = np.stack([_image(), _image() * 2])
    expected = denoise_array(stack, "gaussian", params={"sigma": 2.0})
    method = _method(60 * 60)
    out = denoise_array(stack, method, tile=tile)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-3)
    assert method.sizes[0] > method.limit  # the first try ran out of memory
    # 170 -> 85 -> 42 px tiles (or 128 -> 64 -> 32); once a size fits, it is kept, for the
    # second plane too.
    first_ok = next(i for i, s in enumerate(method.sizes) if s <= method.limit)
    assert all(s <= method.limit for s in method.sizes[first_ok:])


def test_streamed_oom_halves_the_tile(tmp_path: Path) -> None:
    image = _image()
    src = write_image(tmp_path / "in.tif", image)
    method = _method(50 * 50)
    out = denoise_file(src, tmp_path / "out.tif", method, tile=160)
    expected = denoise_array(image, "gaussian", params={"sigma": 2.0})
    np.testing.assert_allclose(read_image(out).data, expected, rtol=1e-6, atol=1e-3)
    assert max(method.sizes) > method.limit and method.sizes[-1] <= method.limit


def test_oom_below_the_floor_is_a_clear_error(tmp_path: Path) -> None:
    image = _image()
    with pytest.raises(InputError, match="out of GPU memory even with .*--device cpu"):
        denoise_array(image, _method(10 * 10), tile=128)
    src = write_image(tmp_path / "in.tif", image)
    with pytest.raises(InputError, match="out of GPU memory"):
        denoise_file(src, tmp_path / "out.tif", _method(10 * 10), tile=128)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif"]  # no partial output


def test_dask_block_oom_is_tiled_and_equals_denoise_array() -> None:
    image = _image()
    method = _method(60 * 60)
    lazy = da.from_array(image, chunks=(80, 90))
    out = mdd.denoise_dask(lazy, method).compute(scheduler="synchronous")
    np.testing.assert_allclose(out, denoise_array(image, "gaussian", params={"sigma": 2.0}),
                               rtol=1e-6, atol=1e-3)
    sizes = [s for s in method.sizes if s]  # (dask first calls it on an empty block)
    assert sizes[0] > method.limit  # the object itself ran, a whole block first
    assert min(sizes) <= method.limit  # then in tiles


def test_compare_candidate_oom_is_tiled() -> None:
    image = _image()
    small = compare(image, methods=[_method(60 * 60)], grid=False).rows[0]
    plain = compare(image, methods=[Gaussian(sigma=2.0)], grid=False).rows[0]
    assert small.error == "" and plain.error == ""
    assert small.estimate == pytest.approx(plain.estimate, rel=1e-6)


class _FitsOnSmallGPU(Gaussian):
    """A Gaussian fitted per image whose fit runs out of GPU memory ``failures`` times."""

    failures = 0
    fits = 0

    @property
    def fit_policy(self) -> str:
        return "per_image"

    def fit(self, noisy: np.ndarray, clean: np.ndarray | None = None) -> _FitsOnSmallGPU:
        cls = type(self)
        cls.fits += 1
        if cls.failures:
            cls.failures -= 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return self


@pytest.mark.parametrize("failures", [1, 2])
def test_fit_oom_is_retried_once_then_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                                    failures: int) -> None:
    monkeypatch.setattr(_FitsOnSmallGPU, "failures", failures)
    monkeypatch.setattr(_FitsOnSmallGPU, "fits", 0)
    image = _image()
    den = _FitsOnSmallGPU(sigma=2.0)
    lay = core.layout(image.shape, "YX", den)
    norms = core.image_normalizers(den, image, lay, {})
    if failures == 1:
        model = core.fit_unit(den, image, [()], lay, norms)
        assert isinstance(model, _FitsOnSmallGPU) and model is not den
    else:
        with pytest.raises(InputError, match=r"out of GPU memory fitting gaussian on a "
                                             r"150x170 plane.*--fit-on.*--device cpu"):
            core.fit_unit(den, image, [()], lay, norms)
    assert _FitsOnSmallGPU.fits == 2  # once more, never more
