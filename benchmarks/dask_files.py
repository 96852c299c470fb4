"""Files per second of a batch of small real images: one process vs a Dask cluster.

N copies of FMD test-mix raw images (512 x 512, 8-bit; ../shared/data/fmd_test_mix/raw,
cycled in sorted order) are written as uint8 TIFFs to a temporary folder and denoised
with a cheap method (``median`` by default, so that per-file overhead shows) by:

* ``plain``: :func:`microdenoise.denoise_files`, one process, files in turn;
* ``local:K`` end to end: :func:`microdenoise.distributed.denoise_files_distributed`
  with ``scheduler="local:K"`` (starts and stops K single-threaded worker processes
  inside the timed call, as the CLI's ``--scheduler local:K`` does);
* ``tcp:// K warm``: the same against an already running LocalCluster of K workers
  (cluster start-up outside the timed call: the steady-state throughput a long run sees).

Each configuration runs ``--repeats`` times into a fresh output folder; the table
reports the median. torch and BLAS use one thread per process.

    .venv/bin/python benchmarks/dask_files.py               # 16 files, median, 3 repeats
    .venv/bin/python benchmarks/dask_files.py --files 32 --method gaussian
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings)
from _common import git_commit  # noqa: E402  (after the thread settings)

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT.parent / "shared" / "data" / "fmd_test_mix" / "raw"
OUT = ROOT / "benchmarks" / "results" / "dask_files" / "table.md"


def make_inputs(folder: Path, n: int) -> list[Path]:
    """``n`` uint8 TIFFs copied from the FMD test-mix raw PNGs (cycled)."""
    from microdenoise import read_image, write_image

    sources = sorted(RAW.glob("*.png"))
    if not sources:
        raise SystemExit(f"no FMD test-mix images in {RAW}")
    paths = []
    for i in range(n):
        image = read_image(sources[i % len(sources)]).data
        paths.append(write_image(folder / f"f{i:03d}_{sources[i % len(sources)].stem}.tif",
                                 image, dtype="uint8"))
    return paths


def run_once(kind: str, inputs: Path, out: Path, method: str, address: str | None) -> float:
    from microdenoise import denoise_files
    from microdenoise.distributed import denoise_files_distributed

    if out.exists():
        shutil.rmtree(out)
    start = time.perf_counter()
    if kind == "plain":
        result = denoise_files([inputs], out, method)
    else:
        result = denoise_files_distributed([inputs], out, method,
                                           scheduler=address or kind)
    seconds = time.perf_counter() - start
    if result.failed or result.skipped:
        raise SystemExit(f"{kind}: {len(result.failed)} failed, {len(result.skipped)} kept")
    return seconds


def check_same(a: Path, b: Path) -> float:
    from microdenoise import read_image

    worst = 0.0
    for path in sorted(a.iterdir()):
        worst = max(worst, float(np.abs(read_image(path).data
                                        - read_image(b / path.name).data).max()))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--method", default="median")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    args = parser.parse_args()
    import torch
    from distributed import Client, LocalCluster

    torch.set_num_threads(1)
    workers = [int(w) for w in args.workers.split(",")]
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory(prefix="dask_files_") as tmp:
        tmpdir = Path(tmp)
        make_inputs(tmpdir / "in", args.files)
        configs: list[tuple[str, str, str | None]] = [("plain", "plain", None)]
        configs += [(f"local:{k} end to end", f"local:{k}", None) for k in workers]
        for label, kind, _ in configs:
            times = [run_once(kind, tmpdir / "in", tmpdir / label.replace(" ", "_"), args.method,
                              None) for _ in range(args.repeats)]
            rows.append((label, times))
            print(label, [f"{t:.2f}" for t in times], flush=True)
        for k in workers:
            cluster = LocalCluster(n_workers=k, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
            client = Client(cluster)
            try:
                label = f"tcp:// {k} warm"
                times = [run_once("tcp", tmpdir / "in", tmpdir / f"warm{k}", args.method,
                                  cluster.scheduler_address) for _ in range(args.repeats)]
            finally:
                client.close()
                cluster.close()
            rows.append((label, times))
            print(label, [f"{t:.2f}" for t in times], flush=True)
        diff = check_same(tmpdir / "plain", tmpdir / f"local:{workers[-1]}_end_to_end")
    commit = git_commit()
    base = statistics.median(rows[0][1])
    lines = [
        "# Batch throughput: one process vs Dask workers",
        "",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Machine: "
        f"{platform.platform()}, {os.cpu_count()} CPU cores shared with other jobs "
        f"(timings are noisy), Python {platform.python_version()}. Commit {commit} plus "
        "working-tree changes.",
        "",
        f"Command: `.venv/bin/python benchmarks/dask_files.py --files {args.files} "
        f"--method {args.method} --repeats {args.repeats} --workers {args.workers}`",
        "",
        f"{args.files} real 512x512 uint8 TIFFs (FMD test-mix raw captures, cycled), method "
        f"`{args.method}`, one thread per process, median of {args.repeats} runs into a fresh "
        "output folder. `end to end` includes starting and stopping the LocalCluster "
        "(as `--scheduler local:K` does); `warm` runs against a cluster started "
        f"beforehand. Outputs equal the plain batch's (max abs diff {diff:g}).",
        "",
        "| configuration | median s | files/s | speed-up vs plain | runs (s) |",
        "|---|---|---|---|---|",
    ]
    for label, times in rows:
        med = statistics.median(times)
        lines.append(f"| {label} | {med:.2f} | {args.files / med:.2f} | {base / med:.2f}x | "
                     f"{', '.join(f'{t:.2f}' for t in times)} |")
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
