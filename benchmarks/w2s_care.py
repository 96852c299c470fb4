"""CARE on W2S (8-bit): denoising with K = 4, 8, 16, 30 pairs, and joint denoising + 2x SR.

Two tasks on ``../shared/data/w2s_8bit`` (train FOVs 001-010 = 30 pairs, test FOVs
081-100 = 60 pairs); every choice (filter, parameter, noise level, validation) is made
on the training FOVs, never on the test FOVs:

``denoise``
    Single frame -> avg400. Rows: ``noisy``; ``classical`` (the filter and parameter
    with the best mean SI-PSNR on 10 training images, one per training FOV);
    ``fm2s`` (widefield preset, default schedule; one test image per FOV to fit the
    CPU budget); ``care_k4`` .. ``care_k30`` (``n_train=K`` of the 30 training pairs,
    validation carved from those K pairs by CARE's ``val_fraction=0.1``; the same
    steps, batch and patch for every K); ``care_k30_800`` (care_k30 trained on for as
    many steps again: outside the equal budget, it shows what more training gives);
    ``care_k16_long`` and ``care_k30_long`` (care_k16 and care_k30_800 trained on up
    to ``--long-steps`` steps in all, 3200 by default: an equal longer budget for both).
``sr``
    Joint denoising + 2x super-resolution built from the avg400 images: target = gt
    (512x512), input = gt 2x area-downsampled (256x256) plus heteroscedastic Gaussian
    noise of variance ``alpha * x + beta`` (x: the clean low-resolution intensity),
    ``alpha`` and ``beta`` fitted to the training pairs' single-frame residuals on the
    downsampled scale (noisy and gt both area-downsampled, the noisy one affinely fitted
    to the gt), seeded per image, rounded to 8 bits. Rows: ``bicubic`` (of the noisy
    input), ``classical_bicubic`` (best filter chosen on the training FOVs, then
    bicubic), ``care_bicubic`` (care(upscale=1) trained on the low-resolution pairs,
    then bicubic), ``care_2x`` (care(upscale=2)), and ``clean_bicubic`` (bicubic of the
    noise-free input: the interpolation limit, for reference).
``*_40k`` rows (meant for a GPU, ``--device cuda``), ``n2v`` and ``deconoising``
    ``care_k4_40k`` .. ``care_k30_40k``, ``care_bicubic_40k`` and ``care_2x_40k``: the
    same models trained from scratch for CSBDeep's length, 100 epochs of 400 steps of
    16 patches (40,000 steps; the network patch stays 64x64, as in the CPU rows).
    ``n2v`` and ``deconoising``: the methods' own defaults, trained on the 30 noisy
    training images (no targets). Times of runs on a GPU are wall seconds.

    .venv/bin/python benchmarks/w2s_care.py run --rows care_k30 care_k16 --tag a
    .venv/bin/python benchmarks/w2s_care.py run --rows noisy classical fm2s --tag b
    .venv/bin/python benchmarks/w2s_care.py table --out benchmarks/results/w2s_care/table.md
    # on a GPU: CSBDeep-length rows, one process per row
    python3 benchmarks/w2s_care.py run --device cuda --rows care_k30_40k --tag gpu_k30

Rows append per-image scores to ``results/w2s_care/scores[_TAG].csv`` and skip images
already scored, so an interrupted run resumes; runs side by side share the rows and
images through claim files in ``runs/w2s_care/claims/``. Trained models go to
``runs/w2s_care/``, their training CPU time to ``results/w2s_care/models[_TAG].csv``,
the classical choice to ``results/w2s_care/select.csv``, the SR noise model to
``results/w2s_care/noise.txt``; ``table`` appends ``results/w2s_care/notes.md`` (written
by hand). Metrics on 0..255 (data_range 255) of outputs clipped and rounded: PSNR raw,
SI-PSNR (after a per-image least-squares affine fit, ``metrics.si_psnr``), SSIM, NRMSE
(euclidean). Times are process CPU seconds
(``time.process_time``) with one torch thread.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import platform
import statistics
import time
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _common import decided, dispatch, git_commit, mean_se

from microdenoise import datasets, denoise_array, load, metrics, save
from microdenoise.evaluate import quantize
from microdenoise.methods.care import CARE
from microdenoise.registry import create

RESULTS = Path(__file__).parent / "results" / "w2s_care"
MODELS = Path(__file__).parents[1] / "runs" / "w2s_care"
KS = (4, 8, 16, 30)
LONG_ROWS = tuple(f"care_k{k}_40k" for k in KS)
SELF_ROWS = ("n2v", "deconoising")  # trained on the noisy training images alone
DENOISE_ROWS = ("noisy", "classical", "fm2s", *SELF_ROWS, *(f"care_k{k}" for k in KS),
                "care_k30_800", "care_k16_long", "care_k30_long", *LONG_ROWS)
# Rows whose model continues another row's training (their logged time includes it).
CONTINUES = {"care_k30_800": "care_k30", "care_k16_long": "care_k16",
             "care_k30_long": "care_k30_800"}
SR_ROWS = ("bicubic", "classical_bicubic", "care_bicubic", "care_2x", "care_bicubic_40k",
           "care_2x_40k", "clean_bicubic")
# CSBDeep's CARE training length: train_epochs 100 x train_steps_per_epoch 400, batch 16.
CSBDEEP = {"steps": 40_000, "steps_per_epoch": 400, "batch": 16}
# The self-supervised rows: each method's defaults, n2v with a fixed epoch length
# (its automatic one depends on the split) of 100 steps: 100 x 100 steps of 16 64x64.
SELF_PARAMS: dict[str, dict[str, Any]] = {"n2v": {"steps_per_epoch": 100}, "deconoising": {}}
FIELDS = ["task", "row", "image", "spec", "psnr", "si_psnr", "ssim", "nrmse", "cpu_s",
          "wall_s", "device"]
MODEL_FIELDS = ["task", "row", "pairs", "steps", "batch", "patch", "train_cpu_s",
                "best_val_loss", "path", "train_wall_s", "device"]
# The classical candidates (method, parameter, values), scored on the training FOVs.
CANDIDATES: tuple[tuple[str, str, tuple[Any, ...]], ...] = (
    ("gaussian", "sigma", (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)),
    ("median", "size", (3, 5, 7)),
    ("nlm", "h_factor", (0.6, 0.8, 1.0, 1.2, 1.6, 2.0, 3.0, 4.0, 6.0)),
    ("tv", "weight", (0.05, 0.1, 0.2, 0.3, 0.5, 0.8)),
)
NOISE_SEED = 2026


# --- data ------------------------------------------------------------------------------
def downsample(image: np.ndarray) -> np.ndarray:
    """2x area downsampling (mean of 2x2 blocks) in float64."""
    x = image.astype(np.float64)
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def bicubic(image: np.ndarray) -> np.ndarray:
    """2x bicubic upsampling (half-pixel centres, consistent with :func:`downsample`)."""
    t = torch.as_tensor(np.asarray(image, dtype=np.float32))[None, None]
    return F.interpolate(t, scale_factor=2, mode="bicubic", align_corners=False)[0, 0].numpy()


def noise_model(train: list[datasets.Pair], bins: int = 32) -> tuple[float, float]:
    """(alpha, beta) of the single-frame noise variance ``alpha * x + beta`` in gt units.

    Both images of each training pair are 2x area-downsampled; the noisy one is fitted
    affinely to the gt (the 8-bit copies were rescaled separately) and the residual is
    brought to gt units; its variance per gt-intensity bin (pooled over the pairs) is
    fitted by a line.
    """
    xs, rs = [], []
    for pair in train:
        g, n = downsample(pair.clean), downsample(pair.noisy)
        a, b = np.polyfit(g.ravel(), n.ravel(), 1)
        xs.append(g.ravel())
        rs.append((n.ravel() - (a * g.ravel() + b)) / a)
    x, r = np.concatenate(xs), np.concatenate(rs)
    edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    centres = np.array([x[idx == i].mean() for i in range(len(edges) - 1)])
    variances = np.array([r[idx == i].var() for i in range(len(edges) - 1)])
    alpha, beta = np.polyfit(centres, variances, 1)
    return max(float(alpha), 0.0), max(float(beta), 0.0)


def sr_pair(pair: datasets.Pair, alpha: float, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """(noisy low-resolution uint8 input, clean low-resolution float) for one gt image."""
    clean = downsample(pair.clean)
    rng = np.random.default_rng([NOISE_SEED, zlib.crc32(pair.name.encode())])
    noisy = clean + rng.standard_normal(clean.shape) * np.sqrt(alpha * clean + beta)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), clean


def fm2s_subset(pairs: list[datasets.Pair]) -> list[datasets.Pair]:
    """One test image per FOV, channels rotating (FOV f: channel f mod 3)."""
    return [p for p in pairs if int(p.name.split("_")[1]) == int(p.name.split("_")[0]) % 3]


# --- bookkeeping -----------------------------------------------------------------------
def read_csv(pattern: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(RESULTS.glob(pattern)):
        with path.open() as fh:
            rows += list(csv.DictReader(fh))
    return rows


class Appender:
    """Append dict rows to a CSV (header once), flushed after each row."""

    def __init__(self, path: Path, fields: list[str]) -> None:
        self.path, self.fields = path, fields

    def __call__(self, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, self.fields)
            if new:
                writer.writeheader()
            writer.writerow(row)


def scores(out: np.ndarray, gt: np.ndarray) -> dict[str, str]:
    pred, g = quantize(out, "round"), gt.astype(np.float64)
    return {"psnr": f"{metrics.psnr(pred, g, data_range=255):.4f}",
            "si_psnr": f"{metrics.si_psnr(pred, g, data_range=255):.4f}",
            "ssim": f"{metrics.ssim(pred, g, data_range=255):.5f}",
            "nrmse": f"{metrics.nrmse(pred, g):.5f}"}


def claim(name: str) -> bool:
    """Take the job ``name`` for this process, so that side-by-side runs share the work.

    A claim is a file holding the owner's process id; a dead owner's claim is taken
    over, so an interrupted run resumes.
    """
    folder = MODELS / "claims"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    for _ in range(2):
        try:
            with path.open("x") as fh:
                fh.write(str(os.getpid()))
            return True
        except FileExistsError:
            try:
                owner = int(path.read_text() or 0)
                os.kill(owner, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)  # its owner died: take it over
                continue
            return owner == os.getpid()
    return False


# --- classical choice on the training FOVs ------------------------------------------------
def select_classical(task: str, inputs: list[np.ndarray], targets: list[np.ndarray],
                     post: Callable[[np.ndarray], np.ndarray]) -> tuple[str, dict[str, Any]]:
    """The (method, params) with the best mean SI-PSNR of ``post(filter(input))`` on the
    training images; every candidate's score goes to ``select.csv``."""
    path = RESULTS / "select.csv"
    old = {(r["task"], r["method"], r["param"], r["value"]): float(r["si_psnr"])
           for r in read_csv("select.csv")}
    write = Appender(path, ["task", "method", "param", "value", "si_psnr", "psnr", "n",
                            "cpu_s"])
    best: tuple[float, str, dict[str, Any]] = (-np.inf, "", {})
    for method, param, values in CANDIDATES:
        for value in values:
            key = (task, method, param, str(value))
            if key not in old:
                c0 = time.process_time()
                outs = [post(denoise_array(x, method, params={param: value})) for x in inputs]
                si = statistics.mean(
                    metrics.si_psnr(quantize(o), t, data_range=255)
                    for o, t in zip(outs, targets, strict=True))
                ps = statistics.mean(metrics.psnr(quantize(o), t, data_range=255)
                                     for o, t in zip(outs, targets, strict=True))
                write({"task": task, "method": method, "param": param, "value": value,
                       "si_psnr": f"{si:.4f}", "psnr": f"{ps:.4f}", "n": len(inputs),
                       "cpu_s": f"{time.process_time() - c0:.1f}"})
                old[key] = si
                print(f"select {task} {method} {param}={value}: SI-PSNR {si:.2f}", flush=True)
            if old[key] > best[0]:
                best = (old[key], method, {param: value})
    return best[1], best[2]


# --- CARE training -----------------------------------------------------------------------
def device_name(device: str) -> str:
    """``cpu``, or the GPU's name (``cuda: NVIDIA H100 80GB HBM3``)."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name()}"
    return device


def finished(task: str, row: str, path: Path) -> bool:
    """Whether ``row``'s model is saved at ``path`` and logged in a models CSV."""
    return path.exists() and (task, row) in {(r["task"], r["row"])
                                             for r in read_csv("models*.csv")}


def train_care(task: str, row: str, noisy: list[np.ndarray], clean: list[np.ndarray],
               args: argparse.Namespace, *, start: CARE | None = None,
               start_cpu: float = 0.0, budget: dict[str, int] | None = None,
               **params: Any) -> CARE:
    """Train (or load the finished) CARE model of ``row``; log its training time.

    ``start``: continue this trained model for another ``args.steps`` steps (its
    ``start_cpu`` seconds are added to the logged time). ``budget``: steps,
    steps_per_epoch and batch instead of the command line's.
    """
    budget = budget or {"steps": args.steps, "steps_per_epoch": args.steps_per_epoch,
                        "batch": args.batch}
    path = MODELS / f"{task}_{row}.pt"
    while True:
        if finished(task, row, path):
            model = load(path)
            assert isinstance(model, CARE)
            return model
        if claim(f"train_{task}_{row}"):
            break
        time.sleep(30)  # another run is training it
    steps = budget["steps"]
    epochs = max(1, steps // budget["steps_per_epoch"])
    model = start if start is not None else create(
        "care", epochs=epochs, steps_per_epoch=steps // epochs, batch_size=budget["batch"],
        patch_size=args.patch // params.get("upscale", 1), val_patches=16,
        shift_average=False, precision="fp32", **params)  # fp32: as these rows were run
    assert isinstance(model, CARE)
    model.device = args.device
    c0, w0 = time.process_time(), time.perf_counter()
    model.fit(noisy, clean)
    cpu, wall = time.process_time() - c0 + start_cpu, time.perf_counter() - w0
    log_model(task, row, model, path, args, pairs=params.get("n_train") or len(noisy),
              steps=model.epoch * (steps // epochs), batch=budget["batch"], patch=args.patch,
              cpu=cpu, wall=wall)
    return model


def log_model(task: str, row: str, model: Any, path: Path, args: argparse.Namespace, *,
              pairs: int, steps: int, batch: int, patch: int, cpu: float, wall: float) -> None:
    """Save a trained model and append its line to ``models[_TAG].csv``."""
    MODELS.mkdir(parents=True, exist_ok=True)
    save(model, path)
    Appender(RESULTS / f"models{args.suffix}.csv", MODEL_FIELDS)(
        {"task": task, "row": row, "pairs": pairs, "steps": steps, "batch": batch,
         "patch": patch, "train_cpu_s": f"{cpu:.1f}",
         "best_val_loss": f"{model.best:.5f}", "path": f"runs/w2s_care/{path.name}",
         "train_wall_s": f"{wall:.1f}", "device": device_name(args.device)})
    print(f"trained {task}/{row} in {cpu:.0f} CPU s, {wall:.0f} s wall (best val loss "
          f"{model.best:.4f})", flush=True)


def train_self(row: str, noisy: list[np.ndarray], args: argparse.Namespace) -> Any:
    """Train (or load) ``n2v`` / ``deconoising`` with its defaults on the noisy images."""
    path = MODELS / f"denoise_{row}.pt"
    if finished("denoise", row, path):
        return load(path)
    if not claim(f"train_denoise_{row}"):
        raise SystemExit(f"another run is training {row}")
    model: Any = create(row, **SELF_PARAMS[row])
    model.device = args.device
    c0, w0 = time.process_time(), time.perf_counter()
    model.fit(noisy)
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    cfg = model.config
    log_model("denoise", row, model, path, args, pairs=0,
              steps=model.epoch * cfg.steps_per_epoch, batch=cfg.batch_size,
              patch=cfg.patch_size, cpu=cpu, wall=wall)
    return model


# --- the run -----------------------------------------------------------------------------
def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    args.suffix = f"_{args.tag}" if args.tag else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    train = datasets.w2s_8bit(args.data_root, split="train")
    test = datasets.w2s_8bit(args.data_root, split="test")
    select_imgs = fm2s_subset(train)  # one image per training FOV
    write = Appender(RESULTS / f"scores{args.suffix}.csv", FIELDS)

    def score_row(task: str, row: str, spec: str, pairs: list[datasets.Pair],
                  predict: Callable[[datasets.Pair], np.ndarray]) -> None:
        for pair in pairs:
            finished = {(r["task"], r["row"], r["image"])
                        for r in read_csv("scores*.csv")}
            if (task, row, pair.name) in finished or not claim(f"{task}_{row}_{pair.name}"):
                continue
            c0, w0 = time.process_time(), time.perf_counter()
            out = predict(pair)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            write({"task": task, "row": row, "image": pair.name, "spec": spec,
                   **scores(out, pair.clean), "cpu_s": f"{cpu:.2f}", "wall_s": f"{wall:.3f}",
                   "device": device_name(args.device)})
            print(f"{task:>7} {row:>17} {pair.name} {cpu:6.1f} CPU s", flush=True)

    sr_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    noise: tuple[float, float] | None = None

    def lr(pair: datasets.Pair) -> tuple[np.ndarray, np.ndarray]:
        nonlocal noise
        if noise is None:
            noise = noise_model(train)
            note = (f"variance = {noise[0]:.4f} * x + {noise[1]:.4f} (gt units, 0..255; "
                    f"sigma {np.sqrt(noise[0] * 64 + noise[1]):.2f} at x = 64, "
                    f"{np.sqrt(noise[0] * 128 + noise[1]):.2f} at x = 128)")
            (RESULTS / "noise.txt").write_text(note + "\n")
            print(f"SR noise model: {note}", flush=True)
        if pair.name not in sr_cache:
            sr_cache[pair.name] = sr_pair(pair, *noise)
        return sr_cache[pair.name]

    def do_row(row: str) -> None:
        # A *_40k row is its base row trained from scratch for CSBDeep's length.
        base, budget = row.removesuffix("_40k"), (CSBDEEP if row.endswith("_40k") else None)
        length = f", {CSBDEEP['steps']} steps of {CSBDEEP['batch']}" if budget else ""
        if row == "noisy":
            score_row("denoise", row, "input", test, lambda p: p.noisy.astype(np.float64))
        elif row == "classical":
            method, params = select_classical(
                "denoise", [p.noisy for p in select_imgs], [p.clean for p in select_imgs],
                lambda o: o)
            spec = f"{method}:{':'.join(f'{k}={v}' for k, v in params.items())}"
            score_row("denoise", row, spec, test,
                      lambda p: denoise_array(p.noisy, method, params=params))
        elif row == "fm2s":
            score_row("denoise", row, "fm2s:preset=widefield", fm2s_subset(test),
                      lambda p: denoise_array(p.noisy, "fm2s", preset="widefield", seed=3407))
        elif base in [f"care_k{k}" for k in KS]:
            k = int(base[len("care_k"):])
            model = train_care("denoise", row, [p.noisy for p in train],
                               [p.clean for p in train], args, budget=budget, n_train=k)
            score_row("denoise", row, f"care:n_train={k}{length}", test,
                      lambda p: denoise_array(p.noisy, model))
        elif row in SELF_ROWS:
            model = train_self(row, [p.noisy for p in train], args)
            spec = f"{row}:{','.join(f'{k}={v}' for k, v in SELF_PARAMS[row].items())}"
            score_row("denoise", row, spec.rstrip(":"), test,
                      lambda p: denoise_array(p.noisy, model))
        elif row == "care_k30_800":  # care_k30 trained on: 2x the steps (not the K budget)
            first = train_care("denoise", "care_k30", [p.noisy for p in train],
                               [p.clean for p in train], args, n_train=30)
            done = {r["row"]: float(r["train_cpu_s"]) for r in read_csv("models*.csv")
                    if r["task"] == "denoise"}
            model = train_care("denoise", row, [p.noisy for p in train],
                               [p.clean for p in train], args, start=first,
                               start_cpu=done["care_k30"])
            score_row("denoise", row, "care:n_train=30, 2x steps", test,
                      lambda p: denoise_array(p.noisy, model))
        elif row in ("care_k16_long", "care_k30_long"):
            k = int(row[len("care_k"):-len("_long")])
            parent = CONTINUES[row]
            if parent not in {r["row"] for r in read_csv("models*.csv")}:
                raise SystemExit(f"{row} continues {parent}: run that row first")
            first = train_care("denoise", parent, [p.noisy for p in train],
                               [p.clean for p in train], args, n_train=k)
            done = {r["row"]: float(r["train_cpu_s"]) for r in read_csv("models*.csv")
                    if r["task"] == "denoise"}
            # Train on until --long-steps steps in all: epochs counts the whole run.
            first.config = dataclasses.replace(
                first.config, epochs=args.long_steps // first.config.steps_per_epoch,
                precision="fp32")
            model = train_care("denoise", row, [p.noisy for p in train],
                               [p.clean for p in train], args, start=first,
                               start_cpu=done[parent])
            score_row("denoise", row, f"care:n_train={k}, {args.long_steps} steps", test,
                      lambda p: denoise_array(p.noisy, model))
        elif row == "bicubic":
            score_row("sr", row, "bicubic", test, lambda p: bicubic(lr(p)[0]))
        elif row == "clean_bicubic":
            score_row("sr", row, "bicubic of the noise-free input", test,
                      lambda p: bicubic(lr(p)[1]))
        elif row == "classical_bicubic":
            method, params = select_classical(
                "sr", [lr(p)[0] for p in select_imgs], [p.clean for p in select_imgs], bicubic)
            spec = f"{method}:{':'.join(f'{k}={v}' for k, v in params.items())} + bicubic"
            score_row("sr", row, spec, test,
                      lambda p: bicubic(denoise_array(lr(p)[0], method, params=params)))
        elif base == "care_bicubic":
            model = train_care("sr", row, [lr(p)[0] for p in train], [lr(p)[1] for p in train],
                               args, budget=budget)
            score_row("sr", row, f"care(upscale=1) + bicubic{length}", test,
                      lambda p: bicubic(denoise_array(lr(p)[0], model)))
        elif base == "care_2x":
            model = train_care("sr", row, [lr(p)[0] for p in train], [p.clean for p in train],
                               args, budget=budget, upscale=2)
            score_row("sr", row, f"care(upscale=2){length}", test,
                      lambda p: denoise_array(lr(p)[0], model))

    for row in args.rows:
        do_row(row)


# --- the table -----------------------------------------------------------------------------
def _mean(rows: list[dict[str, str]], key: str) -> float:
    return statistics.mean(float(r[key]) for r in rows)


def _on_gpu(row: dict[str, str]) -> bool:
    """Whether a CSV row (model or score) ran on a GPU (older rows have no device)."""
    return (row.get("device") or "cpu").startswith("cuda")


def _table(task: str, rows: list[str], scored: list[dict[str, str]],
           models: dict[tuple[str, str], dict[str, str]], images: set[str] | None
           ) -> tuple[list[str], dict[str, float]]:
    lines = ["| row | spec | n | PSNR raw | SI-PSNR | SSIM | NRMSE | train s | "
             "predict s/image |", "|---|---|---|---|---|---|---|---|---|"]
    si: dict[str, float] = {}
    for row in rows:
        mine = [r for r in scored if r["task"] == task and r["row"] == row
                and (images is None or r["image"] in images)]
        if not mine:
            continue
        si[row] = _mean(mine, "si_psnr")
        model = models.get((task, row))
        train_s = "-"
        if model and _on_gpu(model):
            train_s = f"{float(model['train_wall_s']):.0f} GPU"
        elif model:
            train_s = f"{float(model['train_cpu_s']):.0f}"
        if _on_gpu(mine[0]):
            predict = f"{statistics.median(float(r['wall_s']) for r in mine):.2f} GPU"
        else:
            predict = f"{statistics.median(float(r['cpu_s']) for r in mine):.1f}"
        lines.append(f"| {row} | `{mine[0]['spec']}` | {len(mine)} | {_mean(mine, 'psnr'):.2f} "
                     f"| {si[row]:.2f} | {_mean(mine, 'ssim'):.3f} | {_mean(mine, 'nrmse'):.4f} "
                     f"| {train_s} | {predict} |")
    return lines, si


def table(args: argparse.Namespace) -> str:
    scored = read_csv("scores*.csv")
    models = {(r["task"], r["row"]): r for r in read_csv("models*.csv")}
    selects = read_csv("select.csv")
    commit = git_commit()
    budget = next(iter(models.values()), None)
    # The CPU budget; a continued model's time includes its parent's.
    train_total = sum(float(m["train_cpu_s"]) for m in models.values() if not _on_gpu(m)) - sum(
        float(models[("denoise", parent)]["train_cpu_s"]) for row, parent in CONTINUES.items()
        if ("denoise", row) in models and ("denoise", parent) in models)
    predict_total = sum(float(r["cpu_s"]) for r in scored if not _on_gpu(r))
    gpus = sorted({m["device"][len("cuda: "):] for m in models.values() if _on_gpu(m)})
    select_total = sum(float(r["cpu_s"]) for r in selects)
    out = [
        "# CARE on W2S (8-bit): few-shot denoising and joint denoising + 2x SR", "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} "
        f"({platform.processor() or 'CPU'}; 2 cores shared with other jobs), "
        f"torch {torch.__version__}, commit {commit} (plus uncommitted work). "
        + (f"Rows marked GPU ran on {', '.join(gpus)} (see below). " if gpus else "") +
        "Per-image scores: `scores*.csv`; models: `models*.csv`; "
        "classical choice: `select.csv`.", "",
        "Commands (runs side by side, one torch thread each, sharing rows and images through "
        "claim files; a run was stopped once its remaining rows were taken by another):", "",
        "```", *args.commands, "```", "",
        f"**Budget**: {(train_total + predict_total + select_total) / 60:.0f} CPU "
        "core-minutes in all (one torch thread, `time.process_time`)."
        f" Used: training {train_total / 60:.1f} min, prediction and scoring "
        f"{predict_total / 60:.1f} min, classical selection {select_total / 60:.1f} min. "
        + (f"Every CARE model trains {budget['steps']} steps of {budget['batch']} patches of "
           f"{budget['patch']}x{budget['patch']} network pixels (input {budget['patch']}/2 "
           "for upscale 2), CSBDeep's other defaults (depth 2, 32 filters, 5x5, L1, Adam "
           "4e-4, residual, percentile normalization over the training set), the best "
           "weights by validation loss kept; validation = CARE's `val_fraction=0.1` carved "
           "from the model's own training pairs (K = 4: a strip of each image; otherwise "
           "the last 10 % of the pairs). Rows `care_k30_800` and `*_long` continue "
           "shorter models to 800 and 3,200 steps in all (their CPU time includes the "
           "shorter run's). CSBDeep trains 40 000 steps of 16: these models "
           "are far from converged; the `*_40k` rows train that long from scratch (100 "
           "epochs of 400 steps of 16, the same network patch) on a GPU. `n2v` and "
           "`deconoising` use each method's defaults (n2v: 100 epochs of 100 steps) on the "
           "30 noisy training images. Prediction without shift averaging (one pass)."
           if budget else ""), "",
        "Nothing is chosen on the test FOVs (081-100): the classical filter and its "
        "parameter are chosen by mean SI-PSNR on 10 training images (one per training "
        "FOV 001-010), CARE's weights by validation loss on training pairs, the SR noise "
        "level on the training pairs.", "",
        "**Metrics**: 0..255 scale, data_range 255, outputs clipped and rounded. "
        "PSNR raw; SI-PSNR = PSNR after a per-image least-squares affine fit of the output "
        "to the ground truth (`metrics.si_psnr`); SSIM (skimage defaults) and NRMSE "
        "(euclidean) raw. Means over images; times: training per model, prediction "
        "median per image, in CPU seconds of one thread, or wall seconds where marked GPU.",
        "",
        "**The 8-bit rescaling**: the W2S 8-bit copies rescaled each noisy frame and each "
        "ground truth to 0..255 separately, so their intensity scales differ. Supervised "
        "methods (CARE) learn the mapping to the ground truth's scale, unsupervised ones "
        "(filters, FM2S, N2V) cannot, so raw PSNR/SSIM/NRMSE favour CARE for a reason "
        "unrelated to denoising: compare across families by SI-PSNR. The SR task is built "
        "from the ground truth, so its input is on the target's scale and raw PSNR is fair "
        "there.", "",
    ]
    # Denoising.
    test_names = {r["image"] for r in scored if r["task"] == "denoise"}
    fm2s_names = {r["image"] for r in scored if r["task"] == "denoise" and r["row"] == "fm2s"}
    out += ["## Denoising (single frame -> avg400), test FOVs 081-100", "",
            "### All scored test images", ""]
    lines, si_all = _table("denoise", list(DENOISE_ROWS), scored, models, None)
    out += lines + [""]
    si_sub: dict[str, float] = {}
    if fm2s_names and fm2s_names != test_names:
        out += [f"### The {len(fm2s_names)} test images FM2S ran on (one per FOV, channel "
                "= FOV mod 3)", ""]
        lines, si_sub = _table("denoise", list(DENOISE_ROWS), scored, models, fm2s_names)
        out += lines + [""]
    missing = [r for r in SELF_ROWS if r not in si_all]
    if missing:
        out += [f"Not run: {', '.join(missing)}.", ""]
    # Checks: paired means over the images both rows scored.
    def paired(task: str, row: str, rival: str, key: str = "si_psnr"
               ) -> tuple[float, float, int, float] | None:
        """Means of both rows over the images both scored, n, and the standard error of
        the paired difference (sd / sqrt(n))."""
        mine = {r["image"]: float(r[key]) for r in scored
                if r["task"] == task and r["row"] == row}
        other = {r["image"]: float(r[key]) for r in scored
                 if r["task"] == task and r["row"] == rival}
        both = sorted(set(mine) & set(other))
        if not both:
            return None
        se = mean_se([mine[i] - other[i] for i in both])[1]
        return (statistics.mean(mine[i] for i in both),
                statistics.mean(other[i] for i in both), len(both), se)

    def beats(diff: float, se: float) -> str:
        """"met" only when the paired difference exceeds its standard error."""
        return {1: "met", -1: "NOT met", 0: "parity (not decided)"}[decided(diff, se)]

    checks = ["Paired means over the test images both rows scored (n), and the standard "
              "error (SE) of the paired difference: a target is met only when the "
              "difference exceeds its SE, not met when it falls short by more than its SE, "
              "and not decided between.", ""]
    for row in ("care_k30", "care_k30_800", "care_k30_long", "care_k30_40k"):
        for rival in ("noisy", "classical", "fm2s", *SELF_ROWS):
            got = paired("denoise", row, rival)
            if got:
                a, b, n, se = got
                checks.append(f"- {row} beats {rival} (SI-PSNR, n = {n}): {a:.2f} vs {b:.2f} "
                              f"dB, difference {a - b:+.2f} +- {se:.2f}: "
                              f"**{beats(a - b, se)}**")
    for suffix in ("", "_long", "_40k"):
        got = paired("denoise", f"care_k16{suffix}", f"care_k30{suffix}")
        if got:
            a, b, n, se = got
            gap = b - a
            verdict = ("met" if gap + se <= 0.5 else "NOT met" if gap - se > 0.5
                       else "not decided")
            checks.append(f"- care_k16{suffix} within 0.5 dB of care_k30{suffix} (SI-PSNR, "
                          f"n = {n}): {a:.2f} vs {b:.2f} dB, gap {gap:+.2f} +- {se:.2f}: "
                          f"**{verdict}**")
    # SR.
    out += ["## Joint denoising + 2x super-resolution, test FOVs 081-100", ""]
    noise_file = RESULTS / "noise.txt"
    noise = noise_file.read_text().strip() if noise_file.exists() else "(not fitted yet)"
    out += ["Input: the avg400 ground truth, 2x area-downsampled (mean of 2x2 blocks) to "
            "256x256, plus Gaussian noise of variance alpha * x + beta (x: the clean "
            "low-resolution intensity), rounded to 8 bits; seeded per image "
            f"(seed [{NOISE_SEED}, crc32(name)]). Fitted on the training pairs: {noise}. "
            "Target: the 512x512 ground truth. Bicubic: "
            "`torch.nn.functional.interpolate(mode='bicubic', align_corners=False)`. "
            "`care_bicubic` trains care(upscale=1) on the low-resolution training pairs "
            "(target: the downsampled ground truth) with the "
            "same steps, batch and network patch size as `care_2x`.", ""]
    lines, si_sr = _table("sr", list(SR_ROWS), scored, models, None)
    out += lines + [""]
    for row, rival in [(f"care_2x{s}", r) for s in ("", "_40k")
                       for r in (f"care_bicubic{s}", "classical_bicubic", "bicubic")]:
        p_got, s_got = paired("sr", row, rival, "psnr"), paired("sr", row, rival)
        if p_got and s_got:
            both = (beats(p_got[0] - p_got[1], p_got[3]), beats(s_got[0] - s_got[1], s_got[3]))
            verdict = both[0] if both[0] == both[1] else f"PSNR {both[0]}, SI-PSNR {both[1]}"
            checks.append(f"- {row} beats {rival} (n = {p_got[2]}): PSNR {p_got[0]:.2f} vs "
                          f"{p_got[1]:.2f} (+- {p_got[3]:.2f}), SI-PSNR {s_got[0]:.2f} vs "
                          f"{s_got[1]:.2f} dB (+- {s_got[3]:.2f}): **{verdict}**")
    out += ["## Targets", "", *checks, ""]
    if selects:
        out += ["## Classical candidates on the training FOVs", "",
                "Mean SI-PSNR (dB) over the 10 selection images (one per training FOV, "
                "channel = FOV mod 3); the chosen one in bold.", "",
                "| task | filter | parameter: SI-PSNR |", "|---|---|---|"]
        groups: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
        for r in selects:
            groups.setdefault((r["task"], r["method"], r["param"]), []).append(
                (float(r["value"]), float(r["si_psnr"])))
        for task in ("denoise", "sr"):
            top = max((v[1] for k, vs in groups.items() if k[0] == task for v in vs),
                      default=None)
            for (t, method, param), values in groups.items():
                if t != task:
                    continue
                cells = [f"**{v:g}: {si:.2f}**" if si == top else f"{v:g}: {si:.2f}"
                         for v, si in sorted(values)]
                out.append(f"| {task} | {method} ({param}) | {', '.join(cells)} |")
        out.append("")
    notes = RESULTS / "notes.md"  # the reading of the numbers, written by hand
    if notes.exists():
        out += [notes.read_text().strip(), ""]
    text = "\n".join(out)
    if args.out:
        Path(args.out).write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--rows", nargs="+", choices=[*DENOISE_ROWS, *SR_ROWS], required=True)
    r.add_argument("--data-root", type=Path, default=None)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--steps", type=int, default=400, help="training steps of every CARE model")
    r.add_argument("--steps-per-epoch", type=int, default=40)
    r.add_argument("--long-steps", type=int, default=3200,
                   help="total steps of the *_long rows (they continue shorter models)")
    r.add_argument("--batch", type=int, default=8)
    r.add_argument("--patch", type=int, default=64, help="network (output) patch side")
    r.add_argument("--tag", default="", help="CSV name suffix; one per concurrent run")
    r.add_argument("--device", default="cpu", help="cpu or cuda (the *_40k rows: a GPU)")
    t = sub.add_parser("table")
    t.add_argument("--out", default=None)
    t.add_argument("--commands", nargs="*", default=[], help="the run commands, for the record")
    args = parser.parse_args()
    dispatch(args, run, table)


if __name__ == "__main__":
    main()
