"""The command line end to end on real files, and every bad input of issue #2."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from microdenoise.cli import main

SAMPLE = resources.files("microdenoise") / "data" / "confocal_fish_raw.png"
FAST = ["--method", "fm2s", "--param", "fast_steps=30", "--param", "fast_crop=48"]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "fish.png"
    path.parent.mkdir()
    with resources.as_file(SAMPLE) as src:
        shutil.copy(src, path)
    return path


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_denoise_fm2s_end_to_end(sample: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["denoise", str(sample), "-o", str(out), *FAST, "--seed", "1"]) == 0
    result = tifffile.imread(out / "fish.tif")
    noisy = iio.imread(sample)
    assert result.dtype == np.float32 and result.shape == noisy.shape
    assert result.std() < noisy.std()  # smoother
    assert str(out / "fish.tif") in capsys.readouterr().out


def test_dtype_same_and_overwrite(sample: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    args = ["denoise", str(sample), "-o", str(out), "--method", "median", "--dtype", "same"]
    assert main(args) == 0
    assert tifffile.imread(out / "fish.tif").dtype == np.uint8
    capsys.readouterr()
    assert main(args) == 0  # an existing output is kept, not a failure (issue #14)
    assert f"kept existing {out / 'fish.tif'}" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_stack_keeps_axes_and_pixel_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stack = rng.poisson(40, (3, 40, 48)).astype(np.uint16)
    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, stack, imagej=True, resolution=(1 / 0.2, 1 / 0.2),
                     metadata={"axes": "TYX", "unit": "um"})
    out = tmp_path / "out"
    assert main(["denoise", str(src), "-o", str(out), "--method", "gaussian"]) == 0
    from microdenoise import read_image

    img = read_image(out / "stack.tif")
    assert img.axes == "TYX" and img.data.shape == stack.shape
    assert img.pixel_size == pytest.approx((0.2, 0.2))


def test_output_equal_to_input_is_refused(sample: Path, capsys) -> None:
    tif = sample.with_suffix(".tif")
    tifffile.imwrite(tif, iio.imread(sample))
    before = tif.read_bytes()
    assert main(["denoise", str(tif), "-o", str(tif.parent), "--method", "median",
                 "--overwrite"]) == 1
    assert "would replace an input file" in capsys.readouterr().err
    assert tif.read_bytes() == before


def test_batch_never_overwrites_another_input(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    rng = np.random.default_rng(0)
    iio.imwrite(folder / "x.png", rng.integers(0, 255, (32, 32), dtype=np.uint8))
    tifffile.imwrite(folder / "x.tif", rng.integers(0, 255, (32, 32), dtype=np.uint8))
    before = (folder / "x.tif").read_bytes()
    code = main(["denoise", str(folder), "-o", str(folder), "--method", "median", "--overwrite"])
    assert code == 1 and "would replace an input" in capsys.readouterr().err
    assert (folder / "x.tif").read_bytes() == before


def test_output_folder_that_is_a_file(sample: Path, tmp_path: Path, capsys) -> None:
    target = tmp_path / "a_file"
    target.write_text("x")
    assert main(["denoise", str(sample), "-o", str(target), "--method", "median"]) == 2
    assert "output folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--dtype", "foo"], "--dtype"),
    (["--tile", "8"], "twice the overlap"),
    (["--overlap", "1", "--tile", "64"], "receptive field"),
    (["--axes", "QYX"], "invalid axes"),
    (["--fit-on", "0"], "--fit-on"),
])
def test_bad_denoise_options_fail_before_any_work(sample: Path, tmp_path: Path, capsys, argv,
                                                  message) -> None:
    out = tmp_path / "out"
    assert main(["denoise", str(sample), "-o", str(out), *argv]) == 2
    assert message in capsys.readouterr().err
    assert _files(out) == []


def test_batch_skips_bad_files_and_reports(sample: Path, tmp_path: Path, capsys) -> None:
    folder = sample.parent
    (folder / "corrupt.tif").write_bytes(b"II*\x00garbage" * 10)
    (folder / "empty.png").write_bytes(b"")
    tifffile.imwrite(folder / "tiny.tif", np.zeros((3, 5), np.uint8))
    tifffile.imwrite(folder / "nan.tif", np.full((32, 32), np.nan, np.float32))
    tifffile.imwrite(folder / "flat.tif", np.full((32, 32), 9, np.uint16))
    iio.imwrite(folder / "flat8.png", np.full((32, 32), 9, np.uint8))
    iio.imwrite(folder / "rgb.png", np.random.default_rng(0).integers(0, 255, (32, 32, 3),
                                                                       dtype=np.uint8))
    out = tmp_path / "out"
    code = main(["denoise", str(folder), "-o", str(out), "--method", "median"])
    err = capsys.readouterr().err
    assert code == 1
    # the good one and the constant ones (passed through, issue #14), no partial files
    assert _files(out) == ["fish.tif", "flat.tif", "flat8.tif"]
    for name in ("corrupt.tif", "empty.png", "tiny.tif", "nan.tif", "rgb.png"):
        assert f"skipped {folder / name}" in err
    for name in ("flat.tif", "flat8.png"):
        assert f"{folder / name} is constant (value 9): passed through unchanged" in err
    assert "Traceback" not in err and "5 of 8 file(s) failed" in err


@pytest.mark.parametrize("argv, message", [
    (["--method", "nope"], "unknown method 'nope'"),
    (["--param", "nope=1"], "unknown parameter"),
    (["--method", "fm2s", "--param", "fast_steps=many"], "must be a number"),
    (["--preset", "sted"], "no preset"),
    (["--model", "missing.pt"], "does not exist"),
])
def test_bad_options_are_one_line(sample: Path, tmp_path: Path, capsys, argv, message) -> None:
    out = tmp_path / "out"
    assert main(["denoise", str(sample), "-o", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("microdenoise: error")
    assert _files(out) == []


def test_missing_and_empty_inputs(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert main(["denoise", str(empty), "-o", str(tmp_path / "o")]) == 2
    assert "contains no images" in capsys.readouterr().err
    assert main(["denoise", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "o")]) == 2


def test_single_bad_file_exits_nonzero(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff")
    out = tmp_path / "out"
    assert main(["denoise", str(bad), "-o", str(out), "--method", "median"]) == 1
    assert "could not read" in capsys.readouterr().err
    assert _files(out) == []


def test_model_round_trip_through_cli(sample: Path, tmp_path: Path) -> None:
    from microdenoise import create, save

    x = iio.imread(sample).astype(np.float32) / 255
    model = save(create("fm2s", fast_steps=10, fast_crop=32).fit(x), tmp_path / "fm2s.pt")
    out = tmp_path / "out"
    assert main(["denoise", str(sample), "-o", str(out), "--model", str(model)]) == 0
    assert tifffile.imread(out / "fish.tif").shape == x.shape


def test_list_names_every_method(capsys) -> None:
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for name in ("fm2s", "median", "gaussian", "box3d", "nlm", "bm3d", "schedule=fast"):
        assert name in text


def test_evaluate_on_shared_data(data_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ev"
    code = main(["evaluate", "--dataset", "fmd_test_mix", "--methods", "median,gaussian",
                 "--images", "WideField_BPAE_B_3", "Confocal_FISH_3", "--out", str(out),
                 "--data-root", str(data_root)])
    assert code == 0
    assert {"table.md", "scores.csv", "crops.png"} <= set(_files(out))
    table = (out / "table.md").read_text()
    assert "| noisy |" in table and "| median |" in table and "WideField PSNR" in table


def test_python_m_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "microdenoise", "--help"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0 and "denoise" in proc.stdout and "evaluate" in proc.stdout
