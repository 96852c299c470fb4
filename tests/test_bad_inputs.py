"""Issue #14, "nothing lost, nothing silent": every case through the command line.

Each case checks the exit code, that an error is exactly one line on stderr
with no traceback, that no stray file is left in the output folder, and that
the inputs' sha256 checksums are unchanged.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from microdenoise import errors, pipeline, registry
from microdenoise.cli import main
from microdenoise.config import NON_NEGATIVE
from microdenoise.errors import InputError
from microdenoise.registry import Denoiser

# Looked up lazily, so that this file also runs (and fails) on the code before issue #14.
NoticeWarning = getattr(errors, "NoticeWarning", UserWarning)

SRC = str(Path(registry.__file__).resolve().parents[1])  # the code under test


def _noisy(shape: tuple[int, ...], scale: float, dtype: type, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    base = (np.sin(xx / 7.0) + np.cos(yy / 5.0) + 2) / 4
    return np.clip(base * scale + rng.normal(0, scale / 10, shape), 0, None).astype(dtype)


def _sums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _all(folder: Path) -> list[str]:
    """Every entry, hidden ones too (partial files are hidden)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str], inputs: Path) -> None:
        self.capsys, self.inputs = capsys, inputs

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        before = _sums(self.inputs)
        self.capsys.readouterr()
        code = main([str(a) for a in argv])
        out, err = self.capsys.readouterr()
        assert "Traceback" not in err
        assert _sums(self.inputs) == before  # inputs untouched, whatever happened
        return code, out, err


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], inputs: Path) -> Run:
    return Run(capsys, inputs)


def _one_error_line(err: str, text: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("microdenoise: error: ") and text in lines[0], lines


# 1. --dtype: only float32 and same unless --allow-clipping; clipping is counted


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16"])
def test_lossy_dtype_needs_allow_clipping(run: Run, inputs: Path, tmp_path: Path,
                                          dtype: str) -> None:
    tifffile.imwrite(inputs / "x.tif", _noisy((48, 48), 1000, np.uint16))
    out = tmp_path / "out"
    code, _, err = run("denoise", inputs / "x.tif", "-o", out, "--method", "median",
                       "--dtype", dtype)
    assert code == 2
    _one_error_line(err, f"--dtype {dtype} can clip")
    assert _all(out) == []


def test_allow_clipping_reports_the_clipped_pixels(run: Run, inputs: Path,
                                                   tmp_path: Path) -> None:
    tifffile.imwrite(inputs / "x.tif", _noisy((48, 48), 1000, np.uint16))
    out = tmp_path / "out"
    code, stdout, err = run("denoise", inputs / "x.tif", "-o", out, "--method", "median",
                            "--dtype", "uint8", "--allow-clipping")
    assert code == 0 and stdout.strip() == str(out / "x.tif")
    result = tifffile.imread(out / "x.tif")
    found = re.search(r"x\.tif: (\d+) of 2304 pixels \(\d+\.\d%\) clipped to the uint8 "
                      r"range 0\.\.255", err)
    assert found, err
    assert 0 < int(found[1]) <= np.count_nonzero(result == 255)  # 255 itself is no clip


class _Double(Denoiser):
    """Overshoots: twice the normalized input (a stand-in for a method that rings)."""

    key = "double"

    def __init__(self) -> None:
        super().__init__(object())

    def denoise(self, image: np.ndarray) -> np.ndarray:
        return image * 2


@pytest.mark.parametrize("tile", [None, 32])
def test_dtype_same_says_how_many_pixels_it_clipped(tmp_path: Path, tile: int | None) -> None:
    """In memory and streamed (the core counts what an integer sink clips)."""
    src = tmp_path / "x.tif"
    image = _noisy((48, 48), 200, np.uint8)
    tifffile.imwrite(src, image)
    with pytest.warns(NoticeWarning, match=r"x\.tif: \d+ of 2304 pixels .* clipped to the "
                                           r"uint8 range 0\.\.255"):
        pipeline.denoise_file(src, tmp_path / "y.tif", _Double(), dtype="same", tile=tile)


# 2. An unwritable output folder: exit 2 before any work


def test_unwritable_output_folder_fails_before_any_work(run: Run, inputs: Path,
                                                        monkeypatch) -> None:
    tifffile.imwrite(inputs / "x.tif", _noisy((48, 48), 1000, np.uint16))
    ran: list[int] = []
    monkeypatch.setattr("microdenoise.core.run", lambda *a, **k: ran.append(1))
    code, _, err = run("denoise", inputs / "x.tif", "-o", "/proc", "--method", "median")
    assert code == 2 and not ran
    _one_error_line(err, "cannot write to the output folder '/proc'")


# 3. Which method, preset and scaling: stderr, a line per batch and per change


def test_denoise_says_method_preset_and_scaling(run: Run, inputs: Path, tmp_path: Path) -> None:
    for k in range(2):
        iio.imwrite(inputs / f"a{k}.png", _noisy((48, 48), 200, np.uint8, seed=k))
    tifffile.imwrite(inputs / "b.tif", _noisy((48, 48), 1000, np.uint16))
    code, stdout, err = run("denoise", inputs, "-o", tmp_path / "out", "--method", "FM2S",
                            "--preset", "confocal", "--param", "fast_steps=3",
                            "--param", "fast_crop=32")
    assert code == 0
    assert stdout.splitlines() == [str(tmp_path / "out" / n) for n in
                                   ("a0.tif", "a1.tif", "b.tif")]
    said = [line for line in err.splitlines() if "intensities scaled" in line]
    assert said == ["microdenoise: fm2s (preset confocal), intensities scaled by the 8-bit "
                    "range 0..255",
                    "microdenoise: fm2s (preset confocal), intensities scaled by the image's "
                    "min..max"]
    # What each fit chose: the 8-bit presets as given, the uint16 file's own noise fit.
    fits = [line for line in err.splitlines() if "noise constants" in line]
    assert "as given" in fits[0] and "Poisson-Gaussian fit" in fits[-1]


# 4. Progress inside a file; files reported as they finish


def test_progress_without_a_terminal_is_timestamped_lines(run: Run, inputs: Path,
                                                          tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("microdenoise.cli_denoise.PROGRESS_DELAY_S", 0.0)
    monkeypatch.setattr("microdenoise.cli_denoise.PROGRESS_EVERY_S", 0.0)
    tifffile.imwrite(inputs / "s.tif", _noisy((3, 64, 64), 1000, np.uint16), imagej=True,
                     metadata={"axes": "TYX"})
    code, _, err = run("denoise", inputs / "s.tif", "-o", tmp_path / "out", "--method",
                       "median", "--tile", "40")
    assert code == 0
    assert re.search(r"^\d\d:\d\d:\d\d .*s\.tif: 1\.5 of 3 planes done", err, re.M), err
    assert re.search(r"^\d\d:\d\d:\d\d .*s\.tif: 3\.0 of 3 planes done", err, re.M), err


def test_each_file_is_reported_as_it_finishes(run: Run, inputs: Path, tmp_path: Path,
                                              monkeypatch, capsys) -> None:
    for k in range(2):
        tifffile.imwrite(inputs / f"f{k}.tif", _noisy((32, 32), 1000, np.uint16, seed=k))
    seen: list[str] = []
    real = pipeline.denoise_file

    def spy(path, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.append(capsys.readouterr().out)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "denoise_file", spy)
    assert main(["denoise", str(inputs), "-o", str(tmp_path / "out"), "--method",
                 "median"]) == 0
    assert str(tmp_path / "out" / "f0.tif") in seen[1]  # printed before f1 started


# 5. A rerun keeps what exists and exits 0; Dask reports the same way


def test_rerun_keeps_existing_outputs_and_exits_0(run: Run, inputs: Path,
                                                  tmp_path: Path) -> None:
    for k in range(2):
        tifffile.imwrite(inputs / f"f{k}.tif", _noisy((32, 32), 1000, np.uint16, seed=k))
    out = tmp_path / "out"
    assert run("denoise", inputs, "-o", out, "--method", "median")[0] == 0
    (out / "f1.tif").unlink()  # as if interrupted after f0
    code, stdout, err = run("denoise", inputs, "-o", out, "--method", "median")
    assert code == 0 and stdout.strip() == str(out / "f1.tif")
    assert f"kept existing {out / 'f0.tif'}" in err and "failed" not in err
    assert _all(out) == ["f0.tif", "f1.tif"]


def test_dask_reports_like_the_local_path_and_does_not_retry_bad_files(
        inputs: Path, tmp_path: Path, capfd) -> None:
    tifffile.imwrite(inputs / "f0.tif", _noisy((32, 32), 1000, np.uint16))
    tifffile.imwrite(inputs / "f1.tif", _noisy((32, 32), 1000, np.uint16, seed=1))
    (inputs / "bad.tif").write_bytes(b"II*\x00garbage" * 10)
    out = tmp_path / "out"
    out.mkdir()
    tifffile.imwrite(out / "f0.tif", np.zeros((32, 32), np.float32))
    code = main(["denoise", str(inputs), "-o", str(out), "--method", "median",
                 "--scheduler", "local:1"])
    stdout, err = capfd.readouterr()
    assert code == 1
    assert stdout.strip() == str(out / "f1.tif")
    assert f"kept existing {out / 'f0.tif'}" in err
    assert len([line for line in err.splitlines() if "bad.tif" in line]) == 1
    assert "Traceback" not in err and "Compute Failed" not in err
    assert "1 of 3 file(s) failed" in err
    assert _all(out) == ["f0.tif", "f1.tif"]


# 6. SIGTERM: a clean exit 143, no partial output; stale partials removed next time


def test_sigterm_exits_143_and_leaves_no_partial_file(inputs: Path, tmp_path: Path) -> None:
    tifffile.imwrite(inputs / "big.tif", _noisy((256, 256), 1000, np.uint16))
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "microdenoise", "denoise", str(inputs / "big.tif"), "-o",
         str(out), "--tile", "128", "--method", "fm2s", "--param", "fast_steps=100000",
         "--param", "fast_crop=32"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while not (out.is_dir() and any(p.name.endswith(".part") for p in out.iterdir())):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)  # the work has started: a partial output exists
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == ("microdenoise: terminated (SIGTERM); none of 1 "
                                            "file(s) finished")
    assert stdout == "" and _all(out) == []


def test_stale_partial_files_are_removed_conservatively(run: Run, inputs: Path,
                                                       tmp_path: Path) -> None:
    tifffile.imwrite(inputs / "x.tif", _noisy((32, 32), 1000, np.uint16))
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:32]
    stale = [f".x.tif.{host}-{dead.pid}-0123abcd.part", ".y.tif.deadbeef.part"]
    kept = [f".z.tif.{host}-{os.getpid()}-0123abcd.part",  # a live writer
            ".notes.part", ".y.tif.deadbeef.part.bak", "y.tif.deadbeef.part"]
    for name in stale + kept:
        (out / name).write_bytes(b"\0" * 1024)
        os.utime(out / name, (time.time() - 3600, time.time() - 3600))
    code, _, err = run("denoise", inputs, "-o", out, "--method", "median")
    assert code == 0
    for name in stale:
        assert f"warning: removed {out / name} (0.0 MB), a partial output left by an " \
               "interrupted run" in err
    assert _all(out) == sorted([*kept, "x.tif"])


# 7. Folders: unsupported files and subfolders are named, --recursive searches them


def test_folder_names_what_it_skips(run: Run, inputs: Path, tmp_path: Path) -> None:
    tifffile.imwrite(inputs / "x.tif", _noisy((32, 32), 1000, np.uint16))
    (inputs / "notes.txt").write_text("hello")
    (inputs / "sub").mkdir()
    tifffile.imwrite(inputs / "sub" / "y.tif", _noisy((32, 32), 1000, np.uint16))
    out = tmp_path / "out"
    code, stdout, err = run("denoise", inputs, "-o", out, "--method", "median")
    assert code == 0 and stdout.strip() == str(out / "x.tif")
    assert f"folder {inputs}: skipped 1 file(s) of unsupported type (notes.txt)" in err
    assert f"folder {inputs}: 1 subfolder(s) not searched (sub); add --recursive" in err
    code, stdout, err = run("denoise", inputs, "-o", tmp_path / "out2", "--method", "median",
                            "--recursive")
    assert code == 0 and sorted(stdout.split()) == [str(tmp_path / "out2" / n)
                                                    for n in ("x.tif", "y.tif")]


def test_folder_of_subfolders_says_so(run: Run, inputs: Path, tmp_path: Path) -> None:
    (inputs / "day1").mkdir()
    tifffile.imwrite(inputs / "day1" / "y.tif", _noisy((32, 32), 1000, np.uint16))
    code, _, err = run("denoise", inputs, "-o", tmp_path / "out", "--method", "median")
    assert code == 2
    _one_error_line(err, "holds only subfolders (1: day1), no images; add --recursive")
    assert _all(tmp_path / "out") == []


# 8. Constant planes pass through with a warning; --strict refuses them


def test_constant_plane_is_passed_through(run: Run, inputs: Path, tmp_path: Path) -> None:
    stack = _noisy((3, 32, 32), 1000, np.uint16)
    stack[1] = 0
    tifffile.imwrite(inputs / "s.tif", stack, imagej=True, metadata={"axes": "TYX"})
    out = tmp_path / "out"
    code, _, err = run("denoise", inputs / "s.tif", "-o", out, "--method", "median")
    assert code == 0
    assert f"microdenoise: warning: plane T=1 of {inputs / 's.tif'} is constant (value 0): " \
           "passed through unchanged" in err
    assert np.all(tifffile.imread(out / "s.tif")[1] == 0)
    code, _, err = run("denoise", inputs / "s.tif", "-o", tmp_path / "strict", "--method",
                       "median", "--strict")
    assert code == 1 and "plane T=1" in err and "--strict" in err
    assert _all(tmp_path / "strict") == []


# 9. Smaller ones


def _numeric_fields() -> list[tuple[str, str, bool]]:
    import dataclasses
    import typing

    cases = []
    for name in registry.list_methods():
        config = registry.method_class(name).Config
        hints = typing.get_type_hints(config)
        for f in dataclasses.fields(config):
            if re.search(r"\b(int|float)\b", str(hints[f.name])):
                cases.append((name, f.name, "tuple" in str(hints[f.name])))
    return cases


# Fields where 0 is legitimate (negative values are still refused):
ZERO_OK = NON_NEGATIVE


@pytest.mark.parametrize("method, field, is_tuple", _numeric_fields())
def test_every_numeric_parameter_has_a_range(method: str, field: str, is_tuple: bool) -> None:
    values = [-5] if field in ZERO_OK else [-5, 0]
    for value in values:
        given = (value, 50.0) if is_tuple else value
        with pytest.raises(InputError, match=rf"\b{field}\b"):
            registry.create(method, **{field: given})


def test_negative_fast_steps_on_the_command_line(run: Run, inputs: Path,
                                                 tmp_path: Path) -> None:
    tifffile.imwrite(inputs / "x.tif", _noisy((32, 32), 1000, np.uint16))
    code, _, err = run("denoise", inputs, "-o", tmp_path / "out", "--method", "fm2s",
                       "--param", "fast_steps=-5")
    assert code == 2
    _one_error_line(err, "parameter fast_steps of method 'fm2s' must be > 0, got -5")
    assert _all(tmp_path / "out") == []


def test_model_folder_says_give_the_file(run: Run, inputs: Path, tmp_path: Path) -> None:
    tifffile.imwrite(inputs / "x.tif", _noisy((32, 32), 1000, np.uint16))
    code, _, err = run("denoise", inputs, "-o", tmp_path / "out", "--model", tmp_path)
    assert code == 2
    _one_error_line(err, "is a folder; give the model file")


def test_rgba_is_called_rgba(run: Run, inputs: Path, tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 255, (32, 32, 4), dtype=np.uint8)
    iio.imwrite(inputs / "c.png", rgba)
    code, _, err = run("denoise", inputs / "c.png", "-o", tmp_path / "out", "--method",
                       "median")
    assert code == 1 and "is an RGBA image" in err


def test_cli_messages_say_dash_dash_axes(run: Run, inputs: Path, tmp_path: Path) -> None:
    np.save(inputs / "d.npy", _noisy((2, 2, 32, 32), 1000, np.float32))
    code, _, err = run("denoise", inputs / "d.npy", "-o", tmp_path / "out", "--method",
                       "median")
    assert code == 1 and "--axes (e.g. TZYX)" in err and "axes=" not in err


def test_truncated_tiff_prints_no_tifffile_log_line(run: Run, inputs: Path, tmp_path: Path,
                                                    caplog) -> None:
    tifffile.imwrite(tmp_path / "a.tif", _noisy((3, 64, 64), 1000, np.uint16), imagej=True,
                     metadata={"axes": "TYX"})
    data = (tmp_path / "a.tif").read_bytes()
    (inputs / "t.tif").write_bytes(data[: len(data) // 2])
    _, _, err = run("denoise", inputs / "t.tif", "-o", tmp_path / "out", "--method",
                    "median")
    assert "tifffile" not in err and "TiffPages" not in err
    assert not [r for r in caplog.records if r.name.startswith("tifffile")]


def test_method_and_model_together(run: Run, inputs: Path, tmp_path: Path) -> None:
    tifffile.imwrite(inputs / "x.tif", _noisy((32, 32), 1000, np.uint16))
    model = tmp_path / "median.pt"
    registry.save(registry.create("median"), model)
    code, _, err = run("denoise", inputs, "-o", tmp_path / "out", "--model", model,
                       "--method", "fm2s")
    assert code == 2
    _one_error_line(err, "give --method or --model, not both")
    assert _all(tmp_path / "out") == []
    code, _, _ = run("denoise", inputs, "-o", tmp_path / "out", "--model", model,
                     "--method", "MEDIAN")
    assert code == 0


def test_repeated_param_is_an_error(run: Run, inputs: Path, tmp_path: Path) -> None:
    tifffile.imwrite(inputs / "x.tif", _noisy((32, 32), 1000, np.uint16))
    code, _, err = run("denoise", inputs, "-o", tmp_path / "out", "--method", "median",
                       "--param", "size=3", "--param", "size=5")
    assert code == 2
    _one_error_line(err, "--param size is given twice")


def test_method_names_are_case_insensitive(run: Run, inputs: Path, tmp_path: Path) -> None:
    tifffile.imwrite(inputs / "x.tif", _noisy((32, 32), 1000, np.uint16))
    code, _, err = run("denoise", inputs, "-o", tmp_path / "out", "--method", "Median")
    assert code == 0 and "microdenoise: median, intensities" in err
    assert registry.create("N2V").key == "n2v"


def test_list_aligns_columns(run: Run) -> None:
    code, stdout, _ = run("list")
    assert code == 0
    heads = [line for line in stdout.splitlines() if not line.startswith(" ")]
    assert len(heads) == len(registry.list_methods())
    assert len({line.index("needs:") for line in heads}) == 1
    assert len({line.index(line.split()[1]) for line in heads}) == 1


# Issue #27: a model package is code; what a package or a Zarr declares is bounded


@pytest.fixture(scope="module")
def our_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package microdenoise exported (a tiny N2V), to edit as an attacker would."""
    pytest.importorskip("bioimageio.core")
    from .test_bmz import train

    return md_export(train("n2v"), tmp_path_factory.mktemp("pkg") / "n2v.zip")


def md_export(model: Denoiser, path: Path) -> Path:
    from microdenoise.bmz import export_bmz

    return export_bmz(model, path, test_size=64)


def _package_case(run: Run, inputs: Path, tmp_path: Path, package: Path, text: str,
                  *extra: str) -> None:
    np.save(inputs / "x.npy", _noisy((48, 48), 1000, np.float32))
    before = {p.name for p in tmp_path.iterdir()} - {"out"}
    code, _, err = run("denoise", inputs, "-o", tmp_path / "out", "--model", package, *extra)
    assert code == 2
    _one_error_line(err, text)
    assert _all(tmp_path / "out") == []
    assert {p.name for p in tmp_path.iterdir()} - {"out"} == before  # nothing written


@pytest.mark.parametrize("payload", ["shell", "source", "torchscript"])
def test_package_code_never_runs_without_trust(run: Run, inputs: Path, tmp_path: Path,
                                               our_package: Path, payload: str) -> None:
    from . import packages

    marker = tmp_path / "MARKER"
    # The TorchScript payload targets an input image: trust would let it overwrite it.
    target = inputs / "x.npy" if payload == "torchscript" else marker
    edit = {"shell": packages.shell_architecture, "source": packages.source_architecture,
            "torchscript": packages.torchscript_writer}[payload](target)
    evil = packages.edited(our_package, tmp_path / "evil.zip", edit)
    _package_case(run, inputs, tmp_path, evil, "--trust-model")
    assert not marker.exists()


def test_package_bounds_on_the_command_line(run: Run, inputs: Path, tmp_path: Path,
                                            our_package: Path) -> None:
    from . import packages

    lying = packages.lying_member(our_package, tmp_path / "big.zip", "weights.pt", 3 << 30)
    _package_case(run, inputs, tmp_path, lying, "weights.pt declares 3.0 GiB")
    laughs = packages.with_laughs(our_package, tmp_path / "lol.zip")
    _package_case(run, inputs, tmp_path, laughs, "billion laughs", "--trust-model")


def test_trust_model_needs_a_model(run: Run, inputs: Path, tmp_path: Path) -> None:
    np.save(inputs / "x.npy", _noisy((48, 48), 1000, np.float32))
    code, _, err = run("denoise", inputs, "-o", tmp_path / "out", "--trust-model")
    assert code == 2
    _one_error_line(err, "--trust-model lets a --model package run its code")


def _huge_zarr(path: Path) -> Path:
    """A 1 KB OME-Zarr whose metadata declare 200000 x 200000 float32 (149 GiB)."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", shape=(200000, 200000), dtype="float32", chunks=(1024, 1024))
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [
        {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0]}]}]}]
    return path


@pytest.mark.parametrize("stream", [False, True])
def test_zarr_declaring_more_than_it_holds(run: Run, inputs: Path, tmp_path: Path,
                                          stream: bool) -> None:
    _huge_zarr(inputs / "huge.ome.zarr")
    code, _, err = run("denoise", inputs / "huge.ome.zarr", "-o", tmp_path / "out",
                       "--method", "median", *(["--tile", "256"] if stream else []))
    assert code == 1  # the batch reports the file that failed
    assert "declares 200000x200000 float32 pixels (149.0 GiB)" in err
    assert "Traceback" not in err
    assert _all(tmp_path / "out") == []


def test_param_size_1e9_is_refused_before_any_work(run: Run, inputs: Path,
                                                   tmp_path: Path) -> None:
    tifffile.imwrite(inputs / "x.tif", _noisy((32, 32), 1000, np.uint16))
    for param, text in (("size=1e9", "parameter size of method 'median' must be at most 255"),
                        ("size=inf", "parameter size must be a finite number"),
                        ("size=nan", "parameter size must be a finite number")):
        code, _, err = run("denoise", inputs, "-o", tmp_path / "out", "--method", "median",
                           "--param", param)
        assert code == 2
        _one_error_line(err, text)
        assert _all(tmp_path / "out") == []


def test_every_declared_maximum_is_enforced() -> None:
    """Each size a method bounds (Config.MAXIMA) refuses more than its maximum."""
    import dataclasses

    checked = 0
    for name in registry.list_methods():
        cls = registry.method_class(name)
        fields = {f.name: f for f in dataclasses.fields(cls.Config)}
        for field, most in getattr(cls.Config, "MAXIMA", {}).items():
            if field not in fields:
                continue
            over = int(most) * 10 if isinstance(fields[field].default, int) else most * 10
            with pytest.raises(InputError, match=rf"{field} of method '{name}' must be at most"):
                registry.create(name, **{field: over})
            checked += 1
    assert checked >= 30
