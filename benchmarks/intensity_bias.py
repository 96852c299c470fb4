"""Intensity bias of every method against ground truth (issue #14), and FM2S's fix.

A denoiser must not shift intensities. Per image and method this script records
the output mean minus the ground truth's mean (8-bit units and % of the GT mean),
the same over the *background* (the pixels whose GT is below the GT's 20th
percentile), and PSNR (output clipped and rounded to 0..255, data_range 255).

References. FMD and SRDTrans: the ground truth as stored. W2S 8-bit: noisy and GT
were rescaled separately (DESIGN.md), so the GT is first mapped affinely onto the
noisy image's scale (least squares of noisy on GT, with intercept); the image-mean
bias is then output mean minus input mean by construction, and the background bias
is measured against that mapped GT. PSNR on W2S is against the mapped GT too.

Split (written before any run; stratified by microscope, 2 configurations each):

* tuning fold: FMD captures ``_1`` of Confocal_BPAE_B, Confocal_MICE,
  TwoPhoton_BPAE_G, TwoPhoton_MICE, WideField_BPAE_B, WideField_BPAE_R, plus W2S
  training images 001_0, 004_1, 007_2 (one per channel; CPU is short).
* report: FMD captures of the other 6 configurations (Confocal_BPAE_G,
  Confocal_BPAE_R, Confocal_FISH, TwoPhoton_BPAE_B, TwoPhoton_BPAE_R,
  WideField_BPAE_G), W2S test FOVs 081-100 (a subset, named in the table), SRDTrans.

Diagnosis and every choice use the tuning fold only.

Decision rule (written before any run). A candidate fix of FM2S becomes the
default of the fast schedule if, on the tuning fold, (1) the mean over images of
|image-mean bias| falls by more than 50 % against FM2S's current default, (2) the
mean over images of |background bias| does not rise by more than its standard
error, and (3) the mean paired PSNR change (fix minus default) is not below minus
its standard error. If several pass, the one with the smaller mean |bias| wins;
when they differ by less than the standard error of the paired difference, the
cheaper one (no retraining) wins. The paper schedule stays the official code
unless asked (the fix is an option there). Candidates:

* ``fm2s_noclamp``: injected noise not clamped at 0 (the clamp makes the training
  inputs brighter than the targets in dark regions): ``noise_clamp=false``.
* ``fm2s_mean``: a correction, not a fix of the cause: the output is shifted by a
  constant so that its mean equals the input plane's mean (``mean_correction=plane``).

Diagnostics (tuning fold): ``noisy`` (the input's own bias: clipping at 0 in 8-bit
data), ``target`` (the pre-denoised training target, median of the preset's
window, the image FM2S learns to produce), ``fm2s_noclip`` (the network's output
without the [0, 1] output clamp).

16-bit rule (``sim16``, written before any run): for non-8-bit input FM2S takes its
noise constants from the image's Poisson-Gaussian fit (``noise_constants=auto``)
if, on the 16-bit tuning set, the mean paired PSNR change (fit minus preset) is not
below minus its standard error.

Run (appends to CSVs, skips rows already there):

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/intensity_bias.py run \
        --set tune --rows noisy median gaussian nlm bm3d fm2s fm2s_noclamp --tag tune
    ... run --set report_fmd --rows noisy median gaussian nlm bm3d fm2s --tag report
    ... sim16 --set tune   (and --set report)
    ... table --out benchmarks/results/intensity_bias/table.md

FM2S rows fit the method on the normalized plane (x / 255) and denoise it, as
``denoise_array`` does for a uint8 plane (whole image, no tiling); rows that derive
from one fitted network (``fm2s``, ``fm2s_mean``, ``fm2s_noclip``) share its fit.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import math
import platform
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import dispatch, git_commit, write_table

from microdenoise import create, datasets, denoise_array, metrics
from microdenoise.evaluate import quantize
from microdenoise.methods.fm2s_noise import predenoise

RESULTS = Path(__file__).parent / "results" / "intensity_bias"

TUNE_FMD = ["Confocal_BPAE_B", "Confocal_MICE", "TwoPhoton_BPAE_G", "TwoPhoton_MICE",
            "WideField_BPAE_B", "WideField_BPAE_R"]
REPORT_FMD = ["Confocal_BPAE_G", "Confocal_BPAE_R", "Confocal_FISH", "TwoPhoton_BPAE_B",
              "TwoPhoton_BPAE_R", "WideField_BPAE_G"]
TUNE_W2S = ["001_0", "004_1", "007_2"]
# W2S test subset (CPU): every other FOV, channels in turn.
REPORT_W2S = [f"{fov:03d}_{k % 3}" for k, fov in enumerate(range(81, 101, 2))]
BG_PERCENTILE = 20.0
PRESET = {"Confocal": "confocal", "TwoPhoton": "twophoton", "WideField": "widefield",
          "w2s": "widefield", "srdtrans": "srdtrans"}

FILTERS = {"median": ("median", {}), "gaussian": ("gaussian", {}),
           "nlm": ("nlm", {"vst": "gat"}), "bm3d": ("bm3d", {"vst": "gat"})}
FM2S_ROWS = {  # row -> (config overrides, post-processing of the fitted network)
    "fm2s": ({}, "out"), "fm2s_mean": ({}, "mean"), "fm2s_noclip": ({}, "noclip"),
    "fm2s_noclamp": ({"noise_clamp": False}, "out"),
}
ROWS = ["noisy", "target", *FILTERS, *FM2S_ROWS]
FIELDS = ["row", "image", "group", "bias", "bias_pct", "bg_bias", "bg_bias_pct", "psnr",
          "cpu_s"]


def load_set(name: str, root: Path | None) -> list[datasets.Pair]:
    """The images of a named set of the split (see the module docstring)."""
    if name == "tune":
        fmd = datasets.fmd_test_mix(root, names=[f"{c}_1" for c in TUNE_FMD])
        return fmd + datasets.w2s_8bit(root, split="train", names=TUNE_W2S)
    if name == "report_fmd":
        return datasets.fmd_test_mix(root, names=[f"{c}_[1234]" for c in REPORT_FMD])
    if name == "report_fmd13":
        return datasets.fmd_test_mix(root, names=[f"{c}_[13]" for c in REPORT_FMD])
    if name == "report_w2s":
        return datasets.w2s_8bit(root, split="test", names=REPORT_W2S)
    if name == "report_srdtrans":
        return datasets.srdtrans_subset(root)
    raise SystemExit(f"unknown set {name!r}")


def reference(pair: datasets.Pair) -> np.ndarray:
    """The GT on the noisy image's scale: as stored, or affinely fitted for W2S."""
    gt = pair.clean.astype(np.float64)
    if pair.group != "w2s":
        return gt
    noisy = pair.noisy.astype(np.float64)
    design = np.stack([gt.ravel(), np.ones(gt.size)], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(design, noisy.ravel(), rcond=None)
    return scale * gt + offset


def background(gt: np.ndarray) -> np.ndarray:
    """Pixels whose GT is below the GT's 20th percentile."""
    return gt < np.percentile(gt, BG_PERCENTILE)


def bias_row(out: np.ndarray, ref: np.ndarray, bg: np.ndarray) -> dict[str, str]:
    """Mean bias (image and background, units and %) and PSNR of an 8-bit-scale output."""
    pred = quantize(out, "round")
    d, db = float(pred.mean() - ref.mean()), float(pred[bg].mean() - ref[bg].mean())
    return {"bias": f"{d:.4f}", "bias_pct": f"{100 * d / ref.mean():.3f}",
            "bg_bias": f"{db:.4f}", "bg_bias_pct": f"{100 * db / max(ref[bg].mean(), 1e-9):.3f}",
            "psnr": f"{metrics.psnr(pred, ref, data_range=255):.4f}"}


def fm2s_outputs(plane: np.ndarray, preset: str, overrides: dict[str, Any],
                 posts: list[str]) -> dict[str, np.ndarray]:
    """Fit FM2S once on ``plane`` ([0, 1]) and return the outputs ``posts`` ask for."""
    model = create("fm2s", preset=preset, **overrides).fit(plane)
    outs = {}
    for post in posts:
        if post == "out":
            outs[post] = model.denoise(plane)
        elif post == "mean":
            m = create("fm2s", preset=preset, **overrides, mean_correction="plane")
            m.net, m.offset = model.net, float(plane.mean() - model.denoise(plane).mean())
            outs[post] = m.denoise(plane)
        elif post == "noclip":
            m = create("fm2s", preset=preset, **overrides, out_clamp=False)
            m.net = model.net
            outs[post] = m.denoise(plane)
    return outs


def csv_path(kind: str, tag: str) -> Path:
    return RESULTS / f"{kind}{'_' + tag if tag else ''}.csv"


def done(path: Path) -> set[tuple[str, str]]:
    if not path.exists():
        return set()
    with path.open() as fh:
        return {(r["row"], r["image"]) for r in csv.DictReader(fh)}


def _writer(path: Path, fields: list[str]) -> tuple[Any, csv.DictWriter[str]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    fh = path.open("a", newline="")
    writer = csv.DictWriter(fh, fields)
    if new:
        writer.writeheader()
    return fh, writer


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    out = csv_path("bias", args.tag)
    finished = done(out)
    fh, writer = _writer(out, FIELDS)
    pairs = load_set(args.set, args.data_root)
    if args.images:  # a subset when CPU is short (the table says which images ran)
        pairs = [p for p in pairs if any(fnmatch.fnmatch(p.name, g) for g in args.images)]
    for pair in pairs:
        ref = reference(pair)
        bg = background(ref)
        preset = PRESET[pair.group]
        plane = pair.noisy.astype(np.float32) / 255.0
        todo = [r for r in args.rows if (r, pair.name) not in finished]
        results: dict[str, tuple[np.ndarray, float]] = {}
        for row in todo:
            if row in results:
                continue
            c0 = time.process_time()
            if row == "noisy":
                results[row] = (pair.noisy.astype(np.float64), 0.0)
            elif row == "target":
                w = create("fm2s", preset=preset).config.w_size
                results[row] = (predenoise(plane, w_size=w) * 255.0, 0.0)
            elif row in FILTERS:
                name, params = FILTERS[row]
                results[row] = (denoise_array(pair.noisy, name, params=params), 0.0)
            else:
                overrides, _ = FM2S_ROWS[row]
                share = [r for r in todo if r in FM2S_ROWS and FM2S_ROWS[r][0] == overrides]
                outs = fm2s_outputs(plane, preset, overrides, [FM2S_ROWS[r][1] for r in share])
                cpu = time.process_time() - c0
                for r in share:
                    results[r] = (outs[FM2S_ROWS[r][1]] * 255.0, cpu)
                continue
            results[row] = (results[row][0], time.process_time() - c0)
        for row in todo:
            img, cpu = results[row]
            writer.writerow({"row": row, "image": pair.name, "group": pair.group,
                             **bias_row(img, ref, bg), "cpu_s": f"{cpu:.1f}"})
            fh.flush()
            print(f"{row:>13} {pair.name:<22} {cpu:6.1f} cpu-s", flush=True)
    fh.close()


# --- 16-bit evaluation -------------------------------------------------------------
# GT (8-bit) -> counts: OFFSET + gt * (FULL - OFFSET) / max(gt), so the GT max is 3000.
OFFSET, FULL = 100.0, 3000.0
# Poisson-Gaussian noise var = a * (y - OFFSET) + read^2 in counts, from vst fits:
# conv: the raw Convallaria frame (uint16) fits a=72.76, b=-38768, i.e. pure Poisson with
#   gain 72.76 counts/e above an offset of -b/a = 533 counts; no read noise left.
# wf: the FMD raw frame WideField_BPAE_B_1 (tuning fold) fits, in 8-bit units,
#   a=0.168, b=18.65; scaled to counts by (FULL - OFFSET) / 255 per 8-bit unit:
#   a = 1.91 counts/e, read noise std = sqrt(18.65) * 11.37 = 49.1 counts.
SIM_NOISE = {"conv": (72.76, 0.0), "wf": (0.168 * (FULL - OFFSET) / 255,
                                            math.sqrt(18.65) * (FULL - OFFSET) / 255)}
SIM_ROWS = ["noisy", "fm2s_preset", "fm2s_fit", "fm2s_fit_mean", "fm2s_fit_noclamp", "bm3d",
            "n2v"]
SIM_FIELDS = ["row", "image", "noise", "preset", "bias", "bias_pct", "bg_bias", "bg_bias_pct",
              "psnr", "cpu_s", "describe"]
SIM_SETS = {  # (GT name, group) -> noise settings; each GT once (captures share one GT)
    "tune": [("Confocal_MICE_1", "conv"), ("WideField_BPAE_R_1", "wf"),
             ("TwoPhoton_BPAE_G_1", "wf"), ("w2s:004_1", "conv")],
    "report": [("Confocal_BPAE_G_1", "conv"), ("Confocal_FISH_1", "wf"),
               ("TwoPhoton_BPAE_B_1", "conv"), ("TwoPhoton_BPAE_R_1", "wf"),
               ("WideField_BPAE_G_1", "wf"), ("w2s:083_1", "conv")],
}


def simulate(gt8: np.ndarray, noise: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(GT in counts, noisy uint16) for one GT and noise setting."""
    gt = OFFSET + gt8.astype(np.float64) * (FULL - OFFSET) / float(gt8.max())
    a, read = SIM_NOISE[noise]
    rng = np.random.default_rng(seed)
    y = OFFSET + a * rng.poisson((gt - OFFSET) / a) + rng.normal(0.0, read, gt.shape)
    return gt, np.clip(np.rint(y), 0, 65535).astype(np.uint16)


def fm2s_16(noisy: np.ndarray, preset: str, **params: Any) -> tuple[np.ndarray, str]:
    """FM2S on a uint16 plane normalized by its own range (as the pipeline does)."""
    lo, hi = float(noisy.min()), float(noisy.max())
    plane = ((noisy.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
    model = create("fm2s", preset=preset, **params).fit(plane)
    return model.denoise(plane).astype(np.float64) * (hi - lo) + lo, model.describe_fit()


def sim16(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    out = csv_path("sim16", args.tag)
    finished = done(out)
    fh, writer = _writer(out, SIM_FIELDS)
    for k, (name, noise) in enumerate(SIM_SETS[args.set]):
        if args.images and not any(fnmatch.fnmatch(name, g) for g in args.images):
            continue
        if name.startswith("w2s:"):
            split = "train" if args.set == "tune" else "test"
            pair = datasets.w2s_8bit(args.data_root, split=split, names=[name[4:]])[0]
        else:
            pair = datasets.fmd_test_mix(args.data_root, names=[name])[0]
        label = f"{name.replace('w2s:', 'w2s_').removesuffix('_1')}:{noise}"
        gt, noisy = simulate(pair.clean, noise, seed=1000 + k)
        bg = background(gt)
        preset = PRESET[pair.group]
        for row in args.rows:
            if (row, label) in finished:
                continue
            c0, said = time.process_time(), ""
            if row == "noisy":
                img = noisy.astype(np.float64)
            elif row == "fm2s_preset":
                img, said = fm2s_16(noisy, preset, noise_constants="preset")
            elif row == "fm2s_fit":
                img, said = fm2s_16(noisy, preset, noise_constants="auto")
            elif row == "fm2s_fit_mean":
                img, said = fm2s_16(noisy, preset, noise_constants="auto",
                                    mean_correction="plane")
            elif row == "fm2s_fit_noclamp":
                img, said = fm2s_16(noisy, preset, noise_constants="auto", noise_clamp=False)
            elif row == "bm3d":
                img = denoise_array(noisy, "bm3d", params={"vst": "gat"}).astype(np.float64)
            else:
                model = create("n2v", epochs=3, steps_per_epoch=50)
                model.fit(noisy)
                img = denoise_array(noisy, model).astype(np.float64)
            cpu = time.process_time() - c0
            d, db = float(img.mean() - gt.mean()), float(img[bg].mean() - gt[bg].mean())
            writer.writerow({
                "row": row, "image": label, "noise": noise, "preset": preset,
                "bias": f"{d:.3f}", "bias_pct": f"{100 * d / gt.mean():.3f}",
                "bg_bias": f"{db:.3f}", "bg_bias_pct": f"{100 * db / gt[bg].mean():.3f}",
                "psnr": f"{metrics.psnr(img, gt, data_range=float(gt.max() - gt.min())):.4f}",
                "cpu_s": f"{cpu:.1f}", "describe": said})
            fh.flush()
            print(f"{row:>13} {label:<26} {cpu:6.1f} cpu-s {said}", flush=True)
    fh.close()


def mean_se(values: list[float]) -> str:
    n = len(values)
    if n == 0:
        return ""
    m = statistics.mean(values)
    se = statistics.stdev(values) / math.sqrt(n) if n > 1 else float("nan")
    return f"{m:+.2f} ± {se:.2f}"


def table(args: argparse.Namespace) -> str:
    return write_table("\n".join(_bias_tables()), args.out)


def _bias_tables() -> list[str]:
    rows: list[dict[str, str]] = []
    for path in sorted(RESULTS.glob("bias*.csv")):
        with path.open() as fh:
            rows += [dict(r, file=path.stem) for r in csv.DictReader(fh)]
    lines = ["# Intensity bias of denoisers against ground truth (issue #14)", "",
             f"Generated {date.today()} on {platform.machine()} ({platform.node()}, 2 cores "
             f"shared with other jobs, one torch thread), torch {torch.__version__}, commit "
             f"{git_commit()}. Per-image rows: `bias*.csv`, `sim16*.csv`.", "",
             "Bias = output mean − reference mean, on the 0..255 scale (outputs clipped and "
             "rounded); bg = the same over the pixels whose reference is below its 20th "
             "percentile; % = of the reference's (background) mean. W2S reference = GT mapped "
             "affinely onto the noisy image (see the script). Cells: mean ± standard error "
             "over images; n = images.", ""]
    for tag, title in [("tune", "Tuning fold (the subset that ran: see n)"),
                       ("report", "Report sets (held out; the subset that ran: see n)")]:
        mine = [r for r in rows if r["file"] == f"bias_{tag}"]
        if not mine:
            continue
        lines += [f"## {title}", ""]
        groups = ["fmd" if r["group"] in ("Confocal", "TwoPhoton", "WideField") else r["group"]
                  for r in mine]
        for g in dict.fromkeys(groups):
            sub = [r for r, gg in zip(mine, groups, strict=True) if gg == g]
            names = sorted({r["image"] for r in sub})
            lines += [f"### {g} (n = {len(names)}: {', '.join(names)})", "",
                      "| row | n | bias | bias % | |bias| | bg bias | bg bias % | shift (out − in) "
                      "| |shift| | PSNR | ΔPSNR vs fm2s (paired) |", "|---" * 11 + "|"]
            base = {r["image"]: float(r["psnr"]) for r in sub if r["row"] == "fm2s"}
            inp = {r["image"]: float(r["bias"]) for r in sub if r["row"] == "noisy"}
            for row in ROWS:
                rr = [r for r in sub if r["row"] == row]
                if not rr:
                    continue
                col = {k: [float(r[k]) for r in rr] for k in ("bias", "bias_pct", "bg_bias",
                                                              "bg_bias_pct", "psnr")}
                dp = [float(r["psnr"]) - base[r["image"]] for r in rr if r["image"] in base]
                shift = [float(r["bias"]) - inp[r["image"]] for r in rr if r["image"] in inp]
                lines.append(
                    f"| {row} | {len(rr)} | {mean_se(col['bias'])} | {mean_se(col['bias_pct'])} "
                    f"| {mean_se([abs(v) for v in col['bias']])} | {mean_se(col['bg_bias'])} "
                    f"| {mean_se(col['bg_bias_pct'])} | {mean_se(shift)} | "
                    f"{mean_se([abs(v) for v in shift])} | {mean_se(col['psnr'])} | "
                    f"{mean_se(dp) if row != 'fm2s' else ''} |")
            lines.append("")
    lines += _sim16_tables()
    notes = RESULTS / "notes.md"
    if notes.exists():
        lines += [notes.read_text().strip()]
    return lines


def _sim16_tables() -> list[str]:
    lines: list[str] = []
    for path in sorted(RESULTS.glob("sim16*.csv")):
        with path.open() as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            continue
        lines += [f"## 16-bit simulation, `{path.name}`", "",
                  "GT (8-bit) scaled to counts: 100 + gt * 2900 / max(gt); noise settings "
                  "`conv` (Convallaria fit: gain 72.76, no read noise) and `wf` (FMD "
                  "WideField_BPAE_B_1 fit: gain 1.91, read noise 49.1 counts); uint16. Bias in "
                  "counts and % of the GT mean; PSNR with data_range = max(gt) - min(gt). "
                  f"Images: {', '.join(dict.fromkeys(r['image'] for r in rows))}.", "",
                  "| row | n | bias (counts) | bias % | bg bias (counts) | bg bias % | PSNR | "
                  "ΔPSNR vs fm2s_preset (paired) |", "|---" * 8 + "|"]
        base = {r["image"]: float(r["psnr"]) for r in rows if r["row"] == "fm2s_preset"}
        for row in SIM_ROWS:
            rr = [r for r in rows if r["row"] == row]
            if not rr:
                continue
            col = {k: [float(r[k]) for r in rr] for k in ("bias", "bias_pct", "bg_bias",
                                                          "bg_bias_pct", "psnr")}
            dp = [float(r["psnr"]) - base[r["image"]] for r in rr if r["image"] in base]
            lines.append(f"| {row} | {len(rr)} | {mean_se(col['bias'])} | "
                         f"{mean_se(col['bias_pct'])} | {mean_se(col['bg_bias'])} | "
                         f"{mean_se(col['bg_bias_pct'])} | {mean_se(col['psnr'])} | "
                         f"{mean_se(dp) if row != 'fm2s_preset' else ''} |")
        lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--set", required=True, choices=["tune", "report_fmd", "report_fmd13",
                                                    "report_w2s", "report_srdtrans"])
    r.add_argument("--rows", nargs="+", choices=ROWS, required=True)
    r.add_argument("--data-root", type=Path, default=None)
    r.add_argument("--images", nargs="*", default=None, help="glob subset of the set")
    r.add_argument("--tag", default="")
    s16 = sub.add_parser("sim16")
    s16.add_argument("--set", required=True, choices=list(SIM_SETS))
    s16.add_argument("--rows", nargs="+", choices=SIM_ROWS, required=True)
    s16.add_argument("--data-root", type=Path, default=None)
    s16.add_argument("--images", nargs="*", default=None, help="glob subset of the set")
    s16.add_argument("--tag", default="")
    t = sub.add_parser("table")
    t.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.cmd == "sim16":
        sim16(args)
    else:
        dispatch(args, run, table)


if __name__ == "__main__":
    main()
