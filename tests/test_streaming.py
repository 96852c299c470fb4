"""Streaming tiled prediction: memory-mapped input, pre-allocated output, same result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from microdenoise import (
    InputError,
    core,
    create,
    denoise_array,
    denoise_file,
    read_image,
    streaming,
    write_image,
)
from microdenoise.intensity import channel_normalizers, unit_range
from microdenoise.normalize import Percentile

from .conftest import blobs, poisson_gaussian


def _noisy_uint16(shape: tuple[int, int] = (150, 170), seed: int = 0) -> np.ndarray:
    return (poisson_gaussian(blobs(shape, seed=seed), seed=seed) * 4000 + 200).clip(0).astype(
        np.uint16)


@pytest.mark.parametrize("method", ["median", "gaussian"])
def test_streamed_file_equals_untiled(tmp_path: Path, method: str) -> None:
    image = _noisy_uint16()
    src = write_image(tmp_path / "in.tif", image, pixel_size=(0.2, 0.3), unit="µm")
    out = denoise_file(src, tmp_path / "out.tif", method, tile=48)
    whole = denoise_array(image, method)
    result = read_image(out)
    assert result.data.dtype == np.float32
    assert result.pixel_size == (0.2, 0.3) and result.unit == "µm"
    np.testing.assert_allclose(result.data, whole, rtol=1e-6, atol=1e-6 * float(image.max()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.tif", "out.tif"]  # no temp left


def test_streamed_stack_compressed_and_same_dtype(tmp_path: Path) -> None:
    stack = np.stack([_noisy_uint16((64, 80), seed=s) for s in range(3)])
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, stack, compression="zlib", photometric="minisblack",
                     metadata={"axes": "TYX"})
    opened = streaming.open_image(src)
    assert not isinstance(opened.data, np.ndarray)  # zarr array: nothing loaded
    (tmp_path / "out").mkdir()
    out = denoise_file(src, tmp_path / "out", "median", tile=40, dtype="same")
    expected = denoise_array(stack, "median", axes="TYX")
    got = read_image(out)
    assert got.axes == "TYX" and got.data.dtype == np.uint16
    np.testing.assert_array_equal(got.data, np.clip(np.rint(expected), 0, 65535))


def test_uncompressed_tiff_and_npy_are_memory_mapped(tmp_path: Path) -> None:
    image = _noisy_uint16((40, 40))
    tif = write_image(tmp_path / "a.tif", image, dtype="uint16")
    npy = write_image(tmp_path / "a.npy", image, dtype="uint16")
    for path in (tif, npy):
        opened = streaming.open_image(path)
        assert isinstance(opened.data, np.memmap) and opened.axes == "YX"
        np.testing.assert_array_equal(opened.data, image)


def test_streamed_fm2s_fits_each_whole_plane_and_equals_in_memory(tmp_path: Path,
                                                                   monkeypatch) -> None:
    from microdenoise.methods.fm2s import FM2S

    shapes = []
    original = FM2S.fit

    def counting(self, image, clean=None):
        shapes.append(image.shape)
        return original(self, image, clean)

    monkeypatch.setattr(FM2S, "fit", counting)
    stack = np.stack([_noisy_uint16((96, 80), seed=s) for s in range(2)])
    src = write_image(tmp_path / "s.tif", stack, axes="TYX", dtype="uint16")
    params = {"fast_steps": 2, "fast_crop": 32}
    out = denoise_file(src, tmp_path / "o.tif", "fm2s", params=params, seed=0, tile=64)
    assert shapes == [(96, 80), (96, 80)]  # the whole plane, not a crop of it
    expected = denoise_array(stack, "fm2s", params=params, seed=0, axes="TYX")
    np.testing.assert_allclose(read_image(out).data, expected, rtol=1e-5,
                               atol=1e-5 * float(stack.max()))


def test_percentile_statistics_equal_the_in_memory_subsample() -> None:
    rng = np.random.default_rng(3)
    image = rng.gamma(2.0, 100.0, size=(2, 1100, 1000)).astype(np.float32)
    (norm,) = channel_normalizers(image, "percentile", cax=None)
    assert norm == Percentile.fit(image)
    small = image[0, :100, :100]
    (norm,) = channel_normalizers(small, "percentile", cax=None)
    assert norm == Percentile.fit(small)
    per_channel = channel_normalizers(image, "percentile", cax=0)
    assert per_channel == [Percentile.fit(image[0]), Percentile.fit(image[1])]


def test_streamed_input_errors(tmp_path: Path) -> None:
    bad = np.full((40, 40), 5.0, np.float32)
    bad[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", bad)
    with pytest.raises(InputError, match="NaN"):
        denoise_file(tmp_path / "nan.tif", tmp_path / "o.tif", "median", tile=32)
    assert not (tmp_path / "o.tif").exists()
    # A constant image is passed through with a notice (strict: an error), issue #14.
    from microdenoise.errors import NoticeWarning
    from microdenoise.feedback import Feedback, reporting

    tifffile.imwrite(tmp_path / "flat.tif", np.full((40, 40), 7, np.uint16))
    with reporting(Feedback(strict=True)), pytest.raises(InputError, match="constant"):
        denoise_file(tmp_path / "flat.tif", tmp_path / "o.tif", "median", tile=32)
    assert not (tmp_path / "o.tif").exists()
    with pytest.warns(NoticeWarning, match="constant"):
        denoise_file(tmp_path / "flat.tif", tmp_path / "o.tif", "median", tile=32)
    assert np.all(tifffile.imread(tmp_path / "o.tif") == 7)


@pytest.mark.parametrize(("text", "size"), [("2GB", 2 * 2**30), ("512 MB", 512 * 2**20),
                                            ("1.5g", int(1.5 * 2**30)), ("1000", 1000)])
def test_parse_size(text: str, size: int) -> None:
    assert streaming.parse_size(text) == size


def test_max_memory_picks_a_tile() -> None:
    median = create("median")
    tile = streaming.tile_for_memory("2GB", median, overlap=median.receptive_field)
    assert tile % 16 == 0 and 1024 <= tile <= 8192
    assert streaming.tile_for_memory("1GB", median) < tile
    with pytest.raises(InputError, match="too small"):
        streaming.tile_for_memory("100MB", median)
    with pytest.raises(InputError, match="memory size"):
        streaming.parse_size("lots")


def test_max_memory_streams_a_file(tmp_path: Path) -> None:
    image = _noisy_uint16((64, 64))
    src = write_image(tmp_path / "in.tif", image, dtype="uint16")
    out = denoise_file(src, tmp_path / "out.tif", "gaussian", max_memory="1GB")
    np.testing.assert_allclose(read_image(out).data, denoise_array(image, "gaussian"),
                               rtol=1e-6, atol=1e-2)


@pytest.mark.parametrize("method", ["median", "gaussian", "wavelet", "tv"])
def test_declared_bytes_per_pixel_bound_the_streamed_working_set(method: str) -> None:
    import tracemalloc

    image = _noisy_uint16((512, 512), seed=5)
    den = create(method)
    sink = np.empty(image.shape, np.float32)

    def stream(source: np.ndarray, out: np.ndarray, tile: int, fresh: bool) -> None:
        size, overlap = core.check_tiling(den, tile=tile, overlap=None)
        core.run(den, source, out, fresh=fresh, lay=core.layout(source.shape, "YX", den),
                 tile=size, overlap=overlap)

    stream(image[:96, :96], sink[:96, :96], 96, True)  # warm-up
    den.fit(unit_range(image)(image))  # fitted once, as the core fits it on the plane
    tracemalloc.start()
    try:
        stream(image, sink, 512, False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= den.bytes_per_pixel * 512 * 512
    assert streaming.tile_for_memory("2GB", den) <= streaming.tile_for_memory(
        "2GB", create("median"))
