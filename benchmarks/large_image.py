"""Peak memory and time of whole-image vs streamed (tiled) denoising of a large 2D image.

Two uint16 inputs of SIZE x SIZE pixels are written to a temporary folder: a
seeded synthetic image (smooth blobs plus Poisson-Gaussian noise) and the real
Convallaria frame (../shared/data/convallaria/convallaria_frame0.tif) tiled up
to SIZE x SIZE. Each is denoised twice with a cheap local method through
``microdenoise.denoise_file``: whole (read into memory) and streamed
(``tile=TILE``: memory-mapped input, pre-allocated output TIFF). Each run is a
fresh subprocess; its peak RSS is ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``
read by a measuring process that runs only that one child.

    python benchmarks/large_image.py                      # 8192 x 8192, gaussian, tile 1024
    python benchmarks/large_image.py --size 4096 --method median
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "convallaria" / "convallaria_frame0.tif"
BAND = 512  # rows written at a time: the inputs are never whole in memory here either


def make_synthetic(path: Path, size: int, seed: int = 0) -> None:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    out = tifffile.memmap(path, shape=(size, size), dtype=np.uint16, photometric="minisblack")
    coarse = ndimage.zoom(rng.random((size // 64 + 2, size // 64 + 2)), 64, order=3)
    for r0 in range(0, size, BAND):
        clean = 200 + 3000 * np.clip(coarse[r0 : r0 + BAND, :size], 0, None)
        noisy = rng.poisson(clean) + rng.normal(0, 30, clean.shape)
        out[r0 : r0 + BAND] = np.clip(noisy, 0, 65535).astype(np.uint16)
    out.flush()
    del out


def make_real(path: Path, size: int) -> None:
    frame = tifffile.imread(REAL)
    out = tifffile.memmap(path, shape=(size, size), dtype=frame.dtype, photometric="minisblack")
    reps = -(-size // frame.shape[1])
    for r0 in range(0, size, frame.shape[0]):
        rows = min(frame.shape[0], size - r0)
        out[r0 : r0 + rows] = np.tile(frame[:rows], (1, reps))[:, :size]
    out.flush()
    del out


def worker(src: str, dst: str, method: str, tile: int) -> None:
    from microdenoise import denoise_file

    options = {"tile": tile} if tile else {}
    t0 = time.perf_counter()
    denoise_file(src, dst, method, overwrite=True, **options)
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def measure(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


def run(src: Path, dst: Path, method: str, tile: int) -> dict[str, float]:
    child = [sys.executable, __file__, "--worker", str(src), str(dst), method, str(tile)]
    done = subprocess.run([sys.executable, __file__, "--measure", *child],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def max_difference(a: Path, b: Path) -> float:
    x, y = tifffile.memmap(a, mode="r"), tifffile.memmap(b, mode="r")
    return max(float(np.max(np.abs(x[r : r + BAND] - y[r : r + BAND])))
               for r in range(0, x.shape[0], BAND))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--method", default="gaussian")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--out", type=Path,
                        default=ROOT / "benchmarks/results/large_image/table.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = {"synthetic": Path(tmp) / "synthetic.tif", "convallaria": Path(tmp) / "real.tif"}
        make_synthetic(inputs["synthetic"], args.size)
        if REAL.exists():
            make_real(inputs["convallaria"], args.size)
        else:
            del inputs["convallaria"]
        for name, src in inputs.items():
            whole = run(src, Path(tmp) / f"{name}_whole.tif", args.method, 0)
            streamed = run(src, Path(tmp) / f"{name}_streamed.tif", args.method, args.tile)
            diff = max_difference(Path(tmp) / f"{name}_whole.tif",
                                  Path(tmp) / f"{name}_streamed.tif")
            mb = src.stat().st_size / 2**20
            rows.append(f"| {name} | {mb:.0f} | whole | {whole['peak_rss_mb']:.0f} | "
                        f"{whole['seconds']:.1f} | |")
            rows.append(f"| {name} | {mb:.0f} | streamed (tile {args.tile}) | "
                        f"{streamed['peak_rss_mb']:.0f} | {streamed['seconds']:.1f} | {diff:.2g} |")
            print(rows[-2], rows[-1], sep="\n", flush=True)
    command = "python benchmarks/large_image.py " + " ".join(sys.argv[1:])
    text = (
        f"# Large-image streaming benchmark\n\n"
        f"Date: {datetime.date.today()}. Machine: {platform.platform()}, "
        f"{os.cpu_count()} CPU cores (shared with other jobs), Python {platform.python_version()}."
        f"\n\nCommand: `{command.strip()}`\n\n"
        f"{args.size} x {args.size} uint16 inputs, method `{args.method}`; each run is a fresh "
        "process (peak RSS includes the interpreter, numpy, scipy and torch). `whole`: "
        "`denoise_file(src, dst, method)`; `streamed`: the same with `tile=` "
        "(memory-mapped input, pre-allocated output TIFF). Max diff: largest absolute "
        "difference between the two float32 outputs.\n\n"
        "| image | input MB | mode | peak RSS MB | seconds | max diff |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--measure":
        measure(sys.argv[2:])
    else:
        main()
