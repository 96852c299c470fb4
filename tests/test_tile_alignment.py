"""Aligned tiles: starts on multiples of a U-Net's 2**depth make tiled equal untiled."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from microdenoise import create, denoise_array
from microdenoise.errors import InputError
from microdenoise.methods.n2v import N2V
from microdenoise.tiling import n_tiles, plan_tiles

from .conftest import blobs, poisson_gaussian


@pytest.mark.parametrize("n", [1, 15, 16, 17, 63, 100, 257])
@pytest.mark.parametrize(("tile", "overlap", "multiple"),
                         [(32, 5, 8), (40, 12, 4), (17, 0, 16), (64, 20, 16), (9, 3, 2)])
def test_aligned_plan_partitions_keeps_context_and_size(n: int, tile: int, overlap: int,
                                                        multiple: int) -> None:
    plan = plan_tiles((n, n + 3), tile=tile, overlap=overlap, multiple=multiple)
    assert len(plan) == n_tiles((n, n + 3), tile=tile, overlap=overlap, multiple=multiple)
    cover = np.zeros((n, n + 3), dtype=np.int32)
    for src, dst, crop in plan:
        cover[dst] += 1
        for axis, size in enumerate((n, n + 3)):
            s, d, c = src[axis], dst[axis], crop[axis]
            assert s.start % multiple == 0  # the pooling grid is the image's
            assert 0 <= s.start and s.stop <= size and s.stop - s.start <= tile
            assert c.start == d.start - s.start and c.stop == d.stop - s.start
            assert d.start == 0 or d.start - s.start >= overlap
            assert d.stop == size or s.stop - d.stop >= overlap
    np.testing.assert_array_equal(cover, 1)


def test_multiple_one_is_the_old_plan() -> None:
    for shape in [(7, 300), (257, 513)]:
        assert plan_tiles(shape, tile=64, overlap=8) == plan_tiles(shape, tile=64, overlap=8,
                                                                   multiple=1)


def test_too_small_tile_for_the_multiple() -> None:
    with pytest.raises(InputError, match=r"2 \* overlap \+ 15 \(starts on multiples of 16\)"):
        plan_tiles((100, 100), tile=29, overlap=7, multiple=16)


@pytest.fixture(scope="module")
def unet() -> N2V:
    """A real, briefly trained N2V U-Net (depth 2: two 2x2 max-pools), no shift averaging."""
    noisy = poisson_gaussian(blobs((64, 64), seed=1), seed=2)
    model = create("n2v", depth=2, filters=8, shift_average=False, epochs=2, steps_per_epoch=10,
                   batch_size=4, patch_size=32, masked_percentage=5.0).fit(noisy)
    assert isinstance(model, N2V)
    return model


def test_unet_tiled_equals_untiled_without_shift_averaging(unet: N2V) -> None:
    image = poisson_gaussian(blobs((130, 117), seed=3), seed=4)
    rf = unet.receptive_field
    assert unet.tile_multiple == 4
    whole = denoise_array(image, unet, axes="YX")
    for tile in (2 * rf + 20, 2 * rf + 37):  # tile sizes that are not multiples of 4
        tiled = denoise_array(image, unet, tile=tile, overlap=rf)
        np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5 * np.ptp(whole))


class _Unaligned(N2V):
    """The same network with tiles started anywhere (as before ``tile_multiple``)."""

    @property
    def tile_multiple(self) -> int:
        return 1


def test_misaligned_tiles_differ_so_alignment_is_what_makes_them_equal(unet: N2V) -> None:
    image = poisson_gaussian(blobs((130, 117), seed=3), seed=4)
    rf = unet.receptive_field
    whole = denoise_array(image, unet)
    plain = _Unaligned(dataclasses.replace(unet.config))
    plain.load_state_dict(unet.state_dict())
    tiled = denoise_array(image, plain, tile=2 * rf + 21, overlap=rf)
    assert np.abs(tiled - whole).max() > 1e-3 * np.ptp(whole)


def test_dask_blocks_are_aligned_too(unet: N2V) -> None:
    import dask
    import dask.array as da

    from microdenoise.distributed import denoise_dask

    image = poisson_gaussian(blobs((130, 117), seed=3), seed=4)
    lazy = da.from_array(image, chunks=(45, 50))
    with dask.config.set(scheduler="synchronous"):
        result = denoise_dask(lazy, unet).compute()
    whole = denoise_array(image, unet)
    np.testing.assert_allclose(result, whole, rtol=0, atol=1e-5 * np.ptp(whole))


def test_a_plane_too_large_for_memory_is_tiled_with_the_same_output(
        unet: N2V, monkeypatch: pytest.MonkeyPatch) -> None:
    """Above ``core.AUTO_TILE_BYTES`` a fitted U-Net predicts in tiles, says so, and gives
    exactly what one pass gives (here the budget is lowered to a 128-pixel tile)."""
    from microdenoise import core
    from microdenoise.feedback import NoticeWarning
    from microdenoise.streaming import BASELINE_BYTES

    image = poisson_gaussian(blobs((300, 280), seed=5), seed=6)
    whole = denoise_array(image, unet)
    seen: list[tuple[int, ...]] = []
    original = type(unet).denoise

    def spy(self: N2V, plane: np.ndarray) -> np.ndarray:
        seen.append(plane.shape)
        return original(self, plane)

    monkeypatch.setattr(core, "AUTO_TILE_BYTES", BASELINE_BYTES + 128 * 128 * unet.bytes_per_pixel)
    monkeypatch.setattr(type(unet), "denoise", spy)
    with pytest.warns(NoticeWarning, match="predicting it in 128-pixel tiles"):
        tiled = denoise_array(image, unet)
    assert len(seen) > 1 and all(max(s[-2:]) <= 128 for s in seen)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5 * np.ptp(whole))
    seen.clear()  # a tile given by the user is kept
    denoise_array(image, unet, tile=200)
    assert all(max(s[-2:]) <= 200 for s in seen) and any(max(s[-2:]) > 128 for s in seen)


def test_tiles_exactly_is_what_lets_the_core_tile_on_its_own() -> None:
    assert create("n2v").tiles_exactly and create("care").tiles_exactly
    assert not create("n2v", shift_average=True).tiles_exactly
    assert not create("care", shift_average=True).tiles_exactly
    assert not create("bm3d").tiles_exactly  # depends on the whole image
