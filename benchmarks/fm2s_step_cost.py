"""FM2S fast-schedule cost per training step against the batch size (issue 18).

The default trains 1600 steps on batches of two 128 x 128 crops. If a step on a larger
batch costs less than proportionally more (the convolutions of this small network
use the CPU better on more data), fewer steps on larger batches are a candidate for a
faster default, to be decided on quality by the scene-disjoint protocol. This probe
measures the cost only: the default FM2S fitted on one 512 x 512 FMD image with
``fast_steps`` = 50 and 150 at each batch size, the difference / 100 is the cost of
one step without the fixed costs (normalization, pre-denoising); median of
``--repeats``; torch's threads as given (``--threads``, default: torch's default).

    .venv/bin/python benchmarks/fm2s_step_cost.py --out benchmarks/results/fm2s_profile/step_cost.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from _common import git_commit

import microdenoise as md
from microdenoise import datasets

BATCHES = (2, 4, 8, 16)


def _fit_seconds(noisy: np.ndarray, steps: int, batch: int) -> float:
    model = md.create("fm2s", seed=0, fast_steps=steps, fast_batch=batch, tta="off")
    t0 = time.perf_counter()
    model.fit(noisy.astype(np.float32) / 255)  # FM2S.fit takes [0, 1] (8-bit FMD)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    noisy = datasets.fmd_test_mix(names=["Confocal_FISH_3"])[0].noisy
    _fit_seconds(noisy, 10, 2)  # warm-up
    rows = []
    for batch in BATCHES:
        per = []
        for _ in range(args.repeats):
            per.append((_fit_seconds(noisy, 150, batch) - _fit_seconds(noisy, 50, batch)) / 100)
        ms = 1000 * statistics.median(per)
        rows.append((batch, ms, ms / batch))
        print(f"batch {batch:>2}: {ms:.1f} ms per step, {ms / batch:.1f} ms per crop",
              flush=True)
    base = rows[0][2]
    lines = ["# FM2S: cost of one fast-schedule step against the batch size", "",
             f"Generated {date.today().isoformat()} on {platform.machine()} "
             f"({__import__('os').cpu_count()} cores), torch {torch.__version__}, "
             f"{torch.get_num_threads()} thread(s), commit {git_commit()}, by "
             "`benchmarks/fm2s_step_cost.py` (the docstring says what runs). 128 x 128 "
             "crops, fp32 (no native bf16 here), one 512 x 512 FMD image; median of "
             f"{args.repeats}.", "",
             "| batch | ms per step | ms per crop | per crop vs batch 2 |", "|---|---|---|---|"]
    lines += [f"| {b} | {ms:.1f} | {pc:.1f} | {pc / base:.2f} |" for b, ms, pc in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
