"""The noise-aware default (``auto``) against every fixed method and the oracle (issue 28).

The rule, written before the runs: ``results/default/rule.md``. Each row is one
method on one image of a dev set, run in this process with one torch thread:

- ``auto``: ``denoise_array(noisy, "auto")`` (the router: noise measured, then
  VST-BM3D on white noise, FM2S on correlated noise), with the route and the
  coarse/fine ratio recorded;
- the fixed methods at the defaults a user gets by name (``CANDIDATES``);
- ``fm2s_widefield``: FM2S with the official widefield preset (the rule's point 3).

FMD and SRDTrans are scored as the papers do: PSNR/SSIM on 0..255 of the rounded
output; W2S (its noisy and clean 8-bit frames were rescaled separately) by SI-PSNR,
and SSIM of the output after the same least-squares affine fit. Seconds are the
process's CPU time per image (one thread). Commands (two at a time on 2 cores)::

    .venv/bin/python benchmarks/default_router.py run --set srdtrans --tag srd
    .venv/bin/python benchmarks/default_router.py run --set w2s --rows auto bm3d nlm \\
        gaussian median wavelet --tag w2s_fast
    .venv/bin/python benchmarks/default_router.py run --set w2s --rows fm2s --tag w2s_fm2s
    .venv/bin/python benchmarks/default_router.py run --set fmd --rows auto bm3d nlm \\
        gaussian median wavelet --tag fmd_fast
    .venv/bin/python benchmarks/default_router.py run --set fmd --rows fm2s --tag fmd_fm2s
    .venv/bin/python benchmarks/default_router.py run --set fmd --rows fm2s_widefield \\
        --images 'WideField_*' --tag fmd_wf
    .venv/bin/python benchmarks/default_router.py refine
    .venv/bin/python benchmarks/default_router.py route-cost
    .venv/bin/python benchmarks/default_router.py table --out benchmarks/results/default/table.md
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
from _common import decided, dispatch, finish_table, git_commit, mean_se

from microdenoise import datasets, denoise_array, metrics
from microdenoise.compare_estimators import noise_check
from microdenoise.evaluate import quantize

RESULTS = Path(__file__).parent / "results" / "default"
COMPARE = Path(__file__).parent / "results" / "compare"
SETS = ("fmd", "w2s", "srdtrans")
CANDIDATES: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "noisy": ("", {}, None),
    "auto": ("auto", {}, None),
    "fm2s": ("fm2s", {}, None),
    "fm2s_widefield": ("fm2s", {}, "widefield"),
    "bm3d": ("bm3d", {}, None),
    "nlm": ("nlm", {}, None),
    "wavelet": ("wavelet", {}, None),
    "gaussian": ("gaussian", {}, None),
    "median": ("median", {}, None),
}
FIXED = ("fm2s", "bm3d", "nlm", "wavelet", "gaussian", "median")
# The per-image oracle: the best of the router's candidates with the bm3d package
# installed (VST-BM3D; FM2S with the widefield preset, the correlated route after the
# rule's point 3) and of FM2S's default (the rule's first wording): the strictest.
ORACLE = ("bm3d", "fm2s", "fm2s_widefield")
FIELDS = ["candidate", "image", "group", "set", "metric", "score", "ssim", "cpu_s",
          "route", "ratio"]
FOLDS = {"A": ["Confocal_BPAE_B", "Confocal_BPAE_R", "Confocal_MICE", "TwoPhoton_BPAE_G",
               "TwoPhoton_MICE", "WideField_BPAE_G"],
         "B": ["Confocal_BPAE_G", "Confocal_FISH", "TwoPhoton_BPAE_B", "TwoPhoton_BPAE_R",
               "WideField_BPAE_B", "WideField_BPAE_R"]}


def pairs_of(name: str, images: list[str] | None) -> list[datasets.Pair]:
    """The dev set's pairs: FMD 48, W2S test FOVs 081-100 (3 channels), SRDTrans 10."""
    if name == "fmd":
        return datasets.fmd_test_mix(names=images)
    if name == "w2s":
        return datasets.w2s_8bit(split="test", names=images)
    return datasets.srdtrans_subset(names=images)


def affine_fit(x: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """``a x + b`` with the least-squares a, b against ``gt`` (SI-PSNR's fit)."""
    a, b = np.polyfit(x.ravel(), gt.ravel(), 1)
    return a * x + b


def score(kind: str, out: np.ndarray, gt: np.ndarray) -> tuple[str, float, float]:
    pred = quantize(out, "round")
    if kind == "w2s":
        fitted = affine_fit(pred, gt)
        return ("si_psnr", metrics.si_psnr(pred, gt, data_range=255.0),
                metrics.ssim(np.clip(fitted, 0, 255), gt, data_range=255.0))
    return ("psnr", metrics.psnr(pred, gt, data_range=255.0),
            metrics.ssim(pred, gt, data_range=255.0))


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    pairs = pairs_of(args.set, args.images)
    out = RESULTS / f"scores_{args.tag}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    done: set[tuple[str, str]] = set()
    if out.exists():
        with out.open() as fh:
            done = {(r["candidate"], r["image"]) for r in csv.DictReader(fh)}
    new = not out.exists()
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if new:
            writer.writeheader()
        for candidate in args.rows:
            method, params, preset = CANDIDATES[candidate]
            for pair in pairs:
                if (candidate, pair.name) in done:
                    continue
                route, ratio = "", ""
                c0 = time.process_time()
                if not method:
                    raw = pair.noisy.astype(np.float64)
                else:
                    raw = np.asarray(denoise_array(pair.noisy, method, params=params,
                                                   preset=preset), dtype=np.float64)
                cpu = time.process_time() - c0
                if candidate == "auto":
                    check = noise_check(pair.noisy.astype(np.float64) / 255.0)
                    ratio = f"{check.white_ratio:.3f}"
                    route = "white" if check.white_ratio <= 4 else "correlated"
                metric, value, ssim = score(args.set, raw, pair.clean.astype(np.float64))
                writer.writerow({"candidate": candidate, "image": pair.name,
                                 "group": pair.group, "set": args.set, "metric": metric,
                                 "score": f"{value:.4f}", "ssim": f"{ssim:.4f}",
                                 "cpu_s": f"{cpu:.2f}", "route": route, "ratio": ratio})
                fh.flush()
                print(f"{candidate} {pair.name}: {metric} {value:.2f} ssim {ssim:.3f} "
                      f"{cpu:.1f} s {route}", flush=True)


def load_rows() -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(RESULTS.glob("scores_*.csv")):
        with path.open() as fh:
            rows += list(csv.DictReader(fh))
    return rows


def by_image(rows: list[dict[str, str]], kind: str) -> dict[str, dict[str, dict[str, str]]]:
    out: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for r in rows:
        if r["set"] == kind:
            out[r["image"]][r["candidate"]] = r
    return out


def _fmt(values: list[float], digits: int = 2) -> str:
    return f"{statistics.mean(values):.{digits}f}" if values else "—"


def table(args: argparse.Namespace) -> str:
    rows = load_rows()
    lines = ["# The noise-aware default against every fixed method (issue 28)", "",
             f"Generated {date.today()} on {platform.machine()} (CPU, 2 cores, one torch "
             f"thread per process, at most two processes), torch {torch.__version__}, commit "
             f"{git_commit()}. The rule: `rule.md` (written first). Per-image rows: "
             "`scores_*.csv`. FMD/SRDTrans: PSNR/SSIM on 0..255 of the rounded output; W2S: "
             "SI-PSNR, SSIM after the same affine fit. Seconds: median CPU s per image.", ""]
    verdicts: list[str] = []
    for kind in SETS:
        images = by_image(rows, kind)
        if not images:
            continue
        groups = sorted({r["group"] for d in images.values() for r in d.values()})
        full = [i for i, d in images.items() if all(c in d for c in ("auto", *ORACLE))]
        if not full:
            lines += [f"## {kind}: incomplete (no image has auto and {', '.join(ORACLE)})", ""]
            continue
        # The permissive route (no bm3d package): FM2S's default on white noise, the
        # widefield preset on correlated noise; from the rows of those two methods.
        for i in full:
            d = images[i]
            pick = "fm2s" if d["auto"]["route"] == "white" else "fm2s_widefield"
            if pick in d:
                d["auto_permissive"] = {**d[pick], "candidate": "auto_permissive"}
        lines += [f"## {kind} ({len(full)} images with every router candidate)", ""]
        head = "| method | n | " + " | ".join(groups) + " | mean | SSIM | CPU s |" \
            if kind == "fmd" else "| method | n | mean | SSIM | CPU s |"
        lines += [head, "|" + "---|" * (head.count("|") - 1)]
        names = ["auto", "oracle", "auto_permissive", *FIXED, "fm2s_widefield", "noisy"]
        means: dict[str, float] = {}
        for name in names:
            if name == "oracle":
                got = [max(float(images[i][c]["score"]) for c in ORACLE) for i in full]
                per = {i: max(float(images[i][c]["score"]) for c in ORACLE) for i in full}
                ssim: list[float] = []
                cpu: list[float] = []
            else:
                have = [i for i in full if name in images[i]]
                if not have:
                    continue
                per = {i: float(images[i][name]["score"]) for i in have}
                got = list(per.values())
                ssim = [float(images[i][name]["ssim"]) for i in have]
                cpu = [float(images[i][name]["cpu_s"]) for i in have]
            if len(per) == len(full):
                means[name] = statistics.mean(got)
            cells = [name, str(len(got))]
            if kind == "fmd":
                for g in groups:
                    cells.append(_fmt([v for i, v in per.items() if i.startswith(g)]))
            cells += [_fmt(got), _fmt(ssim, 3), f"{statistics.median(cpu):.1f}" if cpu else "—"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        fixed = {n: means[n] for n in FIXED if n in means}
        if fixed and "auto" in means:
            best = max(fixed, key=fixed.__getitem__)
            diffs = [float(images[i]["auto"]["score"]) - float(images[i][best]["score"])
                     for i in full]
            d, se = mean_se(diffs)
            gap = means["oracle"] - means["auto"]
            word = {1: "better", 0: "parity", -1: "worse"}[decided(d, se)]
            ok = d >= 0 and gap <= 0.3
            verdicts.append(f"- {kind}: auto - best fixed ({best}) = {d:+.3f} +- {se:.3f} dB "
                            f"({word}); oracle - auto = {gap:.3f} dB: "
                            f"{'met' if ok else 'NOT met'}")
            if kind == "fmd":
                for g in groups:
                    sub = [i for i in full if i.startswith(g)]
                    gm = {n: statistics.mean(float(images[i][n]["score"]) for i in sub)
                          for n in fixed}
                    gb = max(gm, key=gm.__getitem__)
                    a = statistics.mean(float(images[i]["auto"]["score"]) for i in sub)
                    verdicts.append(f"  - {g}: auto {a:.2f} vs best fixed {gb} {gm[gb]:.2f} "
                                    f"({a - gm[gb]:+.2f} dB; rule: >= -0.3: "
                                    f"{'met' if a - gm[gb] >= -0.3 else 'NOT met'})")
    lines += ["## The rule's verdicts", "", *verdicts]
    return finish_table(lines, RESULTS, args.out)


def refine(args: argparse.Namespace) -> None:
    """The rule's point 4, from the held-out ``compare`` rows: BM3D's sigma_scale moved
    away from 1 only when SURE-GAT separates the best estimate from sigma_scale=1 by
    more than 2 SE (the SEs of the two estimates combined, as no paired SE is stored)."""
    for path in sorted(COMPARE.glob("scores_*.csv")):
        if path.stem in ("scores_fmd1", "scores_fmd1_rest", "scores_fmd2", "scores_w2s",
                         "scores_w2s_rest", "scores_srdtrans"):
            with path.open() as fh:
                rows = [r for r in csv.DictReader(fh) if r["label"].startswith("bm3d")
                        and r["estimator"] == "sure-gat" and r.get("true_psnr")]
            found: dict[str, dict[str, tuple[float, float, float]]] = defaultdict(dict)
            for r in rows:
                try:
                    found[r["image"]][r["label"]] = (float(r["estimate"]), float(r["se"]),
                                                     float(r["true_psnr"]))
                except ValueError:
                    continue
            gains, moved = [], []
            for image, d in sorted(found.items()):
                prior = d.get("bm3d:sigma_scale=1")
                if prior is None:
                    continue
                best = min(d, key=lambda k: d[k][0])
                separated = prior[0] - d[best][0] > 2 * (prior[1] ** 2 + d[best][1] ** 2) ** 0.5
                gains.append((d[best][2] if separated else prior[2]) - prior[2])
                if separated:
                    moved.append(f"{image} -> {best} ({gains[-1]:+.2f} dB)")
            if gains:
                print(f"{path.name}: {len(gains)} images, moved on {len(moved)}, mean gain "
                      f"{statistics.mean(gains):+.3f} dB; {'; '.join(moved)}")


def route_cost(args: argparse.Namespace) -> None:
    """The choosing's cost: CPU seconds of ``Auto.route`` on one plane of every dev image
    (as the core calls it: the plane scaled to [0, 1]), and on the 1024x1024 16-bit
    Convallaria frame; written to ``route_cost.csv``."""
    from microdenoise import read_image
    from microdenoise.methods.auto import Auto

    auto = Auto()
    rows = []
    planes = [(kind, p.name, p.noisy.astype(np.float32) / 255.0)
              for kind in SETS for p in pairs_of(kind, None)]
    conv = read_image(datasets.data_root_or_none() / "convallaria" /  # type: ignore[operator]
                      "convallaria_frame0.tif").data.astype(np.float32)
    planes.append(("convallaria", "frame0", (conv - conv.min()) / np.ptp(conv)))
    for kind, name, x in planes:
        c0 = time.process_time()
        route = auto.route([x])
        rows.append({"set": kind, "image": name, "shape": "x".join(map(str, x.shape)),
                     "cpu_s": f"{time.process_time() - c0:.4f}",
                     "route": route.method.key, "reason": route.reason})
    with (RESULTS / "route_cost.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for kind in (*SETS, "convallaria"):
        cpu = [float(r["cpu_s"]) for r in rows if r["set"] == kind]
        routes = sorted({r["route"] for r in rows if r["set"] == kind})
        print(f"{kind}: {len(cpu)} planes, route CPU s median {statistics.median(cpu):.3f}, "
              f"max {max(cpu):.3f}; routes {routes}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--set", choices=SETS, required=True)
    r.add_argument("--rows", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    r.add_argument("--images", nargs="*", default=None)
    r.add_argument("--tag", required=True)
    t = sub.add_parser("table")
    t.add_argument("--out", default=None)
    sub.add_parser("refine")
    sub.add_parser("route-cost")
    args = p.parse_args()
    if args.cmd == "refine":
        refine(args)
        return
    if args.cmd == "route-cost":
        route_cost(args)
        return
    dispatch(args, run, table)


if __name__ == "__main__":
    main()
