"""CLIDiM ablation (the paper's Table I layout) and comparison (Table II) on W2S 8-bit.

Train on the W2S training FOVs 001-010 (30 pairs; after a seeded shuffle, n = 30
trains on 27 and holds 3 back for model selection; n < 30 trains on exactly n and
selects on some of the other pairs: no test image is ever used to pick a
checkpoint), test on FOVs 081-100 (60 pairs). One model per
(variant, n_train); every model gets the same budget (iterations, batch, crop).

Two steps, resumable (a CSV row per trained model and per test image; finished
ones are skipped, trained models are kept under ``--model-dir`` and reloaded):

    # train and score (CPU; one torch thread); one process per --tag may run at once
    .venv/bin/python benchmarks/clidim_ablation.py run --iterations 40 --batch 2 \
        --variants baseline cl+tv+ssim --n-train 30 --tag n30
    .venv/bin/python benchmarks/clidim_ablation.py run --iterations 120 --batch 2 \
        --steps-per-epoch 10 --variants baseline --n-train 30 --tag it120_n30 \
        --model-dir runs/clidim_ablation120
    # classical reference rows (noisy input; Gaussian with sigma chosen on train FOVs)
    .venv/bin/python benchmarks/clidim_ablation.py reference
    # the Markdown tables from the CSVs
    .venv/bin/python benchmarks/clidim_ablation.py table \
        --notes benchmarks/results/clidim_ablation/notes.md \
        --out benchmarks/results/clidim_ablation/table.md

The paper's budget (800 epochs of 3 iterations at batch 128, 2.4k iterations) on a GPU:

    .venv/bin/python benchmarks/clidim_ablation.py run --device cuda --iterations 2400 \
        --batch 128 --steps-per-epoch 3 --tag gpu

Conventions: outputs clipped to 0..255 and rounded; PSNR/SSIM with data_range 255;
NRMSE = sqrt(mean((gt - x)^2)) / sqrt(mean(gt^2)) (skimage's default). "SI" columns
score the output after a per-image least-squares affine fit to the ground truth
(:func:`microdenoise.metrics.affine_fit`), since W2S noisy and gt were rescaled to
0..255 separately. CPU seconds are ``time.process_time`` of the process.
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import statistics
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import git_commit

from microdenoise import datasets, denoise_array, load, metrics, save
from microdenoise.evaluate import quantize
from microdenoise.methods.clidim import CLIDiM
from microdenoise.training import resolve_device, use_bf16

RESULTS = Path(__file__).parent / "results" / "clidim_ablation"
W2S_CARE = RESULTS.parent / "w2s_care"  # the rows of benchmarks/w2s_care.py
VARIANTS = ("baseline", "tv", "ssim", "cl", "cl+tv+ssim")
LABELS = {"baseline": "Baseline (pix2pix)", "tv": "TV", "ssim": "SSIM", "cl": "CL",
          "cl+tv+ssim": "CL+TV+SSIM"}
MODEL_FIELDS = ["model", "variant", "n_train", "lambda_l1", "seed", "iterations", "batch", "crop",
                "epochs", "best_val_psnr", "best_epoch", "train_cpu_s", "train_wall_s",
                "device"]
SCORE_FIELDS = ["model", "image", "psnr", "ssim", "nrmse", "si_psnr", "si_ssim", "si_nrmse",
                "cpu_s"]
GAUSS_SIGMAS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


def model_name(variant: str, n_train: int, lambda_l1: float, seed: int = 42) -> str:
    """Row key, e.g. ``cl+tv+ssim_n16_l1-100`` (``_seed7`` appended for other seeds)."""
    return f"{variant}_n{n_train}_l1-{lambda_l1:g}" + (f"_seed{seed}" if seed != 42 else "")


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open() as fh:
        return list(csv.DictReader(fh))


class Appender:
    """Append rows to a CSV (header written once), flushing after each row."""

    def __init__(self, path: Path, fields: list[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        self.fh = path.open("a", newline="")
        self.writer = csv.DictWriter(self.fh, fields)
        if new:
            self.writer.writeheader()
            self.fh.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)
        self.fh.flush()


def scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, str]:
    """Raw and scale-invariant scores of a 0..255 output against its ground truth."""
    fitted = metrics.affine_fit(pred, gt)
    return {
        "psnr": f"{metrics.psnr(pred, gt, data_range=255):.4f}",
        "ssim": f"{metrics.ssim(pred, gt, data_range=255):.5f}",
        "nrmse": f"{metrics.nrmse(pred, gt):.5f}",
        "si_psnr": f"{metrics.si_psnr(pred, gt, data_range=255):.4f}",
        "si_ssim": f"{metrics.ssim(fitted, gt, data_range=255):.5f}",
        "si_nrmse": f"{metrics.nrmse(fitted, gt):.5f}",
    }


def schedule(iterations: int, steps_per_epoch: int) -> dict[str, int]:
    """CLIDiM epochs for ``iterations``: the official 500 + 300 split (constant, then
    linear decay) and validation from 150/800 of the run on, every epoch."""
    epochs = max(1, iterations // steps_per_epoch)
    decay = round(epochs * 300 / 800)
    return {"n_epochs": epochs - decay, "n_epochs_decay": decay,
            "steps_per_epoch": steps_per_epoch, "val_from": max(1, round(epochs * 150 / 800)),
            "val_every": 1}


def device_label(device: str, precision: str) -> str:
    """``cuda``, ``cpu`` (float32 steps) or ``cpu/bf16`` (bf16 autocast steps): the
    models CSV's device column, part of a table's budget."""
    bf16 = use_bf16(precision, resolve_device(device))
    return f"{device}/bf16" if bf16 else device


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    train = datasets.w2s_8bit(args.data_root, split="train")
    test = datasets.w2s_8bit(args.data_root, split="test")
    if args.test_stride > 1:
        test = test[args.test_offset::args.test_stride]
    suffix = f"_{args.tag}" if args.tag else ""
    models_csv = RESULTS / f"models{suffix}.csv"
    scores_csv = RESULTS / f"scores{suffix}.csv"
    trained = {r["model"]: r for r in read_csv(models_csv)}
    scored = {(r["model"], r["image"]) for r in read_csv(scores_csv)}
    model_log, score_log = Appender(models_csv, MODEL_FIELDS), Appender(scores_csv,
                                                                         SCORE_FIELDS)
    # n first within each variant pair, so a partial run has comparable rows.
    jobs = [(v, n) for n in args.n_train for v in args.variants]
    for variant, n in jobs:
        name = model_name(variant, n, args.lambda_l1, args.seed)
        todo = [p for p in test if (name, p.name) not in scored]
        if name in trained and not todo:
            continue
        path = args.model_dir / f"{name}{suffix}.pt"
        if name in trained and path.exists():
            method = load(path)
        else:
            # n = all given pairs: n_train unset, so CLIDiM holds 10 % (3 of 30) back for
            # selection as every n = 30 row did; n_train=30 would leave none to validate
            # on and keep the last weights (the 2026-12-04 GPU run, killed: see notes).
            method = CLIDiM(variant=variant, n_train=n if n < len(train) else None,
                            lambda_l1=args.lambda_l1,
                            batch_size=args.batch, crop=args.crop, seed=args.seed,
                            keep="best", precision=args.precision,
                            **({"normalization": args.normalization} if args.normalization
                               else {}),
                            **schedule(args.iterations, args.steps_per_epoch))
            method.device = args.device
            c0, w0 = time.process_time(), time.perf_counter()
            method.fit([p.noisy for p in train], [p.clean for p in train])
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            best = max(method.history, key=lambda h: h.get("val_psnr", -math.inf))
            args.model_dir.mkdir(parents=True, exist_ok=True)
            save(method, path)
            model_log.write({
                "model": name, "variant": variant, "n_train": n, "lambda_l1": args.lambda_l1,
                "seed": args.seed,
                "iterations": method.epoch * args.steps_per_epoch, "batch": args.batch,
                "crop": args.crop, "epochs": method.epoch,
                "best_val_psnr": f"{method.best:.4f}",
                "best_epoch": int(best["epoch"]) if "val_psnr" in best else "",
                "train_cpu_s": f"{cpu:.1f}", "train_wall_s": f"{wall:.1f}",
                "device": device_label(args.device, args.precision)})
            print(f"trained {name}: {cpu:.0f} cpu-s, best val PSNR {method.best:.2f} "
                  f"at epoch {best.get('epoch')}", flush=True)
        method.device = args.device
        for pair in todo:
            c0 = time.process_time()
            pred = quantize(denoise_array(pair.noisy, method), "round")
            row = {"model": name, "image": pair.name,
                   **scores(pred, pair.clean.astype(np.float64)),
                   "cpu_s": f"{time.process_time() - c0:.2f}"}
            score_log.write(row)
        print(f"scored {name} on {len(todo)} test images", flush=True)


def reference(args: argparse.Namespace) -> None:
    """Noisy input and a Gaussian filter whose sigma is chosen on the training FOVs."""
    train = datasets.w2s_8bit(args.data_root, split="train")
    test = datasets.w2s_8bit(args.data_root, split="test")

    def gauss(image: np.ndarray, sigma: float) -> np.ndarray:
        return quantize(denoise_array(image, "gaussian", params={"sigma": sigma}), "round")

    choice = max(GAUSS_SIGMAS, key=lambda s: statistics.mean(
        metrics.si_psnr(gauss(p.noisy, s), p.clean.astype(np.float64), data_range=255)
        for p in train))
    print(f"gaussian sigma {choice} (best mean SI-PSNR on the 30 training pairs)")
    log = Appender(RESULTS / "scores_reference.csv", SCORE_FIELDS)
    done = {(r["model"], r["image"])
            for r in read_csv(RESULTS / "scores_reference.csv")}
    for pair in test:
        gt = pair.clean.astype(np.float64)
        for name, fn in (("noisy input", lambda x: x.astype(np.float64)),
                         (f"gaussian sigma={choice:g}", lambda x: gauss(x, choice))):
            if (name, pair.name) in done:
                continue
            c0 = time.process_time()
            out = fn(pair.noisy)
            log.write({"model": name, "image": pair.name, **scores(out, gt),
                       "cpu_s": f"{time.process_time() - c0:.2f}"})


# --- tables ---------------------------------------------------------------------------
Budget = tuple[int, int, int, str]  # iterations, batch, crop, device
KEYS_RAW = ("psnr", "ssim", "nrmse")
KEYS_SI = ("si_psnr", "si_ssim", "si_nrmse")


def _cells(rows: list[dict[str, str]], keys: tuple[str, ...]) -> str:
    if not rows:
        return " | ".join("" for _ in keys)
    means = [statistics.mean(float(r[k]) for r in rows) for k in keys]
    return " | ".join(f"{v:.2f}" if "psnr" in k else f"{v:.4f}"
                      for k, v in zip(keys, means, strict=True))


def load_runs(tags: list[str] | None) -> dict[Budget, dict[str, tuple[dict[str, str],
                                                                      list[dict[str, str]]]]]:
    """{budget: {model name: (model row, its score rows)}} from the run CSVs."""
    globs = [f"_{t}" for t in tags] if tags is not None else ["", "_*"]
    runs: dict[Budget, dict[str, tuple[dict[str, str], list[dict[str, str]]]]] = {}
    paths = sorted({p for g in globs for p in RESULTS.glob(f"models{g}.csv")})
    for path in paths:
        scored = read_csv(path.with_name("scores" + path.name.removeprefix("models")))
        for m in read_csv(path):
            budget = (int(m["iterations"]), int(m["batch"]), int(m["crop"]), m["device"])
            rows = [r for r in scored if r["model"] == m["model"]]
            runs.setdefault(budget, {})[m["model"]] = (m, rows)
    return runs


def _seed(m: dict[str, str]) -> int:
    return int(m.get("seed") or 42)


def _train_s(m: dict[str, str]) -> float:
    """A model's training time: wall seconds on a GPU, CPU seconds on the CPU."""
    return float(m["train_wall_s" if m.get("device") == "cuda" else "train_cpu_s"])


def table_one(budget: Budget, models: dict[str, tuple[dict[str, str], list[dict[str, str]]]],
              n_test: int) -> list[str]:
    """The paper's Table I layout (raw, then scale-invariant) for one budget."""
    its, batch, crop, device = budget
    lines: list[str] = []
    l1s = sorted({float(m["lambda_l1"]) for m, _ in models.values()}, reverse=True)
    ns = sorted({int(m["n_train"]) for m, _ in models.values()}, reverse=True)
    for title, keys in (("raw 0..255", KEYS_RAW),
                        ("scale-invariant (output affinely fitted to the ground truth)",
                         KEYS_SI)):
        for l1 in l1s:
            lines += [f"#### {its} iterations x batch {batch} ({crop} px crops, {device}), "
                      f"lambda_L1 = {l1:g}: {title}", "",
                      "| n | variant | PSNR | SSIM | NRMSE | test images | best val PSNR "
                      f"(epoch) | train {'wall' if device == 'cuda' else 'CPU'} s |",
                      "|---|---|---|---|---|---|---|---|"]
            for n in ns:
                for v in VARIANTS:
                    name = model_name(v, n, l1)
                    if name not in models:
                        if l1 == 100:
                            lines.append(f"| {n} | {LABELS[v]} | not run | | | | | |")
                        continue
                    m, rows = models[name]
                    lines.append(f"| {n} | {LABELS[v]} | {_cells(rows, keys)} | "
                                 f"{len(rows)}/{n_test} | {float(m['best_val_psnr']):.2f} "
                                 f"({m['best_epoch']}) | {_train_s(m):.0f} |")
            lines.append("")
    return lines


def table(args: argparse.Namespace) -> str:
    runs = load_runs(args.tags)
    reference_rows: dict[str, list[dict[str, str]]] = {}
    for r in read_csv(RESULTS / "scores_reference.csv"):
        reference_rows.setdefault(r["model"], []).append(r)
    n_test = len(datasets.w2s_8bit(args.data_root, split="test"))
    lines = ["## Table I layout: the ablation", ""]
    for budget in sorted(runs, reverse=True):
        lines += table_one(budget, runs[budget], n_test)
    lines += ["## Table II layout: CLIDiM beside the other families (same 60 test images)",
              "", "| method | training data | PSNR | SSIM | NRMSE | SI-PSNR | SI-SSIM | "
              "SI-NRMSE | test images |", "|---|---|---|---|---|---|---|---|---|"]
    for budget in sorted(runs, reverse=True):
        # CLIDiM's full loss; where a budget has no such row yet, its pix2pix baseline.
        variants = {m["variant"] for m, _ in runs[budget].values()}
        shown = "cl+tv+ssim" if "cl+tv+ssim" in variants else "baseline"
        for m, rows in sorted(runs[budget].values(), key=lambda t: -int(t[0]["n_train"])):
            if m["variant"] == shown and _seed(m) == 42:
                lines.append(
                    f"| CLIDiM {LABELS[shown]}, lambda_L1 {float(m['lambda_l1']):g}, "
                    f"{budget[0]} it x {budget[1]} | {m['n_train']} pairs (FOVs 001-010) | "
                    f"{_cells(rows, KEYS_RAW + KEYS_SI)} | {len(rows)}/{n_test} |")
    for name, rows in reference_rows.items():
        lines.append(f"| {name} | none | {_cells(rows, KEYS_RAW + KEYS_SI)} | "
                     f"{len(rows)}/{n_test} |")
    # Rows of benchmarks/w2s_care.py (same test images and conventions), if it has run.
    care: dict[str, list[dict[str, str]]] = {}
    for r in (r for p in sorted(W2S_CARE.glob("scores*.csv")) for r in read_csv(p)):
        if r.get("task") == "denoise" and r["row"] != "noisy" and not r["spec"].startswith(
                "gaussian"):
            care.setdefault(f"{r['row']} ({r['spec']})", []).append(r)
    for label, rows in care.items():
        lines.append(f"| {label} [../w2s_care/table.md] | see ../w2s_care/table.md | "
                     f"{_cells(rows, ('psnr', 'ssim', 'nrmse', 'si_psnr'))} | | | "
                     f"{len(rows)}/{n_test} |")
    for other in ("care", "n2v", "fm2s"):
        if not any(label.startswith(other) for label in care):
            lines.append(f"| {other} | | see ../w2s_care/table.md | | | | | | |")
    lines.append("")
    commit = git_commit()
    header = [
        "# CLIDiM ablation on W2S 8-bit", "",
        f"Generated {date.today()} on {platform.machine()}, torch {torch.__version__}, "
        f"commit {commit}, by `benchmarks/clidim_ablation.py`. Per-model and per-image "
        "rows: `models_*.csv`, `scores_*.csv`.", "",
        "Data: W2S 8-bit (`../shared/data/w2s_8bit`), single frame vs avg400. Training "
        "pairs: FOVs 001-010 (30 pairs, 3 channels each); CLIDiM shuffles them (seed 42), "
        "takes the first n, and holds the last round(0.1 n) back for model selection "
        "(3 of 30, 2 of 16), so n = 30 trains on 27 and n = 16 on 14 pairs. Test: FOVs "
        "081-100 (60 pairs), never used for any choice. Every row of a table has the same "
        "budget (iterations, batch, crop); the schedule is the official one scaled down: "
        "constant learning rate for about 5/8 of the run, linear decay to 0 over the rest, "
        "validation every epoch from 3/16 of the run on, the generator with the best "
        "validation PSNR kept.", "",
        "Metrics: outputs clipped to 0..255 and rounded. Raw tables: PSNR and SSIM with "
        "data_range 255, NRMSE = RMSE / sqrt(mean(gt^2)) (skimage's default), all on the "
        "0..255 scale. Scale-invariant (SI) tables: the same metrics after a per-image "
        "least-squares affine fit of the output to the ground truth "
        "(`metrics.affine_fit`; SI-PSNR is `metrics.si_psnr`), because the W2S 8-bit "
        "noisy and ground-truth images were rescaled to 0..255 separately. Means over "
        "test images. 'best val PSNR' is CLIDiM's own validation score (normalized "
        "[-1, 1] data, data range of each target).", "",
        "The paper's budget (800 epochs of 3 iterations at batch 128, about 2.4k "
        "iterations) on a GPU, then the table of those runs only:", "",
        "```",
        ".venv/bin/python benchmarks/clidim_ablation.py run --device cuda --iterations 2400 "
        "--batch 128 --steps-per-epoch 3 --tag gpu --model-dir runs/clidim_gpu",
        ".venv/bin/python benchmarks/clidim_ablation.py run --device cuda --iterations 2400 "
        "--batch 128 --steps-per-epoch 3 --tag gpu_l1 --lambda-l1 1 "
        "--variants cl+tv+ssim baseline --model-dir runs/clidim_gpu",
        ".venv/bin/python benchmarks/clidim_ablation.py table --tags gpu gpu_l1 "
        "--out benchmarks/results/clidim_ablation/table_gpu.md",
        "```", "",
    ]
    text = "\n".join(header + (args.notes.read_text().splitlines() + [""] if args.notes
                               else []) + lines)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=None)
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    r.add_argument("--n-train", nargs="+", type=int, default=[30, 16])
    r.add_argument("--lambda-l1", type=float, default=100.0,
                   help="100: the official code (default); 1: the paper's text")
    r.add_argument("--iterations", type=int, default=40)
    r.add_argument("--batch", type=int, default=2)
    r.add_argument("--crop", type=int, default=256)
    r.add_argument("--steps-per-epoch", type=int, default=5)
    r.add_argument("--device", default="cpu")
    r.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="training-step arithmetic (CLIDiMConfig.precision); the 40- and "
                   "120-iteration CPU rows and the GPU rows were float32")
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--normalization", choices=("training", "per_image_minmax"), default=None,
                   help="CLIDiM's normalization (default: the method's default)")
    r.add_argument("--test-stride", type=int, default=1,
                   help="score every k-th test image only (a fixed, stated subset)")
    r.add_argument("--test-offset", type=int, default=0)
    r.add_argument("--model-dir", type=Path, default=Path("runs/clidim_ablation"))
    r.add_argument("--tag", default="", help="CSV name suffix; one per concurrent run")
    sub.add_parser("reference")
    t = sub.add_parser("table")
    t.add_argument("--out", default=None)
    t.add_argument("--tags", nargs="*", default=None,
                   help="only the runs with these --tag values (default: all)")
    t.add_argument("--notes", type=Path, default=None,
                   help="Markdown placed above the tables (budget, findings)")
    args = parser.parse_args()
    {"run": run, "reference": reference, "table": lambda a: print(table(a))}[args.cmd](args)


if __name__ == "__main__":
    main()
