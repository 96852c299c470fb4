"""Issue #28: ``auto``, the noise-aware default: measure the noise, then route.

Synthetic images whose noise is known: Poisson-Gaussian (white) and the same noise
low-pass filtered (spatially correlated, as FMD's widefield frames). The routes that
train (FM2S) are replaced by fast ones (``correlated="nlm"``) where a test runs them;
which route is chosen is tested on :meth:`Auto.route` itself.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

import microdenoise as md
from microdenoise import feedback as fb
from microdenoise.cli import main
from microdenoise.errors import NoticeWarning
from microdenoise.methods import auto as auto_mod
from microdenoise.methods.auto import BM3D_LICENCE, Auto

from .conftest import blobs

pytest.importorskip("bm3d")


def white(shape: tuple[int, int] = (96, 96), *, seed: int = 0) -> np.ndarray:
    """A smooth scene with Poisson-Gaussian noise, on [0, 1]."""
    rng = np.random.default_rng(seed)
    clean = blobs(shape, seed=seed)
    return (rng.poisson(clean * 40) / 40 + rng.normal(0, 0.03, shape)).astype(np.float32)


def correlated(shape: tuple[int, int] = (96, 96), *, seed: int = 0) -> np.ndarray:
    """The same scene with low-pass filtered (spatially correlated) noise."""
    rng = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(rng.normal(0, 1, shape), 1.2)
    noise *= 0.08 / noise.std()
    return (blobs(shape, seed=seed) + noise).astype(np.float32)


def test_white_noise_goes_to_vst_bm3d() -> None:
    route = md.create("auto").route([white()])
    assert route.method.key == "bm3d" and route.method.config.vst == "gat"
    assert "white noise" in route.reason and "VST-BM3D" in route.reason
    assert route.notice == BM3D_LICENCE


def test_correlated_noise_goes_to_fm2s() -> None:
    route = md.create("auto").route([correlated()])
    assert route.method.key == "fm2s" and route.preset == "widefield"
    assert route.method.config == md.create("fm2s", preset="widefield").config
    assert "spatially correlated noise" in route.reason and route.notice == ""


def test_without_the_bm3d_package_white_noise_goes_to_fm2s(monkeypatch) -> None:
    monkeypatch.setattr(auto_mod, "bm3d_installed", lambda: False)
    route = md.create("auto").route([white()])
    assert route.method.key == "fm2s" and "needs the bm3d package" in route.reason
    assert route.method.config == md.create("fm2s").config  # white noise: no preset
    assert md.create("auto", white="nlm").route([white()]).method.key == "nlm"


# The bm3d package itself differs from run to run by about 1e-6 of the value (two calls
# of md.denoise_array(x, "bm3d") on one image: up to 4e-4 on values near 800).
BM3D_RTOL = 1e-5


def test_the_output_is_the_chosen_methods() -> None:
    x = white((80, 80)) * 1000 + 100  # raw units: auto scales them as bm3d does
    np.testing.assert_allclose(md.denoise_array(x, "auto"), md.denoise_array(x, "bm3d"),
                               rtol=BM3D_RTOL)


def test_same_input_same_output_on_a_slow_machine(monkeypatch) -> None:
    """Nothing depends on time: a clock that jumps an hour per call changes nothing."""
    x = np.stack([white((64, 64), seed=s) for s in range(3)])
    first = md.denoise_array(x, "auto", params={"correlated": "nlm"})
    now = [time.time()]

    def slow() -> float:
        now[0] += 3600.0
        return now[0]

    for name in ("time", "perf_counter", "monotonic", "process_time"):
        monkeypatch.setattr(time, name, slow)
    lines: list[str] = []
    with fb.reporting(fb.Feedback(info=lines.append)):
        again = md.denoise_array(x, "auto", params={"correlated": "nlm"})
    assert any("VST-BM3D" in line for line in lines)  # the same choice
    np.testing.assert_allclose(again, first, rtol=BM3D_RTOL)


def test_a_stack_is_routed_once_per_channel_from_a_few_planes() -> None:
    # Two channels: white noise in channel 0, correlated noise in channel 1; each
    # channel's 5 planes share one choice (measured on 3 of them).
    c0 = np.stack([white((64, 64), seed=s) for s in range(5)])
    c1 = np.stack([correlated((64, 64), seed=s) for s in range(5)])
    x = np.stack([c0, c1], axis=1)  # T, C, Y, X
    lines: list[str] = []
    feedback = fb.Feedback(info=lines.append)
    with fb.reporting(feedback), warnings.catch_warnings():
        warnings.simplefilter("ignore", NoticeWarning)
        out = md.denoise_array(x, "auto", axes="TCYX", params={"correlated": "nlm"})
    assert "VST-BM3D" in feedback.choices[0] and "VST-NLM" in feedback.choices[1]
    assert sum("auto:" in line for line in lines) == 2  # one choice per channel
    for c, key in ((0, "bm3d"), (1, "nlm")):
        alone = md.denoise_array(x[:, c], key, axes="TYX")
        # bm3d's last-bit jitter can flip a block match and move a few pixels (as in
        # tests/methods/test_contract.py): the mean difference stays negligible
        assert float(np.mean(np.abs(out[:, c] - alone))) < 1e-5
        assert float(np.max(np.abs(out[:, c] - alone))) < 1e-3


def test_a_fitted_auto_model_saves_and_loads(tmp_path: Path) -> None:
    x = white((64, 64))
    model = md.create("auto").fit(x)
    assert model.fitted and model.chosen is not None and model.chosen.key == "bm3d"
    md.save(model, tmp_path / "a.pt")
    again = md.load(tmp_path / "a.pt")
    np.testing.assert_allclose(again.denoise(x), model.denoise(x), rtol=BM3D_RTOL)
    assert isinstance(again, Auto) and "VST-BM3D" in again.describe_fit()


def _images(folder: Path, n: int) -> Path:
    folder.mkdir()
    for k in range(n):
        np.save(folder / f"im{k}.npy", (white((48, 48), seed=k) * 1000 + 100))
    return folder


def test_the_licence_notice_appears_exactly_once_per_run(tmp_path: Path, capsys) -> None:
    inputs = _images(tmp_path / "in", 3)
    assert main(["denoise", str(inputs), "-o", str(tmp_path / "out"), "--method",
                 "auto"]) == 0
    err = capsys.readouterr().err
    assert err.count("non-commercial use only") == 1, err
    assert err.count("auto: white noise") >= 1


def test_auto_is_the_default(tmp_path: Path, capsys) -> None:
    inputs = _images(tmp_path / "in", 1)
    assert main(["denoise", str(inputs), "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "auto: white noise" in err and "VST-BM3D" in err
    written = md.read_image(tmp_path / "out" / "im0.tif").data
    np.testing.assert_allclose(written, md.denoise_array(np.load(inputs / "im0.npy"), "bm3d"),
                               rtol=BM3D_RTOL)


@pytest.mark.parametrize(("suffix", "stream"), [(".tif", False), (".tif", True),
                                                (".ome.zarr", True)])
def test_the_choice_is_in_the_outputs_metadata(tmp_path: Path, suffix: str,
                                               stream: bool) -> None:
    import json

    import tifffile
    import zarr

    src = md.write_image(tmp_path / "in.tif", white((100, 100)) * 1000 + 100)
    out = tmp_path / f"out{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoticeWarning)
        md.denoise_file(src, out, "auto", params={"white": "nlm"},  # fast, small overlap
                        **({"tile": 64} if stream else {}))
    if suffix == ".tif":
        with tifffile.TiffFile(out) as tif:
            text = tif.pages.first.description
    else:
        text = json.dumps(dict(zarr.open_group(str(out), mode="r").attrs))
    assert "microdenoise" in text and "auto: white noise" in text and "VST-NLM" in text
    assert md.read_image(out).data.shape == (100, 100)  # the file still reads
