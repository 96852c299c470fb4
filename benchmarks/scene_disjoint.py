"""Re-decide every default tuned on FMD, by 2-fold cross-validation over scenes.

The four captures ``_1``..``_4`` of an FMD test-mix configuration share one field
of view and one ground truth: they are one scene. The FM2S fast schedule (800 vs
1600 steps) and the VST default of NLM, wavelet and BM3D had been chosen on
captures ``_1``/``_2``, i.e. on the scenes of the final table. Here each choice is
made on one fold of whole scenes and reported on the other (issue 15, section 1).

The rule, written before any score of this run existed
------------------------------------------------------
- Folds: the 12 configurations sorted by name (Confocal x5, TwoPhoton x4,
  WideField x3) are dealt alternately to A and B, which stratifies them by
  microscope: ``FOLDS`` below. A fold holds all four captures of its scenes.
- Decisions (``DECISIONS``): FM2S ``fast_steps`` 800 vs 1600 (the last choice the
  old protocol made, J vs M of ``fm2s_tune``); ``vst`` none vs gat for NLM,
  wavelet and BM3D.
- Tuning set of fold F: the 24 images of F plus W2S *training* FOVs 002 and 003
  (6 channel images, never in any table; SI-PSNR because W2S noisy and clean frames
  were rescaled separately). FMD: PSNR on 0..255 of the rounded output.
- Choice for F: the candidate with the higher mean score over F's tuning set (each
  image weight 1). A difference under 0.005 dB is a tie and goes to the cheaper
  candidate (800 steps; vst=none).
- Report: each image is scored with the choice of the fold that did not contain
  it, so all 48 images are scored by a choice that never saw their scene.
- Library default: the candidate both folds chose. If the folds disagree, the
  default becomes the cheaper candidate and the README says "not decided".
- Verdicts on differences: "met"/"better" only when the mean paired difference is
  larger than its standard error; otherwise "parity".

Everything ran on this machine (no scores from other machines are mixed into the
decision). Commands::

    .venv/bin/python benchmarks/scene_disjoint.py run --fold A --w2s --tag a
    .venv/bin/python benchmarks/scene_disjoint.py run --fold B --tag b
    .venv/bin/python benchmarks/scene_disjoint.py table \\
        --out benchmarks/results/scene_disjoint/table.md
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
from _common import decided, dispatch, finish_table, git_commit, mean_se

from microdenoise import datasets, denoise_array, metrics
from microdenoise.evaluate import quantize

RESULTS = Path(__file__).parent / "results" / "scene_disjoint"
FMD_RESULTS = Path(__file__).parent / "results" / "fmd_fm2s" / "fmd_test_mix"
CONFIGS = sorted(["Confocal_BPAE_B", "Confocal_BPAE_G", "Confocal_BPAE_R", "Confocal_FISH",
                  "Confocal_MICE", "TwoPhoton_BPAE_B", "TwoPhoton_BPAE_G", "TwoPhoton_BPAE_R",
                  "TwoPhoton_MICE", "WideField_BPAE_B", "WideField_BPAE_G", "WideField_BPAE_R"])
FOLDS = {"A": CONFIGS[0::2], "B": CONFIGS[1::2]}
W2S_TUNING = ["002_*", "003_*"]
# Candidate -> (method, params). The filters' sigma is estimated per image as usual.
CANDIDATES: dict[str, tuple[str, dict[str, object]]] = {
    # References, not part of any decision (deterministic; the library's defaults).
    "noisy": ("", {}),
    "median_3": ("median", {}),
    "gaussian_1": ("gaussian", {}),
    "fm2s_800": ("fm2s", {"schedule": "fast", "fast_steps": 800}),
    "fm2s_1600": ("fm2s", {"schedule": "fast", "fast_steps": 1600}),
    "nlm_none": ("nlm", {"vst": "none"}),
    "nlm_gat": ("nlm", {"vst": "gat"}),
    "wavelet_none": ("wavelet", {"vst": "none"}),
    "wavelet_gat": ("wavelet", {"vst": "gat"}),
    "bm3d_none": ("bm3d", {"vst": "none"}),
    "bm3d_gat": ("bm3d", {"vst": "gat"}),
}
# Decision -> (cheaper candidate, other candidate, the default before this run).
DECISIONS = {
    "FM2S fast_steps": ("fm2s_800", "fm2s_1600", "fm2s_1600"),
    "NLM vst": ("nlm_none", "nlm_gat", "nlm_gat"),
    "wavelet vst": ("wavelet_none", "wavelet_gat", "wavelet_gat"),
    "BM3D vst": ("bm3d_none", "bm3d_gat", "bm3d_gat"),
}
TIE_DB = 0.005
PRESETS = {"Confocal": "confocal", "TwoPhoton": "twophoton", "WideField": "widefield",
           "w2s": "widefield"}
FIELDS = ["candidate", "image", "config", "set", "metric", "score", "cpu_s", "wall_s"]


def config_of(image: str) -> str:
    """``Confocal_BPAE_B_3`` -> ``Confocal_BPAE_B``; W2S images -> ``w2s``."""
    return image.rsplit("_", 1)[0] if not image[0].isdigit() else "w2s"


def fold_of(image: str) -> str:
    """The fold holding ``image``'s scene; ``"tune"`` for the W2S tuning images."""
    config = config_of(image)
    return next((f for f, cs in FOLDS.items() if config in cs), "tune")


def _denoise(pair: datasets.Pair, candidate: str) -> np.ndarray:
    method, params = CANDIDATES[candidate]
    if not method:
        return pair.noisy.astype(np.float64)
    preset = PRESETS.get(pair.group) if method == "fm2s" else None
    return np.asarray(denoise_array(pair.noisy, method, params=params, preset=preset),
                      dtype=np.float64)


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    pairs: list[tuple[str, datasets.Pair]] = []
    names = [f"{c}_*" for c in FOLDS[args.fold]] if args.fold else None
    pairs += [("fmd", p) for p in datasets.fmd_test_mix(args.data_root, names=names)]
    if args.w2s:
        pairs += [("w2s", p) for p in datasets.w2s_8bit(args.data_root, split="train",
                                                        names=W2S_TUNING)]
    out = RESULTS / f"scores_{args.tag}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    finished: set[tuple[str, str]] = set()
    if out.exists():
        with out.open() as fh:
            finished = {(r["candidate"], r["image"]) for r in csv.DictReader(fh)}
    new = not out.exists()
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if new:
            writer.writeheader()
        for candidate in args.candidates:
            for kind, pair in pairs:
                if (candidate, pair.name) in finished:
                    continue
                c0, w0 = time.process_time(), time.perf_counter()
                raw = _denoise(pair, candidate)
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                gt = pair.clean.astype(np.float64)
                pred = quantize(raw, "round")
                if kind == "fmd":
                    metric, value = "psnr", metrics.psnr(pred, gt, data_range=255)
                else:
                    metric, value = "si_psnr", metrics.si_psnr(pred, gt, data_range=255.0)
                writer.writerow({"candidate": candidate, "image": pair.name,
                                 "config": config_of(pair.name), "set": kind,
                                 "metric": metric, "score": f"{value:.4f}",
                                 "cpu_s": f"{cpu:.2f}", "wall_s": f"{wall:.2f}"})
                fh.flush()
                print(f"{candidate:>12} {pair.name:<22} {value:6.2f} dB {cpu:7.1f} cpu-s",
                      flush=True)


def _scores() -> dict[tuple[str, str], dict[str, str]]:
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for path in sorted(RESULTS.glob("scores_*.csv")):
        with path.open() as fh:
            for r in csv.DictReader(fh):
                rows[(r["candidate"], r["image"])] = r
    return rows


def choose(scores: dict[tuple[str, str], dict[str, str]], decision: str,
           fold: str) -> tuple[str, float, int]:
    """The rule: the candidate with the higher mean over ``fold``'s tuning set."""
    cheap, other, _ = DECISIONS[decision]
    images = [img for (c, img) in scores if c == cheap and fold_of(img) in (fold, "tune")]
    diffs = [float(scores[(other, i)]["score"]) - float(scores[(cheap, i)]["score"])
             for i in images if (other, i) in scores]
    diff = statistics.mean(diffs) if diffs else float("nan")
    return (other if diff >= TIE_DB else cheap), diff, len(diffs)


def _paper_rows(scores: dict[tuple[str, str], dict[str, str]],
                picks: dict[str, str]) -> list[str]:
    """The cross-validated FM2S against the paper schedule where it ran (its scores
    come from ``results/fmd_fm2s``: another machine, fp32 there as here)."""
    paper: dict[str, float] = {}
    for path in sorted(FMD_RESULTS.glob("scores*.csv")):
        with path.open() as fh:
            paper |= {r["image"]: float(r["psnr"]) for r in csv.DictReader(fh)
                      if r["row"] == "fm2s_paper"}
    diffs = []
    for img, value in sorted(paper.items()):
        fold = fold_of(img)
        pick = picks["B" if fold == "A" else "A"]
        if (pick, img) in scores:
            diffs.append(float(scores[(pick, img)]["score"]) - value)
    if len(diffs) < 2:
        return []
    m, se = mean_se(diffs)
    verdict = {1: "better", -1: "worse", 0: "parity"}[decided(m, se)]
    return ["", f"FM2S (cross-validated) - paper schedule, on the {len(diffs)} images the "
            f"paper schedule ran on (`../fmd_fm2s/fmd_test_mix/`): **{m:+.3f} +- {se:.3f} dB** "
            f"(mean +- SE): {verdict}."]


def table(args: argparse.Namespace) -> str:
    scores = _scores()
    lines = ["# Scene-disjoint re-decision of the FMD-tuned defaults (issue 15)", "",
             f"Generated {date.today()} on {platform.machine()} ({platform.processor() or 'CPU'}"
             f", 2 cores, one torch thread per process, two processes), torch "
             f"{torch.__version__}, commit {git_commit()}. Per-image scores: `scores_*.csv`. "
             "The rule and the commands: the docstring of `benchmarks/scene_disjoint.py`.", "",
             f"Folds (whole scenes, all four captures): A = {', '.join(FOLDS['A'])}; "
             f"B = {', '.join(FOLDS['B'])}. Tuning set of a fold: its 24 images + W2S "
             f"training FOVs 002-003 (6 images, SI-PSNR).", "",
             "## Choices", "",
             "| decision | candidates | fold A: mean diff (n), choice | fold B: mean diff (n), "
             "choice | default before | default now |", "|---|---|---|---|---|---|"]
    chosen: dict[str, dict[str, str]] = {}
    for decision, (cheap, other, before) in DECISIONS.items():
        cells, picks = [], {}
        for fold in FOLDS:
            pick, diff, n = choose(scores, decision, fold)
            picks[fold] = pick
            cells.append(f"{other} - {cheap} = {diff:+.3f} dB ({n}): **{pick}**")
        now = picks["A"] if picks["A"] == picks["B"] else f"{cheap} (folds disagree)"
        chosen[decision] = picks
        lines.append(f"| {decision} | {cheap} vs {other} | {cells[0]} | {cells[1]} | "
                     f"{before} | {now} |")
    lines += ["", "## All 48 FMD images, each scored by the choice of the other fold", "",
              "| family | n | Confocal | TwoPhoton | WideField | mean PSNR | vs default before "
              "(mean +- SE, n) |", "|---|---|---|---|---|---|---|"]
    for decision, (_, _, before) in DECISIONS.items():
        per_image: dict[str, float] = {}
        deltas = []
        for (cand, img), r in scores.items():
            fold = fold_of(img)
            if r["set"] != "fmd" or fold == "tune":
                continue
            other_fold = "B" if fold == "A" else "A"
            if cand == chosen[decision][other_fold]:
                per_image[img] = float(r["score"])
                if (before, img) in scores:
                    deltas.append(per_image[img] - float(scores[(before, img)]["score"]))
        if not per_image:
            continue
        groups = []
        for g in ("Confocal", "TwoPhoton", "WideField"):
            vals = [v for i, v in per_image.items() if i.startswith(g)]
            groups.append(f"{statistics.mean(vals):.2f}" if vals else "")
        m, se = mean_se(deltas) if deltas else (float("nan"), float("nan"))
        lines.append(f"| {decision.split()[0]} (cross-validated) | {len(per_image)} | "
                     + " | ".join(groups) + f" | {statistics.mean(per_image.values()):.2f} | "
                     f"{m:+.3f} +- {se:.3f} ({len(deltas)}) |")
    lines += _paper_rows(scores, chosen["FM2S fast_steps"])
    lines += ["", "## Every candidate on the 48 images", "",
              "| candidate | n | Confocal | TwoPhoton | WideField | mean PSNR | median CPU s |",
              "|---|---|---|---|---|---|---|"]
    for cand in CANDIDATES:
        mine = [r for (c, _), r in scores.items() if c == cand and r["set"] == "fmd"]
        if not mine:
            continue
        groups = []
        for g in ("Confocal", "TwoPhoton", "WideField"):
            vals = [float(r["score"]) for r in mine if r["image"].startswith(g)]
            groups.append(f"{statistics.mean(vals):.2f}" if vals else "")
        lines.append(f"| {cand} | {len(mine)} | " + " | ".join(groups) +
                     f" | {statistics.mean(float(r['score']) for r in mine):.2f} | "
                     f"{statistics.median(float(r['cpu_s']) for r in mine):.1f} |")
    return finish_table(lines, RESULTS, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--fold", choices=list(FOLDS), default=None, help="default: all 48")
    r.add_argument("--w2s", action="store_true", help="also the W2S tuning FOVs 002-003")
    r.add_argument("--candidates", nargs="+", choices=list(CANDIDATES),
                   default=list(CANDIDATES))
    r.add_argument("--data-root", type=Path, default=None)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--tag", required=True, help="CSV name suffix; one per concurrent run")
    t = sub.add_parser("table")
    t.add_argument("--out", default=None)
    dispatch(parser.parse_args(), run, table)


if __name__ == "__main__":
    main()
