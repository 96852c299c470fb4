"""Does CARE on W2S 8-bit gain from per-image normalization (CSBDeep's ``create_patches``)?

microdenoise's CARE normalizes inputs and targets with percentiles computed over the
whole training set; CSBDeep normalizes every training image pair by its own 1 / 99.8
percentiles (input and target separately) and every input at prediction. The W2S 8-bit
copies were rescaled to 0..255 per image, noisy and ground truth separately, so with
training-set statistics the network must also guess each target's arbitrary rescaling.

This probe trains care(n_train=30) twice with the same seed, budget and precision:
``global`` on the images as they are, ``per-image`` on images each mapped by its own
percentiles (inputs at test time too). SI-PSNR is affine-invariant, so the per-image
outputs are scored without mapping them back. One process per variant:

    .venv/bin/python benchmarks/care_norm_probe.py --variant global
    .venv/bin/python benchmarks/care_norm_probe.py --variant per-image
    .venv/bin/python benchmarks/care_norm_probe.py --table
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import git_commit

from microdenoise import datasets, metrics
from microdenoise.evaluate import quantize
from microdenoise.normalize import Percentile
from microdenoise.registry import create

RESULTS = Path(__file__).parent / "results" / "care_norm_probe"
CSV = RESULTS / "scores.csv"  # both variants; each run appends its rows at the end


def own_percentiles(image: np.ndarray) -> np.ndarray:
    """``image`` with its own 1 / 99.8 percentiles mapped to 0 / 1 (CSBDeep's normalize)."""
    return Percentile.fit(image.ravel(), p_low=1.0, p_high=99.8)(image.astype(np.float64))


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    prep = own_percentiles if args.variant == "per-image" else (lambda x: x)
    train = datasets.w2s_8bit(split="train")
    test = datasets.w2s_8bit(split="test")
    steps, spe = args.steps, 40
    model: Any = create("care", n_train=30, epochs=steps // spe, steps_per_epoch=spe,
                   batch_size=8, patch_size=64, val_patches=16, shift_average=False,
                   precision=args.precision)
    model.device = "cpu"
    c0 = time.process_time()
    model.fit([prep(p.noisy) for p in train], [prep(p.clean) for p in train])
    cpu = time.process_time() - c0
    rows = []
    for p in test:
        y = model.denoise(prep(p.noisy))
        if args.variant == "per-image":  # back to 0..255 only for the raw PSNR column
            y = metrics.affine_fit(y, p.noisy.astype(np.float64))
        pred, gt = quantize(y, "round"), p.clean.astype(np.float64)
        rows.append({"variant": args.variant, "steps": steps, "precision": args.precision,
                     "image": p.name, "psnr": f"{metrics.psnr(pred, gt, data_range=255):.4f}",
                     "si_psnr": f"{metrics.si_psnr(pred, gt, data_range=255):.4f}",
                     "train_cpu_s": f"{cpu:.0f}"})
    with CSV.open("a", newline="") as fh:  # one write, so side-by-side runs do not interleave
        out = csv.DictWriter(fh, list(rows[0]))
        if fh.tell() == 0:
            out.writeheader()
        out.writerows(rows)
    print(f"{args.variant}: trained in {cpu:.0f} CPU s", flush=True)


def table() -> str:
    with CSV.open() as fh:
        rows = list(csv.DictReader(fh))
    by: dict[str, dict[str, float]] = {}
    for r in rows:
        by.setdefault(r["variant"], {})[r["image"]] = float(r["si_psnr"])
    lines = ["| variant | n | SI-PSNR | train CPU s |", "|---|---|---|---|"]
    for v, scores in by.items():
        cpu = next(r["train_cpu_s"] for r in rows if r["variant"] == v)
        lines.append(f"| {v} | {len(scores)} | {statistics.mean(scores.values()):.2f} | {cpu} |")
    if {"global", "per-image"} <= by.keys():
        d = [by["per-image"][i] - by["global"][i] for i in by["global"]]
        lines += ["", f"per-image - global, paired over {len(d)} images: "
                  f"{statistics.mean(d):+.2f} dB (sd {statistics.stdev(d):.2f}; better on "
                  f"{sum(x > 0 for x in d)})"]
    r0 = rows[0]
    return "\n".join(["# CARE on W2S 8-bit: per-image vs training-set normalization", "",
                      f"`benchmarks/care_norm_probe.py`, commit {git_commit()}; care(n_train=30), "
                      f"{r0['steps']} steps of 8 64x64 patches, precision {r0['precision']}, "
                      "one CPU thread, seed 42 both; 60 test images (FOVs 081-100). The raw "
                      "PSNR of the per-image variant needs its output mapped back to 0..255, "
                      "which this probe does by an affine fit to the *noisy input* (no ground "
                      "truth), so only SI-PSNR is compared here.", "", *lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["global", "per-image"])
    parser.add_argument("--steps", type=int, default=3200)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    if args.table:
        text = table()
        (RESULTS / "table.md").write_text(text)
        print(text)
    elif args.variant:
        run(args)
    else:
        parser.error("--variant or --table")


if __name__ == "__main__":
    main()
