"""Tests of microdenoise.io: round trips, ImageJ output, atomic writes, bad input."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from microdenoise import io
from microdenoise.errors import InputError
from microdenoise.io import ImageData, list_images, read_image, same_file, write_image

RNG_SEED = 0


def _random(shape: tuple[int, ...], dtype: str, *, seed: int = RNG_SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(dtype), np.integer):
        return rng.integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)
    return (rng.random(shape) * 1000 - 100).astype(dtype)


# --- round trips ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axes", "shape", "dtype", "kind"),
    [
        ("YX", (12, 13), "uint8", "imagej"),
        ("YX", (12, 13), "uint16", "imagej"),
        ("YX", (12, 13), "float32", "imagej"),
        ("ZYX", (3, 12, 13), "float32", "imagej"),
        ("TCYX", (2, 3, 12, 13), "uint16", "imagej"),
        ("ZYX", (1, 12, 13), "float32", "imagej"),  # size-1 axes are kept
        ("SYX", (4, 12, 13), "float32", "plain"),  # S: neither ImageJ nor OME has it
        ("CZYX", (2, 3, 12, 13), "uint8", "imagej"),  # stored as ZCYX, read back as CZYX
        ("YX", (12, 13), "float64", "ome"),  # not an ImageJ dtype
        ("YX", (12, 13), "int64", "plain"),  # not an OME dtype either
    ],
)
def test_tiff_round_trip(tmp_path: Path, axes: str, shape: tuple[int, ...], dtype: str,
                         kind: str) -> None:
    data = _random(shape, dtype)
    out = write_image(tmp_path / "x.tif", data, axes=axes, pixel_size=(0.1234567, 0.065),
                      unit="µm", metadata={"spacing": 0.3, "finterval": 2.5}, dtype="same",
                      source_dtype=data.dtype)
    img = read_image(out)
    assert img.data.dtype == data.dtype
    np.testing.assert_array_equal(img.data, data)
    assert img.axes == axes
    assert img.pixel_size == (0.1234567, 0.065)
    assert img.unit == "µm"
    assert img.metadata == {"spacing": 0.3, "finterval": 2.5}
    assert img.path == out
    with tifffile.TiffFile(out) as tif:
        assert (tif.is_imagej, tif.is_ome) == (kind == "imagej", kind == "ome")
        assert tif.pages[0].tags["ResolutionUnit"].value != tifffile.RESUNIT.INCH


@pytest.mark.parametrize("pixel_size", [None, (0.5, 0.25), (1 / 3, 0.1)])
def test_tiff_round_trip_calibration_without_unit(tmp_path: Path,
                                                  pixel_size: tuple[float, float] | None) -> None:
    out = write_image(tmp_path / "x.tiff", np.zeros((5, 6), np.float32), pixel_size=pixel_size)
    img = read_image(out)
    assert img.pixel_size == pixel_size
    assert img.unit is None
    assert img.metadata == {}


@pytest.mark.parametrize("axes", ["YX", "ZYX"])
def test_float32_tiff_is_imagej_compatible(tmp_path: Path, axes: str) -> None:
    data = _random((2, 8, 9)[3 - len(axes):], "float32")
    out = write_image(tmp_path / "x.tif", data, axes=axes, pixel_size=(0.2, 0.2), unit="nm",
                      metadata={"spacing": 1.5})
    with tifffile.TiffFile(out) as tif:
        assert tif.is_imagej
        assert tif.series[0].axes == axes
        assert tif.pages[0].dtype == np.float32
        assert tif.imagej_metadata is not None
        assert tif.imagej_metadata["unit"] == "nm"
        assert tif.imagej_metadata["spacing"] == 1.5
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(5.0)


def test_default_output_is_float32(tmp_path: Path) -> None:
    data = _random((6, 7), "uint16")
    img = read_image(write_image(tmp_path / "x.tif", data))
    assert img.data.dtype == np.float32
    np.testing.assert_array_equal(img.data, data.astype(np.float32))


def test_dtype_same_rounds_and_clips(tmp_path: Path) -> None:
    data = np.array([[-3.6, 0.4, 0.5, 1.5, 2.5001], [127.5, 254.6, 255.4, 300.0, np.inf]])
    out = write_image(tmp_path / "x.tif", data, dtype="same", source_dtype=np.uint8)
    img = read_image(out)
    assert img.data.dtype == np.uint8
    np.testing.assert_array_equal(img.data, [[0, 0, 0, 2, 3], [128, 255, 255, 255, 255]])
    out16 = write_image(tmp_path / "y.tif", data - 10, dtype="int16")
    np.testing.assert_array_equal(read_image(out16).data[0], [-14, -10, -10, -8, -7])


def test_dtype_errors(tmp_path: Path) -> None:
    data = np.zeros((4, 4), np.float32)
    with pytest.raises(InputError, match="source_dtype"):
        write_image(tmp_path / "a.tif", data, dtype="same")
    for bad in ("complex64", "nonsense", "bool"):
        with pytest.raises(InputError, match="cannot write images as"):
            write_image(tmp_path / "a.tif", data, dtype=bad)
    with pytest.raises(InputError, match="NaN"):
        write_image(tmp_path / "a.tif", np.full((4, 4), np.nan), dtype="uint8")
    with pytest.raises(InputError, match="pixel size"):
        write_image(tmp_path / "a.tif", data, pixel_size=(0.0, 1.0))
    assert list(tmp_path.iterdir()) == []


def test_png_round_trip_and_dtypes(tmp_path: Path) -> None:
    for dtype in ("uint8", "uint16"):
        data = _random((9, 11), dtype)
        out = write_image(tmp_path / f"{dtype}.png", data, dtype=dtype)
        img = read_image(out)
        assert (img.axes, img.data.dtype, img.pixel_size) == ("YX", np.dtype(dtype), None)
        np.testing.assert_array_equal(img.data, data)
    floats = np.array([[1.4, 2.6], [-1.0, 300.0]], np.float32)
    out = write_image(tmp_path / "f.png", floats, source_dtype=np.uint8)  # default float32
    np.testing.assert_array_equal(read_image(out).data, np.array([[1, 3], [0, 255]], np.uint8))
    with pytest.raises(InputError, match="PNG stores only uint8 or uint16"):
        write_image(tmp_path / "g.png", floats)
    with pytest.raises(InputError, match="2D"):
        write_image(tmp_path / "g.png", np.zeros((2, 4, 4), np.uint8), axes="ZYX")


def test_npy_round_trip_and_axes_guess(tmp_path: Path) -> None:
    data = _random((3, 8, 9), "float32")
    img = read_image(write_image(tmp_path / "x.npy", data, axes="ZYX"))
    np.testing.assert_array_equal(img.data, data)
    assert img.axes == "SYX"  # NPY stores no axes: 3D is guessed as samples
    assert read_image(tmp_path / "x.npy", axes="zyx").axes == "ZYX"
    np.save(tmp_path / "four.npy", np.zeros((2, 2, 4, 4)))
    with pytest.raises(InputError, match="axes="):
        read_image(tmp_path / "four.npy")
    assert read_image(tmp_path / "four.npy", axes="TZYX").axes == "TZYX"


def test_plain_multipage_and_calibrated_tiffs(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 8, 8), np.uint16),
                     photometric="minisblack")
    assert read_image(tmp_path / "stack.tif").axes == "SYX"  # tifffile's Q/I -> S
    tifffile.imwrite(tmp_path / "cm.tif", np.zeros((8, 8), np.uint8),
                     resolution=(1e4 / 0.5, 1e4 / 0.25), resolutionunit="CENTIMETER")
    img = read_image(tmp_path / "cm.tif")
    assert img.unit == "µm"
    assert img.pixel_size == pytest.approx((0.25, 0.5))
    tifffile.imwrite(tmp_path / "dpi.tif", np.zeros((8, 8), np.uint8), resolution=(72, 72),
                     resolutionunit="INCH")
    assert read_image(tmp_path / "dpi.tif").pixel_size is None  # screen dpi, not a calibration


def test_ome_tiff(tmp_path: Path) -> None:
    path = tmp_path / "x.ome.tif"
    meta = {"axes": "TCYX", "PhysicalSizeX": 0.1, "PhysicalSizeY": 0.2, "PhysicalSizeZ": 0.5}
    tifffile.imwrite(path, _random((2, 3, 8, 8), "uint16"), ome=True, metadata=meta,
                     photometric="minisblack")
    img = read_image(path)
    assert img.axes == "TCYX"
    assert img.pixel_size == (0.2, 0.1)
    assert img.unit == "µm"
    assert img.metadata["spacing"] == 0.5


# --- RGB --------------------------------------------------------------------------------


def test_rgb_rejected_and_gray_as_rgb_accepted(tmp_path: Path) -> None:
    gray = _random((10, 12), "uint8")
    colour = np.stack([gray, gray[::-1], gray], axis=-1)
    iio.imwrite(tmp_path / "rgb.png", colour)
    tifffile.imwrite(tmp_path / "rgb.tif", colour, photometric="rgb")
    for name in ("rgb.png", "rgb.tif"):
        with pytest.raises(InputError, match="is an RGB image.*Split Channels"):
            read_image(tmp_path / name)
    as_rgb = np.stack([gray] * 3, axis=-1)
    iio.imwrite(tmp_path / "gray.png", as_rgb)
    iio.imwrite(tmp_path / "graya.png", np.dstack([as_rgb, np.full_like(gray, 255)]))
    tifffile.imwrite(tmp_path / "gray.tif", as_rgb, photometric="rgb")
    for name in ("gray.png", "graya.png", "gray.tif"):
        img = read_image(tmp_path / name)
        assert img.axes == "YX"
        np.testing.assert_array_equal(img.data, gray)


# --- bad input --------------------------------------------------------------------------


def test_corrupt_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(RNG_SEED)
    (tmp_path / "x.tif").write_bytes(rng.bytes(1000))
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, _random((64, 64), "float32"))
    (tmp_path / "cut.tif").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + rng.bytes(100))
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY" + rng.bytes(100))
    for name, kind in [("x.tif", "TIFF"), ("cut.tif", "TIFF"), ("x.png", "PNG"),
                       ("x.npy", "NPY")]:
        with pytest.raises(InputError, match=f"could not read .*{name} as {kind}") as err:
            read_image(tmp_path / name)
        assert "\n" not in str(err.value)


def test_missing_empty_unsupported(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "empty.tif").touch()
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "empty.tif")
    (tmp_path / "x.jpg").write_bytes(b"abc")
    with pytest.raises(InputError, match=r"unsupported .*\.tif, \.tiff, \.png, \.npy"):
        read_image(tmp_path / "x.jpg")
    with pytest.raises(InputError, match="folder"):
        read_image(tmp_path)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((4, 4), np.complex64), "complex"),
        (np.zeros((4, 4), bool), "not intensities"),
        (np.zeros((0, 4), np.float32), "no pixels"),
    ],
)
def test_non_image_arrays(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(InputError, match=message):
        read_image(tmp_path / "a.npy")


def test_axes_validation(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.zeros((2, 5, 6), np.float32))
    with pytest.raises(InputError, match=r"3 dimensions of shape \(2, 5, 6\).*2 letters"):
        read_image(tmp_path / "a.npy", axes="YX")
    for bad in ("QYX", "XY", "ZZYX"):
        with pytest.raises(InputError, match="invalid axes"):
            read_image(tmp_path / "a.npy", axes=bad)
    with pytest.raises(InputError, match="2 dimensions"):
        ImageData(np.zeros((3, 3)), "ZYX", None, None)


# --- atomic writes ----------------------------------------------------------------------


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    out = write_image(tmp_path / "x.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        write_image(out, np.ones((4, 4), np.float32))
    write_image(out, np.ones((4, 4), np.float32), overwrite=True)
    assert read_image(out).data.max() == 1
    with pytest.raises(InputError, match="is a folder"):
        write_image(tmp_path, np.zeros((4, 4)), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tif"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), RuntimeError("bug")])
def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     error: Exception) -> None:
    def broken(path: Path, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"partial")
        assert Path(path).name.startswith(".") and Path(path).name.endswith(".part")
        raise error

    monkeypatch.setattr(tifffile, "imwrite", broken)
    expected = InputError if isinstance(error, OSError) else RuntimeError
    with pytest.raises(expected):
        write_image(tmp_path / "x.tif", np.zeros((4, 4), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_failed_replace_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = write_image(tmp_path / "x.npy", np.zeros((4, 4)))

    def fail(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(io.os, "replace", fail)
    with pytest.raises(InputError, match="could not write .*Permission denied"):
        write_image(out, np.ones((4, 4)), overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]
    assert read_image(out).data.max() == 0


def test_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = write_image(tmp_path / "a.npy", np.zeros((3, 3)))
    b = write_image(tmp_path / "b.npy", np.zeros((3, 3)))
    (tmp_path / "link.npy").symlink_to(a)
    assert same_file(a, tmp_path / "link.npy")
    assert same_file(a, tmp_path / "sub" / ".." / "a.npy")
    assert not same_file(a, b)
    assert not same_file(a, tmp_path / "new.npy")
    monkeypatch.chdir(tmp_path)
    assert same_file("a.npy", a)


# --- listing ----------------------------------------------------------------------------


def test_list_images(tmp_path: Path) -> None:
    for name in ("b.tif", "a.PNG", "c.npy", ".hidden.tif", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.tif").write_bytes(b"x")
    found = list_images([tmp_path])
    assert [p.name for p in found] == ["a.PNG", "b.tif", "c.npy"]
    given = [tmp_path / "sub" / "d.tif", tmp_path / "c.npy"]
    assert list_images([*given, tmp_path]) == [*given, tmp_path / "a.PNG", tmp_path / "b.tif"]
    with pytest.raises(InputError, match=r"folder .*sub2 contains no images \(\.tif"):
        (tmp_path / "sub2").mkdir()
        list_images([tmp_path / "sub2"])
    with pytest.raises(InputError, match="does not exist"):
        list_images([tmp_path / "missing"])
    with pytest.raises(InputError, match="unsupported"):
        list_images([tmp_path / "notes.txt"])


# --- real data --------------------------------------------------------------------------


def test_convallaria_frame(data_root: Path) -> None:
    img = read_image(data_root / "convallaria" / "convallaria_frame0.tif")
    assert img.data.shape == (1024, 1024)
    assert img.data.dtype == np.uint16
    assert img.axes == "YX"


def test_axes_that_disagree_with_the_metadata(tmp_path: Path, capsys) -> None:
    from microdenoise.cli import main
    from microdenoise.errors import AxesWarning

    data = np.random.default_rng(0).integers(0, 200, (3, 24, 24), dtype=np.uint8)
    for name in ("z.tif", "z.ome.zarr"):
        path = write_image(tmp_path / name, data, axes="ZYX", dtype="uint8")
        with pytest.warns(AxesWarning, match=r"metadata give axes 'ZYX'; using the axes given, "
                                             r"'TYX'"):
            assert read_image(path, axes="TYX").axes == "TYX"
        with pytest.raises(InputError, match=r"metadata give axes 'ZYX' \(shape \(3, 24, 24\)\) "
                                             r"but the axes given are 'CZYX'"):
            read_image(path, axes="CZYX")
    code = main(["denoise", str(tmp_path / "z.tif"), "-o", str(tmp_path / "out"),
                 "--method", "median", "--axes", "TYX"])
    err = capsys.readouterr().err
    assert code == 0 and "microdenoise: warning:" in err and "'ZYX'" in err
    assert read_image(tmp_path / "out" / "z.tif").axes == "TYX"
