"""Noise2Void in 2D vs 3D (``dims=3``) on stacks of one static field.

Real stacks we have: the SRDTrans subset (10 noisy frames of one field that share
one ground truth: a TYX stack) and the FMD test mix (4 raw captures of each of 12
fields, with their avg50 ground truth: 12 TYX stacks). A 3D network sees the frames
as a third axis, like CAREamics' 3D N2V on a ZYX stack; the 2D network treats each
frame alone. On a static field the frames repeat the signal and only the noise
changes, so the frame mean is a strong reference (an ideal temporal average).

Self-supervised protocol: each network trains on the noisy frames it then denoises;
no ground truth is used for any choice; every network row gets the same number of
optimizer steps (``--steps``) and keeps its last weights. 2D: n2v's defaults (64x64
patches, batch 16; ``precision=auto``). 3D: ``dims=3``, patches of Z x 64 x 64 with
Z = 8 (SRDTrans) or 4 (FMD's 4 captures), batch 4 (float32 on the CPU). Scores:
outputs clipped to 0..255 and rounded, PSNR/SSIM with data_range 255, per frame,
then the mean. CPU seconds are ``time.process_time`` (one torch thread).

    .venv/bin/python benchmarks/n2v3d.py run --dataset srdtrans_subset --steps 400
    .venv/bin/python benchmarks/n2v3d.py run --dataset fmd_test_mix --steps 400
    .venv/bin/python benchmarks/n2v3d.py table --notes benchmarks/results/n2v3d/notes.md \
        --out benchmarks/results/n2v3d/table.md
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import time
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import dispatch, git_commit, write_table

from microdenoise import create, datasets, metrics
from microdenoise.evaluate import quantize

RESULTS = Path(__file__).parent / "results" / "n2v3d"
CSV = RESULTS / "scores.csv"
FIELDS = ["dataset", "row", "steps", "image", "psnr", "ssim", "train_cpu_s", "cpu_s"]
ROWS = ("noisy", "frame_mean", "n2v_2d", "n2v_3d")


def stacks(dataset: str) -> list[tuple[str, list[Any]]]:
    """The set's frames grouped by field: (field, pairs in frame order)."""
    pairs = datasets.load_dataset(dataset)
    fields: dict[str, list[Any]] = defaultdict(list)
    for p in pairs:
        fields["all" if dataset == "srdtrans_subset" else p.name.rsplit("_", 1)[0]].append(p)
    return sorted((k, sorted(v, key=lambda p: p.name)) for k, v in fields.items())


def train(row: str, volumes: list[np.ndarray], steps: int, depth: int) -> tuple[Any, float]:
    """A network of ``row`` trained on the (T, Y, X) ``volumes``; its CPU seconds."""
    per_epoch = 50
    common = {"epochs": max(1, steps // per_epoch), "steps_per_epoch": min(steps, per_epoch)}
    if row == "n2v_3d":
        model = create("n2v", dims=3, patch_size_z=depth, batch_size=4, **common)
        data: Any = volumes
    else:
        model = create("n2v", **common)
        data = [frame for v in volumes for frame in v]
    c0 = time.process_time()
    model.fit(data)
    return model, time.process_time() - c0


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    fields = stacks(args.dataset)
    depth = 8 if args.dataset == "srdtrans_subset" else 4
    done = set()
    if CSV.exists():
        with CSV.open() as fh:
            done = {(r["dataset"], r["row"], r["steps"]) for r in csv.DictReader(fh)}
    new = not CSV.exists()
    with CSV.open("a", newline="") as fh:
        out = csv.DictWriter(fh, FIELDS)
        if new:
            out.writeheader()
        volumes = [np.stack([p.noisy for p in ps]).astype(np.float32) for _, ps in fields]
        for row in args.rows:
            steps = args.steps if row.startswith("n2v") else 0
            if (args.dataset, row, str(steps)) in done:
                continue
            model, train_s = (train(row, volumes, steps, depth) if steps else (None, 0.0))
            for vol, (_, ps) in zip(volumes, fields, strict=True):
                c0 = time.process_time()
                if row == "noisy":
                    pred = vol
                elif row == "frame_mean":
                    pred = np.broadcast_to(vol.mean(axis=0), vol.shape)
                elif row == "n2v_3d":
                    pred = model.denoise(vol)
                else:
                    pred = np.stack([model.denoise(frame) for frame in vol])
                cpu = (time.process_time() - c0) / len(ps)
                for frame, p in zip(pred, ps, strict=True):
                    q = quantize(frame, "round").astype(np.float64)
                    gt = p.clean.astype(np.float64)
                    out.writerow({"dataset": args.dataset, "row": row, "steps": steps,
                                  "image": p.name,
                                  "psnr": f"{metrics.psnr(q, gt, data_range=255):.4f}",
                                  "ssim": f"{metrics.ssim(q, gt, data_range=255):.5f}",
                                  "train_cpu_s": f"{train_s:.1f}", "cpu_s": f"{cpu:.2f}"})
            fh.flush()
            print(f"{args.dataset} {row}: done ({train_s:.0f} CPU s training)", flush=True)


def table(args: argparse.Namespace) -> str:
    with CSV.open() as fh:
        rows = list(csv.DictReader(fh))
    groups: dict[tuple[str, str, str], list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["row"], r["steps"])].append(r)
    lines = [
        "# N2V in 2D vs 3D on stacks of one static field", "",
        f"Generated {date.today()} on {platform.machine()} (2 cores shared with other jobs), "
        f"torch {torch.__version__}, commit {git_commit()}, by `benchmarks/n2v3d.py` "
        "(protocol in its docstring). Per-frame scores: `scores.csv`.", "",
        "| dataset | row | steps | frames | PSNR | SSIM | train CPU s | predict CPU s/frame |",
        "|---|---|---|---|---|---|---|---|"]
    for (ds, row, steps), rs in sorted(groups.items(), key=lambda kv: (
            kv[0][0], ROWS.index(kv[0][1]), int(kv[0][2]))):
        lines.append(
            f"| {ds} | {row} | {steps} | {len(rs)} | "
            f"{statistics.mean(float(r['psnr']) for r in rs):.2f} | "
            f"{statistics.mean(float(r['ssim']) for r in rs):.4f} | "
            f"{float(rs[0]['train_cpu_s']):.0f} | "
            f"{statistics.median(float(r['cpu_s']) for r in rs):.2f} |")
    text = "\n".join(lines + [""] + (args.notes.read_text().splitlines() if args.notes
                                     else []))
    return write_table(text, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dataset", choices=("srdtrans_subset", "fmd_test_mix"), required=True)
    r.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    r.add_argument("--steps", type=int, default=400)
    t = sub.add_parser("table")
    t.add_argument("--out", default=None)
    t.add_argument("--notes", type=Path, default=None)
    args = parser.parse_args()
    dispatch(args, run, table)


if __name__ == "__main__":
    main()
