"""Our ``n2v`` side by side with CAREamics 0.3.5's Noise2Void (issue #3).

Both train on the same noisy images with the same patch size, batch size, epochs and
number of optimizer steps, each otherwise with its defaults (U-Net depth 2, 32
filters, batch norm; Adam 1e-3, ReduceLROnPlateau; flips and 90-degree rotations),
then denoise those images (self-supervised protocol) and are scored against the
ground truth. For every seed of ``--seeds`` CAREamics runs first, seeded through
``create_advanced_n2v_config(seed=...)``; its ``num_steps`` only caps an epoch (at
its patch count / batch), so ours then trains exactly the steps CAREamics ran. The
table reports each seed and the paired mean +- sd: single runs of either library
differ by up to ~1 dB from seed to seed at these budgets.

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
import json
import os
import platform
import resource
import statistics
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
from _common import decided, git_commit, mean_se, site_packages, stub_module, venv_python

from microdenoise import create, datasets, denoise_array, metrics
from microdenoise.evaluate import quantize

RESULTS = Path(__file__).parent / "results" / "vs_careamics"
REQUIREMENTS = ["bioimageio-core>=0.9,<=0.11", "lightning>=2.2,<=2.6.6,!=2.6.2,!=2.6.3",
                "microssim<=0.0.5", "pydantic>=2.11,<=2.14.1", "zarr>=3,<4",
                "torchmetrics<1.9", "tifffile<=2026.3.3", "scikit-image<=0.26", "matplotlib",
                "psutil", "pyyaml"]
STUB = stub_module("Stub torchvision (benchmarks/vs_careamics.py): CAREamics' N2V never calls it.")

# Runs inside the CAREamics virtualenv: train, predict, report times as JSON.
CAREAMICS_SCRIPT = textwrap.dedent('''
    import json, sys, time, resource
    import numpy as np, torch
    args = json.loads(sys.argv[1])
    torch.set_num_threads(args["threads"])
    torch.manual_seed(args["seed"])
    import careamics
    from careamics import CAREamist
    from careamics.config import create_advanced_n2v_config
    data = np.load(args["input"])
    # create_n2v_config draws a random seed that CAREamist.train then passes to
    # seed_everything; the advanced factory takes it, with create_n2v_config's defaults.
    cfg = create_advanced_n2v_config(experiment_name="vs_microdenoise", data_type="array",
                                     axes="SYX", patch_size=[args["patch"], args["patch"]],
                                     batch_size=args["batch"], num_epochs=args["epochs"],
                                     num_steps=args["steps_per_epoch"], seed=args["seed"])
    model = CAREamist(cfg, work_dir=args["work_dir"], enable_progress_bar=False)
    c0, w0 = time.process_time(), time.perf_counter()
    model.train(train_data=data)
    train = (time.process_time() - c0, time.perf_counter() - w0)
    steps = int(model.trainer.global_step)
    c0, w0 = time.process_time(), time.perf_counter()
    pred, _ = model.predict(data, tile_size=(256, 256), tile_overlap=(48, 48))
    predict = (time.process_time() - c0, time.perf_counter() - w0)
    out = np.concatenate([np.asarray(p, dtype=np.float32).reshape(-1, *data.shape[-2:])
                          for p in pred])
    np.save(args["output"], out)
    print("RESULT " + json.dumps({"version": careamics.__version__,
                                  "torch": torch.__version__,
                                  "steps": steps,
                                  "train_cpu": train[0], "train_wall": train[1],
                                  "predict_cpu": predict[0], "predict_wall": predict[1]}))
''')


def install(args: argparse.Namespace) -> None:
    venv = Path(args.venv)
    py = venv_python(venv)
    pip = [str(py), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, "--no-deps", "careamics==0.3.5"], check=True)
    subprocess.run([*pip, *REQUIREMENTS], check=True)
    stub = site_packages(py) / "torchvision"
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


def run_careamics(args: argparse.Namespace, noisy: np.ndarray, *, seed: int
                  ) -> tuple[np.ndarray, dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "in.npy", noisy)
        job = {"input": str(Path(tmp) / "in.npy"), "output": str(Path(tmp) / "out.npy"),
               "work_dir": tmp, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
               "batch": args.batch, "patch": args.patch, "seed": seed,
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


def run_ours(args: argparse.Namespace, noisy: np.ndarray, *, seed: int, steps_per_epoch: int,
             precision: str) -> dict[str, Any]:
    model = create("n2v", epochs=args.epochs, steps_per_epoch=steps_per_epoch,
                   batch_size=args.batch, patch_size=args.patch, seed=seed,
                   precision=precision)
    model.device = "cpu"  # type: ignore[attr-defined]
    c0, w0 = time.process_time(), time.perf_counter()
    model.fit(noisy)
    train = (time.process_time() - c0, time.perf_counter() - w0)
    c0, w0 = time.process_time(), time.perf_counter()
    out = denoise_array(noisy, model, device="cpu")
    return {"out": out, "steps": args.epochs * steps_per_epoch, "train_cpu": train[0],
            "train_wall": train[1], "predict_cpu": time.process_time() - c0,
            "predict_wall": time.perf_counter() - w0}


def score(out: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    pairs = list(zip(quantize(out, "round"), gt.astype(np.float64), strict=True))
    return (float(np.mean([metrics.psnr(p, t, data_range=255) for p, t in pairs])),
            float(np.mean([metrics.ssim(p, t, data_range=255) for p, t in pairs])))


def _ms(values: list[float], fmt: str = ".2f") -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{fmt}} +- {sd:{fmt}}"


def _verdict(values: list[float], floor: float) -> str:
    """``mean(values) >= floor``, decided only by more than the mean's standard error
    (sd / sqrt(n)): "met", "NOT met" or "not decided"."""
    mean, se = mean_se(values)
    return {1: "met", -1: "NOT met", 0: "not decided"}[decided(mean - floor, se)]


def run(args: argparse.Namespace) -> None:
    """Per seed: CAREamics first (its real step count), then ours with as many steps."""
    torch.set_num_threads(args.threads)
    pairs = datasets.fmd_test_mix(names=args.images)
    noisy = np.stack([p.noisy for p in pairs]).astype(np.float32)
    gt = np.stack([p.clean for p in pairs])
    noisy_psnr, noisy_ssim = score(noisy, gt)
    rows = [f"| noisy input | - | - | {noisy_psnr:.2f} | {noisy_ssim:.3f} | - | - | - | - |"]
    theirs_all: list[dict[str, Any]] = []
    ours_all: dict[str, list[dict[str, Any]]] = {p: [] for p in args.precisions}
    for seed in args.seeds:
        out, info = run_careamics(args, noisy, seed=seed)
        info["psnr"], info["ssim"] = score(out, gt)
        # CAREamics' num_steps caps an epoch at its patches / batch (e.g. 16 batches for
        # 4 512x512 frames of 64x64 patches): give ours the steps CAREamics really ran.
        per_epoch = max(1, round(info["steps"] / args.epochs))
        theirs_all.append(info)
        runs = [(f"CAREamics {info['version']}", info)]
        for precision in args.precisions:
            ours = run_ours(args, noisy, seed=seed, steps_per_epoch=per_epoch,
                            precision=precision)
            ours["psnr"], ours["ssim"] = score(ours.pop("out"), gt)
            ours_all[precision].append(ours)
            runs.append((f"microdenoise n2v, precision={precision}", ours))
        for name, r in runs:
            rows.append(f"| {name} | {seed} | {r['steps']} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                        f"{r['train_wall']:.0f} | {r['predict_wall']:.0f} | "
                        f"{r['train_cpu']:.0f} | {r['predict_cpu']:.0f} |")
            print(rows[-1], flush=True)

    def total(r: dict[str, Any], kind: str) -> float:
        return float(r[f"train_{kind}"] + r[f"predict_{kind}"])

    summary = ["| model | PSNR (mean +- sd over seeds) | SSIM | total wall s | total CPU s "
               "(main process) |", "|---|---|---|---|---|"]
    verdicts = []
    for name, group in (("CAREamics", theirs_all),
                        *((f"microdenoise n2v, precision={p}", g) for p, g in ours_all.items())):
        summary.append(f"| {name} | {_ms([r['psnr'] for r in group])} | "
                       f"{_ms([r['ssim'] for r in group], '.3f')} | "
                       f"{_ms([total(r, 'wall') for r in group], '.0f')} | "
                       f"{_ms([total(r, 'cpu') for r in group], '.0f')} |")
    for precision, group in ours_all.items():
        d_psnr = [o["psnr"] - t["psnr"] for o, t in zip(group, theirs_all, strict=True)]
        ratio = [total(o, "wall") / total(t, "wall")
                 for o, t in zip(group, theirs_all, strict=True)]
        verdicts.append(
            f"- precision={precision}, paired over {len(d_psnr)} seeds: PSNR ours - CAREamics "
            f"{_ms(d_psnr)} dB (target >= -0.1: **{_verdict(d_psnr, -0.1)}**); wall "
            f"ours / CAREamics {_ms(ratio)} (target <= 0.5: "
            f"**{_verdict([-r for r in ratio], -0.5)}**).")
    summary += ["", *verdicts]
    commit = git_commit()
    info = theirs_all[-1]
    text = "\n".join([
        "# microdenoise n2v vs CAREamics 0.3.5 N2V", "",
        f"Generated {date.today()} by `benchmarks/vs_careamics.py run --seeds "
        f"{' '.join(map(str, args.seeds))} --precisions {' '.join(args.precisions)} --epochs "
        f"{args.epochs} --steps-per-epoch {args.steps_per_epoch}` on {platform.machine()} "
        f"({os.cpu_count()} cores), commit "
        f"{commit}; ours on torch {torch.__version__}, CAREamics {info['version']} on torch "
        f"{info['torch']} in its own virtualenv with a stub torchvision package (CAREamics "
        "pins torchvision <= 0.26, which needs torch <= 2.11; its N2V path never calls "
        "torchvision, only its LVAE code and torchmetrics' optional metrics import it at "
        "load time).", "",
        f"Data: FMD test mix {', '.join(args.images)} ({len(pairs)} raw 512x512 8-bit "
        "frames); both train on the noisy frames only and denoise them (self-supervised "
        f"protocol). **Same budget**: {args.epochs} epochs of batch {args.batch}, "
        f"{args.patch}x{args.patch} patches, at most {args.steps_per_epoch} steps per epoch "
        "for CAREamics (`num_steps`), which caps an epoch at its patch count / batch; ours "
        "then runs exactly the steps CAREamics ran (column 'steps'). Each seed seeds both "
        "(CAREamics through `create_advanced_n2v_config(seed=...)`, which `CAREamist.train` "
        "passes to `seed_everything`; `create_n2v_config` draws a random one). One torch "
        "thread each; everything else at each library's defaults (CAREamics: its "
        "data-loader workers, 8 validation patches, prediction in 256x256 tiles with 48 px "
        "overlap; ours: 32 validation patches from a held-out strip, whole-image "
        "prediction). PSNR/SSIM: outputs clipped and rounded to 0..255, data_range 255, "
        "mean over images. CPU columns: each main process only (CAREamics' loader worker "
        "is not counted).", "",
        "| model | seed | steps | PSNR | SSIM | train wall s | predict wall s | train CPU s | "
        "predict CPU s |", "|---" * 9 + "|", *rows, "", *summary, ""])
    print(text)
    if args.out:
        dest = Path(args.out)
        if args.append and dest.exists():
            text = dest.read_text() + "\n" + text.split("\n", 2)[2]  # without the title
        dest.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("install")
    i.add_argument("--venv", default="/work/careamics-venv")
    r = sub.add_parser("run")
    r.add_argument("--venv", default="/work/careamics-venv")
    r.add_argument("--images", nargs="+", default=["Confocal_FISH_*"])
    r.add_argument("--epochs", type=int, default=10)
    r.add_argument("--steps-per-epoch", type=int, default=20)
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--patch", type=int, default=64)
    r.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    r.add_argument("--precisions", nargs="+", default=["auto", "fp32"],
                   choices=["auto", "fp32", "bf16"], help="ours, trained once per value")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--out", default=str(RESULTS / "table.md"))
    r.add_argument("--append", action="store_true", help="add this run below those in --out")
    args = parser.parse_args()
    if args.cmd == "install":
        install(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
