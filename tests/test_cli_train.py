"""`microdenoise train` then `microdenoise denoise --model`, end to end on tiny files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from microdenoise.cli import main

from .conftest import blobs, poisson_gaussian

TINY = ["--param", "epochs=1", "--param", "steps_per_epoch=3", "--param", "batch_size=2",
        "--param", "patch_size=32", "--param", "filters=4", "--param", "masked_percentage=5"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def noisy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "noisy"
    folder.mkdir()
    img = poisson_gaussian(blobs((48, 56), seed=1), seed=2)
    tifffile.imwrite(folder / "a.tif", (img * 1000).clip(0, None).astype(np.uint16))
    stack = np.stack([poisson_gaussian(blobs((40, 40), seed=s), seed=s) for s in (3, 4)])
    tifffile.imwrite(folder / "b.tif", stack, imagej=True, metadata={"axes": "TYX"})
    return folder


@pytest.mark.parametrize("method", ["n2v", "deconoising"])
def test_train_then_denoise_with_the_model(method: str, noisy_dir: Path, tmp_path: Path,
                                           capsys) -> None:
    model = tmp_path / f"{method}.pt"
    args = ["train", "--method", method, "--input", str(noisy_dir), "--out", str(model),
            *TINY, "--seed", "3", "--device", "cpu"]
    assert main(args) == 0
    assert model.is_file() and str(model) in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["denoise", "--model", str(model), str(noisy_dir / "a.tif"),
                 str(noisy_dir / "b.tif"), "-o", str(out)]) == 0
    a = tifffile.imread(out / "a.tif")
    b = tifffile.imread(out / "b.tif")
    assert a.shape == (48, 56) and a.dtype == np.float32 and np.isfinite(a).all()
    assert b.shape == (2, 40, 40)


def test_train_refuses_bad_requests(noisy_dir: Path, tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.pt"
    base = ["train", "--input", str(noisy_dir), "--out", str(model)]
    assert main([*base, "--method", "fm2s"]) == 2
    assert "fitted on each image" in capsys.readouterr().err
    assert main([*base, "--param", "dims=3"]) == 2
    assert "no Z (or T) axis" in capsys.readouterr().err  # YX files, 3D network
    model.write_bytes(b"")
    assert main([*base, *TINY]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*base, *TINY, "--overwrite"]) == 0


def test_denoise_with_an_untrained_method_says_train_it_first(noisy_dir: Path,
                                                              tmp_path: Path, capsys) -> None:
    code = main(["denoise", str(noisy_dir / "a.tif"), "-o", str(tmp_path / "o"),
                 "--method", "n2v"])
    assert code == 1
    assert "train it first: microdenoise train --method n2v" in capsys.readouterr().err
