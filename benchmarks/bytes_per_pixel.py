"""Measure each method's peak working memory per tile pixel (``Denoiser.bytes_per_pixel``).

For each method, in a fresh process with one torch thread: fit it minimally where it
needs training (the default architecture, a few steps on a 256x256 real FMD image:
the weights do not change the memory), denoise a small tile once (warm-up), then
for two tile sizes T reset the peak resident set size (``/proc/self/clear_refs``) and
tracemalloc's peak, denoise a float32 T x T tile and take the larger of the RSS peak
growth (``VmHWM``: torch's allocations) and tracemalloc's peak (numpy's, which may
reuse freed pages that RSS does not see; ``malloc_trim`` first returns freed heap to
the OS, or a method whose training used more memory than inference would show no
growth at all). bytes/pixel is the slope
``(peak(T2) - peak(T1)) / (T2**2 - T1**2)``: the fixed cost (interpreter, torch,
weights) drops out; :data:`microdenoise.streaming.BASELINE_BYTES` holds that.

    .venv/bin/python benchmarks/bytes_per_pixel.py [METHOD ...]

Writes ``benchmarks/results/bytes_per_pixel/table.md``. Linux only.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from _common import git_commit

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"bm3d": (128, 256), "nlm": (256, 512), "care": (256, 512), "clidim": (256, 512)}
DEFAULT_SIZES = (512, 1024)
METHODS = ["median", "gaussian", "box", "bilateral", "nlm", "tv", "wavelet", "bm3d", "fm2s",
           "n2v", "deconoising", "care", "clidim"]
TRAIN = {  # minimal training: default architectures, a handful of steps
    "n2v": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "val_patches": 2},
    "deconoising": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "val_patches": 2},
    "care": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 2, "val_patches": 2,
             "patch_size": 64},
    "clidim": {"n_epochs": 1, "n_epochs_decay": 0, "steps_per_epoch": 1, "batch_size": 2,
               "keep": "last"},
    "fm2s": {"fast_steps": 5},
}


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _trim() -> None:
    """Give freed heap pages back to the OS, so that RSS growth shows new allocations
    (training leaves freed memory resident that inference would otherwise reuse unseen)."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)


def measure(name: str) -> dict[str, float]:
    """Peak RSS growth of ``denoise`` on two tile sizes, in this process."""
    import numpy as np
    import torch

    from microdenoise import create, datasets, io

    torch.set_num_threads(1)
    root = datasets.data_root_or_none()
    if root is None:
        raise SystemExit("shared data not found (../shared/data)")
    raw = io.read_image(root / "fmd_test_mix" / "raw" / "Confocal_BPAE_B_1.png").data
    gt = io.read_image(root / "fmd_test_mix" / "gt" / "Confocal_BPAE_B_1.png").data
    crop = (slice(0, 256), slice(0, 256))
    noisy = raw[crop].astype(np.float32) / 255
    clean = gt[crop].astype(np.float32) / 255
    den = create(name, **TRAIN.get(name, {}))
    den.device = "cpu"
    if den.needs == "pairs":
        den.fit(noisy, clean)
    elif den.fit_policy != "none":
        den.fit(noisy)
    t1, t2 = SIZES.get(name, DEFAULT_SIZES)
    rng = np.random.default_rng(0)
    tiles = {t: np.tile(noisy, (t // 256 + 1, t // 256 + 1))[:t, :t]
             + rng.normal(0, 0.01, (t, t)).astype(np.float32) for t in (64, t1, t2)}
    den.denoise(tiles[64])  # warm-up: lazy imports, kernels, caches
    peaks = {}
    seconds = {}
    tracemalloc.start()
    for t in (t1, t2):
        _trim()
        tracemalloc.reset_peak()
        traced = tracemalloc.get_traced_memory()[0]
        Path("/proc/self/clear_refs").write_text("5")
        before = _status("VmRSS")
        start = time.perf_counter()
        den.denoise(tiles[t])
        seconds[t] = time.perf_counter() - start
        peaks[t] = max(_status("VmHWM") - before, tracemalloc.get_traced_memory()[1] - traced)
    tracemalloc.stop()
    slope = (peaks[t2] - peaks[t1]) / (t2**2 - t1**2)
    return {"t1": t1, "t2": t2, "peak1": peaks[t1], "peak2": peaks[t2],
            "bytes_per_pixel": slope, "seconds2": seconds[t2],
            "declared": type(den).bytes_per_pixel}


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):  # else taken for a method, and the table rewritten
        print(__doc__)
        return 0
    if argv and argv[0] == "--one":
        print(json.dumps(measure(argv[1])))
        return 0
    names = argv or METHODS
    rows = []
    for name in names:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True,
                              text=True, env=env, cwd=ROOT, check=False)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        row = {"method": name, **json.loads(done.stdout.strip().splitlines()[-1])}
        print(row, flush=True)
        rows.append(row)
    commit = git_commit()
    lines = [
        "# Peak working memory per tile pixel (`bytes_per_pixel`)",
        "",
        f"Date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, machine "
        f"{platform.machine()} {platform.processor() or ''} ({os.cpu_count()} cores), "
        f"Python {platform.python_version()}, commit {commit} (plus working-tree changes).",
        f"Command: `.venv/bin/python benchmarks/bytes_per_pixel.py {' '.join(argv)}`".rstrip(),
        "",
        "Peak memory growth while `denoise` runs on a float32 T x T tile, CPU, one thread: "
        "the larger of the resident-set peak (Linux VmHWM, reset through "
        "/proc/self/clear_refs; sees torch) and tracemalloc's peak (sees numpy); "
        "bytes/pixel is the slope between the two tile sizes, so fixed costs "
        "(weights, interpreter) drop out. Trained methods: default architecture, a few "
        "training steps (weights do not change memory). `declared` is the class "
        "attribute that `--max-memory` uses (measured, rounded up with headroom).",
        "",
        "| method | T1 | T2 | peak(T1) MB | peak(T2) MB | bytes/pixel | declared | s at T2 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['t1']} | {r['t2']} | {r['peak1'] / 2**20:.1f} | "
                     f"{r['peak2'] / 2**20:.1f} | {r['bytes_per_pixel']:.0f} | "
                     f"{r['declared']} | {r['seconds2']:.2f} |")
    out = ROOT / "benchmarks" / "results" / "bytes_per_pixel" / "table.md"
    if argv and out.exists():  # some methods again: replace their rows, keep the others
        mine = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ")}
        text = out.read_text().splitlines()
        old = [line for line in text if line.startswith("| ")]
        notes = text[max(i for i, line in enumerate(text) if line.startswith("|")) + 1:]
        kept = [mine.pop(line.split("|")[1].strip(), line) for line in old]
        lines = lines[: lines.index("|---|---|---|---|---|---|---|---|") - 1] + kept[:1] + [
            "|---|---|---|---|---|---|---|---|"] + kept[1:] + list(mine.values()) + notes
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
