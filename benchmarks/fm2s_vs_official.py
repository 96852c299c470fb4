"""The default FM2S against the official FM2S code, per image (issue 18, speed table).

What runs, each in its own fresh process, the two sides alternating (``--rounds``
rounds, ours first in even rounds) on the same 8-bit FMD image (``--image``, read as
uint8 from the PNG, as the official ``main.py`` reads it with ``cv2.IMREAD_GRAYSCALE``):

- ours: ``microdenoise.denoise_array(noisy, "fm2s", preset=P, params=...)``: the default
  fast schedule (``--params`` adds parameters, e.g. a candidate's), as a user calls it;
  importing microdenoise sets ``OMP_WAIT_POLICY=PASSIVE`` (``microdenoise/threads.py``);
- official: ``FM2S(raw, CONFIG)`` of ``Danielement321/FM2S`` (``FM2S.py`` and
  ``configs.py`` unmodified, exported from its git mirror at ``afc05d8``), the config
  of the image's microscope (``CONFOCAL_CONFIG`` for a ``Confocal_*`` image), in its own
  virtualenv (torch 2.13.0 as ours, einops, scipy), OpenMP left at its default.

Both with torch's default threads (the machine's cores) unless ``--threads`` is given.
Timed: the call only (``time.perf_counter``), reading the image and importing torch
excluded. PSNR of each output against the ground truth, on 0..255 (ours rounded, the
official output truncated by its own ``.int()``). One image, few rounds: the ratio is
what to read; the machine's speed drifts by tens of per cent from hour to hour, which
the alternation spreads over both sides.

Commands::

    .venv/bin/python benchmarks/fm2s_vs_official.py install
    .venv/bin/python benchmarks/fm2s_vs_official.py run --rounds 2
    .venv/bin/python benchmarks/speed.py table     # the rows land in speed/rows.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from _common import git_commit, run_worker, venv_python

RESULTS = Path(__file__).parent / "results" / "speed"
MIRROR = "/work/.mirror/Danielement321+FM2S/repo"
SIDES = ("ours", "official")
FIELDS = ["row", "case", "ours_s", "direct_s", "ratio", "ours_peak_mb", "direct_peak_mb",
          "max_diff", "n", "extra"]
CONFIGS = {"Confocal": ("confocal", "CONFOCAL_CONFIG"),
           "TwoPhoton": ("twophoton", "TWOPHOTON_CONFIG"),
           "WideField": ("widefield", "WIDEFIELD_CONFIG")}


def install(args: argparse.Namespace) -> None:
    """Export the official code (if absent) and make its virtualenv."""
    code = Path(args.official_dir)
    if not code.exists():
        code.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", args.mirror, "archive", "HEAD", "FM2S.py",
                                  "configs.py", "LICENSE"], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
        commit = subprocess.run(["git", "-C", args.mirror, "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        (code / ".commit").write_text(commit + "\n")
    py = venv_python(args.official_venv)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "torch==2.13.0", "einops", "scipy",
                    "numpy", "pillow"], check=True)
    subprocess.run([str(py), "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "import FM2S, torch; print('official FM2S imports; torch', "
                    "torch.__version__)", str(code)], check=True)


def _read(image: str, root: str) -> tuple[Any, Any]:
    import numpy as np
    from PIL import Image

    folder = Path(root) / "fmd_test_mix"
    noisy = np.asarray(Image.open(folder / "raw" / f"{image}.png").convert("L"))
    clean = np.asarray(Image.open(folder / "gt" / f"{image}.png").convert("L"))
    return noisy, clean


def worker(args: argparse.Namespace) -> None:
    import numpy as np

    job = json.loads(args.job)
    noisy, clean = _read(job["image"], job["data_root"])
    preset, config_name = CONFIGS[job["image"].split("_", 1)[0]]
    if args.side == "ours":
        import microdenoise as md

        t0 = time.perf_counter()
        out = md.denoise_array(noisy, "fm2s", preset=preset, params=job["params"])
        wall = time.perf_counter() - t0
        out = np.clip(np.rint(out), 0, 255)
    else:
        sys.path.insert(0, job["official_dir"])
        import configs  # the official code's configs.py
        from FM2S import FM2S  # the official code

        t0 = time.perf_counter()
        out = FM2S(noisy.astype(np.float64), getattr(configs, config_name))
        wall = time.perf_counter() - t0
    err = np.mean((out.astype(np.float64) - clean.astype(np.float64)) ** 2)
    import torch

    print("RESULT " + json.dumps({"wall": wall, "psnr": float(10 * np.log10(255.0**2 / err)),
                                  "threads": torch.get_num_threads()}), flush=True)


def _spawn(side: str, job: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    py = sys.executable if side == "ours" else str(Path(args.official_venv) / "bin" / "python")
    env = dict(os.environ)
    if args.threads:
        env |= {"OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    return run_worker(py, __file__, side, job, env)


def run(args: argparse.Namespace) -> None:
    from microdenoise.datasets import default_data_root

    job = {"image": args.image, "params": json.loads(args.params),
           "data_root": str(default_data_root()),
           "official_dir": str(Path(args.official_dir).resolve())}
    got: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
    for r in range(args.rounds):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            res = _spawn(side, job, args)
            got[side].append(res)
            print(f"round {r + 1}/{args.rounds} {side}: {res['wall']:.1f} s, "
                  f"PSNR {res['psnr']:.2f} dB, {res['threads']} threads", flush=True)
    med = {s: statistics.median(res["wall"] for res in got[s]) for s in SIDES}
    commit_file = Path(args.official_dir) / ".commit"
    row = {"row": "fm2s", "case": f"default vs official code, {args.image}",
           "ours_s": f"{med['ours']:.2f}", "direct_s": f"{med['official']:.2f}",
           "ratio": f"{med['ours'] / med['official']:.4f}", "ours_peak_mb": "",
           "direct_peak_mb": "", "max_diff": "", "n": args.rounds,
           "extra": json.dumps({
               "params": job["params"], "threads": got["ours"][0]["threads"],
               "ours_s": [round(x["wall"], 2) for x in got["ours"]],
               "official_s": [round(x["wall"], 2) for x in got["official"]],
               "psnr_ours": [round(x["psnr"], 3) for x in got["ours"]],
               "psnr_official": [round(x["psnr"], 3) for x in got["official"]],
               "official_commit": commit_file.read_text().strip()[:7]
               if commit_file.exists() else ""}),
           "date": date.today().isoformat(),
           "machine": f"{platform.machine()} ({os.cpu_count()} cores)", "commit": git_commit()}
    path = Path(args.csv)
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS + ["date", "machine", "commit"])
        if new:
            writer.writeheader()
        writer.writerow(row)
    print(f"ours {med['ours']:.1f} s, official {med['official']:.1f} s: "
          f"{med['official'] / med['ours']:.1f}x", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("install")
    r = sub.add_parser("run")
    w = sub.add_parser("worker")
    for p in (i, r):
        p.add_argument("--official-dir", default="/work/fm2s-official")
        p.add_argument("--official-venv", default="/work/fm2s-official-venv")
    i.add_argument("--mirror", default=MIRROR, help="git directory of the official code")
    r.add_argument("--image", default="Confocal_FISH_3")
    r.add_argument("--params", default="{}", help="JSON: parameters added to ours")
    r.add_argument("--rounds", type=int, default=2)
    r.add_argument("--threads", type=int, default=0, help="0: torch's default")
    r.add_argument("--csv", default=str(RESULTS / "rows.csv"))
    w.add_argument("side", choices=SIDES)
    w.add_argument("job", help="JSON")
    args = ap.parse_args()
    {"install": install, "run": run, "worker": worker}[args.cmd](args)


if __name__ == "__main__":
    main()
