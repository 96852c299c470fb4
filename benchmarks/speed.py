"""One speed table against what a user would call instead (issue 18), side by side.

Rows (``run --rows``), each a ratio measured in one run, on the same input, with the
outputs compared:

- ``filters``: each classical filter through microdenoise (``denoise_array``: the
  prediction core, normalization, checks) against the library function it wraps
  (scipy.ndimage, scikit-image, bm3d) called directly on the same image scaled the
  same way (uint8 / 255), with the same parameters. Noise levels are given
  (``sigma``, ``vst="none"``) so both sides compute the same thing; the table gives
  the largest output difference (in the image's 0..255 units) to show it. Wall
  seconds: median of ``--repeats``, the two sides alternating; peak memory: the
  largest traced NumPy allocation peak (``tracemalloc``) of the repeats.
- ``fm2s``: the default FM2S (fast schedule) against the official schedule
  (``schedule="paper"``) on the same 512 x 512 FMD image, each in a fresh process
  with torch's default threads and the library's environment, wall time of fit +
  prediction and PSNR against the ground truth.

- ``predict`` and ``fm2s_infer``: trained networks on large planes and stacks; see
  ``benchmarks/speed_predict.py``.

N2V training against CAREamics 0.3.5 is measured side by side by
``benchmarks/vs_careamics.py`` (its table is linked from this one, not re-run here).

Commands::

    .venv/bin/python benchmarks/speed.py run --rows filters --repeats 5
    .venv/bin/python benchmarks/speed.py run --rows fm2s
    .venv/bin/python benchmarks/speed.py run --rows predict fm2s_infer
    .venv/bin/python benchmarks/speed.py table --out benchmarks/results/speed/table.md
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
from _common import dispatch, finish_table, git_commit
from speed_predict import run_fm2s_infer, run_predict

RESULTS = Path(__file__).parent / "results" / "speed"
IMAGE = "Confocal_FISH_3"
SIGMA = 0.05  # the noise std given to NLM, wavelet and BM3D (0..1 units)
FIELDS = ["row", "case", "ours_s", "direct_s", "ratio", "ours_peak_mb", "direct_peak_mb",
          "max_diff", "n", "extra"]


def _image(root: Path | None) -> tuple[np.ndarray, np.ndarray]:
    from microdenoise import datasets

    pair = datasets.fmd_test_mix(root, names=[IMAGE])[0]
    return pair.noisy, pair.clean


def _filter_cases() -> dict[str, tuple[dict, Callable[[np.ndarray], np.ndarray]]]:
    """name -> (our parameters, the direct call on the unit-scaled float32 image)."""
    import bm3d
    from scipy import ndimage as ndi
    from skimage import restoration

    import microdenoise as md

    bil = md.create("bilateral").config
    tv = md.create("tv").config
    wav = md.create("wavelet", vst="none", sigma=SIGMA).config
    prof = md.create("bm3d", vst="none", sigma=SIGMA).config.profile

    def bilateral(u: np.ndarray) -> np.ndarray:
        low = float(u.min())
        return restoration.denoise_bilateral(
            u - low, win_size=bil.win_size, sigma_color=bil.sigma_color,
            sigma_spatial=bil.sigma_spatial, bins=bil.bins, mode="reflect") + low

    return {
        "gaussian": ({"sigma": 1.0}, lambda u: ndi.gaussian_filter(u, 1.0, mode="reflect",
                                                                     truncate=4.0)),
        "median": ({"size": 3}, lambda u: ndi.median_filter(u, size=3, mode="reflect")),
        "box": ({"size": 3}, lambda u: ndi.uniform_filter(u, size=3, mode="reflect")),
        "bilateral": ({}, bilateral),
        "nlm": ({"vst": "none", "sigma": SIGMA}, lambda u: restoration.denoise_nl_means(
            u, patch_size=5, patch_distance=6, h=0.8 * SIGMA, fast_mode=True, sigma=SIGMA,
            preserve_range=True)),
        "tv": ({}, lambda u: restoration.denoise_tv_chambolle(
            u, weight=tv.weight, eps=tv.eps, max_num_iter=tv.max_num_iter)),
        "wavelet": ({"vst": "none", "sigma": SIGMA}, lambda u: restoration.denoise_wavelet(
            u, sigma=SIGMA, wavelet=wav.wavelet, mode=wav.mode,
            wavelet_levels=wav.wavelet_levels, method=wav.method,
            rescale_sigma=wav.rescale_sigma)),
        "bm3d": ({"vst": "none", "sigma": SIGMA}, lambda u: bm3d.bm3d(u, sigma_psd=SIGMA,
                                                                      profile=prof)),
    }


def _timed(fn: Callable[[], np.ndarray]) -> tuple[float, float, np.ndarray]:
    """(wall seconds, traced peak MB, output) of one call."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = np.asarray(fn(), dtype=np.float64)
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return wall, peak, out


def _scaled(direct: Callable[[np.ndarray], np.ndarray], unit: np.ndarray) -> np.ndarray:
    return np.asarray(direct(unit)) * 255.0


def run_filters(args: argparse.Namespace, writer: csv.DictWriter) -> None:
    import microdenoise as md

    noisy, _ = _image(args.data_root)
    unit = noisy.astype(np.float32) / 255.0
    for name, (params, direct) in _filter_cases().items():
        ours_t, direct_t, ours_m, direct_m, diff = [], [], [], [], 0.0
        for _ in range(args.repeats):
            t, m, a = _timed(functools.partial(md.denoise_array, noisy, name, params=params))
            ours_t.append(t)
            ours_m.append(m)
            t, m, b = _timed(functools.partial(_scaled, direct, unit))
            direct_t.append(t)
            direct_m.append(m)
            diff = max(diff, float(np.max(np.abs(a - b))))
        o, d = statistics.median(ours_t), statistics.median(direct_t)
        writer.writerow({"row": "filters", "case": name, "ours_s": f"{o:.4f}",
                         "direct_s": f"{d:.4f}", "ratio": f"{o / d:.3f}",
                         "ours_peak_mb": f"{max(ours_m):.1f}",
                         "direct_peak_mb": f"{max(direct_m):.1f}", "max_diff": f"{diff:.2e}",
                         "n": args.repeats, "extra": json.dumps(params)})
        print(f"{name:<10} ours {o:.3f} s  direct {d:.3f} s  ratio {o / d:.2f}  "
              f"max diff {diff:.1e}", flush=True)


_FM2S_CHILD = """
import json, sys, time
import numpy as np
import microdenoise as md
from microdenoise import datasets, metrics
pair = datasets.fmd_test_mix(None, names=[sys.argv[1]])[0]
t0 = time.perf_counter()
out = md.denoise_array(pair.noisy, "fm2s", params=json.loads(sys.argv[2]))
wall = time.perf_counter() - t0
out = np.clip(np.rint(out), 0, 255)
print(json.dumps({"wall": wall, "psnr": metrics.psnr(out, pair.clean, data_range=255)}))
"""


def run_fm2s(args: argparse.Namespace, writer: csv.DictWriter) -> None:
    res = {}
    for side, params in (("ours", {}), ("direct", {"schedule": "paper"})):
        proc = subprocess.run([sys.executable, "-c", _FM2S_CHILD, IMAGE, json.dumps(params)],
                              capture_output=True, text=True, check=True)
        res[side] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(side, res[side], flush=True)
    o, d = res["ours"]["wall"], res["direct"]["wall"]
    writer.writerow({"row": "fm2s", "case": "default vs official schedule", "ours_s": f"{o:.2f}",
                     "direct_s": f"{d:.2f}", "ratio": f"{o / d:.4f}", "ours_peak_mb": "",
                     "direct_peak_mb": "", "max_diff": "", "n": 1,
                     "extra": json.dumps({"psnr_ours": res["ours"]["psnr"],
                                          "psnr_official": res["direct"]["psnr"]})})


def run(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "rows.csv"
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS + ["date", "machine", "commit"])
        if new:
            writer.writeheader()

        class _Stamped:
            def writerow(self, row: dict) -> None:
                writer.writerow({**row, "date": date.today().isoformat(),
                                 "machine": f"{platform.machine()} "
                                            f"({__import__('os').cpu_count()} cores)",
                                 "commit": git_commit()})

        for r in args.rows:
            {"filters": run_filters, "fm2s": run_fm2s, "predict": run_predict,
             "fm2s_infer": run_fm2s_infer}[r](args, _Stamped())  # type: ignore[arg-type]


def table(args: argparse.Namespace) -> str:
    lines = ["# Speed against what a user would call instead (issue 18)", "",
             f"Table commit {git_commit()}; each row says when, where and at which commit it "
             "ran. Generated by `benchmarks/speed.py` (the docstring says what runs). "
             "ratio = ours / direct (below 1: ours faster). N2V against CAREamics: "
             "[vs_careamics](../vs_careamics/table.md).", "",
             "| row | case | ours s | direct s | ours / direct | ours peak MB | direct peak MB "
             "| max output diff | n | parameters / PSNR | date | machine | commit |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for path in (RESULTS / "rows.csv", RESULTS / "clidim_rows.csv"):  # the latter from
        if not path.exists():  # benchmarks/clidim_vs_official.py
            continue
        with path.open() as fh:
            for r in csv.DictReader(fh):
                lines.append("| " + " | ".join(r[k] for k in FIELDS + ["date", "machine",
                                                                       "commit"]) + " |")
    return finish_table(lines, RESULTS, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--rows", nargs="+", default=["filters"],
                   choices=("filters", "fm2s", "predict", "fm2s_infer"))
    r.add_argument("--repeats", type=int, default=5)
    r.add_argument("--data-root", type=Path, default=None)
    r.add_argument("--careamics-venv", default="/work/careamics-venv",
                   help="CAREamics 0.3.5's virtualenv (benchmarks/vs_careamics.py install)")
    t = sub.add_parser("table")
    t.add_argument("--out", default=None)
    dispatch(parser.parse_args(), run, table)


if __name__ == "__main__":
    main()
