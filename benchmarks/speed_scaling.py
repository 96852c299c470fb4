"""How each method's cost grows with image size and stack length (issue 18).

Each case is timed through ``denoise_array`` on planes of 256^2 .. 4096^2 pixels
(the raw Convallaria frame, 1024 x 1024 uint16, cropped or mirrored to the size) and on
stacks of 1 .. 64 planes of 512 x 512; wall seconds, median of ``--repeats`` (one run
where a case takes over 20 s), in one process with torch's default threads on an
otherwise idle machine. The exponent is the least-squares slope of log(seconds) against
log(pixels) (or planes) over the sizes from 512^2 up (below, fixed costs dominate); a
slope above 1.1 is flagged as super-linear, which the issue counts as a bug.

Cases: ``gaussian`` (sigma 1), ``median`` (3 x 3), ``nlm`` (noise sigma given),
``bm3d`` (noise sigma given; up to 1024^2, where one plane already takes ~2 min),
``fm2s-predict`` (a fitted FM2S, 100 fast steps, single pass) and ``fm2s-predict-d8``
(the default 8-view averaging), ``n2v-predict`` (a fitted N2V U-Net, 2 steps: the
prediction cost does not depend on the training; up to 2048^2, as a whole 4096^2 plane
needs ~15 GB at its 877 bytes per pixel, ``results/bytes_per_pixel``), and ``fm2s-fit`` (the default
schedule's fit, 200 of its 1600 steps: it trains on 128 x 128 crops, so it should not
grow with the image). Stack rows: ``gaussian`` and ``fm2s-predict`` on T x 512 x 512.

Commands::

    .venv/bin/python benchmarks/speed_scaling.py run
    .venv/bin/python benchmarks/speed_scaling.py table --out benchmarks/results/speed/scaling.md
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from _common import dispatch, git_commit
from speed_predict import convallaria_plane, sized, unit

RESULTS = Path(__file__).parent / "results" / "speed"
SIZES = (256, 512, 1024, 2048, 4096)
FRAMES = (1, 4, 16, 64)
SLOW = 20.0  # seconds: above this a case runs once
FIELDS = ["case", "axis", "n", "pixels", "seconds", "repeats", "date", "machine", "commit"]


def _cases(frame: np.ndarray) -> dict[str, tuple[Callable[[np.ndarray], Any], int]]:
    """name -> (call on one input, the largest size to time)."""
    import copy
    import dataclasses

    import microdenoise as md

    crop = sized(frame, 256)
    fm2s = md.create("fm2s", seed=0, fast_steps=100, tta="off")
    fm2s.fit(unit(crop))  # FM2S.fit takes [0, 1], as the core gives it
    fm2s_d8 = copy.copy(fm2s)  # the same fitted network, predicting with 8-view averaging
    fm2s_d8.config = dataclasses.replace(fm2s.config, tta="d8")
    n2v = md.create("n2v", epochs=1, steps_per_epoch=2, batch_size=16, patch_size=64, seed=0)
    n2v.fit(crop[None])
    sigma = {"vst": "none", "sigma": 0.05}

    def fit(x: np.ndarray) -> Any:
        return md.create("fm2s", seed=0, fast_steps=200).fit(unit(x))

    return {
        "gaussian": (lambda x: md.denoise_array(x, "gaussian", sigma=1.0), 4096),
        "median": (lambda x: md.denoise_array(x, "median", size=3), 4096),
        "nlm": (lambda x: md.denoise_array(x, "nlm", params=sigma), 4096),
        "bm3d": (lambda x: md.denoise_array(x, "bm3d", params=sigma), 1024),
        "fm2s-predict": (lambda x: md.denoise_array(x, fm2s), 4096),
        "fm2s-predict-d8": (lambda x: md.denoise_array(x, fm2s_d8), 4096),
        "n2v-predict": (lambda x: md.denoise_array(x, n2v), 2048),
        "fm2s-fit": (fit, 4096),
        "stack:gaussian": (lambda x: md.denoise_array(x, "gaussian", sigma=1.0, axes="TYX"),
                           0),
        "stack:fm2s-predict": (lambda x: md.denoise_array(x, fm2s, axes="TYX"), 0),
    }


def _time(fn: Callable[[], Any], repeats: int) -> tuple[float, int]:
    times: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if times[-1] > SLOW:
            break
    return statistics.median(times), len(times)


def run(args: argparse.Namespace) -> None:
    frame = convallaria_plane(args.data_root)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "scaling.csv"
    new = not path.exists()
    stamp = {"date": date.today().isoformat(),
             "machine": f"{platform.machine()} ({__import__('os').cpu_count()} cores)",
             "commit": git_commit()}
    cases = _cases(frame)
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS)
        if new:
            writer.writeheader()
        for name, (fn, top) in cases.items():
            if args.cases and name not in args.cases:
                continue
            if name.startswith("stack:"):
                plane = sized(frame, 512)
                points = [(t, np.stack([np.roll(plane, k, axis=1) for k in range(t)]))
                          for t in args.frames]
                axis = "frames"
            else:
                points = [(s, sized(frame, s)) for s in args.sizes if s <= top]
                axis = "side"
            for n, x in points:
                sec, reps = _time(lambda x=x, fn=fn: fn(x), args.repeats)
                writer.writerow({"case": name, "axis": axis, "n": n, "pixels": x.size,
                                 "seconds": f"{sec:.4f}", "repeats": reps, **stamp})
                fh.flush()
                print(f"{name:<20} {axis} {n:>5}: {sec:.3f} s", flush=True)


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return math.nan
    lx = np.log([p for p, _ in points])
    ly = np.log([s for _, s in points])
    return float(np.polyfit(lx, ly, 1)[0])


def table(args: argparse.Namespace) -> str:
    path = RESULTS / "scaling.csv"
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    commits: dict[str, set[str]] = {}
    for r in rows:
        commits.setdefault(r["case"], set()).add(r["commit"])
    by: dict[str, list[dict[str, str]]] = {}  # a case re-run at another commit: one line each
    for r in rows:
        key = r["case"] if len(commits[r["case"]]) == 1 else f"{r['case']} @ {r['commit']}"
        by.setdefault(key, []).append(r)
    lines = ["# Cost against image size and stack length (issue 18)", "",
             f"Table commit {git_commit()}; rows from `scaling.csv` (date, machine, commit per "
             "row). Generated by `benchmarks/speed_scaling.py` (its docstring says what runs). "
             "Exponent: slope of log(seconds) against log(pixels) over sizes >= 512^2 "
             "(stacks: against log(frames) over >= 4 frames); > 1.1 is flagged.", "",
             "| case | seconds at each size | exponent | all sizes | verdict |",
             "|---|---|---|---|---|"]
    for name, rs in by.items():
        stack = rs[0]["axis"] == "frames"
        pts = [(float(r["pixels"]), float(r["seconds"])) for r in rs]
        fit = [(p, s) for (p, s), r in zip(pts, rs, strict=True)
               if int(r["n"]) >= (4 if stack else 512)]
        k, k_all = _slope(fit), _slope(pts)
        sizes = ", ".join(f"{r['n']}{'f' if stack else ''}: {float(r['seconds']):.3g}"
                          for r in rs)
        verdict = ("-" if math.isnan(k) else "super-linear" if k > 1.1
                   else "sub-linear (fixed cost)" if k < 0.9 else "linear")
        lines.append(f"| {name} | {sizes} | {k:.2f} | {k_all:.2f} | {verdict} |")
    _plot(by)
    lines += ["", "![log-log](scaling.png)"]
    text = "\n".join(lines)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return text


def _plot(by: dict[str, list[dict[str, str]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, rs in by.items():
        ax.loglog([float(r["pixels"]) for r in rs], [float(r["seconds"]) for r in rs],
                  "o-" if rs[0]["axis"] == "side" else "s--", label=name)
    ax.set_xlabel("pixels (plane, or frames x 512^2)")
    ax.set_ylabel("wall seconds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "scaling.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--cases", nargs="+", default=None)
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    r.add_argument("--frames", type=int, nargs="+", default=list(FRAMES))
    r.add_argument("--data-root", type=Path, default=None)
    t = sub.add_parser("table")
    t.add_argument("--out", default=None)
    dispatch(parser.parse_args(), run, table)


if __name__ == "__main__":
    main()
