"""`microdenoise train --method care --target` then `denoise --model`, on tiny files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from microdenoise import io
from microdenoise.cli import main

from .conftest import blobs, poisson_gaussian

TINY = ["--param", "epochs=1", "--param", "steps_per_epoch=3", "--param", "batch_size=2",
        "--param", "patch_size=32", "--param", "filters=4", "--param", "kernel_size=3"]
# The 2x models' input patch is half the target's: patch_size=16 instead of TINY's 32.
TINY_2X = [*TINY[:TINY.index("patch_size=32") - 1], *TINY[TINY.index("patch_size=32") + 1:],
           "--param", "patch_size=16"]


def _write_pairs(root: Path, n: int, *, scale: int = 1) -> tuple[Path, Path]:
    noisy_dir, clean_dir = root / "noisy", root / "clean"
    noisy_dir.mkdir()
    clean_dir.mkdir()
    for s in range(n):
        clean = blobs((48 * scale, 40 * scale), seed=s)
        low = clean.reshape(48, scale, 40, scale).mean(axis=(1, 3))
        noisy = poisson_gaussian(low, seed=10 + s)
        io.write_image(noisy_dir / f"img{s}.tif", (noisy * 1000).clip(0, None)
                       .astype(np.uint16), pixel_size=(0.2, 0.2), unit="µm")
        io.write_image(clean_dir / f"img{s}.tif", (clean * 1000).astype(np.uint16))
    return noisy_dir, clean_dir


def test_train_with_target_then_denoise(tmp_path: Path, capsys) -> None:
    noisy_dir, clean_dir = _write_pairs(tmp_path, 3)
    model = tmp_path / "care.pt"
    assert main(["train", "--method", "care", "--input", str(noisy_dir), "--target",
                 str(clean_dir), "--out", str(model), "--n-train", "2", *TINY,
                 "--seed", "3", "--device", "cpu"]) == 0
    assert model.is_file() and str(model) in capsys.readouterr().out
    out = tmp_path / "out"
    assert main(["denoise", "--model", str(model), str(noisy_dir), "-o", str(out)]) == 0
    result = io.read_image(out / "img0.tif")
    assert result.data.shape == (48, 40) and result.data.dtype == np.float32
    assert np.isfinite(result.data).all() and result.pixel_size == pytest.approx((0.2, 0.2))


def test_train_2x_writes_twice_the_size_at_half_the_pixel_size(tmp_path: Path) -> None:
    noisy_dir, clean_dir = _write_pairs(tmp_path, 2, scale=2)
    model = tmp_path / "sr.pt"
    assert main(["train", "--method", "care", "--input", str(noisy_dir), "--target",
                 str(clean_dir), "--out", str(model), *TINY_2X, "--param", "upscale=2",
                 "--device", "cpu"]) == 0
    out = tmp_path / "out"
    assert main(["denoise", "--model", str(model), str(noisy_dir / "img1.tif"),
                 "-o", str(out)]) == 0
    result = io.read_image(out / "img1.tif")
    assert result.data.shape == (96, 80)
    assert result.pixel_size == pytest.approx((0.1, 0.1)) and result.unit == "µm"
    assert main(["denoise", "--model", str(model), str(noisy_dir), "-o", str(out),
                 "--max-memory", "1GB", "--overwrite"]) == 2


def test_train_on_npy_stacks(tmp_path: Path) -> None:
    clean = np.stack([blobs((40, 40), seed=s) for s in range(3)])
    np.save(tmp_path / "noisy.npy", np.stack([poisson_gaussian(c, seed=s)
                                              for s, c in enumerate(clean)]))
    np.save(tmp_path / "clean.npy", clean)
    model = tmp_path / "m.pt"
    assert main(["train", "--method", "care", "--input", str(tmp_path / "noisy.npy"),
                 "--target", str(tmp_path / "clean.npy"), "--out", str(model), *TINY,
                 "--n-train", "3"]) == 0


def test_bad_pairs_and_requests_are_refused(tmp_path: Path, capsys) -> None:
    noisy_dir, clean_dir = _write_pairs(tmp_path, 2)
    model = tmp_path / "m.pt"
    base = ["train", "--method", "care", "--input", str(noisy_dir), "--out", str(model), *TINY]
    assert main(base) == 2
    assert "add --target CLEAN_DIR" in capsys.readouterr().err
    assert main([*base, "--target", str(clean_dir), "--n-train", "3"]) == 2
    assert "n_train=3 but only 2 pair(s)" in capsys.readouterr().err
    (clean_dir / "img1.tif").rename(clean_dir / "other.tif")
    assert main([*base, "--target", str(clean_dir)]) == 2
    assert "no counterpart" in capsys.readouterr().err
    (clean_dir / "other.tif").unlink()
    tifffile.imwrite(clean_dir / "img1.tif", np.zeros((40, 40), np.uint16))
    assert main([*base, "--target", str(clean_dir)]) == 2
    assert "must have the same shape" in capsys.readouterr().err
    assert main([*base, "--target", str(clean_dir), "--param", "upscale=2"]) == 2
    assert "exactly 2x the noisy" in capsys.readouterr().err
    assert main(["train", "--method", "n2v", "--input", str(noisy_dir), "--target",
                 str(clean_dir), "--out", str(model)]) == 2
    assert "trains on noisy images only" in capsys.readouterr().err
    assert not model.exists()


def test_denoise_with_an_untrained_care_says_train_it_first(tmp_path: Path, capsys) -> None:
    noisy_dir, _ = _write_pairs(tmp_path, 1)
    assert main(["denoise", str(noisy_dir), "-o", str(tmp_path / "o"), "--method",
                 "care"]) == 1
    assert "train it first: microdenoise train --method care" in capsys.readouterr().err


def test_evaluate_scores_a_trained_model_as_saved(tmp_path: Path, capsys) -> None:
    from microdenoise import denoise_array, load, metrics

    (tmp_path / "set").mkdir()
    noisy_dir, clean_dir = _write_pairs(tmp_path / "set", 2)
    model = tmp_path / "care.pt"
    assert main(["train", "--method", "care", "--input", str(noisy_dir), "--target",
                 str(clean_dir), "--out", str(model), *TINY, "--device", "cpu"]) == 0
    out = tmp_path / "ev"
    assert main(["evaluate", "--dataset", str(tmp_path / "set"), "--model", f"mine={model}",
                 "--methods", "median", "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    assert "| mine |" in table and "| median |" in table and "| noisy |" in table
    rows = [line.split(",") for line in (out / "scores.csv").read_text().splitlines()]
    scored = {r[1]: float(r[3]) for r in rows if r[0] == "mine"}
    # The row is the saved model applied as is (gt-range PSNR for non-8-bit pairs).
    noisy, clean = tifffile.imread(noisy_dir / "img0.tif"), tifffile.imread(clean_dir / "img0.tif")
    expect = metrics.psnr(denoise_array(noisy, load(model)), clean,
                          data_range=metrics.gt_range(clean))
    assert scored["img0"] == pytest.approx(expect, abs=1e-3)
    capsys.readouterr()
    # Without --methods only the model runs; bad or duplicate models are refused.
    assert main(["evaluate", "--dataset", str(tmp_path / "set"), "--model", str(model),
                 "--out", str(out)]) == 0
    assert "| care |" in capsys.readouterr().out
    assert main(["evaluate", "--dataset", str(tmp_path / "set"), "--model",
                 str(tmp_path / "missing.pt"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", str(tmp_path / "set"), "--model", f"a={model}",
                 "--model", f"a={model}", "--out", str(out)]) == 2
    assert "more than one row is labelled a" in capsys.readouterr().err


def test_evaluate_refuses_a_2x_model(tmp_path: Path, capsys) -> None:
    (tmp_path / "lr").mkdir()
    noisy_dir, clean_dir = _write_pairs(tmp_path / "lr", 1, scale=2)
    model = tmp_path / "sr.pt"
    assert main(["train", "--method", "care", "--input", str(noisy_dir), "--target",
                 str(clean_dir), "--out", str(model), *TINY_2X, "--param", "upscale=2",
                 "--device", "cpu"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--dataset", str(tmp_path / "lr"), "--model", str(model),
                 "--out", str(tmp_path / "ev")]) == 2
    assert "upsamples 2x" in capsys.readouterr().err
