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
