"""One CLIDiM training iteration: ours against the official code (issue 18, speed table).

What is timed, per side, on the CPU in float32, on the same batch of (noisy, clean)
crops (``--batch`` x 1 x ``--crop`` x ``--crop`` each, uniform in [-1, 1], seeded):

- ours: ``microdenoise.methods.clidim_train.train_step(state, batch, gen)`` of
  ``create("clidim", variant="cl+tv+ssim", batch_size=B, crop=C, precision="fp32")``
  (networks from ``CLIDiM.build``, optimizers from ``TrainState.create``; all other
  settings the defaults, i.e. the paper's): G forward, contrastive D step, D step, G step.
- official (``ffuhu/cl-microscopy-image-denoising``, exported to ``--official-dir``):
  ``model.set_input({"A": ..., "B": ...})`` + ``model.optimize_parameters()`` of its
  pix2pix model, built by its own ``TrainOptions().parse()`` / ``create_model`` /
  ``setup`` from the ``train.py`` docstring's command line (``--model pix2pix
  --dataset_mode aligned --direction AtoB --crop_size 256 --preprocess
  crop_rotate_hflip --batch_size 128 --lr 2e-4 --netG unet_256 --img_dtype uint16
  --cl_reg --cl_reg_gen_epoch 0 --lambda_tv_loss 0.0001 --lambda_ssim_loss 10``) with
  ``--gpu_ids -1`` (CPU), ``--batch_size B --crop_size C``, after ``model.train()``
  and ``model.set_epoch(0)`` as ``train.py`` does; the same order of steps.

Each side runs in its own fresh process (the official code runs in its own virtualenv,
``--official-venv``: it needs kornia, and torchvision, which has no CPU build for torch
2.13 here), with ``--threads`` torch threads (and ``OMP_NUM_THREADS``), the seed's
initialization, ``--warmup`` untimed iterations (Adam's lazy state, allocator), then
``--steps`` timed iterations (``time.perf_counter`` around the call). ``--rounds``
rounds, one process per side per round, the order alternating (ours first in even
rounds), so that a drift of the shared machine hits both; the table gives the median
over all timed iterations per side and their ratio. Peak RSS is each process's
``ru_maxrss`` at its end (interpreter, torch, batch and networks included; the
processes never overlap), with the RSS before the first iteration beside it.

Not timed on either side: data loading, cropping and augmentation of the batch, and
the official ``train.py``'s per-iteration ``normalize_input`` (batch min/max, both
images) and ``denormalize_visuals``; ours normalizes once, before training. Known
differences inside the timed iteration: the contrastive views are kornia's
``RandomHorizontalFlip`` / ``GaussianBlur2d`` / ``RandomResizedCrop`` (official) vs
our ``augment_pairs`` (one ``grid_sample``); our projection head is trained (in D's
Adam, ``cl_head_trainable=True``, the default) while the official one is not in
``optimizer_D`` (its gradients are still computed); the official code runs under
torch 2.13 and kornia 0.9 rather than its pinned torch 1.8.1 (kornia is not pinned).

Commands::

    .venv/bin/python benchmarks/clidim_vs_official.py install   # venv, code, stub
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/clidim_vs_official.py run
    .venv/bin/python benchmarks/clidim_vs_official.py table

``install`` exports the official code from its git mirror (``--mirror``, ``git
archive HEAD``) into ``--official-dir`` (when absent), makes ``--official-venv`` with
``torch==2.13.0`` (the same torch as ours), kornia and the official imports' needs
(numpy, pillow, imageio, tifffile, natsort), and a *stub* ``torchvision``
(``transforms.InterpolationMode`` and placeholders that raise if called): the official
code imports torchvision at load time (its dataset transforms, ``resnet50`` in
``util/contrastive_learning.py``) but the iteration never calls it. At the paper's
batch (128 crops of 256 x 256) one iteration takes minutes on one CPU thread and
several GB per process; ``--batch 2 --rounds 1`` checks the set-up in seconds.
Rows are appended to ``benchmarks/results/speed/clidim_rows.csv`` (``--csv``) in the
columns of the speed table's ``rows.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from _common import git_commit, run_worker, site_packages, stub_module, venv_python, write_table

RESULTS = Path(__file__).parent / "results" / "speed"
FIELDS = ["row", "case", "ours_s", "direct_s", "ratio", "ours_peak_mb", "direct_peak_mb",
          "max_diff", "n", "extra"]
MIRROR = "/work/.mirror/ffuhu+cl-microscopy-image-denoising/repo"
SIDES = ("ours", "official")
# The official import-time needs, beside torch 2.13 (requirements.txt pins torch 1.8.1
# and does not list kornia, which util/contrastive_learning.py and the losses import).
REQUIREMENTS = ["kornia", "numpy", "pillow", "imageio", "tifffile", "natsort"]
# The train.py docstring's command (the paper setting), less data, epochs and saving.
PAPER_ARGS = ["--model", "pix2pix", "--dataset_mode", "aligned", "--direction", "AtoB",
              "--preprocess", "crop_rotate_hflip", "--lr", "2e-4", "--netG", "unet_256",
              "--img_dtype", "uint16", "--cl_reg", "--cl_reg_gen_epoch", "0",
              "--lambda_tv_loss", "0.0001", "--lambda_ssim_loss", "10", "--gpu_ids", "-1"]
STUB = stub_module("Stub torchvision (benchmarks/clidim_vs_official.py): never called by an "
                   "iteration.")
STUB_TRANSFORMS = '''"""Stub torchvision.transforms: data/base_dataset.py reads the enum."""
import enum

from . import functional  # noqa: F401


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def _missing(*args, **kwargs):
        raise RuntimeError(f"torchvision stub: transforms.{name} is not available")

    return _missing
'''


# --- install ----------------------------------------------------------------------------
def install(args: argparse.Namespace) -> None:
    """Export the official code (if absent), make its virtualenv, stub torchvision."""
    code = Path(args.official_dir)
    if not code.exists():
        code.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", args.mirror, "archive", "HEAD"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive, check=True)
        commit = subprocess.run(["git", "-C", args.mirror, "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        (code / ".commit").write_text(commit + "\n")
    venv = Path(args.official_venv)
    py = venv_python(venv)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0", *REQUIREMENTS], check=True)
    stub = site_packages(py) / "torchvision"
    (stub / "transforms").mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text(
        '"""Stub torchvision (benchmarks/clidim_vs_official.py)."""\n'
        '__version__ = "0.0.0+stub"\nfrom . import models, transforms  # noqa: F401\n')
    (stub / "models.py").write_text(STUB)
    (stub / "transforms" / "functional.py").write_text(STUB)
    (stub / "transforms" / "__init__.py").write_text(STUB_TRANSFORMS)
    subprocess.run([str(py), "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                    "import kornia, torch; from models import create_model; "
                    "from options.train_options import TrainOptions; "
                    "print('official code imports; torch', torch.__version__, "
                    "'kornia', kornia.__version__)", str(code)], check=True)


# --- the two workers (each in its own process) -------------------------------------------
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _timed(step: Callable[[], dict[str, float]], job: dict[str, Any]) -> dict[str, Any]:
    """``job["warmup"]`` untimed then ``job["steps"]`` timed calls of ``step``."""
    base = _peak_mb()
    losses: dict[str, float] = {}
    times = []
    for i in range(job["warmup"] + job["steps"]):
        t = time.perf_counter()
        losses = step()
        if i >= job["warmup"]:
            times.append(time.perf_counter() - t)
    return {"times": times, "peak_mb": _peak_mb(), "base_peak_mb": base,
            "losses": {k: round(float(v), 4) for k, v in losses.items()}}


def worker_ours(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    from microdenoise.methods.clidim_train import TrainState, train_step
    from microdenoise.registry import create

    torch.set_num_threads(job["threads"])
    torch.manual_seed(job["seed"])
    batch = torch.from_numpy(np.load(job["batch_file"]))
    crop = batch.shape[-1]
    clidim: Any = create("clidim", variant="cl+tv+ssim", batch_size=len(batch), crop=crop,
                         precision="fp32")
    clidim.net, clidim.disc, clidim.head = clidim.build((crop // 8 - 2) ** 2)
    state = TrainState.create(clidim, torch.device("cpu"))
    gen = torch.Generator().manual_seed(job["seed"])
    out = _timed(lambda: train_step(state, batch, gen), job)
    return {**out, "torch": torch.__version__}


def worker_official(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    code = job["official_dir"]
    sys.path.insert(0, code)
    random.seed(job["seed"])  # train.py seeds these three (ContrastiveLearner uses random)
    np.random.seed(job["seed"])  # noqa: NPY002 (the official code's global RNG)
    torch.manual_seed(job["seed"])
    torch.set_num_threads(job["threads"])
    x = np.load(job["batch_file"])
    a, b = torch.from_numpy(x[:, :1].copy()), torch.from_numpy(x[:, 1:].copy())
    del x
    with tempfile.TemporaryDirectory() as ckpt:
        sys.argv = ["train.py", "--dataroot", "unused", "--name", "bench",
                    "--checkpoints_dir", ckpt, *PAPER_ARGS, "--batch_size", str(len(a)),
                    "--crop_size", str(a.shape[-1]), "--num_threads", "0"]
        from models import create_model  # the official code's, from sys.path[0]
        from options.train_options import TrainOptions

        opt = TrainOptions().parse()
        model = create_model(opt)
        model.setup(opt)
    model.train()
    model.set_epoch(0)
    data = {"A": a, "B": b, "A_paths": ["A"] * len(a), "B_paths": ["B"] * len(a)}

    def step() -> dict[str, float]:
        model.set_input(data)
        model.optimize_parameters()
        return dict(model.get_current_losses())

    out = _timed(step, job)
    import kornia

    commit = Path(code, ".commit")
    return {**out, "torch": torch.__version__, "kornia": kornia.__version__,
            "official_commit": commit.read_text().strip()[:7] if commit.exists() else ""}


def worker(args: argparse.Namespace) -> None:
    job = json.loads(args.job)
    result = (worker_ours if args.side == "ours" else worker_official)(job)
    print("RESULT " + json.dumps(result), flush=True)


# --- run / table --------------------------------------------------------------------------
def _spawn(side: str, job: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    py = sys.executable if side == "ours" else str(Path(args.official_venv) / "bin" / "python")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what importing microdenoise sets
    return run_worker(py, __file__, side, job, env)


def run(args: argparse.Namespace) -> None:
    got: dict[str, list[dict[str, Any]]] = {s: [] for s in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(args.seed)
        batch = rng.uniform(-1, 1, (args.batch, 2, args.crop, args.crop)).astype(np.float32)
        np.save(Path(tmp) / "batch.npy", batch)
        del batch
        job = {"batch_file": str(Path(tmp) / "batch.npy"), "threads": args.threads,
               "seed": args.seed, "warmup": args.warmup, "steps": args.steps,
               "official_dir": str(Path(args.official_dir).resolve())}
        for r in range(args.rounds):
            for side in SIDES if r % 2 == 0 else SIDES[::-1]:
                res = _spawn(side, job, args)
                got[side].append(res)
                print(f"round {r + 1}/{args.rounds} {side}: "
                      f"{', '.join(f'{t:.2f}' for t in res['times'])} s/iter, "
                      f"peak RSS {res['peak_mb']:.0f} MB (before the first iteration "
                      f"{res['base_peak_mb']:.0f} MB), losses {res['losses']}", flush=True)
    times = {s: [t for res in got[s] for t in res["times"]] for s in SIDES}
    med = {s: statistics.median(times[s]) for s in SIDES}
    peak = {s: max(res["peak_mb"] for res in got[s]) for s in SIDES}
    last = got["official"][-1]
    row = {"row": "clidim",
           "case": f"iteration, cl+tv+ssim, {args.batch} x {args.crop}x{args.crop}, fp32",
           "ours_s": f"{med['ours']:.3f}", "direct_s": f"{med['official']:.3f}",
           "ratio": f"{med['ours'] / med['official']:.3f}",
           "ours_peak_mb": f"{peak['ours']:.0f}", "direct_peak_mb": f"{peak['official']:.0f}",
           "max_diff": "", "n": len(times["ours"]),
           "extra": json.dumps({
               "threads": args.threads, "rounds": args.rounds, "warmup": args.warmup,
               "steps": args.steps, "ours_times": [round(t, 3) for t in times["ours"]],
               "official_times": [round(t, 3) for t in times["official"]],
               "ours_base_mb": round(max(r["base_peak_mb"] for r in got["ours"])),
               "official_base_mb": round(max(r["base_peak_mb"] for r in got["official"])),
               "torch": last["torch"], "kornia": last["kornia"],
               "official_commit": last["official_commit"]}),
           "date": date.today().isoformat(),
           "machine": f"{platform.machine()} ({os.cpu_count()} cores)",
           "commit": git_commit()}
    path = Path(args.csv)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, FIELDS + ["date", "machine", "commit"])
        if new:
            writer.writeheader()
        writer.writerow(row)
    print(f"ours {med['ours']:.3f} s/iter, official {med['official']:.3f} s/iter, "
          f"ours / official {med['ours'] / med['official']:.3f}; peak RSS ours "
          f"{peak['ours']:.0f} MB, official {peak['official']:.0f} MB -> {path}")


def table(args: argparse.Namespace) -> str:
    lines = ["# CLIDiM iteration: ours vs the official code (issue 18)", "",
             f"Table commit {git_commit()}; each row says when, where and at which commit it "
             "ran. Generated by `benchmarks/clidim_vs_official.py` (its docstring says what "
             "runs). Seconds per iteration: median over all timed iterations; ratio = ours / "
             "official (below 1: ours faster); peak = the process's peak RSS.", "",
             "| case | ours s | official s | ours / official | ours peak MB "
             "| official peak MB | n | threads | date | machine | commit |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    path = Path(args.csv)
    if path.exists():
        with path.open() as fh:
            for r in csv.DictReader(fh):
                threads = json.loads(r["extra"] or "{}").get("threads", "")
                lines.append("| " + " | ".join(
                    [r["case"], r["ours_s"], r["direct_s"], r["ratio"], r["ours_peak_mb"],
                     r["direct_peak_mb"], r["n"], str(threads), r["date"], r["machine"],
                     r["commit"]]) + " |")
    return write_table("\n".join(lines), args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("install", help="export the official code, make its virtualenv")
    r = sub.add_parser("run", help="time both sides, append a row to --csv")
    for p in (i, r):
        p.add_argument("--official-dir", default="/work/clidim-official")
        p.add_argument("--official-venv", default="/work/clidim-official-venv")
    i.add_argument("--mirror", default=MIRROR, help="git directory of the official code")
    r.add_argument("--batch", type=int, default=128, help="crops per batch (paper: 128)")
    r.add_argument("--crop", type=int, default=256, help="crop side (unet_256 needs 256)")
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--steps", type=int, default=1, help="timed iterations per process")
    r.add_argument("--warmup", type=int, default=1, help="untimed iterations per process")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--csv", default=str(RESULTS / "clidim_rows.csv"))
    t = sub.add_parser("table", help="the rows of --csv as markdown")
    t.add_argument("--csv", default=str(RESULTS / "clidim_rows.csv"))
    t.add_argument("--out", default=None)
    w = sub.add_parser("worker", help="internal: one side's process")
    w.add_argument("side", choices=SIDES)
    w.add_argument("job", help="JSON")
    args = parser.parse_args()
    {"install": install, "run": run, "worker": worker,
     "table": lambda a: print(table(a))}[args.cmd](args)


if __name__ == "__main__":
    main()
