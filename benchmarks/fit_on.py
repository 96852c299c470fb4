"""``fit_on`` trade-off: FM2S fitted on every plane of a stack vs once on K planes.

The FMD test mix holds 4 captures (``_1`` .. ``_4``) of each field of view, with one
ground truth (the average of 50 captures). Each chosen field of view becomes a
4-plane ``TYX`` uint8 stack, denoised with FM2S (default fast schedule and preset
of its microscope: confocal, twophoton, widefield) through
:func:`microdenoise.denoise_array` three ways:

* ``per plane``: ``fit_on=None``, one zero-shot fit per plane (the default);
* ``fit_on=1``: one fit on the middle-ish plane (``linspace`` pick: plane 0),
  applied to all four;
* ``fit_on=2``: one fit on a side-by-side montage of planes 0 and 3.

PSNR is on 0..255 (data_range 255), the output clipped and rounded, against the
field's ground truth, averaged over the 4 planes. CPU time is
``time.process_time()`` of the call with one torch thread (and one BLAS thread).

    .venv/bin/python benchmarks/fit_on.py                       # 4 fields of view
    .venv/bin/python benchmarks/fit_on.py --fovs Confocal_FISH WideField_BPAE_B
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings)
from _common import git_commit  # noqa: E402  (after the thread settings)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "fmd_test_mix"
OUT = ROOT / "benchmarks" / "results" / "fit_on" / "table.md"
# One field of view per microscope type first, then more as the budget allows.
FOVS = ["Confocal_BPAE_B", "TwoPhoton_MICE", "WideField_BPAE_G", "Confocal_FISH",
        "TwoPhoton_BPAE_R", "WideField_BPAE_B"]
MODES: list[tuple[str, int | None]] = [("per plane", None), ("fit_on=1", 1), ("fit_on=2", 2)]


def preset(fov: str) -> str:
    return {"Confocal": "confocal", "TwoPhoton": "twophoton",
            "WideField": "widefield"}[fov.split("_")[0]]


def load(fov: str) -> tuple[np.ndarray, np.ndarray]:
    """The 4 captures of ``fov`` as a (4, Y, X) uint8 stack, and the ground truth."""
    from microdenoise import read_image

    stack = np.stack([read_image(DATA / "raw" / f"{fov}_{k}.png").data for k in range(1, 5)])
    return stack, read_image(DATA / "gt" / f"{fov}_1.png").data


def psnr255(output: np.ndarray, gt: np.ndarray) -> float:
    from microdenoise.metrics import psnr

    rounded = np.clip(np.rint(output.astype(np.float64)), 0, 255)
    return float(psnr(rounded, gt.astype(np.float64), data_range=255.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fovs", nargs="+", default=FOVS[:4])
    args = parser.parse_args()
    import torch

    from microdenoise import denoise_array

    torch.set_num_threads(1)
    rows = []
    for fov in args.fovs:
        stack, gt = load(fov)
        noisy = np.mean([psnr255(p, gt) for p in stack])
        for label, k in MODES:
            start = time.process_time()
            out = denoise_array(stack, "fm2s", preset=preset(fov), axes="TYX", fit_on=k, seed=0)
            cpu = time.process_time() - start
            scores = [psnr255(p, gt) for p in out]
            rows.append((fov, label, noisy, float(np.mean(scores)), scores, cpu))
            print(f"{fov:18s} {label:10s} noisy {noisy:.2f} -> {np.mean(scores):.2f} dB "
                  f"({', '.join(f'{s:.2f}' for s in scores)}), {cpu:.1f} s CPU", flush=True)
        write(rows, args.fovs, torch.__version__)  # after each field: a partial run is kept
    print(OUT.read_text())
    print(f"wrote {OUT}")
    return 0


def write(rows: list[tuple[str, str, float, float, list[float], float]], fovs: list[str],
          torch_version: str) -> None:
    done = sorted({r[0] for r in rows}, key=fovs.index)
    commit = git_commit()
    lines = [
        "# `fit_on`: one FM2S fit per plane vs one fit for the whole stack",
        "",
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC. Machine: "
        f"{platform.platform()}, {os.cpu_count()} CPU cores shared with other jobs, "
        f"Python {platform.python_version()}, torch {torch_version} (CPU, 1 thread). "
        f"Commit {commit} plus working-tree changes.",
        "",
        f"Command: `.venv/bin/python benchmarks/fit_on.py --fovs {' '.join(fovs)}`"
        + ("" if done == fovs else f" (partial: {len(done)} of {len(fovs)} fields done)"),
        "",
        "Each field of view: its 4 FMD test-mix captures (`_1`..`_4`) as a TYX uint8 stack; "
        "FM2S, default fast schedule, the microscope's preset, seed 0, via "
        "`denoise_array(stack, 'fm2s', axes='TYX', fit_on=K)`. `fit_on=1` fits on plane 0, "
        "`fit_on=2` on planes 0 and 3 side by side. PSNR: 0..255, data_range 255, output "
        "clipped and rounded, vs the field's ground truth (average of 50 captures), mean "
        "of the 4 planes. CPU: `time.process_time()` of the whole call (fits and "
        "predictions).",
        "",
        "| field of view | mode | noisy PSNR | PSNR | planes | CPU s |",
        "|---|---|---|---|---|---|",
    ]
    for fov, label, noisy, mean, scores, cpu in rows:
        lines.append(f"| {fov} | {label} | {noisy:.2f} | {mean:.2f} | "
                     f"{' / '.join(f'{s:.2f}' for s in scores)} | {cpu:.1f} |")
    lines += ["", "| mode | mean PSNR | mean CPU s per stack | dB vs per plane |",
              "|---|---|---|---|"]
    per_plane = np.mean([r[3] for r in rows if r[1] == "per plane"])
    for label, _ in MODES:
        sel = [r for r in rows if r[1] == label]
        mean = float(np.mean([r[3] for r in sel]))
        lines.append(f"| {label} | {mean:.2f} | {np.mean([r[5] for r in sel]):.1f} | "
                     f"{mean - per_plane:+.2f} |")
    OUT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
