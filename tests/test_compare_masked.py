"""The Noise2Self masked-loss estimator of compare, the CLI's --single and progress lines,
and the ``name:preset=P`` spec, on synthetic Poisson-Gaussian images with a known clean
image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

import microdenoise as md
from microdenoise import compare_estimators as est
from microdenoise.cli import main
from microdenoise.compare_masked import STRIDE, masked_mse, masked_plane
from microdenoise.errors import InputError

from .conftest import blobs, poisson_gaussian

FILTERS = ["gaussian:sigma=0.75", "gaussian:sigma=1.5", "gaussian:sigma=3", "median:size=5"]


def _noisy(seed: int = 1, photons: float = 200.0) -> tuple[np.ndarray, np.ndarray]:
    clean = blobs((128, 128), seed=seed)
    return clean, poisson_gaussian(clean, photons=photons, sigma=0.02, seed=7).astype(
        np.float64)


def test_masked_pixels_never_see_their_own_value() -> None:
    x = np.random.default_rng(0).random((37, 41))
    for phase in ((0, 0), (3, 2), (1, 3)):
        a, mask = masked_plane(x, phase)
        y = x.copy()
        y[mask] += 100.0  # change every masked pixel, borders included
        b, _ = masked_plane(y, phase)
        assert np.array_equal(a, b)
        assert mask.sum() == len(range(phase[0], 37, STRIDE)) * len(range(phase[1], 41, STRIDE))


@pytest.mark.parametrize("sigma", [0.75, 1.5, 3.0])
def test_masked_estimate_is_within_its_uncertainty_of_the_masked_methods_mse(
        sigma: float) -> None:
    clean, noisy = _noisy()

    def f(x: np.ndarray) -> np.ndarray:
        return ndi.gaussian_filter(x, sigma)

    e = masked_mse(noisy, f, est.noise_check(noisy), phases=STRIDE * STRIDE)
    true = []  # the J-invariant method's own error, over every phase
    for p in range(STRIDE * STRIDE):
        xm, mask = masked_plane(noisy, (p // STRIDE, p % STRIDE))
        true.append(np.mean((f(xm)[mask] - clean[mask]) ** 2))
    assert e.reliable and e.estimator == "masked"
    assert abs(e.value - float(np.mean(true))) < 3 * e.se
    assert e.se < 0.4 * float(np.mean(true))  # the SE itself bounded, not only used


def test_compare_with_the_masked_estimator_ranks_the_filters() -> None:
    clean, noisy = _noisy()
    result = md.compare(noisy.astype(np.float32), methods=FILTERS, single="masked")
    true = {k: float(np.mean((v - clean) ** 2)) for k, v in result.outputs.items()}
    assert result.estimator == "masked" and all(r.reliable for r in result.rows)
    assert result.recommended == min(true, key=true.__getitem__)
    assert result.rows[-1].label == "gaussian:sigma=3"  # the worst, by far
    with pytest.raises(InputError, match="choose from sure, masked"):
        md.compare(noisy, methods=FILTERS, single="both")


def test_masked_is_unreliable_on_correlated_noise() -> None:
    clean = blobs((128, 128), seed=2)
    white = ndi.gaussian_filter(np.random.default_rng(3).standard_normal(clean.shape), 0.7)
    noisy = clean + 0.05 * white / white.std()
    e = masked_mse(noisy, lambda x: ndi.gaussian_filter(x, 1.0), est.noise_check(noisy))
    assert not e.reliable and "neighbours carry its noise" in e.reason


def test_cli_single_masked_prints_progress_per_candidate(tmp_path: Path, capsys) -> None:
    _, noisy = _noisy(3)
    np.save(tmp_path / "img.npy", noisy.astype(np.float32))
    code = main(["compare", str(tmp_path / "img.npy"), "--single", "masked",
                 "--methods", "gaussian:sigma=1,median:size=3"])
    captured = capsys.readouterr()
    assert code == 0 and "| masked |" in captured.out
    lines = captured.err.splitlines()
    assert [ln.split("]")[0] for ln in lines] == ["microdenoise: compare [1/2",
                                                  "microdenoise: compare [2/2"]
    assert "gaussian:sigma=1: est. MSE" in lines[0] and "(masked)" in lines[0]


def test_a_preset_is_named_in_the_spec() -> None:
    _, noisy = _noisy(4)
    small = noisy[:64, :64].astype(np.float32)
    result = md.compare(small, methods=["fm2s:preset=confocal:fast_steps=10:fast_crop=32",
                                        "fm2s:preset=nope"])
    rows = {r.label: r for r in result.rows}
    ok = rows["fm2s:preset=confocal:fast_steps=10:fast_crop=32"]
    assert not ok.error and np.isfinite(ok.estimate)
    assert "has no preset 'nope'" in rows["fm2s:preset=nope"].error
    # SURE runs FM2S twice, two different trainings: its SURE row is never trusted
    sure = md.compare(small, methods=["fm2s:fast_steps=10:fast_crop=32", "gaussian:sigma=1"],
                      single="sure")
    fm2s = sure.row("fm2s:fast_steps=10:fast_crop=32")
    assert not fm2s.reliable and "trained on the image" in fm2s.reason
    assert sure.recommended == "gaussian:sigma=1"


def test_masked_is_the_default_single_image_estimator() -> None:
    _, noisy = _noisy(6)
    assert md.compare(noisy[:64, :64], methods=["gaussian:sigma=1"]).estimator == "masked"


def test_budget_keeps_the_planes_every_candidate_finished() -> None:
    import time

    clean = blobs((64, 64), seed=8)
    stack = np.stack([poisson_gaussian(clean, photons=100.0, sigma=0.02, seed=s)
                      for s in range(3)])
    steps: list[tuple[str, int, int]] = []

    def slow(row, out, done, total) -> None:  # noqa: ANN001  (the progress callback)
        steps.append((row.label, done, total))
        time.sleep(0.3)

    result = md.compare(stack, methods=["gaussian:sigma=1", "median:size=3"], budget=0.5,
                        progress=slow)
    # plane 0 for both (0.3 s < 0.5 s before the second), then the budget is spent
    assert steps == [("gaussian:sigma=1", 1, 6), ("median:size=3", 2, 6)]
    assert all(not r.error for r in result.rows)
    assert all(r.blocks.size == (64 // est.BLOCK) ** 2 for r in result.rows)  # one plane
    assert result.notes[:2] == ["scored: 1 of 3 plane(s) (evenly spaced), whole planes",
                                "budget: 1 of the 3 planes chosen were scored within 0.5 s "
                                "(every candidate on the same planes)"]
    full = md.compare(stack[:1], methods=["gaussian:sigma=1", "median:size=3"])
    assert [r.estimate for r in result.rows] == [r.estimate for r in full.rows]


def test_single_with_a_second_capture_is_refused_and_stride_one_too(tmp_path: Path,
                                                                      capsys) -> None:
    _, noisy = _noisy(5)
    np.save(tmp_path / "a.npy", noisy.astype(np.float32))
    code = main(["compare", str(tmp_path / "a.npy"), "--second", str(tmp_path / "a.npy"),
                 "--single", "masked"])
    assert code == 2 and "give one or the other" in capsys.readouterr().err
    with pytest.raises(ValueError, match="at least 2"):
        masked_mse(noisy, lambda x: x, est.noise_check(noisy), stride=1)
