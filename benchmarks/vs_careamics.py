"""Our ``n2v`` side by side with CAREamics 0.3.5's Noise2Void (issue #3).

Both train on the same noisy images with the same patch size, batch size and
number of optimizer steps (``--epochs`` x ``--steps-per-epoch``), each otherwise
with its defaults (U-Net depth 2, 32 filters, batch norm; Adam 1e-3,
ReduceLROnPlateau; flips and 90-degree rotations), then denoise those images
(self-supervised protocol) and are scored against the ground truth.

CAREamics runs in its own virtualenv, as a subprocess, because it does not install
beside torch 2.13 as is (it pins torchvision <= 0.26, which needs torch <= 2.11):

    .venv/bin/python benchmarks/vs_careamics.py install --venv /work/careamics-venv
    .venv/bin/python benchmarks/vs_careamics.py run --venv /work/careamics-venv

``install`` does ``pip install torch==2.13.0`` (the same torch as ours),
``pip install --no-deps careamics==0.3.5``, its other requirements, and a *stub*
``torchvision`` package (``__version__`` and ``models``, ``ops``, ``datasets``,
``transforms.functional`` modules whose names are placeholders that raise if
called): CAREamics' N2V path never calls torchvision; only its LVAE code and
torchmetrics' optional metrics import it at load time.

Conventions: FMD is 8-bit: outputs clipped and rounded to 0..255, PSNR/SSIM with
data_range 255. One torch thread in both (``--threads``); CAREamics keeps its
default data-loader workers (1 on this machine). Wall seconds are measured around
training and prediction in each process; CPU seconds are the process's, plus its
children's for CAREamics (loader workers). The machine is shared with other
jobs, so wall times are noisy; CPU times less so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from microdenoise import create, datasets, denoise_array, metrics
from microdenoise.evaluate import quantize

RESULTS = Path(__file__).parent / "results"
REQUIREMENTS = ["bioimageio-core>=0.9,<=0.11", "lightning>=2.2,<=2.6.6,!=2.6.2,!=2.6.3",
                "microssim<=0.0.5", "pydantic>=2.11,<=2.14.1", "zarr>=3,<4",
                "torchmetrics<1.9", "tifffile<=2026.3.3", "scikit-image<=0.26", "matplotlib",
                "psutil", "pyyaml"]
STUB = '''"""Stub torchvision (benchmarks/vs_careamics.py): CAREamics' N2V never calls it."""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def _missing(*args, **kwargs):
        raise RuntimeError(f"torchvision stub: {__name__}.{name} is not available")

    _missing.__name__ = name
    return _missing
'''

# Runs inside the CAREamics virtualenv: train, predict, report times as JSON.
CAREAMICS_SCRIPT = textwrap.dedent('''
    import json, sys, time, resource
    import numpy as np, torch
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    torch.manual_seed(args["seed"])
    import careamics
    from careamics import CAREamist
    from careamics.config import create_n2v_config
    data = np.load(args["input"])
    cfg = create_n2v_config(experiment_name="vs_microdenoise", data_type="array",
                            axes="SYX", patch_size=[args["patch"], args["patch"]],
                            batch_size=args["batch"], num_epochs=args["epochs"],
                            num_steps=args["steps_per_epoch"])
    model = CAREamist(cfg, work_dir=args["work_dir"], enable_progress_bar=False)
    c0, w0 = time.process_time(), time.perf_counter()
    model.train(train_data=data)
    train = (time.process_time() - c0, time.perf_counter() - w0)
    c0, w0 = time.process_time(), time.perf_counter()
    pred, _ = model.predict(data, tile_size=(256, 256), tile_overlap=(48, 48))
    predict = (time.process_time() - c0, time.perf_counter() - w0)
    out = np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1, *data.shape[-2:])
                          for p in pred])
    np.save(args["output"], out)
    print("RESULT " + json.dumps({"version": careamics.__version__,
                                  "torch": torch.__version__,
                                  "train_cpu": train[0], "train_wall": train[1],
                                  "predict_cpu": predict[0], "predict_wall": predict[1]}))
''')


def install(args: argparse.Namespace) -> None:
    venv = Path(args.venv)
    py = venv / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "--no-deps", "careamics==0.3.5"], check=True)
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True)
    stub = Path(site.stdout.strip()) / "torchvision"
    (stub / "transforms").mkdir(parents=True, exist_ok=True)
    (stub / "__init__.py").write_text(
        '"""Stub torchvision (benchmarks/vs_careamics.py)."""\n__version__ = "0.0.0+stub"\n'
        "from . import datasets, models, ops, transforms  # noqa: F401\n")
    for name in ("models", "ops", "datasets", "transforms/functional"):
        (stub / f"{name}.py").write_text(STUB)
    (stub / "transforms" / "__init__.py").write_text("from . import functional  # noqa: F401\n")
    subprocess.run([str(py), "-c", "import careamics; print('careamics', careamics.__version__)"],
                   check=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_careamics(args: argparse.Namespace, noisy: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "in.npy", noisy)
        job = {"input": str(Path(tmp) / "in.npy"), "output": str(Path(tmp) / "out.npy"),
               "work_dir": tmp, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
               "batch": args.batch, "patch": args.patch, "seed": args.seed,
               "threads": args.threads}
        c0, w0 = _children_cpu(), time.perf_counter()
        proc = subprocess.run([str(Path(args.venv) / "bin" / "python"), "-c", CAREAMICS_SCRIPT,
                               json.dumps(job)], capture_output=True, text=True, check=False,
                              cwd=tmp)
        total_cpu, total_wall = _children_cpu() - c0, time.perf_counter() - w0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            sys.exit(f"CAREamics failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        info = json.loads(lines[-1][len("RESULT "):])
        info.update(total_cpu=total_cpu, total_wall=total_wall)
        return np.load(Path(tmp) / "out.npy"), info


def run_ours(args: argparse.Namespace, noisy: np.ndarray) -> dict[str, Any]:
    model = create("n2v", epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                   batch_size=args.batch, patch_size=args.patch, seed=args.seed)
    model.device = "cpu"  # type: ignore[attr-defined]
    c0, w0 = time.process_time(), time.perf_counter()
    model.fit(noisy)
    train = (time.process_time() - c0, time.perf_counter() - w0)
    outputs: dict[str, Any] = {"train_cpu": train[0], "train_wall": train[1]}
    # The library default, then (``--both-shift``) the other shift_average (same weights).
    default = bool(model.config.shift_average)
    for shift in (default, not default)[: 2 if args.both_shift else 1]:
        model.config = dataclasses.replace(model.config, shift_average=shift)
        c0, w0 = time.process_time(), time.perf_counter()
        out = denoise_array(noisy, model, device="cpu")
        outputs[f"shift_average={str(shift).lower()}"] = (
            out, time.process_time() - c0, time.perf_counter() - w0)
    outputs["default_shift"] = default
    return outputs


def score(out: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    pairs = list(zip(quantize(out, "round"), gt.astype(np.float64), strict=True))
    return (float(np.mean([metrics.psnr(p, t, data_range=255) for p, t in pairs])),
            float(np.mean([metrics.ssim(p, t, data_range=255) for p, t in pairs])))


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    pairs = datasets.fmd_test_mix(names=args.images)
    noisy = np.stack([p.noisy for p in pairs]).astype(np.float32)
    gt = np.stack([p.clean for p in pairs])
    ours = run_ours(args, noisy)
    theirs, info = run_careamics(args, noisy)
    steps = args.epochs * args.steps_per_epoch
    rows = []
    noisy_psnr, noisy_ssim = score(noisy, gt)
    rows.append(f"| noisy input | {noisy_psnr:.2f} | {noisy_ssim:.3f} | - | - | - | - | - | - "
                "| - |")
    their_psnr, their_ssim = score(theirs, gt)
    their_total = info["train_wall"] + info["predict_wall"]
    rows.append(f"| CAREamics {info['version']} N2V | {their_psnr:.2f} | {their_ssim:.3f} | "
                f"{info['train_wall']:.0f} | {info['predict_wall']:.0f} | {their_total:.0f} | "
                f"{info['train_cpu']:.0f} | {info['predict_cpu']:.0f} | "
                f"{info['total_cpu']:.0f} | 1.00 |")
    verdicts = []
    for key in [k for k in ours if k.startswith("shift_average=")]:
        out, p_cpu, p_wall = ours[key]
        psnr, ssim = score(out, gt)
        total = ours["train_wall"] + p_wall
        label = f"microdenoise n2v, {key}" + (" (default)" if key.endswith(
            str(ours["default_shift"]).lower()) else "")
        rows.append(f"| {label} | {psnr:.2f} | {ssim:.3f} | {ours['train_wall']:.0f} | "
                    f"{p_wall:.0f} | {total:.0f} | {ours['train_cpu']:.0f} | {p_cpu:.0f} | "
                    f"{ours['train_cpu'] + p_cpu:.0f} | {total / their_total:.2f} |")
        ok = psnr >= their_psnr - 0.1 and total <= 0.5 * their_total
        verdicts.append(f"- {label}: PSNR {psnr - their_psnr:+.2f} dB vs CAREamics, wall "
                        f"{total / their_total:.2f}x: target (>= -0.1 dB at <= 0.5x) "
                        f"{'met' if ok else 'NOT met'}.")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    names = ", ".join(args.images)
    text = "\n".join([
        "# microdenoise n2v vs CAREamics 0.3.5 N2V", "",
        f"Generated {date.today()} by `benchmarks/vs_careamics.py` on {platform.machine()} "
        f"({os.cpu_count()} cores shared with other jobs), commit {commit}; ours on torch "
        f"{torch.__version__}, CAREamics {info['version']} on torch {info['torch']} in its own "
        "virtualenv with a stub torchvision package (CAREamics pins torchvision <= 0.26, "
        "which needs torch <= 2.11; its N2V path never calls torchvision, only its LVAE code "
        "and torchmetrics' optional metrics import it at load time).", "",
        f"Data: FMD test mix {names} ({len(pairs)} raw 512x512 8-bit frames); both train on "
        f"the noisy frames only and denoise them (self-supervised protocol). **Same budget: "
        f"{steps} steps ({args.epochs} epochs x {args.steps_per_epoch}) of batch {args.batch}, "
        f"{args.patch}x{args.patch} patches**, seed {args.seed}, one torch thread each; "
        "everything else at each library's defaults (CAREamics: 1 data-loader worker on this "
        "machine, n_val_patches 8, prediction in 256x256 tiles with 48 px overlap; ours: "
        "32 validation patches, whole-image prediction). PSNR/SSIM: outputs clipped and "
        "rounded to 0..255, data_range 255, mean over images.", "",
        "| model | PSNR | SSIM | train wall s | predict wall s | total wall s | train CPU s | "
        "predict CPU s | total CPU s | wall vs CAREamics |", "|---" * 10 + "|", *rows, "",
        *verdicts, "",
        f"CAREamics' process ran {info['total_wall']:.0f} s wall in all (imports and Lightning "
        f"set-up included) and used {info['total_cpu']:.0f} CPU s with its loader worker "
        "(its train/predict CPU columns count the main process only; total CPU includes "
        "imports, set-up and the worker). The machine is shared with other jobs: wall times "
        "are noisy.", ""])
    print(text)
    if args.out:
        out = Path(args.out)
        if args.append and out.exists():
            text = out.read_text() + "\n" + text.split("\n", 2)[2]  # without the title
        out.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("install")
    i.add_argument("--venv", default="/work/careamics-venv")
    r = sub.add_parser("run")
    r.add_argument("--venv", default="/work/careamics-venv")
    r.add_argument("--images", nargs="+", default=["Confocal_FISH_*"])
    r.add_argument("--both-shift", action="store_true",
                   help="also predict with the non-default shift_average")
    r.add_argument("--epochs", type=int, default=5)
    r.add_argument("--steps-per-epoch", type=int, default=20)
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--patch", type=int, default=64)
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--out", default=str(RESULTS / "vs_careamics.md"))
    r.add_argument("--append", action="store_true", help="add this run below those in --out")
    args = parser.parse_args()
    if args.cmd == "install":
        install(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
