"""Why the VST: the noise level a filter would assume, against the true one, on FMD.

For each FMD test-mix image (0..1 units): skimage's wavelet (MAD) sigma estimate on
the raw image (what NLM/wavelet/BM3D use with ``vst="none"``), the true noise
standard deviation (``std(noisy - ground truth)``), and the pixel-level
Poisson-Gaussian fit of :func:`microdenoise.vst.estimate_poisson_gaussian` turned
into a standard deviation at the image's mean (``sqrt(a * mean + b)``). Seconds of
CPU; no choice is made here (the VST default is decided in ``scene_disjoint.py``).

    .venv/bin/python benchmarks/vst_sigma.py --out benchmarks/results/vst_sigma/table.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
from datetime import date

import numpy as np
from _common import git_commit, write_table
from skimage.restoration import estimate_sigma

from microdenoise import datasets
from microdenoise.vst import estimate_poisson_gaussian


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    lines = ["# Noise level: wavelet (MAD) estimate vs truth vs Poisson-Gaussian fit (FMD)", "",
             f"Generated {date.today()} on {platform.machine()}, commit {git_commit()}, by "
             "`benchmarks/vst_sigma.py` (its docstring says what each column is). 0..1 units.",
             "", "| image | MAD sigma | true noise sd | fitted sd at the mean | MAD / true |",
             "|---|---|---|---|---|"]
    ratios: dict[str, list[float]] = {}
    fits: dict[str, list[float]] = {}
    for pair in datasets.fmd_test_mix():
        x = pair.noisy.astype(np.float64) / 255.0
        gt = pair.clean.astype(np.float64) / 255.0
        mad = float(estimate_sigma(x))
        true = float(np.std(x - gt))
        fit = estimate_poisson_gaussian(x)
        fitted = float(np.sqrt(max(fit.a * x.mean() + fit.b, 0.0)))
        ratios.setdefault(pair.group, []).append(mad / true)
        fits.setdefault(pair.group, []).append(fitted / true)
        lines.append(f"| {pair.name} | {mad:.4f} | {true:.4f} | {fitted:.4f} | "
                     f"{mad / true:.2f} |")
    lines += ["", "Median MAD / true by microscope: " + ", ".join(
        f"{g} {statistics.median(v):.2f}" for g, v in ratios.items()),
              "", "Median fitted / true by microscope: " + ", ".join(
        f"{g} {statistics.median(v):.2f}" for g, v in fits.items())]
    print(write_table("\n".join(lines), args.out))


if __name__ == "__main__":
    main()
