"""OME-Zarr: NGFF 0.4 metadata, round trips, CLI, streaming chunk by chunk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from microdenoise import InputError, denoise_array, read_image, write_image
from microdenoise.cli import main

from .conftest import blobs, poisson_gaussian


def _image(shape=(2, 3, 40, 48)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(100, 4000, shape, dtype=np.uint16)


def test_round_trip_axes_pixel_size_and_ngff_metadata(tmp_path: Path) -> None:
    data = _image()
    path = write_image(tmp_path / "a.ome.zarr", data, axes="TCYX", pixel_size=(0.25, 0.5),
                       unit="µm", metadata={"finterval": 2.0}, dtype="uint16")
    back = read_image(path)
    np.testing.assert_array_equal(back.data, data)
    assert back.axes == "TCYX" and back.pixel_size == (0.25, 0.5) and back.unit == "µm"
    assert back.metadata == {"finterval": 2.0}
    attrs = json.loads((path / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "y", "x"]
    assert [a["type"] for a in ms["axes"]] == ["time", "channel", "space", "space"]
    assert ms["axes"][-1]["unit"] == "micrometer" and ms["axes"][0]["unit"] == "second"
    scale = ms["datasets"][0]["coordinateTransformations"][0]
    assert scale == {"type": "scale", "scale": [2.0, 1.0, 0.25, 0.5]}
    assert zarr.open_array(str(path / "0"), mode="r").chunks == (1, 1, 40, 48)


def test_round_trip_zyx_float_and_uncalibrated(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((4, 30, 20)).astype(np.float32)
    path = write_image(tmp_path / "v.ome.zarr", data, axes="ZYX", pixel_size=(0.1, 0.1),
                       unit="nm", metadata={"spacing": 0.3})
    back = read_image(path)
    assert back.axes == "ZYX" and back.unit == "nm" and back.metadata == {"spacing": 0.3}
    np.testing.assert_array_equal(back.data, data)
    plain = read_image(write_image(tmp_path / "p.ome.zarr", data[0]))
    assert plain.axes == "YX" and plain.pixel_size is None and plain.unit is None


def test_zarr_without_multiscales_is_a_clear_error(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "bare.zarr"), mode="w")
    group.create_array("0", data=np.zeros((20, 20), np.uint8))
    with pytest.raises(InputError, match="without OME-NGFF 'multiscales'"):
        read_image(tmp_path / "bare.zarr")
    zarr.create_array(str(tmp_path / "arr.zarr"), data=np.zeros((20, 20), np.uint8))
    with pytest.raises(InputError, match="not an OME-Zarr"):
        read_image(tmp_path / "arr.zarr")


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    data = _image((20, 20))
    path = write_image(tmp_path / "a.ome.zarr", data, dtype="uint16")
    with pytest.raises(InputError, match="exists"):
        write_image(path, data)
    write_image(path, data + 1, dtype="uint16", overwrite=True)
    np.testing.assert_array_equal(read_image(path).data, data + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.ome.zarr"]


@pytest.mark.parametrize("tile", [None, 40])
def test_cli_denoises_ome_zarr_into_outdir(tmp_path: Path, tile: int | None) -> None:
    noisy = (poisson_gaussian(blobs((70, 60))) * 1000 + 100).astype(np.uint16)
    src = write_image(tmp_path / "in.ome.zarr", noisy, pixel_size=(0.2, 0.2), unit="µm",
                      dtype="uint16")
    argv = ["denoise", str(src), "-o", str(tmp_path / "out"), "--method", "median"]
    assert main(argv + (["--tile", str(tile)] if tile else [])) == 0
    out = read_image(tmp_path / "out" / "in.ome.zarr")
    assert out.axes == "YX" and out.pixel_size == (0.2, 0.2) and out.unit == "µm"
    np.testing.assert_allclose(out.data, denoise_array(noisy, "median"), rtol=1e-6, atol=1e-3)


def test_folder_with_zarr_images(tmp_path: Path) -> None:
    from microdenoise.io import list_images

    write_image(tmp_path / "a.ome.zarr", _image((20, 20)), dtype="uint16")
    write_image(tmp_path / "b.tif", _image((20, 20)), dtype="uint16")
    assert [p.name for p in list_images([tmp_path])] == ["a.ome.zarr", "b.tif"]


def _ngff(path: Path) -> dict:
    return json.loads((path / ".zattrs").read_text())["multiscales"][0]


def test_pyramid_levels_scales_shapes_and_means(tmp_path: Path) -> None:
    data = _image((2, 3, 41, 50))
    path = write_image(tmp_path / "p.ome.zarr", data, axes="TCYX", pixel_size=(0.25, 0.5),
                       unit="µm", dtype="uint16", levels=3)
    ms = _ngff(path)
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]
    assert [d["coordinateTransformations"] for d in ms["datasets"]] == [
        [{"type": "scale", "scale": [1.0, 1.0, 0.25 * f, 0.5 * f]}] for f in (1, 2, 4)]
    assert ms["type"] == "mean"
    arrays = [zarr.open_array(str(path / str(k)), mode="r") for k in range(3)]
    assert [a.shape for a in arrays] == [(2, 3, 41, 50), (2, 3, 20, 25), (2, 3, 10, 12)]
    assert all(a.dtype == np.uint16 for a in arrays)
    np.testing.assert_array_equal(arrays[0][...], data)
    mean = data[..., :40, :50].reshape(2, 3, 20, 2, 25, 2).mean(axis=(3, 5))
    np.testing.assert_array_equal(arrays[1][...], np.rint(mean))
    mean2 = np.asarray(arrays[1][..., :20, :24], np.float64).reshape(2, 3, 10, 2, 12, 2)
    np.testing.assert_array_equal(arrays[2][...], np.rint(mean2.mean(axis=(3, 5))))
    back = read_image(path)  # reading takes level 0
    assert back.pixel_size == (0.25, 0.5) and back.axes == "TCYX"
    np.testing.assert_array_equal(back.data, data)


@pytest.mark.parametrize("tile", [None, 32])
def test_denoised_pyramid_level0_equals_the_plain_output(tmp_path: Path, tile) -> None:
    from microdenoise import denoise_file

    image = (poisson_gaussian(blobs((70, 90), seed=2), seed=3) * 3000 + 100).astype(np.uint16)
    src = write_image(tmp_path / "in.tif", image, pixel_size=(0.1, 0.1), unit="µm",
                      dtype="uint16")
    (tmp_path / "out").mkdir()
    pyr = denoise_file(src, tmp_path / "out", "median", tile=tile, pyramid=4)
    assert pyr.name == "in.ome.zarr"  # a pyramid makes the output OME-Zarr
    plain = denoise_file(src, tmp_path / "plain.ome.zarr", "median", tile=tile)
    np.testing.assert_array_equal(read_image(pyr).data, read_image(plain).data)
    ms = _ngff(pyr)
    assert [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]] == [
        [0.1 * 2**k, 0.1 * 2**k] for k in range(4)]
    assert zarr.open_array(str(pyr / "3"), mode="r").shape == (8, 11)


def test_pyramid_bad_input_is_one_clear_line(tmp_path: Path, capsys) -> None:
    src = write_image(tmp_path / "in.tif", _image((40, 48)), dtype="uint16")
    code = main(["denoise", str(src), "-o", str(tmp_path / "o"), "--method", "median",
                 "--pyramid", "9"])
    err = capsys.readouterr().err
    assert code == 1 and "a 40x48 image has at most 6 levels" in err
    assert not [p for p in (tmp_path / "o").iterdir()]  # nothing written, no temp left
    assert main(["denoise", str(src), "-o", str(tmp_path / "o"), "--pyramid", "0"]) == 2
    assert "--pyramid takes a number of levels >= 1" in capsys.readouterr().err
    with pytest.raises(InputError, match="needs an OME-Zarr output"):
        write_image(tmp_path / "x.tif", _image((40, 48)), levels=2)
    assert main(["denoise", str(src), "-o", str(tmp_path / "o"), "--method", "median",
                 "--pyramid", "6"]) == 0
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["in.ome.zarr"]
