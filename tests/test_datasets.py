"""Tests of microdenoise.datasets: folder pairs (synthetic) and the shared benchmark sets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from microdenoise import datasets
from microdenoise.datasets import (
    Pair,
    fmd_test_mix,
    folder_pairs,
    load_dataset,
    srdtrans_subset,
    w2s_8bit,
)
from microdenoise.errors import InputError


def _make_pairs(root: Path, names: list[str], *, noisy: str = "noisy", clean: str = "gt",
                shape: tuple[int, int] = (6, 7)) -> None:
    rng = np.random.default_rng(0)
    (root / noisy).mkdir(parents=True)
    (root / clean).mkdir(parents=True)
    for name in names:
        image = rng.integers(0, 255, shape, dtype=np.uint8)
        iio.imwrite(root / noisy / f"{name}.png", image)
        np.save(root / clean / f"{name}.npy", image.astype(np.float32))  # formats may differ


# --- synthetic folders ------------------------------------------------------------------


def test_folder_pairs_match_by_stem(tmp_path: Path) -> None:
    _make_pairs(tmp_path / "set", ["b_1", "a_1", "a_2"])
    pairs = folder_pairs(tmp_path / "set" / "noisy", tmp_path / "set" / "gt")
    assert [p.name for p in pairs] == ["a_1", "a_2", "b_1"]
    assert all(isinstance(p, Pair) and p.group == "set" for p in pairs)
    np.testing.assert_array_equal(pairs[0].noisy, pairs[0].clean)
    assert pairs[0].noisy.dtype == np.uint8 and pairs[0].clean.dtype == np.float32
    chosen = folder_pairs(tmp_path / "set" / "noisy", tmp_path / "set" / "gt", names="*_1")
    assert [p.name for p in chosen] == ["a_1", "b_1"]
    with pytest.raises(InputError, match="no image .* matches 'zzz'"):
        folder_pairs(tmp_path / "set" / "noisy", tmp_path / "set" / "gt", names=["zzz"])


def test_folder_pairs_errors(tmp_path: Path) -> None:
    _make_pairs(tmp_path, ["a", "b", "c"])
    (tmp_path / "gt" / "b.npy").unlink()
    alone = r"^1 image\(s\) in .*noisy have no counterpart in .*gt \(b\)"
    with pytest.raises(InputError, match=alone):
        folder_pairs(tmp_path / "noisy", tmp_path / "gt")
    np.save(tmp_path / "gt" / "b.npy", np.zeros((5, 5)))
    with pytest.raises(InputError, match=r"pair 'b'.*\(6, 7\).*\(5, 5\)"):
        folder_pairs(tmp_path / "noisy", tmp_path / "gt")
    with pytest.raises(InputError, match="not a folder"):
        folder_pairs(tmp_path / "missing", tmp_path / "gt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="contains no images"):
        folder_pairs(tmp_path / "empty", tmp_path / "gt")


def test_load_dataset_from_folder(tmp_path: Path) -> None:
    _make_pairs(tmp_path / "mine", ["x", "y"], noisy="raw", clean="clean")
    pairs = load_dataset(str(tmp_path / "mine"))
    assert [(p.name, p.group) for p in pairs] == [("x", "mine"), ("y", "mine")]
    (tmp_path / "bare").mkdir()
    with pytest.raises(InputError, match="no noisy/ .* subfolders"):
        load_dataset(tmp_path / "bare")
    with pytest.raises(InputError, match="unknown dataset 'fmd'; use one of fmd_test_mix"):
        load_dataset("fmd")


def test_data_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_pairs(tmp_path / "srdtrans_subset", ["0", "1"])
    monkeypatch.setenv("MICRODENOISE_DATA", str(tmp_path))
    assert datasets.default_data_root() == tmp_path
    assert [p.group for p in srdtrans_subset()] == ["srdtrans", "srdtrans"]
    with pytest.raises(InputError, match="dataset 'w2s_8bit' not found"):
        w2s_8bit()
    monkeypatch.setenv("MICRODENOISE_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match="MICRODENOISE_DATA=.*--data-root"):
        datasets.default_data_root()
    assert datasets.data_root_or_none() is None


def test_w2s_splits_on_synthetic_names(tmp_path: Path) -> None:
    _make_pairs(tmp_path / "w2s_8bit", ["001_0", "010_2", "011_0", "081_1", "100_0"])
    assert [p.name for p in w2s_8bit(tmp_path, split="train")] == ["001_0", "010_2"]
    assert [p.name for p in w2s_8bit(tmp_path)] == ["081_1", "100_0"]
    assert len(w2s_8bit(tmp_path, split="all")) == 5
    with pytest.raises(InputError, match="unknown W2S split"):
        w2s_8bit(tmp_path, split="val")  # type: ignore[arg-type]


# --- the shared benchmark data ----------------------------------------------------------


def test_fmd_test_mix(data_root: Path) -> None:
    pairs = fmd_test_mix(data_root)
    assert len(pairs) == 48
    assert Counter(p.group for p in pairs) == {"Confocal": 20, "TwoPhoton": 16, "WideField": 12}
    assert all(p.noisy.shape == p.clean.shape == (512, 512) for p in pairs)
    assert all(p.noisy.dtype == p.clean.dtype == np.uint8 for p in pairs)
    third = fmd_test_mix(data_root, names=["*_3"])
    assert len(third) == 12 and all(p.name.endswith("_3") for p in third)


def test_w2s_8bit(data_root: Path) -> None:
    test = w2s_8bit(data_root)
    assert len(test) == 60
    assert {p.name[:3] for p in test} == {f"{i:03d}" for i in range(81, 101)}
    assert {p.name[-1] for p in test} == {"0", "1", "2"}
    assert all(p.group == "w2s" and p.noisy.dtype == np.uint8 for p in test)
    assert all(p.noisy.shape == p.clean.shape == (512, 512) for p in test)
    assert len(w2s_8bit(data_root, split="train")) == 30
    assert [p.name for p in w2s_8bit(data_root, names=["081_*"])] == ["081_0", "081_1", "081_2"]
    assert len(load_dataset("w2s_8bit", data_root, names=["09*"])) == 30


def test_srdtrans_subset(data_root: Path) -> None:
    pairs = load_dataset("srdtrans_subset", data_root)
    assert len(pairs) == 10
    assert all(p.noisy.shape == p.clean.shape == (490, 490) for p in pairs)
    assert all(p.noisy.dtype == np.uint8 and p.group == "srdtrans" for p in pairs)
