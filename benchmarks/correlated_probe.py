"""Does a cheaper or better method beat FM2S on spatially correlated noise (issue 28)?

The rule, written before any score of this run existed (verbatim)
-----------------------------------------------------------------
"For spatially correlated noise, each candidate's mean PSNR over a fold's WideField
images is computed; a fold's choice is the candidate with the highest mean. Each
candidate's free parameter (e.g. a Gaussian sigma, a PSD scale) is chosen on one fold by
the highest mean PSNR over its grid and reported on the other fold. FM2S (the incumbent)
is replaced only if a candidate beats it on BOTH folds by more than the standard error of
the per-image paired difference; otherwise FM2S stays, and a candidate at parity but over
5x cheaper is reported as such (the lead decides whether speed matters)."

How it is applied here: the folds are ``FOLDS`` of ``scene_disjoint.py`` (fold A's
WideField scene: WideField_BPAE_G, 4 images; fold B's: WideField_BPAE_B and _R, 8
images). A candidate's score on fold F is that of the grid value chosen on the *other*
fold; FM2S is ``fm2s_1600`` (the library default), read from
``results/scene_disjoint/scores_*.csv`` with the ``noisy``, ``gaussian_1`` and
``bm3d_gat`` reference rows (not rerun). Scoring as there: PSNR on 0..255 of the
rounded output (``quantize(255 * y, "round")``) against the float ground truth; SSIM
(``metrics.ssim``, data range 255) of the same output; CPU seconds by
``time.process_time`` at one thread.

Candidates (plain functions of ``x = raw / 255``):

- ``gauss_S``: ``scipy.ndimage.gaussian_filter(x, S, mode="reflect")``, S in
  ``GAUSS_GRID``.
- ``bm3dpsd_K``: correlated-noise BM3D (Makinen, Azzari & Foi, "Collaborative filtering
  of correlated noise: exact transform-domain variance for improved shrinkage and
  patch matching", IEEE TIP 29, 8339-8354, 2020; the ``bm3d`` package) in the GAT
  domain: the Poisson-Gaussian fit of ``microdenoise.vst`` stabilizes the
  signal-dependent part (the pixel-level fit sees only part of a correlated noise, so
  the stabilized noise has a variance above 1 but about the same everywhere), the
  noise PSD of the GAT image is estimated from the image itself (:func:`estimate_psd`),
  multiplied by K in ``PSD_GRID``, and the result is taken back by ``gat_inverse``.
- ``wienerpsd_K``: a global empirical Wiener filter in the same GAT domain with the same
  PSD estimate: gain ``max(0, 1 - K * PSD / P)`` with ``P`` the image's smoothed
  periodogram (optional candidate of the brief; cheap).

The ``bm3d`` package's PSD convention (read in ``bm4d/__init__.py``: a scalar
``sigma`` becomes ``np.ones(z.shape) * z.size * sigma ** 2``): ``sigma_psd`` is the
expected FFT power of the noise, ``E|fft2(noise)|^2``, whose mean over the frequencies
is ``N * sigma^2`` (N pixels), not a normalized PSD. ``check`` verifies it: a constant
PSD of ``N * sigma^2`` gives bit-for-bit the output of ``sigma_psd=sigma``; a constant
``sigma^2`` (normalized) returns the input about unchanged, which is what the issue's
first probe saw. The package calls ``np.trapz`` (gone in NumPy 2): aliased below.

Commands (one process, one thread)::

    .venv/bin/python benchmarks/correlated_probe.py check
    .venv/bin/python benchmarks/correlated_probe.py run
    .venv/bin/python benchmarks/correlated_probe.py run --images Confocal_FISH_1
    .venv/bin/python benchmarks/correlated_probe.py run --families gauss --values 3.5 4 5 \\
        --tag posthoc
    .venv/bin/python benchmarks/correlated_probe.py run --families bm3dpsd --values 2 \\
        --tag posthoc
    .venv/bin/python benchmarks/correlated_probe.py table

(``table`` prints the tables that ``results/correlated_probe/notes.md`` holds; the two
``posthoc`` runs were added after the scores were seen, to show whether the grids' edges
bounded the choices, and decide nothing.)
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _common import decided, dispatch, git_commit, mean_se, write_table  # noqa: E402
from scene_disjoint import FIELDS, FOLDS, _scores, config_of  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

from microdenoise import datasets, metrics  # noqa: E402
from microdenoise.evaluate import quantize  # noqa: E402
from microdenoise.vst import estimate_poisson_gaussian, gat_forward, gat_inverse  # noqa: E402

if not hasattr(np, "trapz"):  # the bm3d package calls np.trapz, removed in NumPy 2
    setattr(np, "trapz", np.trapezoid)  # noqa: B010

RESULTS = Path(__file__).parent / "results" / "correlated_probe"
GAUSS_GRID = (1.0, 1.5, 2.0, 2.5, 3.0)
PSD_GRID = (0.5, 0.75, 1.0, 1.5)
WIDEFIELD = ["WideField_BPAE_B_*", "WideField_BPAE_G_*", "WideField_BPAE_R_*"]
WHITE = ["Confocal_FISH_1"]
INCUMBENT = "fm2s_1600"
REFERENCES = ("noisy", "gaussian_1", "bm3d_gat", INCUMBENT)
# PSD estimate (fixed before any fold score; see estimate_psd).
BLOCK = 64
KEEP = 0.25
MAX_LAG = 8
CSV_FIELDS = [*FIELDS, "ssim"]


# --------------------------------------------------------------------------- noise PSD
def _detrend(block: np.ndarray) -> np.ndarray:
    """``block`` minus its least-squares plane a + b * row + c * col."""
    n, m = block.shape
    r, c = np.mgrid[:n, :m]
    design = np.stack([np.ones(n * m), r.ravel(), c.ravel()], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, block.ravel(), rcond=None)
    return block - (design @ coef).reshape(n, m)


def estimate_psd(z: np.ndarray, *, block: int = BLOCK, keep: float = KEEP,
                 max_lag: int = MAX_LAG) -> np.ndarray:
    """Noise PSD of ``z`` in the ``bm3d`` package's convention (mean over frequencies =
    N * per-pixel variance, N = ``z.size``), estimated from the image alone.

    ``z`` is cut into non-overlapping ``block`` x ``block`` tiles; each loses its
    least-squares plane; the ``keep`` fraction with the lowest variance (the flattest,
    where the signal left is smallest) give a mean periodogram ``|fft2|^2 / block^2``
    (mean = the per-pixel variance). Its autocorrelation is kept to lags of at most
    ``max_lag`` pixels (the FMD widefield correlation is gone by 3-4 px; the cut is what
    interpolates the estimate onto the image's frequency grid and removes most of its
    variance) and transformed back at the image's size; negative values of the cut
    estimate are floored at 1% of its mean.
    """
    h, w = z.shape
    tiles = [_detrend(z[i:i + block, j:j + block].astype(np.float64))
             for i in range(0, h - block + 1, block) for j in range(0, w - block + 1, block)]
    var = np.array([t.var() for t in tiles])
    n_keep = max(4, int(round(keep * len(tiles))))
    chosen = [tiles[k] for k in np.argsort(var)[:n_keep]]
    periodogram = np.mean([np.abs(np.fft.fft2(t)) ** 2 for t in chosen], axis=0) / block**2
    acf = np.real(np.fft.ifft2(periodogram))  # acf[0, 0] = per-pixel variance
    full = np.zeros((h, w))
    lags = np.arange(-max_lag, max_lag + 1)
    for dy in lags:
        for dx in lags:
            full[dy % h, dx % w] = acf[dy % block, dx % block]
    psd = np.real(np.fft.fft2(full))  # per-pixel units: mean = acf[0, 0]
    psd = np.maximum(psd, 0.01 * psd.mean())
    return psd * (h * w)


# --------------------------------------------------------------------------- candidates
def gaussian(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.asarray(ndi.gaussian_filter(x, sigma=sigma, mode="reflect"), dtype=np.float64)


def _gat(x: np.ndarray):  # type: ignore[no-untyped-def]
    model = estimate_poisson_gaussian(x)
    return model, gat_forward(x, model).astype(np.float64)


def bm3d_psd(x: np.ndarray, scale: float) -> np.ndarray:
    import bm3d

    model, z = _gat(x)
    y = bm3d.bm3d(z, sigma_psd=scale * estimate_psd(z))
    return np.asarray(gat_inverse(y, model), dtype=np.float64)


def wiener_psd(x: np.ndarray, scale: float) -> np.ndarray:
    model, z = _gat(x)
    noise = scale * estimate_psd(z)  # fft-power units, as |fft2(z)|^2
    mean = z.mean()
    spectrum = np.fft.fft2(z - mean)
    power = np.fft.ifftshift(ndi.gaussian_filter(np.fft.fftshift(np.abs(spectrum) ** 2), 2.0,
                                                 mode="wrap"))
    gain = np.maximum(0.0, 1.0 - noise / np.maximum(power, 1e-12))
    y = np.real(np.fft.ifft2(spectrum * gain)) + mean
    return np.asarray(gat_inverse(y, model), dtype=np.float64)


FAMILIES: dict[str, tuple[Callable[[np.ndarray, float], np.ndarray], tuple[float, ...]]] = {
    "gauss": (gaussian, GAUSS_GRID),
    "wienerpsd": (wiener_psd, PSD_GRID),
    "bm3dpsd": (bm3d_psd, PSD_GRID),
}


def candidates(families: list[str], values: list[float] | None = None
               ) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """``FAMILY_VALUE`` -> denoiser of ``x``; ``values`` replaces the families' grids."""
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for fam in families:
        fn, grid = FAMILIES[fam]
        for v in values or grid:
            out[f"{fam}_{v:g}"] = (lambda x, fn=fn, v=v: fn(x, v))
    return out


def _score(y01: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    pred = quantize(255.0 * y01, "round")
    gt = clean.astype(np.float64)
    return metrics.psnr(pred, gt, data_range=255), metrics.ssim(pred, gt, data_range=255)


# --------------------------------------------------------------------------- commands
def check(args: argparse.Namespace) -> None:
    """PSD convention on synthetic noise, then each family at K/S = 1 on one image."""
    import bm3d

    rng = np.random.default_rng(0)
    n = 256
    yy, xx = np.mgrid[:n, :n] / n
    clean = 0.5 + 0.3 * np.sin(6 * np.pi * xx) * np.cos(4 * np.pi * yy)
    s = 0.1
    z = clean + s * rng.standard_normal((n, n))

    def p(o: np.ndarray) -> float:
        return float(10 * np.log10(1 / np.mean((o - clean) ** 2)))

    a = bm3d.bm3d(z, sigma_psd=s)
    b = bm3d.bm3d(z, sigma_psd=np.full((n, n), n * n * s * s))
    c = bm3d.bm3d(z, sigma_psd=np.full((n, n), s * s))
    print(f"white sigma={s}: noisy {p(z):.2f} dB; sigma_psd=sigma {p(a):.2f}; "
          f"PSD=N*sigma^2 {p(b):.2f} (max |diff| to sigma: {np.abs(a - b).max():.2e}); "
          f"PSD=sigma^2 {p(c):.2f} (max |out - in| {np.abs(c - z).max():.2e})")
    # The estimator on pure noise (a ramp under it; no texture), white and correlated
    # (white noise blurred by a Gaussian of 0.8 px, periodic): estimate vs true PSD.
    ramp = 0.3 + 0.2 * xx
    kernel = np.zeros((n, n))
    kernel[0, 0] = 1.0
    kernel = ndi.gaussian_filter(kernel, 0.8, mode="wrap")
    for label, noise, true in (
            ("white", s * rng.standard_normal((n, n)), np.full((n, n), n * n * s * s)),
            ("correlated", np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((n, n)))
                                                * np.fft.fft2(kernel))) * s / np.sqrt(
                                                    (kernel ** 2).sum()),
             np.abs(np.fft.fft2(kernel)) ** 2 * n * n * s * s / (kernel ** 2).sum())):
        est = estimate_psd(ramp + noise)
        ratio = est / true
        print(f"estimate_psd, {label} noise: mean/N {est.mean() / n / n:.5f} (true "
              f"{true.mean() / n / n:.5f}); est/true over frequencies where true > 5% of "
              f"its max: median {np.median(ratio[true > 0.05 * true.max()]):.3f}, 5-95% "
              f"{np.quantile(ratio[true > 0.05 * true.max()], 0.05):.3f}-"
              f"{np.quantile(ratio[true > 0.05 * true.max()], 0.95):.3f}")
        if label == "correlated":
            zc = clean + noise
            print(f"  on the textured image + this noise: noisy {p(zc):.2f} dB; bm3d "
                  f"sigma_psd=sigma {p(bm3d.bm3d(zc, sigma_psd=s)):.2f}; true PSD "
                  f"{p(bm3d.bm3d(zc, sigma_psd=true)):.2f}; estimated PSD "
                  f"{p(bm3d.bm3d(zc, sigma_psd=estimate_psd(zc))):.2f}")
    pair = datasets.load_dataset("fmd_test_mix", args.data_root, names=[args.image])[0]
    x = pair.noisy.astype(np.float64) / 255.0
    model, zz = _gat(x)
    est = estimate_psd(zz)
    ps = est / zz.size
    print(f"{pair.name}: GAT-domain noise variance from the PSD {ps.mean():.3f} "
          f"(1 if the pixel fit saw it all); PSD(0)/mean {ps[0, 0] / ps.mean():.2f}")
    for name in ("gauss_1", "wienerpsd_1", "bm3dpsd_1"):
        fam, v = name.rsplit("_", 1)
        c0 = time.process_time()
        y = FAMILIES[fam][0](x, float(v))
        cpu = time.process_time() - c0
        print(f"{name:>12}: {_score(y, pair.clean)[0]:6.2f} dB, {cpu:6.2f} cpu-s")


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    pairs = datasets.load_dataset("fmd_test_mix", args.data_root, names=args.images)
    todo = candidates(args.families, args.values)
    out = RESULTS / f"scores{'_' + args.tag if args.tag else ''}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    finished: set[tuple[str, str]] = set()
    if out.exists():
        with out.open() as fh:
            finished = {(r["candidate"], r["image"]) for r in csv.DictReader(fh)}
    new = not out.exists()
    with out.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, CSV_FIELDS)
        if new:
            writer.writeheader()
        for pair in pairs:
            x = pair.noisy.astype(np.float64) / 255.0
            for name, fn in todo.items():
                if (name, pair.name) in finished:
                    continue
                c0, w0 = time.process_time(), time.perf_counter()
                y = fn(x)
                cpu, wall = time.process_time() - c0, time.perf_counter() - w0
                value, ssim = _score(y, pair.clean)
                writer.writerow({"candidate": name, "image": pair.name,
                                 "config": config_of(pair.name), "set": "fmd",
                                 "metric": "psnr", "score": f"{value:.4f}",
                                 "cpu_s": f"{cpu:.2f}", "wall_s": f"{wall:.2f}",
                                 "ssim": f"{ssim:.4f}"})
                fh.flush()
                print(f"{name:>14} {pair.name:<22} {value:6.2f} dB {ssim:.4f} {cpu:7.2f} cpu-s",
                      flush=True)


def _rows(tags: tuple[str, ...] = ("",)) -> dict[tuple[str, str], dict[str, str]]:
    """Rows of this study's ``scores[_TAG].csv`` plus the reference rows of
    ``scene_disjoint`` (not rerun). The decision reads only ``scores.csv``."""
    rows = {k: r for k, r in _scores().items() if k[0] in REFERENCES}
    for tag in tags:
        path = RESULTS / f"scores{'_' + tag if tag else ''}.csv"
        if path.exists():
            with path.open() as fh:
                rows |= {(r["candidate"], r["image"]): r for r in csv.DictReader(fh)}
    return rows


def _fold_images(fold: str) -> list[str]:
    return sorted(f"{c}_{i}" for c in FOLDS[fold] if c.startswith("WideField")
                  for i in range(1, 5))


def _mean(rows: dict[tuple[str, str], dict[str, str]], cand: str, images: list[str],
          key: str = "score") -> float:
    vals = [float(rows[(cand, i)][key]) for i in images if (cand, i) in rows
            and rows[(cand, i)].get(key)]
    return statistics.mean(vals) if len(vals) == len(images) else float("nan")


def _median_cpu(rows: dict[tuple[str, str], dict[str, str]], cand: str) -> float:
    vals = [float(r["cpu_s"]) for (c, i), r in rows.items()
            if c == cand and i.startswith("WideField")]
    return statistics.median(vals) if vals else float("nan")


def table(args: argparse.Namespace) -> str:
    rows = _rows()
    folds = {f: _fold_images(f) for f in FOLDS}
    other = {"A": "B", "B": "A"}
    lines = ["# Correlated noise (FMD WideField): candidates against FM2S, scene-disjoint", "",
             f"Generated {date.today()} on {platform.machine()} "
             f"({platform.processor() or 'CPU'}), one thread, commit {git_commit()}, by "
             "`benchmarks/correlated_probe.py` (rule and commands in its docstring). "
             "Per-image rows: `scores.csv`; FM2S, gaussian_1, bm3d_gat and noisy rows: "
             "`../scene_disjoint/scores_*.csv`. PSNR on 0..255 of the rounded output.", "",
             "## Every grid value, mean PSNR per fold (tuning view)", "",
             "| candidate | fold A (n=4) | fold B (n=8) | median CPU s |", "|---|---|---|---|"]
    picks: dict[str, dict[str, str]] = {}
    for fam, (_, grid) in FAMILIES.items():
        names = [f"{fam}_{v:g}" for v in grid]
        if not any((names[0], i) in rows for i in folds["A"] + folds["B"]):
            continue
        for n in names:
            lines.append(f"| {n} | {_mean(rows, n, folds['A']):.3f} | "
                         f"{_mean(rows, n, folds['B']):.3f} | {_median_cpu(rows, n):.2f} |")
        picks[fam] = {f: max(names, key=lambda n, f=f: _mean(rows, n, folds[f]))
                      for f in FOLDS}
    lines += ["", "Parameter chosen on each fold (highest mean over its grid): "
              + "; ".join(f"{fam}: A -> {p['A']}, B -> {p['B']}" for fam, p in picks.items()),
              "", "## Each fold scored with the parameter chosen on the other fold", "",
              "| candidate | fold | parameter (chosen on) | mean PSNR | mean SSIM | "
              f"- {INCUMBENT} (mean +- SE, n) | verdict | median CPU s |",
              "|---|---|---|---|---|---|---|---|"]
    verdicts: dict[str, list[int]] = {}
    for fold in FOLDS:
        imgs = folds[fold]
        fold_means: dict[str, float] = {}
        for cand in (*REFERENCES, *picks):
            name = picks[cand][other[fold]] if cand in picks else cand
            m = _mean(rows, name, imgs)
            fold_means[cand] = m
            ss = _mean(rows, name, imgs, "ssim")
            diffs = [float(rows[(name, i)]["score"]) - float(rows[(INCUMBENT, i)]["score"])
                     for i in imgs if (name, i) in rows and (INCUMBENT, i) in rows]
            if cand == INCUMBENT or len(diffs) < 2:
                dcell, vcell = "", ""
            else:
                d, se = mean_se(diffs)
                v = decided(d, se)
                verdicts.setdefault(cand, []).append(v)
                dcell = f"{d:+.3f} +- {se:.3f} ({len(diffs)})"
                vcell = {1: "better", -1: "worse", 0: "parity"}[v]
            pcell = f"{name} ({other[fold]})" if cand in picks else name
            lines.append(f"| {cand} | {fold} | {pcell} | {m:.3f} | "
                         f"{'' if np.isnan(ss) else f'{ss:.4f}'} | {dcell} | {vcell} | "
                         f"{_median_cpu(rows, name):.2f} |")
        best = max(fold_means, key=lambda c: fold_means[c])
        lines.append(f"| **fold {fold} choice** | {fold} | | **{best}** | | | | |")
    lines += ["", "## Verdict by the rule", ""]
    winners = [c for c, v in verdicts.items() if v == [1, 1]]
    cpu_fm2s = _median_cpu(rows, INCUMBENT)
    if winners:
        lines.append(f"FM2S is replaced: {', '.join(winners)} beat it on both folds by more "
                     "than the SE of the paired difference.")
    else:
        lines.append("No candidate beats FM2S on both folds by more than the SE: FM2S stays.")
    lines += ["", "| candidate | fold A | fold B | CPU s (median, WideField) | FM2S CPU s / "
              "candidate's | parity (no fold worse) and over 5x cheaper? |",
              "|---|---|---|---|---|---|"]
    words = {1: "better", -1: "worse", 0: "parity"}
    for c, v in verdicts.items():
        if c not in picks:
            continue
        cpu = statistics.median(_median_cpu(rows, picks[c][f]) for f in FOLDS)
        speed = cpu_fm2s / max(cpu, 1e-3)
        ok = all(x >= 0 for x in v) and speed > 5
        lines.append(f"| {c} | {words[v[0]]} | {words[v[1]]} | {cpu:.2f} | {speed:.1f}x | "
                     f"{'yes' if ok else 'no'} |")
    lines += _posthoc(folds)
    white = [(c, r) for (c, i), r in rows.items() if i in WHITE]
    if white:
        chosen: dict[str, str] = {}
        for p in picks.values():
            for f in FOLDS:
                chosen[p[f]] = "+".join(filter(None, (chosen.get(p[f]), f)))
        lines += ["", "## One white-noise image (no decision)", "",
                  "| candidate | chosen on fold | image | PSNR | SSIM | CPU s |",
                  "|---|---|---|---|---|---|"]
        for c, r in sorted(white, key=lambda t: t[0]):
            lines.append(f"| {c} | {chosen.get(c, '')} | {r['image']} | "
                         f"{float(r['score']):.2f} | {r.get('ssim') or ''} | "
                         f"{float(r['cpu_s']):.2f} |")
    return write_table("\n".join(lines), args.out)


def _posthoc(folds: dict[str, list[str]]) -> list[str]:
    """Grid values run after the scores were seen (``scores_posthoc.csv``): fold means
    only, to show whether a grid's edge bounded a choice. They decide nothing."""
    rows = _rows(("posthoc",))
    decision = _rows()
    names = sorted({c for (c, i) in rows if (c, i) not in decision},
                   key=lambda n: (n.rsplit("_", 1)[0], float(n.rsplit("_", 1)[1])))
    if not names:
        return []
    out = ["", "## Post hoc: grid values beyond the edge (run after the scores were seen; "
           "no part of the decision)", "",
           "| candidate | fold A (n=4) | fold B (n=8) | median CPU s |", "|---|---|---|---|"]
    for n in names:
        out.append(f"| {n} | {_mean(rows, n, folds['A']):.3f} | {_mean(rows, n, folds['B']):.3f}"
                   f" | {_median_cpu(rows, n):.2f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--image", default="WideField_BPAE_B_3")
    c.add_argument("--data-root", type=Path, default=None)
    r = sub.add_parser("run")
    r.add_argument("--images", nargs="+", default=WIDEFIELD)
    r.add_argument("--families", nargs="+", choices=list(FAMILIES), default=list(FAMILIES))
    r.add_argument("--values", nargs="+", type=float, default=None,
                   help="grid values instead of the families' grids (post hoc runs)")
    r.add_argument("--data-root", type=Path, default=None)
    r.add_argument("--tag", default="", help="CSV name suffix (scores_TAG.csv)")
    t = sub.add_parser("table")
    t.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.cmd == "check":
        check(args)
    else:
        dispatch(args, run, table)


if __name__ == "__main__":
    main()
