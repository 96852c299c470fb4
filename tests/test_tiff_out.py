"""TIFF outputs other tools read correctly (#14): ImageJ hyperstacks, OME-TIFF, BigTIFF,
declared sizes checked before reading, display ranges and LUTs kept."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import tifffile

from microdenoise import denoise_file, tiff_io, tiff_out
from microdenoise.cli import main
from microdenoise.errors import FormatWarning, InputError
from microdenoise.io import ImageData, read_image, write_image
from microdenoise.streaming import open_image

PIXEL = (0.1234567, 0.065)  # (y, x) in µm
SIZES = {"S": 2, "T": 3, "C": 2, "Z": 4, "Y": 18, "X": 17}
# every order the project accepts is letters of STCZYX ending in YX; a representative set
AXES = ["YX", "ZYX", "CYX", "TYX", "CZYX", "TCZYX", "TZCYX", "ZTCYX", "CTYX", "SYX", "STCZYX"]


def _data(axes: str, dtype: str = "uint16") -> np.ndarray:
    shape = tuple(SIZES[a] for a in axes)
    return np.arange(np.prod(shape), dtype=np.float64).reshape(shape).astype(dtype)


def _ome_pixels(tif: tifffile.TiffFile) -> dict[str, str]:
    assert tif.ome_metadata is not None
    root = ET.fromstring(tif.ome_metadata)
    return next(e for e in root.iter() if e.tag.endswith("}Pixels")).attrib


def _resolution_unit(tif: tifffile.TiffFile) -> int:
    return int(tif.pages[0].tags["ResolutionUnit"].value)


# --- 3. ImageJ hyperstacks and OME-TIFF, for every axes order ---------------------------


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
@pytest.mark.parametrize("axes", AXES)
def test_imagej_hyperstack_for_every_axes_order(tmp_path: Path, axes: str, dtype: str) -> None:
    data = _data(axes, dtype)
    out = write_image(tmp_path / "x.tif", data, axes=axes, pixel_size=PIXEL, unit="µm",
                      metadata={"spacing": 0.5, "finterval": 2.0}, dtype="same",
                      source_dtype=data.dtype)
    img = read_image(out)
    np.testing.assert_array_equal(img.data, data)
    assert (img.axes, img.pixel_size, img.unit) == (axes, PIXEL, "µm")
    assert img.metadata == {"spacing": 0.5, "finterval": 2.0}
    with tifffile.TiffFile(out) as tif:
        assert _resolution_unit(tif) != tifffile.RESUNIT.INCH
        if "S" in axes:  # samples: neither ImageJ nor OME holds them; plain TIFF, in cm
            assert not tif.is_imagej and not tif.is_ome
            assert _resolution_unit(tif) == tifffile.RESUNIT.CENTIMETER
            num, den = tif.pages[0].tags["XResolution"].value
            assert num / den == pytest.approx(1e4 / PIXEL[1])
            return
        order = "".join(sorted(axes, key="TZCYX".index))  # ImageJ's order
        assert tif.is_imagej and not tif.is_ome
        assert tif.series[0].axes == order
        expected = np.transpose(data, [axes.index(a) for a in order])
        np.testing.assert_array_equal(tif.series[0].asarray(), expected)
        ij = tif.imagej_metadata
        assert ij is not None
        assert ij["unit"] in ("\\u00B5m", "µm") and ij.get("hyperstack") is True
        assert (ij["spacing"], ij["finterval"]) == (0.5, 2.0)
        assert _resolution_unit(tif) == tifffile.RESUNIT.NONE  # as Fiji writes it, with unit=
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(1 / PIXEL[1])


@pytest.mark.parametrize("axes", AXES)
def test_ome_tiff_for_ome_names(tmp_path: Path, axes: str) -> None:
    data = _data(axes, "float32")
    out = write_image(tmp_path / "x.ome.tif", data, axes=axes, pixel_size=PIXEL, unit="µm",
                      metadata={"spacing": 0.5, "finterval": 2.0})
    img = read_image(out)
    np.testing.assert_array_equal(img.data, data)
    assert (img.axes, img.pixel_size, img.unit) == (axes, PIXEL, "µm")
    assert img.metadata == {"spacing": 0.5, "finterval": 2.0}
    with tifffile.TiffFile(out) as tif:
        assert _resolution_unit(tif) != tifffile.RESUNIT.INCH
        if "S" in axes:
            assert not tif.is_ome
            return
        assert tif.is_ome and not tif.is_imagej
        assert tif.series[0].axes == axes  # any order, kept
        assert tif.series[0].shape == data.shape
        np.testing.assert_array_equal(tif.series[0].asarray(), data)
        px = _ome_pixels(tif)
        assert float(px["PhysicalSizeX"]) == PIXEL[1] and float(px["PhysicalSizeY"]) == PIXEL[0]
        assert px["PhysicalSizeXUnit"] == px["PhysicalSizeYUnit"] == "µm"
        assert float(px["PhysicalSizeZ"]) == 0.5 and px["PhysicalSizeZUnit"] == "µm"
        assert px["DimensionOrder"].startswith("XY")
        assert _resolution_unit(tif) == tifffile.RESUNIT.CENTIMETER


def test_ome_input_gives_ome_output(tmp_path: Path) -> None:
    src = tmp_path / "in.ome.tif"
    meta = {"axes": "CZYX", "PhysicalSizeX": 0.2, "PhysicalSizeXUnit": "µm",
            "PhysicalSizeY": 0.2, "PhysicalSizeYUnit": "µm", "PhysicalSizeZ": 1.0}
    tifffile.imwrite(src, _data("CZYX"), ome=True, metadata=meta, photometric="minisblack")
    assert main(["denoise", str(src), "-o", str(tmp_path / "out"), "--method", "median"]) == 0
    out = tmp_path / "out" / "in.ome.tif"
    with tifffile.TiffFile(out) as tif:
        assert tif.is_ome and tif.series[0].axes == "CZYX"
        assert _ome_pixels(tif)["PhysicalSizeX"] == "0.2"
        assert _resolution_unit(tif) != tifffile.RESUNIT.INCH
    img = read_image(out)
    assert (img.axes, img.pixel_size, img.unit, img.metadata) == (
        "CZYX", (0.2, 0.2), "µm", {"spacing": 1.0})


def test_streamed_output_has_the_same_layout(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 4000, (2, 3, 40, 44)).astype(np.uint16)
    src = write_image(tmp_path / "in.tif", data, axes="CZYX", pixel_size=(0.3, 0.3), unit="µm",
                      dtype="same", source_dtype=data.dtype)
    whole = denoise_file(src, tmp_path / "whole.tif", "median")
    for name in ("tiled.tif", "tiled.ome.tif"):
        out = denoise_file(src, tmp_path / name, "median", tile=32)
        img = read_image(out)
        assert (img.axes, img.pixel_size, img.unit) == ("CZYX", (0.3, 0.3), "µm")
        np.testing.assert_allclose(img.data, read_image(whole).data)
        with tifffile.TiffFile(out) as tif:
            assert tif.is_ome == name.endswith(".ome.tif")
            assert tif.is_imagej != tif.is_ome
            assert tif.series[0].axes == ("CZYX" if tif.is_ome else "ZCYX")


# --- 1. BigTIFF above 4 GB ----------------------------------------------------------------


def test_large_output_is_ome_bigtiff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tiff_out, "BIGTIFF_BYTES", 4000)  # "4 GB" is 4 KB here
    data = _data("YX", "float32")  # 1.2 KB: a classic TIFF
    small = write_image(tmp_path / "small.tif", data, pixel_size=PIXEL, unit="µm")
    big = np.tile(data, (4, 4))  # 20 KB: "more than 4 GB"
    with pytest.warns(FormatWarning, match=r"more than a classic TIFF holds; writing an "
                                           r"OME-TIFF \(BigTIFF\).*Bio-Formats"):
        out = write_image(tmp_path / "big.tif", big, pixel_size=PIXEL, unit="µm")
    plain = write_image(tmp_path / "s.tif", np.stack([big, big]), axes="SYX", pixel_size=PIXEL)
    with tifffile.TiffFile(small) as a, tifffile.TiffFile(out) as b, tifffile.TiffFile(plain) as c:
        assert not a.is_bigtiff and a.is_imagej
        assert b.is_bigtiff and b.is_ome and b.series[0].axes == "YX"
        assert c.is_bigtiff
    img = read_image(out)
    np.testing.assert_array_equal(img.data, big)
    assert (img.axes, img.pixel_size, img.unit) == ("YX", PIXEL, "µm")
    assert read_image(plain).axes == "SYX"


def test_large_streamed_output_is_bigtiff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    data = np.random.default_rng(1).integers(0, 255, (48, 40)).astype(np.float32)
    src = write_image(tmp_path / "in.tif", data, pixel_size=(0.5, 0.5), unit="µm")
    monkeypatch.setattr(tiff_out, "BIGTIFF_BYTES", 4000)
    assert main(["denoise", str(src), "-o", str(tmp_path / "out"), "--method", "median",
                 "--tile", "32"]) == 0
    err = capsys.readouterr().err
    assert err.count("microdenoise: warning: the output is") == 1 and "BigTIFF" in err
    out = tmp_path / "out" / "in.tif"
    with tifffile.TiffFile(out) as tif:
        assert tif.is_bigtiff and tif.is_ome
    img = read_image(out)
    assert (img.axes, img.pixel_size, img.unit, img.data.shape) == ("YX", (0.5, 0.5), "µm",
                                                                    (48, 40))


# --- 2. the declared size against the file and memory --------------------------------------


def _declare(path: Path, height: int, width: int) -> None:
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(width)
        tif.pages[0].tags["ImageLength"].overwrite(height)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_header_declaring_more_than_the_file_is_refused(tmp_path: Path,
                                                        compression: str | None) -> None:
    path = tmp_path / "x.tif"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint16), compression=compression)
    _declare(path, 100_000, 100_000)
    size = path.stat().st_size
    for reader in (read_image, open_image):
        with pytest.raises(InputError, match=rf"could not read .*x.tif as TIFF .*declares "
                                             rf"100000x100000 uint16 pixels \(18.6 GiB\).* "
                                             rf"{size} bytes.*corrupt or truncated") as err:
            reader(path)
        assert "\n" not in str(err.value)


def test_image_larger_than_memory_is_refused_in_memory_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data("ZYX", "float32")
    path = write_image(tmp_path / "x.tif", data, axes="ZYX")
    monkeypatch.setattr(tiff_io, "physical_memory", lambda: 1000)
    with pytest.raises(InputError, match=r"declares 4x18x17 float32 pixels .*more than this "
                                         r"machine's memory.*--tile or --max-memory"):
        read_image(path)
    np.testing.assert_array_equal(open_image(path).data, data)  # streamed: fine


# --- 4. ImageJ display ranges and LUTs ----------------------------------------------------


def _luts() -> list[np.ndarray]:
    ramp = np.arange(256, dtype=np.uint8)
    red, green = np.zeros((3, 256), np.uint8), np.zeros((3, 256), np.uint8)
    red[0], green[1] = ramp, ramp
    return [red, green]


def test_display_ranges_and_luts_are_kept(tmp_path: Path) -> None:
    src = tmp_path / "in.tif"
    ranges = (10.0, 200.0, 20.0, 3000.0)
    tifffile.imwrite(src, _data("CYX"), imagej=True,
                     metadata={"axes": "CYX", "Ranges": ranges, "LUTs": _luts()})
    img = read_image(src)
    assert img.metadata["ranges"] == ranges
    assert [lut.tolist() for lut in img.metadata["luts"]] == [lut.tolist() for lut in _luts()]
    assert main(["denoise", str(src), "-o", str(tmp_path / "out"), "--method", "median"]) == 0
    with tifffile.TiffFile(tmp_path / "out" / "in.tif") as tif:
        ij = tif.imagej_metadata
        assert ij is not None and tif.pages[0].dtype == np.float32
        assert tuple(ij["Ranges"]) == ranges
        assert [np.asarray(lut).tolist() for lut in ij["LUTs"]] == [x.tolist() for x in _luts()]


def test_single_channel_min_max_is_kept(tmp_path: Path) -> None:
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, _data("YX"), imagej=True, metadata={"min": 5.0, "max": 90.0})
    img = read_image(src)
    assert img.metadata["ranges"] == (5.0, 90.0)
    out = write_image(tmp_path / "out.tif", img.data, metadata=img.metadata)
    with tifffile.TiffFile(out) as tif:
        assert tif.imagej_metadata is not None
        assert (tif.imagej_metadata["min"], tif.imagej_metadata["max"]) == (5.0, 90.0)
    assert read_image(out).metadata["ranges"] == (5.0, 90.0)


@pytest.mark.parametrize("name", ["out.ome.tif", "out.npy", "out.ome.zarr"])
def test_dropped_display_ranges_and_luts_are_named(tmp_path: Path, name: str) -> None:
    meta = {"ranges": (0.0, 1.0, 0.0, 2.0), "luts": _luts()}
    with pytest.warns(FormatWarning, match="display ranges and LUTs are dropped"):
        write_image(tmp_path / name, _data("CYX"), axes="CYX", metadata=meta)


def test_display_not_fitting_the_channels_is_dropped_with_a_warning(tmp_path: Path) -> None:
    meta = {"ranges": (0.0, 1.0), "luts": _luts()}
    with pytest.warns(FormatWarning, match=r"display ranges \(1 for 2 channels\) do not fit"):
        out = write_image(tmp_path / "x.tif", _data("CYX"), axes="CYX", metadata=meta)
    kept = read_image(out).metadata
    assert "ranges" not in kept and len(kept["luts"]) == 2


# --- ImageData repr -----------------------------------------------------------------------


def test_image_data_repr_is_short() -> None:
    img = ImageData(np.zeros((1000, 1000), np.uint16), "YX", (0.1, 0.2), "µm", Path("a.tif"))
    text = repr(img)
    assert text == ("ImageData(shape=(1000, 1000), dtype=uint16, axes='YX', pixel_size=(0.1, "
                    "0.2), unit='µm', path='a.tif')")
