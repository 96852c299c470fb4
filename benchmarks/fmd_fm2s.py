"""Reproduce FM2S Table 1 (FMD test mix) and Table 2 (SRDTrans subset).

Two steps, so that the hours-long paper schedule can run in the background and
resume after an interruption:

    # score rows on images (appends to a CSV; rows already there are skipped)
    .venv/bin/python benchmarks/fmd_fm2s.py run --dataset fmd_test_mix \
        --rows noisy median gaussian nlm bm3d fm2s_fast --images '*_3' '*_4'
    .venv/bin/python benchmarks/fmd_fm2s.py run --dataset fmd_test_mix \
        --rows fm2s_paper --images '*_4' --threads 1
    # the Markdown table from the CSVs (and the dataset's notes.md, written by hand)
    .venv/bin/python benchmarks/fmd_fm2s.py table --dataset fmd_test_mix \
        --out benchmarks/results/fmd_fm2s/fmd_test_mix/table.md

Each dataset has its folder, ``results/fmd_fm2s/<dataset>/``: ``scores[_TAG].csv``
(one per ``--tag``), ``notes.md`` and ``table.md``.

Conventions: outputs clipped to 0..255 and rounded (PSNR/SSIM, data_range 255, as
DESIGN.md); the official FM2S code truncates instead, so the CSV also keeps the
truncated PSNR. Seconds are CPU seconds of the process (``time.process_time``,
robust to other jobs on the machine) and wall seconds. Seed 3407 for FM2S.
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
from _common import dispatch, git_commit, write_table

from microdenoise import datasets, denoise_array, metrics
from microdenoise.evaluate import auto_preset, parse_spec, quantize

ROWS = {
    "noisy": None,
    "median": "median",
    "gaussian": "gaussian",
    "nlm": "nlm:vst=none",
    "nlm_vst": "nlm:vst=gat",
    "bm3d": "bm3d:vst=none",
    "bm3d_vst": "bm3d:vst=gat",
    "fm2s_paper": "fm2s:schedule=paper",
    # The default since session 3: 1600 steps, bf16 where the CPU has it, 8-fold averaging.
    "fm2s_fast": "fm2s:schedule=fast",
    # The default of session 2: 800 steps in fp32, 8-fold averaging.
    "fm2s_fast_800": "fm2s:schedule=fast:fast_steps=800:fast_bf16=false",
    # The session-1 default (800 steps fp32, one prediction pass), and its bf16 twin.
    "fm2s_fast_single": "fm2s:schedule=fast:fast_steps=800:fast_bf16=false:tta=off",
    "fm2s_fast_bf16": "fm2s:schedule=fast:fast_steps=800:fast_bf16=true:tta=off",
    "fm2s_fast_1600_bf16": "fm2s:schedule=fast:fast_steps=1600:fast_bf16=true:tta=off",
}
FIELDS = ["row", "image", "group", "psnr", "ssim", "psnr_trunc", "cpu_s", "wall_s"]
RESULTS = Path(__file__).parent / "results" / "fmd_fm2s"  # a folder per dataset


def csv_path(dataset: str, tag: str = "") -> Path:
    """One CSV per run (``tag``), so concurrent runs never share a file."""
    return RESULTS / dataset / f"scores{'_' + tag if tag else ''}.csv"


def done(path: Path) -> set[tuple[str, str]]:
    if not path.exists():
        return set()
    with path.open() as fh:
        return {(r["row"], r["image"]) for r in csv.DictReader(fh)}


def run(args: argparse.Namespace) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = datasets.load_dataset(args.dataset, args.data_root, names=args.images)
    # Round-robin over groups, so that a partial run still covers every microscope.
    rank: dict[str, int] = {}
    order = []
    for pair in pairs:
        rank[pair.group] = rank.get(pair.group, -1) + 1
        order.append((rank[pair.group], pair.group))
    pairs = [p for _, p in sorted(zip(order, pairs, strict=True), key=lambda t: t[0])]
    out = csv_path(args.dataset, args.tag)
    out.parent.mkdir(parents=True, exist_ok=True)
    finished = done(out)
    new = not out.exists()
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if new:
            writer.writeheader()
            fh.flush()
        for pair in pairs:
            gt = pair.clean.astype(np.float64)
            for row in args.rows:
                if (row, pair.name) in finished:
                    continue
                c0, w0 = time.process_time(), time.perf_counter()
                if ROWS[row] is None:
                    raw = pair.noisy.astype(np.float64)
                else:
                    spec = parse_spec(ROWS[row])
                    raw = denoise_array(pair.noisy, spec.method, params=spec.params,
                                        preset=auto_preset(spec, pair.group))
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                pred = quantize(raw, "round")
                writer.writerow({
                    "row": row, "image": pair.name, "group": pair.group,
                    "psnr": f"{metrics.psnr(pred, gt, data_range=255):.4f}",
                    "ssim": f"{metrics.ssim(pred, gt, data_range=255):.5f}",
                    "psnr_trunc": f"{metrics.psnr(quantize(raw, 'trunc'), gt, data_range=255):.4f}",
                    "cpu_s": f"{cpu:.2f}", "wall_s": f"{wall:.2f}",
                })
                fh.flush()
                print(f"{row:>11} {pair.name:<22} {cpu:7.1f} cpu-s", flush=True)


def _mean(rows: list[dict[str, str]], key: str) -> float:
    return statistics.mean(float(r[key]) for r in rows)


def table(args: argparse.Namespace) -> str:
    scores = []
    for path in sorted((RESULTS / args.dataset).glob("scores*.csv")):
        with path.open() as fh:
            scores += list(csv.DictReader(fh))
    groups = list(dict.fromkeys(r["group"] for r in scores))
    subsets = {"all scored images": None}
    paper_images = sorted({r["image"] for r in scores if r["row"] == "fm2s_paper"})
    if paper_images:
        subsets[f"the {len(paper_images)} images the paper schedule ran on"] = set(paper_images)
    lines = []
    for title, subset in subsets.items():
        lines += [f"### Rows on {title}", ""]
        head = [f"{g} PSNR/SSIM" for g in groups]
        lines += ["| method | n | " + " | ".join(head) + " | Avg PSNR/SSIM | PSNR (trunc) | "
                  "CPU s/image | wall s/image |", "|---" * (len(groups) + 6) + "|"]
        for row in ROWS:
            mine = [r for r in scores
                    if r["row"] == row and (subset is None or r["image"] in subset)]
            if not mine:
                continue
            cells = []
            for g in groups:
                sub = [r for r in mine if r["group"] == g]
                cells.append(f"{_mean(sub, 'psnr'):.2f} / {_mean(sub, 'ssim'):.3f}" if sub else "")
            cpu = statistics.median(float(r["cpu_s"]) for r in mine)
            wall = statistics.median(float(r["wall_s"]) for r in mine)
            lines.append(f"| {row} | {len(mine)} | " + " | ".join(cells) +
                         f" | {_mean(mine, 'psnr'):.2f} / {_mean(mine, 'ssim'):.3f} | "
                         f"{_mean(mine, 'psnr_trunc'):.2f} | {cpu:.1f} | {wall:.1f} |")
        lines.append("")
    commit = git_commit()
    header = [f"# FM2S benchmark on {args.dataset}", "",
              f"Generated {date.today()} on {platform.machine()} (2 cores shared with other "
              f"jobs), torch {torch.__version__}, commit {commit}. Per-image scores: "
              f"`scores*.csv`.", "",
              "PSNR/SSIM on 0..255 (data_range 255) of outputs clipped and rounded; "
              "'PSNR (trunc)' truncates like the official FM2S code. Average = mean over "
              "images (the paper's weighted average). Times: median per image. CPU seconds "
              "are the process's CPU time (runs used one torch thread, `--threads 1`), "
              "robust to other jobs on the machine; wall seconds are not.", ""]
    notes = RESULTS / args.dataset / "notes.md"  # commands and reading, written by hand
    if notes.exists():
        lines += [notes.read_text().strip()]
    text = "\n".join(header + lines)
    return write_table(text, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--dataset", default="fmd_test_mix")
    r.add_argument("--rows", nargs="+", choices=list(ROWS), required=True)
    r.add_argument("--images", nargs="*", default=None)
    r.add_argument("--data-root", type=Path, default=None)
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--tag", default="", help="CSV name suffix; one per concurrent run")
    t = sub.add_parser("table")
    t.add_argument("--dataset", default="fmd_test_mix")
    t.add_argument("--out", default=None)
    args = parser.parse_args()
    dispatch(args, run, table)


if __name__ == "__main__":
    main()
