"""The table of ``benchmarks/compare.py``: per scores file and estimator, and pooled per
set under the current rules (issue 17)."""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from _common import finish_table, git_commit
from scipy.stats import spearmanr

RESULTS = Path(__file__).parent / "results" / "compare"


def _ran(rows: list[dict[str, str]], truth: str) -> list[dict[str, str]]:
    """The rows of candidates that ran (a finite true error), estimated or not."""
    return [r for r in rows if not r.get("error") and math.isfinite(float(r[truth]))]


def _pick(rows: list[dict[str, str]]) -> dict[str, str] | None:
    """What a user would run: the recommended row, else fm2s (the fallback of
    ``denoise --method auto``) when it ran, else None."""
    ran = [r for r in rows if not r.get("error")]
    rec = [r for r in ran if r.get("recommended") == "True"]
    return rec[0] if rec else next((r for r in ran if r["label"] == "fm2s"), None)


def _per_image(rows: list[dict[str, str]], est_key: str, truth: str = "true_mse"
               ) -> tuple[float, float, bool]:
    """(Spearman, regret dB, recommended?) of one image's rows against ``truth``; the
    oracle is the best candidate that ran, whether or not it has a finite estimate."""
    ran = _ran(rows, truth)
    ok = [r for r in ran if math.isfinite(float(r[est_key]))]
    t = np.array([float(r[truth]) for r in ok])
    e = np.array([float(r[est_key]) for r in ok])
    rho = float(spearmanr(e, t)[0]) if len(ok) > 2 else math.nan
    best = min((float(r[truth]) for r in ran), default=math.nan)
    if "recommended" in rows[0]:
        pick = _pick(rows)
        regret = (10 * math.log10(float(pick[truth]) / best)
                  if pick is not None else math.nan)
        return rho, regret, any(r.get("recommended") == "True" for r in rows)
    return rho, 10 * math.log10(t[int(np.argmin(e))] / best), True


def _load(path: Path) -> dict[str, list[dict[str, str]]]:
    by: dict[str, list[dict[str, str]]] = {}
    with path.open() as fh:
        for r in csv.DictReader(fh):
            by.setdefault(r["image"], []).append(r)
    return by


def _by_estimator(path: Path) -> dict[str, dict[str, list[dict[str, str]]]]:
    """One file's rows by estimator family (masked apart from SURE's plain/correlated
    rows, which share one recommendation per image), then by image."""
    out: dict[str, dict[str, list[dict[str, str]]]] = {}
    for image, rows in _load(path).items():
        for r in rows:
            if r["estimator"] == "refused":
                continue  # listed apart by _refused
            key = "masked" if r["estimator"] == "masked" else (
                "two-capture" if r["estimator"] == "two-capture" else "sure")
            out.setdefault(key, {}).setdefault(image, []).append(r)
    return out


def _fixed_stats(by: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    """Mean true PSNR of the picks vs the best single fixed label (in hindsight), over
    the images where both exist, with the SE of the paired difference; how many images
    fell back to fm2s and how many had no pick at all (``best`` None: no common label)."""
    psnr = {img: {r["label"]: float(r["true_psnr"]) for r in _ran(rows, "true_mse")}
            for img, rows in by.items()}
    picks = {img: _pick(rows) for img, rows in by.items()}
    images = sorted(img for img, p in picks.items() if p is not None)
    out: dict[str, Any] = {
        "fallback": sum(1 for p in picks.values() if p is not None
                        and p.get("recommended") != "True"),
        "dropped": len(by) - len(images), "images": len(images), "best": None}
    labels = set.intersection(*(set(psnr[i]) for i in images)) if images else set()
    if not labels:
        return out
    best = max(sorted(labels), key=lambda lab: float(np.mean([psnr[i][lab] for i in images])))
    got = np.array([float(picks[i]["true_psnr"]) for i in images])  # type: ignore[index]
    fixed = np.array([psnr[i][best] for i in images])
    diff = got - fixed
    out.update(best=best, got=float(np.mean(got)), fixed=float(np.mean(fixed)),
               diff=float(np.mean(diff)),
               se=float(np.std(diff, ddof=1) / math.sqrt(len(diff))) if len(diff) > 1
               else math.nan,
               fm2s=(f"{np.mean([psnr[i]['fm2s'] for i in images]):.2f}" if "fm2s" in labels
                     else "-"))
    return out


def _versus_fixed(tag: str, estimator: str, by: dict[str, list[dict[str, str]]]) -> str:
    """One table row of :func:`_fixed_stats`."""
    st = _fixed_stats(by)
    if st["best"] is None:
        return (f"| {tag} | {estimator} | {len(by)} | - | - | - | - | - | {st['fallback']} | "
                f"{st['dropped']} |")
    return (f"| {tag} | {estimator} | {st['images']} | {st['got']:.2f} | {st['best']} | "
            f"{st['fixed']:.2f} | {st['fm2s']} | {st['diff']:+.2f} +- {st['se']:.2f} | "
            f"{st['fallback']} | {st['dropped']} |")


def _mean(v: list[float]) -> str:
    v = [x for x in v if math.isfinite(x)]
    return f"{statistics.mean(v):.2f}" if v else "-"


def _median(v: list[float]) -> str:
    v = [x for x in v if math.isfinite(x)]
    return f"{statistics.median(v):.2f}" if v else "-"


def table(args: argparse.Namespace) -> str:
    lines = ["# compare: estimated vs true MSE (issue 17)", "",
             f"Commit {git_commit()}. Per-row scores: `scores_*.csv`, `tune.csv`. Spearman: "
             "estimated vs true MSE over one image's candidates; regret: true PSNR of the "
             "best candidate minus the recommended one (fm2s when nothing is recommended "
             "and fm2s ran). Targets (issue 17): median Spearman >= 0.8; mean regret <= 0.3 "
             "dB with one image, <= 0.1 dB with two captures.", "",
             "SI: the true MSE after a per-output least-squares affine fit to the ground "
             "truth (a capture's brightness differs from the avg-50 ground truth's: "
             "TwoPhoton_BPAE_R_1 is 10% brighter, and the two-capture estimate measures "
             "against the capture's own clean image).", "",
             "| scores | estimator | images | median Spearman | mean regret dB | median "
             "regret dB | Spearman (SI) | mean regret (SI) | recommended | within 3 SE |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    auto = ["", "## Recommended vs the best fixed candidate", "",
            "Mean true PSNR over the set's images of what each estimator recommended "
            "(fm2s where it recommended nothing, as `denoise --method auto` falls back; the "
            "count is given, and where most images fall back the comparison says little "
            "about the estimator), against the best single fixed candidate (one label for "
            "every image, chosen with the ground truth, i.e. in hindsight) and FM2S. "
            "`auto` meets its target when recommended - best fixed >= 0, or the "
            "difference is within its standard error (paired over images).", "",
            "| scores | estimator | images | recommended dB | best fixed | its dB | fm2s dB | "
            "recommended - best fixed | fell back to fm2s | no pick (left out) |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("scores_*.csv")):
        for estimator, by in _by_estimator(path).items():
            stats = [_per_image(rows, "estimate") for rows in by.values()]
            si = [_per_image(rows, "estimate", "si_mse") for rows in by.values()]
            rows = [r for rs in by.values() for r in rs if not r["error"]]
            inside = [abs(float(r["estimate"]) - float(r["true_mse"])) < 3 * float(r["se"])
                      for r in rows]
            within = "-" if estimator == "masked" else f"{sum(inside)}/{len(inside)}"
            lines.append(f"| {path.stem[7:]} | {estimator} | {len(by)} | "
                         f"{_median([s[0] for s in stats])} | {_mean([s[1] for s in stats])} | "
                         f"{_median([s[1] for s in stats])} | {_median([s[0] for s in si])} | "
                         f"{_mean([s[1] for s in si])} | {sum(s[2] for s in stats)} | "
                         f"{within} |")
            auto.append(_versus_fixed(path.stem[7:], estimator, by))
    lines += auto
    lines += pooled()
    refused = [(path.stem[7:], img, rows[0]["error"]) for path in
               sorted(RESULTS.glob("scores_*.csv")) for img, rows in _load(path).items()
               if rows[0]["estimator"] == "refused"]
    if refused:
        lines += ["", "## Refused images", "", "| scores | image | why |", "|---|---|---|"]
        lines += [f"| {tag} | {img} | {why} |" for tag, img, why in refused]
    tune_path = RESULTS / "tune.csv"
    if tune_path.exists():
        by = _load(tune_path)
        lines += ["", "## Tuning images: plain vs correlated-noise SURE", "",
                  "| images | n | plain Spearman | plain regret | corr Spearman | "
                  "corr regret |", "|---|---|---|---|---|---|"]
        groups = (("FMD WideField _1/_2", lambda i: i.startswith("WideField")),
                  ("W2S train", lambda i: i[:1].isdigit()), ("all", lambda i: True))
        for name, keep in groups:
            sel = [rows for img, rows in by.items() if keep(img)]
            p = [_per_image(r, "plain") for r in sel]
            c = [_per_image(r, "corr") for r in sel]
            lines.append(f"| {name} | {len(sel)} | {_median([s[0] for s in p])} | "
                         f"{_median([s[1] for s in p])} | {_median([s[0] for s in c])} | "
                         f"{_median([s[1] for s in c])} |")
    return finish_table(lines, RESULTS, args.out)


POOLS = {"FMD `_3` and `_4`, one image (256^2)": ("fmd1", "fmd1_rest"),
         "W2S test FOVs 081-100, one channel each (256^2)": ("w2s", "w2s_rest"),
         "SRDTrans, 10 frames (256^2)": ("srdtrans",),
         "FMD `_3` with `_4` as second capture (512^2)": ("fmd2",)}


def current_rules(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """One image's SURE rows as compare scores them now: SURE rows of FM2S (trained on
    the image) not reliable, the recommendation the lowest reliable estimate. The
    first runs (``scores_fmd1.csv``, ``scores_w2s.csv``) predate that rule."""
    out = [dict(r) for r in rows]
    for r in out:
        if r["estimator"].startswith("sure") and r["label"].split(":")[0] == "fm2s":
            r["reliable"] = "False"
    ok = [r for r in out if r["reliable"] == "True" and not r["error"]
          and math.isfinite(float(r["estimate"]))]
    pick = min(ok, key=lambda r: float(r["estimate"]))["label"] if ok else None
    for r in out:
        r["recommended"] = str(r["label"] == pick)
    return out


def pooled() -> list[str]:
    """Per set, every scores file of it pooled, SURE under the current rules."""
    lines = ["", "## Pooled per set, current rules", "",
             "Every scores file of a set pooled (which file holds which images, and the "
             "commit of each, is in the notes); SURE's recommendation recomputed with FM2S's "
             "SURE rows untrusted, as compare does now (the first fmd1/w2s runs predate "
             "that rule; the estimates themselves are unchanged). Regret: fm2s where "
             "nothing is recommended.", "",
             "| set | estimator | images | median Spearman | mean regret dB | median regret "
             "dB | recommended | recommended - best fixed (hindsight) dB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, tags in POOLS.items():
        merged: dict[str, dict[str, list[dict[str, str]]]] = {}
        for tag in tags:
            path = RESULTS / f"scores_{tag}.csv"
            if not path.exists():
                continue
            for estimator, by in _by_estimator(path).items():
                for img, rows in by.items():
                    if estimator == "sure":
                        rows = current_rules(rows)
                    merged.setdefault(estimator, {})[img] = rows
        for estimator, by in merged.items():
            stats = [_per_image(rows, "estimate") for rows in by.values()]
            st = _fixed_stats(by)
            fixed = "-" if st["best"] is None else f"{st['diff']:+.2f} +- {st['se']:.2f}"
            lines.append(f"| {name} | {estimator} | {len(by)} | "
                         f"{_median([s[0] for s in stats])} | "
                         f"{_mean([s[1] for s in stats])} | "
                         f"{_median([s[1] for s in stats])} | {sum(s[2] for s in stats)} | "
                         f"{fixed} |")
    return lines
