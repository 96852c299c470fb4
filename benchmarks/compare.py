"""How well `microdenoise compare` ranks methods without ground truth (issue 17).

For each image, :func:`microdenoise.compare` estimates every candidate's MSE from the
noisy data alone; the ground truth then gives the true MSE of the same outputs. Per
image we report the Spearman correlation of estimated and true MSE over the
candidates and the regret: true PSNR of the best candidate minus that of the
recommended one (no recommendation: the fallback, FM2S, when it was a candidate,
else counted apart).

Sets (``run --set``)
--------------------
- ``fmd2``: FMD test mix, two captures: ``_3`` is the image, ``_4`` the second capture
  (ground truth of ``_3``). ``fmd1``: the same ``_3``/``_4`` frames, single image.
- ``w2s``: W2S 8-bit test FOVs 081-100 (single image); true error after a per-image
  least-squares affine fit of each output to the ground truth (noisy and clean were
  rescaled separately), i.e. the SI-PSNR convention.
- ``srdtrans``: the 10 SRDTrans frames (single image).
- ``tune``: the tuning images (FMD ``_1``/``_2`` of the WideField configurations, W2S
  training FOVs 001-010): plain and correlated-noise SURE side by side for every
  candidate, which is the measurement behind ``compare_correlated.RELIABLE``.

FMD truth: output rounded and clipped to 0..255, MSE against the avg-50 ground truth
(whose own noise, about var/50, adds a constant to every candidate's true MSE).

The rule, written before any number of this script existed
----------------------------------------------------------
Nothing is chosen from the ``fmd2``, ``fmd1``, ``w2s`` or ``srdtrans`` numbers: they are
held-out reports. The only setting chosen on data is whether correlated-noise SURE
may recommend; its rule is in :mod:`microdenoise.compare_correlated` and was
measured with ``--set tune`` (crop 256, gaussian/median/nlm grids). The white-noise
limit of ``noise_check`` (4.0) was set from FMD ``_1``/``_2`` (confocal and two-photon
1.2-2.6, widefield 7.4-7.9).

Whether ``denoise --method auto`` becomes the default of ``denoise`` (issue 17),
decided by this rule, written 2026-12-03 before any held-out number: only if, on every
single-image held-out set that ran (fmd1, w2s, srdtrans), SURE (the default
single-image estimator) has median Spearman >= 0.8 and mean regret <= 0.3 dB, and its
recommendations' mean true PSNR is not below the best fixed candidate's (chosen in
hindsight) by more than the standard error of their paired difference. Otherwise
FM2S stays the default and auto stays an option.

Single-image sets also get the Noise2Self masked estimate of every candidate
(``estimator`` = ``masked``, one phase of a stride-4 grid, seed 0) beside SURE's.
Settings fixed before the held-out runs (2026-12-03), none chosen on their numbers:
central 256 x 256 crops for the single-image sets (as ``denoise --method auto``),
SURE's probe eps 0.02 for every method, FM2S included. For CPU time (about 3 min per
image with FM2S scored three times; 6-7 min with two runs sharing the 2 cores),
``w2s`` ran on 10 of its 60 images, one channel per test FOV in turn (FOV 081
channel 0, 082 channel 1, ..., 090 channel 0), and ``fmd1`` on the 12 ``_3``
captures. Both subsets were fixed before any of their numbers existed.

Commands::

    .venv/bin/python benchmarks/compare.py run --set fmd2 --tag fmd2
    .venv/bin/python benchmarks/compare.py run --set fmd1 --tag fmd1 --crop 256 \
        --images $(for c in Confocal_BPAE_B Confocal_BPAE_G Confocal_BPAE_R Confocal_FISH \
        Confocal_MICE TwoPhoton_BPAE_B TwoPhoton_BPAE_G TwoPhoton_BPAE_R TwoPhoton_MICE \
        WideField_BPAE_B WideField_BPAE_G WideField_BPAE_R; do echo ${c}_3; done)
    .venv/bin/python benchmarks/compare.py run --set srdtrans --tag srdtrans --crop 256
    .venv/bin/python benchmarks/compare.py run --set w2s --tag w2s --crop 256 \
        --images $(for k in $(seq 81 90); do printf '%03d_%d ' $k $(( (k - 81) % 3 )); done)
    .venv/bin/python benchmarks/compare.py table --out benchmarks/results/compare/table.md

Coverage of the rest of the sets (added 2026-12-03, second session, before these ran;
nothing is chosen on them): the same settings, two runs at a time, one torch thread
each, in this order, each resumable (a finished image is skipped). Since the default
single-image estimator became ``masked`` and SURE stopped trusting FM2S, the rows of
these runs carry that code (``fm2s``'s SURE row is never recommended), unlike the
first runs' ``scores_fmd1.csv``/``scores_w2s.csv``; hence separate tags. FMD ``_1``/``_2``
come last because the white-noise limit (4.0) was set on them::

    .venv/bin/python benchmarks/compare.py run --set fmd1 --tag fmd1_rest --crop 256 \
        --images $(for k in 4 1 2; do for c in Confocal_BPAE_B Confocal_BPAE_G \
        Confocal_BPAE_R Confocal_FISH Confocal_MICE TwoPhoton_BPAE_B TwoPhoton_BPAE_G \
        TwoPhoton_BPAE_R TwoPhoton_MICE WideField_BPAE_B WideField_BPAE_G WideField_BPAE_R; \
        do echo ${c}_$k; done; done)
    .venv/bin/python benchmarks/compare.py run --set w2s --tag w2s_rest --crop 256 \
        --images $(for k in $(seq 91 100); do printf '%03d_%d ' $k $(( (k - 81) % 3 )); done; \
        for j in 1 2; do for k in $(seq 81 100); do \
        printf '%03d_%d ' $k $(( (k - 81 + j) % 3 )); done; done)
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
from _common import dispatch
from compare_table import table

from microdenoise import compare, datasets
from microdenoise import compare_estimators as est
from microdenoise.compare_correlated import sure_correlated
from microdenoise.compare_masked import masked_mse
from microdenoise.comparison import CompareResult, applier, candidates
from microdenoise.errors import InputError

RESULTS = Path(__file__).parent / "results" / "compare"
METHODS = ("gaussian", "median", "nlm", "bm3d", "fm2s")
TUNE_METHODS = ("gaussian", "median", "nlm")
FIELDS = ["set", "image", "label", "estimator", "estimate", "se", "reliable", "true_mse",
          "true_psnr", "si_mse", "recommended", "seconds", "error"]
TUNE_FIELDS = ["image", "label", "true_mse", "plain", "plain_se", "corr", "corr_se", "ratio",
               "lag1"]


def _crop(x: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return x
    y0, x0 = (max(0, (n - size) // 2) for n in x.shape[-2:])
    return x[..., y0:y0 + size, x0:x0 + size]


def true_mse(out: np.ndarray, gt: np.ndarray, *, affine: bool) -> float:
    """FMD/SRDTrans: rounded 0..255 output vs ground truth; W2S: after an affine fit."""
    g = gt.astype(np.float64)
    if affine:
        a = np.stack([out.ravel(), np.ones(out.size)], axis=1)
        coef, *_ = np.linalg.lstsq(a, g.ravel(), rcond=None)
        return float(np.mean((a @ coef - g.ravel()) ** 2))
    return float(np.mean((np.clip(np.rint(out), 0, 255) - g) ** 2))


def _images(which: str, root: Path | None) -> list[tuple[datasets.Pair, np.ndarray | None]]:
    if which in ("fmd2", "fmd1"):
        pairs = {p.name: p for p in datasets.fmd_test_mix(root, names=["*_3", "*_4"])}
        if which == "fmd2":
            return [(p, pairs[n[:-1] + "4"].noisy) for n, p in pairs.items() if n.endswith("_3")]
        return [(p, None) for p in pairs.values()]
    if which == "w2s":
        return [(p, None) for p in datasets.w2s_8bit(root, split="test")]
    if which == "srdtrans":
        return [(p, None) for p in datasets.srdtrans_subset(root)]
    raise SystemExit(f"unknown set {which}")


def _done(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with path.open() as fh:
        return {r["image"] for r in csv.DictReader(fh)}


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.set == "tune":
        return tune(args)
    if args.set == "tune_fm2s":
        return tune_fm2s(args)
    if args.set == "tune_masked":
        return tune_masked(args)
    out = RESULTS / f"scores_{args.tag}.csv"
    finished, new = _done(out), not out.exists()
    items = [(p, s) for p, s in _images(args.set, args.data_root)
             if not args.images or p.name in args.images]
    if args.images:  # in the order given
        items.sort(key=lambda item: args.images.index(item[0].name))
    items = items[: args.limit]
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if new:
            writer.writeheader()
        for pair, second in items:
            if pair.name in finished:
                continue
            t0 = time.perf_counter()
            sec = None if second is None else _crop(second, args.crop)
            try:
                # SURE's rows come from compare (single="sure"); the masked rows are
                # computed beside them by _masked_rows
                result = compare(_crop(pair.noisy, args.crop), methods=args.methods,
                                 second=sec, crop=None, seed=0, single="sure")
            except InputError as exc:  # a refused image is a result too: one row says why
                writer.writerow({"set": args.set, "image": pair.name, "label": "-",
                                 "estimator": "refused", "estimate": "nan", "se": "nan",
                                 "reliable": False, "true_mse": "nan", "true_psnr": "nan",
                                 "si_mse": "nan", "recommended": False, "seconds": "0",
                                 "error": f"refused: {exc}"})
                fh.flush()
                print(f"{pair.name:<22} refused: {exc}", flush=True)
                continue
            gt = _crop(pair.clean, args.crop)
            for r in result.rows:
                out_img = result.outputs.get(r.label)
                t = true_mse(out_img, gt, affine=args.set == "w2s") if out_img is not None \
                    else math.nan
                si = true_mse(out_img, gt, affine=True) if out_img is not None else math.nan
                writer.writerow({
                    "set": args.set, "image": pair.name, "label": r.label,
                    "estimator": r.estimator, "estimate": repr(r.estimate), "se": repr(r.se),
                    "reliable": r.reliable, "true_mse": repr(t),
                    "true_psnr": repr(10 * math.log10(255 ** 2 / t) if t > 0 else math.nan),
                    "si_mse": repr(si),
                    "recommended": r.label == result.recommended,
                    "seconds": f"{r.seconds:.2f}", "error": r.error})
            if second is None and not args.no_masked:
                _masked_rows(writer, args.set, pair.name, _crop(pair.noisy, args.crop), gt,
                             result)
            fh.flush()
            print(f"{pair.name:<22} recommended {result.recommended} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)


def _masked_rows(writer: csv.DictWriter, which: str, name: str, raw: np.ndarray,
                 gt: np.ndarray, result: CompareResult) -> None:
    """The Noise2Self masked estimate of every candidate that ran, beside SURE's rows;
    the true MSE is that of f(x) (what a user would run), the pick the lowest reliable
    estimate (as compare recommends)."""
    x = est.check_plane(raw)
    check = est.noise_check(x)
    scored = []
    for r in result.rows:
        if r.error or r.label not in result.outputs:
            continue
        t0 = time.perf_counter()
        f = applier(r.method, dict(r.params), raw, seed=0)
        m = masked_mse(x, f, check, seed=0)
        fx = result.outputs[r.label]
        scored.append((r.label, m, true_mse(fx, gt, affine=which == "w2s"),
                       true_mse(fx, gt, affine=True), time.perf_counter() - t0))
    ok = [s for s in scored if s[1].reliable and math.isfinite(s[1].value)]
    pick = min(ok, key=lambda s: s[1].value)[0] if ok else None
    for label, m, t, si, sec in scored:
        writer.writerow({
            "set": which, "image": name, "label": label, "estimator": "masked",
            "estimate": repr(m.value), "se": repr(m.se), "reliable": m.reliable,
            "true_mse": repr(t),
            "true_psnr": repr(10 * math.log10(255 ** 2 / t) if t > 0 else math.nan),
            "si_mse": repr(si), "recommended": label == pick, "seconds": f"{sec:.2f}",
            "error": ""})


def tune(args: argparse.Namespace) -> None:
    """Plain and correlated-noise SURE per candidate on the tuning images."""
    names = [f"WideField_BPAE_{c}_{k}" for c in "BGR" for k in (1, 2)]
    pairs = [(p, False) for p in datasets.fmd_test_mix(args.data_root, names=names)]
    pairs += [(p, True) for p in datasets.w2s_8bit(args.data_root, split="train")]
    out = RESULTS / "tune.csv"
    finished, new = _done(out), not out.exists()
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, TUNE_FIELDS)
        if new:
            writer.writeheader()
        for pair, affine in pairs[: args.limit]:
            if pair.name in finished:
                continue
            raw, gt = _crop(pair.noisy, 256), _crop(pair.clean, 256)
            x = raw.astype(np.float64)
            check = est.noise_check(x)
            for label, method, params in candidates(TUNE_METHODS):
                f = applier(method, params, raw, seed=0)
                fx = f(raw)
                plain = est.sure_gat(x, f, check, fx=fx)
                corr, noise = sure_correlated(x, f, check, fx=fx)
                writer.writerow({"image": pair.name, "label": label,
                                 "true_mse": repr(true_mse(fx, gt, affine=affine)),
                                 "plain": repr(plain.value), "plain_se": repr(plain.se),
                                 "corr": repr(corr.value), "corr_se": repr(corr.se),
                                 "ratio": f"{check.white_ratio:.3f}",
                                 "lag1": f"{noise.lag1:.3f}"})
            fh.flush()
            print(f"{pair.name} done", flush=True)


def tune_masked(args: argparse.Namespace) -> None:
    """The masked estimate beside plain SURE on the W2S training images.

    The rule, written 2026-12-03 before this ran (after the held-out runs, where masked
    did better than SURE on W2S and worse on FMD Spearman): on the 30 W2S training
    images (central 256 x 256 crops, the gaussian, median and nlm grids, the same as
    ``tune.csv``), if the masked estimate has a median Spearman at least SURE's and a
    mean regret at most SURE's, ``masked`` becomes compare's default single-image
    estimator (and so ``denoise --method auto``'s); otherwise SURE stays.
    """
    out = RESULTS / "tune_masked.csv"
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label", "true_mse", "plain", "masked", "masked_se"])
        for pair in datasets.w2s_8bit(args.data_root, split="train"):
            raw, gt = _crop(pair.noisy, 256), _crop(pair.clean, 256)
            x = est.check_plane(raw)
            check = est.noise_check(x)
            for label, method, params in candidates(TUNE_METHODS):
                f = applier(method, params, raw, seed=0)
                fx = f(raw)
                plain = est.sure_gat(x, f, check, fx=fx)
                m = masked_mse(x, f, check, seed=0)
                writer.writerow([pair.name, label, repr(true_mse(fx, gt, affine=True)),
                                 repr(plain.value), repr(m.value), repr(m.se)])
            fh.flush()
            print(pair.name, "done", flush=True)


def tune_fm2s(args: argparse.Namespace) -> None:
    """FM2S's single-image estimates against its true MSE on W2S training images.

    The rule, written 2026-12-03 before this ran (after the held-out W2S and FMD runs
    showed SURE recommending FM2S with regrets up to 6.7 dB): if FM2S's SURE estimate
    is below 0.7 x its true MSE on at least 2 of the 3 images (central 256 x 256 crops
    of W2S training FOVs 001 ch 0, 002 ch 1, 003 ch 2), compare marks SURE rows of
    methods fitted per image by stochastic training (FM2S) unreliable. The masked
    estimate is recorded beside it, not decided on.
    """
    names = {"001_0", "002_1", "003_2"}
    pairs = [p for p in datasets.w2s_8bit(args.data_root, split="train") if p.name in names]
    out = RESULTS / "tune_fm2s.csv"
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "true_mse", "sure", "sure_se", "masked", "masked_se"])
        for pair in pairs:
            raw, gt = _crop(pair.noisy, 256), _crop(pair.clean, 256)
            x = est.check_plane(raw)
            check = est.noise_check(x)
            f = applier("fm2s", {}, raw, seed=0)
            fx = f(raw)
            sure = est.sure_gat(x, f, check, fx=fx)
            m = masked_mse(x, f, check, seed=0)
            # the clean image in the noisy image's units (E[x] = clean there): the
            # ground truth fitted to x by least squares
            a = np.stack([gt.ravel().astype(np.float64), np.ones(gt.size)], axis=1)
            clean = (a @ np.linalg.lstsq(a, x.ravel(), rcond=None)[0]).reshape(x.shape)
            truth = float(np.mean((fx - clean) ** 2))
            writer.writerow([pair.name, repr(truth), repr(sure.value), repr(sure.se),
                             repr(m.value), repr(m.se)])
            fh.flush()
            print(pair.name, truth, sure.value, m.value, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--set", required=True, choices=("fmd2", "fmd1", "w2s", "srdtrans", "tune",
                                                     "tune_fm2s", "tune_masked"))
    r.add_argument("--methods", nargs="+", default=list(METHODS))
    r.add_argument("--crop", type=int, default=None, help="central crop of each image")
    r.add_argument("--limit", type=int, default=None, help="only the first N images")
    r.add_argument("--images", nargs="+", default=None, help="only these image names")
    r.add_argument("--data-root", type=Path, default=None)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--tag", default="run", help="CSV name suffix; one per concurrent run")
    r.add_argument("--no-masked", action="store_true",
                   help="single-image sets: skip the masked (Noise2Self) rows")
    t = sub.add_parser("table")
    t.add_argument("--out", default=None)
    dispatch(parser.parse_args(), run, table)


if __name__ == "__main__":
    main()
