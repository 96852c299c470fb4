"""Registry: creation, parameter coercion, presets, listing, safe save/load."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from microdenoise import InputError, create, list_methods, load, save
from microdenoise.config import parse_params
from microdenoise.registry import describe

ALL = {"median", "gaussian", "box", "box3d", "nlm", "tv", "wavelet", "bilateral", "bm3d", "fm2s"}


def test_all_methods_registered() -> None:
    assert ALL <= set(list_methods())


def test_unknown_method_lists_choices() -> None:
    with pytest.raises(InputError, match="unknown method 'nope'.*fm2s"):
        create("nope")


def test_unknown_parameter_lists_valid_ones() -> None:
    with pytest.raises(InputError, match="unknown parameter.*wrong.*valid"):
        create("fm2s", wrong=1)


def test_strings_are_coerced_to_field_types() -> None:
    m = create("fm2s", **parse_params(["n_chan=3", "schedule=paper", "fast_bf16=true",
                                       "g_map=12.5"]))
    assert (m.config.n_chan, m.config.schedule, m.config.fast_bf16, m.config.g_map) == (
        3, "paper", True, 12.5)


@pytest.mark.parametrize("item, message", [("n_chan=abc", "number"), ("n_chan=1.5", "whole"),
                                           ("schedule=slow", "one of"),
                                           ("n_chan=0", "n_chan of method 'fm2s' must be > 0"),
                                           ("fast_bf16=maybe", "true or false, or must be one of")])
def test_bad_parameter_values_are_clear(item: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        create("fm2s", **parse_params([item]))


def test_bad_param_syntax() -> None:
    with pytest.raises(InputError, match="key=value"):
        parse_params(["novalue"])


def test_presets_and_overrides() -> None:
    m = create("fm2s", preset="widefield", lam_p=10)
    assert (m.config.n_chan, m.config.w_size, m.config.lam_p) == (1, 11, 10.0)
    with pytest.raises(InputError, match="no preset"):
        create("fm2s", preset="sted")


def test_describe_lists_defaults() -> None:
    info = describe("fm2s")
    assert info["family"] == "zero-shot" and info["params"]["schedule"] == "fast"
    assert "confocal" in info["presets"]


def test_save_load_round_trip(tmp_path, clean_noisy) -> None:
    _, noisy = clean_noisy
    m = create("fm2s", fast_steps=10, fast_crop=32).fit(noisy.clip(0, 1))
    path = save(m, tmp_path / "m.pt")
    m2 = load(path)
    assert m2.config == m.config
    np.testing.assert_array_equal(m.denoise(noisy), m2.denoise(noisy))


def test_load_refuses_pickled_code(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "evil.pt"
    with path.open("wb") as fh:
        pickle.dump({"format": "microdenoise-model", "x": Evil()}, fh)
    with pytest.raises(InputError, match="not a microdenoise model"):
        load(path)


def test_load_rejects_other_files(tmp_path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(InputError, match="not a microdenoise model"):
        load(path)
    with pytest.raises(InputError, match="does not exist"):
        load(tmp_path / "missing.pt")
