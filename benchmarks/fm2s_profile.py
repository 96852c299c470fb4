"""Where the default FM2S spends its time: torch profiler over a short fast-schedule fit.

Issue 18 asks to profile before optimizing. One FMD image (``Confocal_FISH_1``, a
tuning capture: only time is measured), the default fast schedule cut to ``--steps``
steps (the per-step shares do not depend on the count), one torch thread, and the
prediction timed with one pass and with the default 8-view averaging.

    .venv/bin/python benchmarks/fm2s_profile.py --steps 200 \\
        --out benchmarks/results/fm2s_profile/table.md
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date

import numpy as np
import torch
from _common import git_commit, write_table
from torch.profiler import ProfilerActivity, profile

import microdenoise as md
from microdenoise import datasets
from microdenoise.training import use_bf16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = datasets.fmd_test_mix(names=["Confocal_FISH_1"])[0].noisy.astype(np.float32) / 255
    model = md.create("fm2s", preset="confocal", fast_steps=args.steps, tta="off")
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        model.fit(image)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.denoise(image)
    one = time.perf_counter() - t0
    averaged = md.create("fm2s", preset="confocal")
    averaged.net = model.net
    t0 = time.perf_counter()
    averaged.denoise(image)
    d8 = time.perf_counter() - t0
    bf16 = use_bf16("auto", torch.device("cpu"))
    lines = ["# FM2S default: where the time goes", "",
             f"Generated {date.today()} on {platform.machine()} ({platform.processor() or 'CPU'}"
             f"), torch {torch.__version__}, {args.threads} thread(s), native bf16: {bf16}, "
             f"commit {git_commit()}, by `benchmarks/fm2s_profile.py --steps {args.steps}`.", "",
             f"Fit ({args.steps} steps of the fast schedule, under the profiler): {fit_s:.1f} s "
             f"wall, {fit_s / args.steps * 1000:.1f} ms per step. Prediction of the 512x512 "
             f"image: one pass {one:.2f} s, 8-view average {d8:.2f} s.", "",
             "```", prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15),
             "```"]
    notes = "benchmarks/results/fm2s_profile/notes.md"
    try:
        lines += ["", open(notes).read().strip()]
    except FileNotFoundError:
        pass
    print(write_table("\n".join(lines), args.out))


if __name__ == "__main__":
    main()
