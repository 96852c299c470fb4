"""Tests for microdenoise.tiling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from microdenoise.errors import InputError
from microdenoise.tiling import denoise_tiled, n_tiles, plan_tiles

SHAPES = [(1, 1), (3, 5), (7, 300), (257, 513), (512, 512)]
SETTINGS = [(256, 32), (64, 8), (16, 7), (5, 2), (3, 1), (1, 0), (100, 0)]


def _image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _check_plan(shape: tuple[int, int], tile: int, overlap: int) -> None:
    plan = plan_tiles(shape, tile=tile, overlap=overlap)
    assert len(plan) == n_tiles(shape, tile=tile, overlap=overlap)
    cover = np.zeros(shape, dtype=np.int32)
    for src, dst, crop in plan:
        cover[dst] += 1
        for axis in range(2):
            n = shape[axis]
            s, d, c = src[axis], dst[axis], crop[axis]
            # Never larger than the tile (the tiles of an axis are evened out).
            assert s.stop - s.start <= min(tile, n)
            assert 0 <= s.start and s.stop <= n
            assert c.start == d.start - s.start and c.stop == d.stop - s.start
            # Context of at least `overlap` on every side that is not a border.
            assert d.start == 0 or d.start - s.start >= overlap
            assert d.stop == n or s.stop - d.stop >= overlap
    np.testing.assert_array_equal(cover, 1)


# Every shape with every setting, except the tiny-tile settings on the big shapes
# (tens of thousands of tiles: too slow for no extra coverage).
CASES = [
    (shape, tile, overlap)
    for shape in SHAPES
    for tile, overlap in SETTINGS
    if shape[0] * shape[1] <= 2100 or tile - 2 * overlap >= 8
]


@pytest.mark.parametrize(("shape", "tile", "overlap"), CASES)
def test_identity_is_exact(shape: tuple[int, int], tile: int, overlap: int) -> None:
    image = _image(shape)
    out = denoise_tiled(lambda t: t, image, tile=tile, overlap=overlap)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, image)
    _check_plan(shape, tile, overlap)


def test_identity_with_leading_axes_and_dtype() -> None:
    image = np.random.default_rng(1).integers(0, 65535, size=(2, 3, 70, 45), dtype=np.uint16)
    seen: list[tuple[int, ...]] = []

    def fn(t: np.ndarray) -> np.ndarray:
        seen.append(t.shape)
        return t

    out = denoise_tiled(fn, image, tile=32, overlap=4)
    np.testing.assert_array_equal(out, image.astype(np.float32))
    # leading axes ride along; tiles evened out below 32 x 32 (70 px: 3 tiles of 28-30)
    assert all(s[:2] == (2, 3) and max(s[2:]) <= 32 for s in seen)


FILTERS = {
    "median": (lambda r: lambda t: ndimage.median_filter(t, size=2 * r + 1, mode="reflect")),
    "correlate": (
        lambda r: (
            lambda t: ndimage.correlate(
                t,
                np.random.default_rng(5).random((2 * r + 1, 2 * r + 1), dtype=np.float32),
                mode="reflect",
            )
        )
    ),
    "gaussian": (lambda r: lambda t: ndimage.gaussian_filter(t, sigma=r / 4, truncate=4.0)),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
@pytest.mark.parametrize(
    ("shape", "tile", "overlap", "radius"),
    [
        ((131, 157), 48, 8, 8),
        ((131, 157), 48, 12, 8),
        ((40, 129), 20, 3, 3),
        ((5, 90), 16, 4, 2),
    ],
)
def test_tiled_equals_untiled_for_local_filters(
    name: str, shape: tuple[int, int], tile: int, overlap: int, radius: int
) -> None:
    fn = FILTERS[name](radius)
    image = _image(shape, seed=2)
    assert n_tiles(shape, tile=tile, overlap=overlap) > 1
    np.testing.assert_array_equal(denoise_tiled(fn, image, tile=tile, overlap=overlap), fn(image))


def test_tiled_uniform_filter_matches_to_rounding() -> None:
    # uniform_filter uses running sums, so results differ only by float rounding.
    fn = lambda t: ndimage.uniform_filter(t, size=2 * 6 + 1, mode="reflect")  # noqa: E731
    image = _image((200, 173), seed=3)
    out = denoise_tiled(fn, image, tile=48, overlap=6)
    np.testing.assert_allclose(out, fn(image), rtol=0, atol=1e-6)


def test_too_small_overlap_shows_seams() -> None:
    fn = lambda t: ndimage.uniform_filter(t, size=2 * 6 + 1, mode="reflect")  # noqa: E731
    image = _image((200, 173), seed=3)
    out = denoise_tiled(fn, image, tile=48, overlap=2)
    assert np.abs(out - fn(image)).max() > 1e-3


def test_invalid_tile_and_overlap() -> None:
    image = _image((10, 10))
    with pytest.raises(InputError, match="greater than 2 \\* overlap"):
        denoise_tiled(lambda t: t, image, tile=64, overlap=32)
    with pytest.raises(InputError, match="greater than 2 \\* overlap"):
        plan_tiles((10, 10), tile=0, overlap=0)
    with pytest.raises(InputError, match="overlap must be >= 0"):
        denoise_tiled(lambda t: t, image, tile=64, overlap=-1)
    with pytest.raises(InputError, match="integers"):
        n_tiles((10, 10), tile=32.5, overlap=2)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="2 axes"):
        denoise_tiled(lambda t: t, np.zeros(10), tile=8, overlap=1)


def test_wrong_output_shape() -> None:
    with pytest.raises(ValueError, match="same shape"):
        denoise_tiled(lambda t: t[:-1], _image((50, 50)), tile=16, overlap=2)


def test_fn_may_modify_its_tile() -> None:
    image = _image((60, 61))

    def fn(t: np.ndarray) -> np.ndarray:
        t *= 2
        return t

    before = image.copy()
    out = denoise_tiled(fn, image, tile=20, overlap=3)
    np.testing.assert_array_equal(out, 2 * before)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize(("shape", "tile", "overlap"), [((257, 513), 64, 8), ((3, 5), 256, 32)])
def test_progress_count(shape: tuple[int, int], tile: int, overlap: int) -> None:
    calls: list[int] = []
    denoise_tiled(lambda t: t, _image(shape), tile=tile, overlap=overlap, progress=calls.append)
    assert len(calls) == n_tiles(shape, tile=tile, overlap=overlap)
    assert calls == [1] * len(calls)


def test_n_tiles_values() -> None:
    assert n_tiles((100, 100), tile=256, overlap=32) == 1
    # 512 with tile 256 / overlap 32: cores [0,224), [224,480)... -> 3 per axis.
    assert n_tiles((512, 512), tile=256, overlap=32) == 9
    assert n_tiles((256, 257), tile=256, overlap=32) == 2
    assert n_tiles((0, 5), tile=8, overlap=1) == 0


def test_tiles_are_evened_out_rather_than_a_last_one_shifted_back() -> None:
    """2048 px in tiles of 1024 with 29 px of context (a U-Net's): three tiles per axis
    are needed; evened out they hold 1.06x the axis's pixels, where full-size tiles with
    the last one shifted back held 1.5x (2.25x the plane's pixels in 2D)."""
    plan = plan_tiles((2048, 2048), tile=1024, overlap=29, multiple=4)
    xs = {(t.source[1].start, t.source[1].stop) for t in plan}
    assert len(xs) == 3 and sum(b - a for a, b in xs) <= 1.06 * 2048
    assert max(b - a for a, b in xs) - min(b - a for a, b in xs) <= 4
    assert all(a % 4 == 0 for a, _ in xs)
