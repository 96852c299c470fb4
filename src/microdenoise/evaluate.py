"""Benchmark evaluation: run methods on noisy/clean pairs and tabulate the papers' metrics.

Conventions (stated in every table): the benchmark sets are 8-bit, so outputs are
clipped to 0..255 and rounded (``quantize="round"``; the official FM2S code
truncates, ``"trunc"``) and PSNR/SSIM use data_range = 255. SI-PSNR (after a
least-squares affine fit of the output to the ground truth) is reported too, since
the W2S 8-bit copies rescaled noisy and clean frames separately.
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics
from .config import parse_params
from .datasets import Pair
from .errors import InputError
from .pipeline import denoise_array
from .registry import Denoiser, load, method_class

_GROUP_PRESETS = {"confocal": "confocal", "twophoton": "twophoton", "widefield": "widefield",
                  "srdtrans": "srdtrans", "w2s": "widefield"}


@dataclass(frozen=True)
class Spec:
    """One table row: a label, a method name, its parameters and preset (``auto``: by group).

    ``model``: the path of a trained model (``microdenoise train``, or a package)
    applied as saved, instead of creating ``method``; ``trust``: its code may run
    (:func:`microdenoise.load`'s ``trust``).
    """

    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    preset: str | None = "auto"
    model: str | None = None
    trust: bool = False


def parse_spec(text: str) -> Spec:
    """Parse ``name`` or ``name:k=v:k=v`` (e.g. ``fm2s:schedule=paper``) into a :class:`Spec`."""
    name, *items = text.strip().split(":")
    method_class(name)
    params: dict[str, Any] = dict(parse_params(items))
    preset = params.pop("preset", "auto")
    return Spec(label=text.strip(), method=name, params=params, preset=preset)


def parse_model_spec(text: str, *, trust: bool = False) -> Spec:
    """Parse ``PATH`` or ``LABEL=PATH`` of a trained model into a :class:`Spec`.

    The label defaults to the file's stem; the file is loaded once here to check it
    (``trust``: as in :func:`microdenoise.load`).
    """
    label, sep, path = text.strip().rpartition("=")
    if not sep:
        label = Path(path).stem
    if not label or not path:
        raise InputError(f"--model {text!r}: give PATH or LABEL=PATH of a trained model (.pt)")
    model = load(path, trust=trust)
    if model.upscale != 1:
        raise InputError(f"--model {path!r} upsamples {model.upscale}x, but evaluate scores "
                         "outputs against ground truth of the input's size; evaluate it on "
                         "pairs of the training kind in Python (see benchmarks/w2s_care.py)")
    return Spec(label=label, method=model.key, params={}, preset=None, model=path, trust=trust)


def auto_preset(spec: Spec, group: str) -> str | None:
    """The preset for ``spec`` on a pair of ``group`` (FM2S: the microscope's preset)."""
    if spec.model is not None:
        return None
    if spec.preset != "auto":
        return spec.preset
    presets = method_class(spec.method).PRESETS
    choice = _GROUP_PRESETS.get(group.lower())
    return choice if choice in presets else None


@dataclass(frozen=True)
class Result:
    """Scores of one method on one pair."""

    label: str
    name: str
    group: str
    psnr: float
    ssim: float
    si_psnr: float
    seconds: float


def quantize(image: np.ndarray, mode: str = "round") -> np.ndarray:
    """Clip to 0..255 and round (``round``) or truncate (``trunc``), as 8-bit papers do."""
    if mode == "none":
        return image.astype(np.float64)
    if mode not in ("round", "trunc"):
        raise InputError(f"quantize must be round, trunc or none, not {mode!r}")
    fn = np.rint if mode == "round" else np.trunc
    return np.clip(fn(image.astype(np.float64)), 0, 255)


def score(output: np.ndarray, clean: np.ndarray, *,
          data_range: float) -> tuple[float, float, float]:
    """(PSNR, SSIM, SI-PSNR) of ``output`` against ``clean``."""
    gt = clean.astype(np.float64)
    return (metrics.psnr(output, gt, data_range=data_range),
            metrics.ssim(output, gt, data_range=data_range),
            metrics.si_psnr(output, gt, data_range=data_range))


def evaluate(
    pairs: Sequence[Pair],
    specs: Sequence[Spec | str],
    *,
    data_range: float = 255.0,
    quantize_mode: str = "round",
    seed: int | None = None,
    keep: Callable[[Pair], bool] | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Result], dict[tuple[str, str], np.ndarray]]:
    """Run every spec on every pair; return the scores and the outputs ``keep`` asked for.

    The first row of each pair is ``noisy`` (the input itself). Timing covers fit and
    denoise of each image (zero-shot methods train on it); a spec with a ``model`` path
    applies that trained model as saved (loaded once), and its time is prediction only.
    8-bit pairs are scored on 0..255 with ``data_range`` and ``quantize_mode``; other
    pairs with data range max(gt) - min(gt) (the CLIDiM/N2V papers' convention) and no
    quantization.
    """
    parsed = [parse_spec(s) if isinstance(s, str) else s for s in specs]
    labels = ["noisy", *(s.label for s in parsed)]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise InputError(f"more than one row is labelled {', '.join(twice)}; give each "
                         "--model a distinct LABEL=PATH ('noisy' is the input's row)")
    loaded: dict[str, Denoiser] = {s.model: load(s.model, trust=s.trust) for s in parsed
                                     if s.model}
    results: list[Result] = []
    kept: dict[tuple[str, str], np.ndarray] = {}
    for pair in pairs:
        # 8-bit pairs: the papers' 0..255 convention; others: range of the ground truth.
        eight_bit = pair.noisy.dtype == np.uint8 and pair.clean.dtype == np.uint8
        dr = data_range if eight_bit else metrics.gt_range(pair.clean)
        mode = quantize_mode if eight_bit else "none"
        noisy = quantize(pair.noisy, "none")
        p, s, si = score(noisy, pair.clean, data_range=dr)
        results.append(Result("noisy", pair.name, pair.group, p, s, si, 0.0))
        for spec in parsed:
            t0 = time.perf_counter()
            if spec.model is not None:
                out = denoise_array(pair.noisy, loaded[spec.model])
            else:
                out = denoise_array(pair.noisy, spec.method,
                                    preset=auto_preset(spec, pair.group), params=spec.params,
                                    seed=seed)
            seconds = time.perf_counter() - t0
            out = quantize(out, mode)
            p, s, si = score(out, pair.clean, data_range=dr)
            results.append(Result(spec.label, pair.name, pair.group, p, s, si, seconds))
            if keep is not None and keep(pair):
                kept[(spec.label, pair.name)] = out
            if progress is not None:
                progress(1)
    return results, kept


def summarize(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Per label: mean PSNR/SSIM per group, the average over all images, median seconds."""
    labels = list(dict.fromkeys(r.label for r in results))
    groups = list(dict.fromkeys(r.group for r in results))
    rows = []
    for label in labels:
        mine = [r for r in results if r.label == label]
        row: dict[str, Any] = {"method": label, "n": len(mine)}
        for group in groups:
            sub = [r for r in mine if r.group == group]
            if sub:
                row[f"{group} PSNR"] = statistics.mean(r.psnr for r in sub)
                row[f"{group} SSIM"] = statistics.mean(r.ssim for r in sub)
        row["Avg PSNR"] = statistics.mean(r.psnr for r in mine)
        row["Avg SSIM"] = statistics.mean(r.ssim for r in mine)
        row["Avg SI-PSNR"] = statistics.mean(r.si_psnr for r in mine)
        row["s/image"] = statistics.median(r.seconds for r in mine)
        rows.append(row)
    return rows


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`summarize` rows (PSNR 2 decimals, SSIM 3)."""
    cols = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        cells = []
        for col in cols:
            value = row.get(col, "")
            if isinstance(value, float):
                value = f"{value:.3f}" if "SSIM" in col else f"{value:.2f}"
            cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(results: Sequence[Result], path: str | Path) -> Path:
    """Per-image scores as CSV."""
    path = Path(path)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "image", "group", "psnr", "ssim", "si_psnr", "seconds"])
        for r in results:
            writer.writerow([r.label, r.name, r.group, f"{r.psnr:.4f}", f"{r.ssim:.5f}",
                             f"{r.si_psnr:.4f}", f"{r.seconds:.3f}"])
    return path


__all__ = ["Result", "Spec", "auto_preset", "evaluate", "parse_model_spec", "parse_spec",
           "quantize", "summarize", "to_markdown", "write_csv"]
