"""Development probe for issue 18: FM2S quality against its number of fast-schedule steps.

Which step counts, with or without an exponential moving average of the weights
(``fast_ema``, since removed: see ``REMOVED``), are worth a scene-disjoint decision?
Scored on development images that no FMD table, fold or FM2S choice has used: W2S
*training* FOVs 006-008 (three channels each, the ``widefield`` preset, 512 x 512),
SI-PSNR on 0..255 of the rounded output, as ``scene_disjoint.py`` scores W2S. Nothing
is decided here: this probe only narrows the candidates for a decision by rule.

Commands (two processes on the two cores, one torch thread each)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fm2s_steps_probe.py run --part 0 &
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fm2s_steps_probe.py run --part 1
    .venv/bin/python benchmarks/fm2s_steps_probe.py table \\
        --out benchmarks/results/fm2s_tune/steps_probe.md
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from _common import dispatch, git_commit, mean_se

from microdenoise import datasets, denoise_array, metrics
from microdenoise.evaluate import quantize

RESULTS = Path(__file__).parent / "results" / "fm2s_tune"
FOVS = ["006_*", "007_*", "008_*"]
CANDIDATES: dict[str, dict[str, object]] = {
    "s1600": {"fast_steps": 1600},
    "s800": {"fast_steps": 800},
    "s400": {"fast_steps": 400},
    "s250": {"fast_steps": 250},
}
# Run at cf303c9, where FM2SConfig had ``fast_ema`` (an exponential moving average of the
# fast schedule's weights, decay warmed up as min(d, (1 + t) / (10 + t))); removed after
# this probe found it changed nothing (the one-cycle rate ends near 0). Their rows stay in
# the CSV and the table.
REMOVED = ["s400_ema98", "s400_ema99", "s250_ema98", "s800_ema99"]
REFERENCE = "s1600"
FIELDS = ["candidate", "image", "si_psnr", "cpu_s", "wall_s", "commit"]


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    pairs = datasets.w2s_8bit(args.data_root, split="train", names=FOVS)
    jobs = [(c, p) for c in CANDIDATES for p in pairs]
    jobs = jobs[args.part::args.parts]
    out = Path(args.csv)
    done: set[tuple[str, str]] = set()
    if out.exists():
        with out.open() as fh:
            done = {(r["candidate"], r["image"]) for r in csv.DictReader(fh)}
    new = not out.exists()
    commit = git_commit()
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if new:
            writer.writeheader()
        for cand, pair in jobs:
            if (cand, pair.name) in done:
                continue
            c0, w0 = time.process_time(), time.perf_counter()
            raw = denoise_array(pair.noisy, "fm2s", params=CANDIDATES[cand], preset="widefield")
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            value = metrics.si_psnr(quantize(np.asarray(raw, dtype=np.float64), "round"),
                                    pair.clean.astype(np.float64), data_range=255.0)
            writer.writerow({"candidate": cand, "image": pair.name, "si_psnr": f"{value:.4f}",
                             "cpu_s": f"{cpu:.2f}", "wall_s": f"{wall:.2f}", "commit": commit})
            fh.flush()
            print(f"{cand:>12} {pair.name:<8} {value:6.2f} dB {cpu:6.1f} cpu-s", flush=True)


def table(args: argparse.Namespace) -> str:
    with Path(args.csv).open() as fh:
        rows = list(csv.DictReader(fh))
    score = {(r["candidate"], r["image"]): float(r["si_psnr"]) for r in rows}
    cpu: dict[str, list[float]] = {}
    for r in rows:
        cpu.setdefault(r["candidate"], []).append(float(r["cpu_s"]))
    images = sorted({i for c, i in score if c == REFERENCE})
    lines = ["# FM2S: quality against fast-schedule steps (development probe, issue 18)", "",
             f"Generated {date.today()} on {platform.machine()} (2 cores, one torch thread per "
             f"process, two processes), commits {', '.join(sorted({r['commit'] for r in rows}))}"
             ", by `benchmarks/fm2s_steps_probe.py` (the docstring says what runs). Images: "
             f"W2S training FOVs 006-008, {len(images)} channel images, `widefield` preset; "
             "SI-PSNR (dB) of the rounded output. Difference to the default (1600 steps) is "
             "the per-image mean +- SE.", "",
             "| candidate | mean SI-PSNR | - s1600 (dB) | median CPU s | n |",
             "|---|---|---|---|---|"]
    for cand in [*CANDIDATES, *REMOVED]:
        have = [i for i in images if (cand, i) in score]
        if not have:
            continue
        diffs = [score[(cand, i)] - score[(REFERENCE, i)] for i in have]
        m, se = mean_se(diffs) if len(diffs) > 1 else (diffs[0], float("nan"))
        lines.append(f"| {cand} | {statistics.mean(score[(cand, i)] for i in have):.3f} | "
                     f"{m:+.3f} +- {se:.3f} | {statistics.median(cpu[cand]):.1f} | {len(have)} |")
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--part", type=int, default=0)
    r.add_argument("--parts", type=int, default=2)
    r.add_argument("--data-root", default=None)
    t = sub.add_parser("table")
    t.add_argument("--out", default=None)
    for p in (r, t):
        p.add_argument("--csv", default=str(RESULTS / "steps_probe.csv"))
    dispatch(ap.parse_args(), run, table)


if __name__ == "__main__":
    main()
