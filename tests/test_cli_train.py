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


def test_an_unwritable_model_folder_is_refused_before_any_work(noisy_dir: Path,
                                                               tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the model's folder should be")
    out = blocker / "m.pt"
    assert main(["train", "--method", "n2v", "--input", str(noisy_dir), "--out", str(out),
                 *TINY]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the model's folder" in err and "training" not in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_sigterm_during_training_keeps_the_model_so_far(noisy_dir: Path, tmp_path: Path) -> None:
    """A real process: SLURM's SIGTERM after the first epoch leaves a usable model."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from microdenoise import load

    out = tmp_path / "m.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    args = ["train", "--method", "n2v", "--input", str(noisy_dir), "--out", str(out),
            *TINY[2:], "--param", "epochs=100000", "--device", "cpu"]
    proc = subprocess.Popen([sys.executable, "-m", "microdenoise", *args], env=env,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if not line or "epoch 1/" in line:  # the first epoch is always reported
            break
    proc.send_signal(signal.SIGTERM)
    err = "".join(lines) + proc.stderr.read()
    assert proc.wait(timeout=60) == 143, err
    saved = tmp_path / "m.interrupted.pt"
    assert f"is saved in {saved}" in err and "Traceback" not in err
    # N2V keeps its last weights by default (keep="last"): not "the best epoch so far".
    assert "(the last finished epoch)" in err, err
    assert not out.exists() and saved.is_file()
    model = load(saved)
    assert model.epoch >= 1 and model.trained
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.interrupted.pt", "noisy"]


@pytest.mark.parametrize(("keep", "which"), [("last", "the last finished epoch"),
                                             ("best", "the best epoch so far")])
def test_an_interrupted_run_says_which_weights_it_saved(tmp_path: Path, capsys,
                                                        keep: str, which: str) -> None:
    """Issue #27: with a validation split N2V tracks its best score, but keep="last"
    keeps the last weights, and the message must say so."""
    from microdenoise import train

    def stop(epoch: int, last: int, row: dict) -> bool:
        if epoch == 2:
            raise KeyboardInterrupt  # Ctrl-C after the second epoch
        return False

    noisy = [np.random.default_rng(k).normal(100, 10, (96, 96)).astype(np.float32)
             for k in range(4)]  # four images: validation holds one back
    with pytest.raises(KeyboardInterrupt):
        train(noisy, method="n2v", out=tmp_path / "m.pt", on_epoch=stop,
              params={"epochs": 5, "steps_per_epoch": 2, "batch_size": 2, "patch_size": 32,
                      "filters": 4, "keep": keep, "val_fraction": 0.25})
    err = capsys.readouterr().err
    assert f"({which})" in err, err
    assert (tmp_path / "m.interrupted.pt").is_file()
