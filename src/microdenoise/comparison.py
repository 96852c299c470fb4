"""Rank denoising methods on the user's own data, without a clean image.

:func:`compare` runs each method (and each value of a filter's main parameter on
its calibration grid) on the input and estimates the mean squared error of its
output against the unknown clean image, with a standard error:

- with a second capture of the same scene (``second=``, or ``pairs_axis=`` for
  consecutive planes of a static sample), the two-capture estimator (Noise2Noise,
  Lehtinen et al., ICML 2018), robust to gain, offset and shifts between captures;
- otherwise the J-invariant masked loss (Noise2Self, Batson & Royer, ICML 2019;
  :mod:`microdenoise.compare_masked`), marked unreliable when the noise is spatially
  correlated (then nothing is recommended from it);
- or, with ``single="sure"``, Monte-Carlo SURE in the generalized Anscombe domain
  (Ramani, Blu & Unser, IEEE TIP 2008; Makitalo & Foi, IEEE TIP 2013), under the same
  condition, and never trusted for methods trained on the image (FM2S).

See :mod:`microdenoise.compare_estimators` for each estimator's assumptions. Every
method runs through the prediction core (:func:`microdenoise.core.fit_unit`,
:func:`microdenoise.core.denoise_block`) with the normalizers of the input, so a
perturbed copy of the input is scaled exactly like the input.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import compare_estimators as est
from . import core
from .compare_correlated import sure_correlated
from .compare_masked import masked_mse
from .compare_result import CompareResult, Row, rank, recommend
from .config import parse_params
from .errors import InputError
from .registry import Denoiser, describe, method_class

__all__ = ["DEFAULT_METHODS", "SINGLE_ESTIMATORS", "CompareResult", "Row", "candidates", "compare"]

DEFAULT_METHODS = ("fm2s", "gaussian", "median", "nlm", "bm3d")
SINGLE_ESTIMATORS = ("sure", "masked")
FALLBACK = "fm2s"
# benchmarks/compare.py run --set tune_fm2s (W2S training crops; the rule is in its
# docstring): FM2S's SURE estimate was far below its true MSE, as on the held-out W2S
# images, where SURE recommended FM2S on 10 of 10 with 4.0 dB of mean regret.
TRAINED_SURE_REASON = (
    "trained on the image: SURE runs it twice, on the image and on a perturbed copy, and "
    "the two trainings differ by more than the probe, so SURE underestimates its error; "
    "use the masked estimator (--single masked) or a second capture")
MethodSpec = str | Denoiser


def candidates(methods: Sequence[MethodSpec], *, grid: bool = True
               ) -> list[tuple[str, MethodSpec, dict[str, Any]]]:
    """The candidates a list of method specs stands for.

    Parameters
    ----------
    methods : sequence of str or Denoiser
        ``name``, ``name:k=v:...`` (``preset=P`` among them selects the method's preset
        ``P``) or a model.
    grid : bool
        A filter named without parameters expands into one candidate per value of its
        calibration grid (``PARAM`` over ``GRID``).

    Returns
    -------
    list of (label, method, params)
        Unknown names and labels listed twice raise :class:`InputError`.
    """
    from .methods.filters import Filter  # here: `import microdenoise` stays light

    out: list[tuple[str, MethodSpec, dict[str, Any]]] = []
    for spec in methods:
        if isinstance(spec, Denoiser):
            out.append((f"{spec.key} (model)", spec, {}))
            continue
        name, *items = str(spec).strip().split(":")
        cls = method_class(name)
        params: dict[str, Any] = dict(parse_params(items))
        if grid and not params and issubclass(cls, Filter) and cls.GRID:
            out += [(f"{cls.key}:{cls.PARAM}={v:g}", cls.key, {cls.PARAM: v})
                    for v in cls.GRID]
        else:
            label = cls.key + "".join(f":{k}={v}" for k, v in params.items())
            out.append((label, cls.key, params))
    labels = [c[0] for c in out]
    twice = sorted({lab for lab in labels if labels.count(lab) > 1})
    if twice:
        raise InputError(f"{', '.join(twice)} listed twice in the methods to compare")
    return out


def applier(method: MethodSpec, params: dict[str, Any], reference: np.ndarray, *,
            seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """The method as a function of one plane, through the prediction core.

    Parameters
    ----------
    method : str or Denoiser
        A registry name (created with ``params``) or a trained model.
    params : dict
        The method's parameters (``preset`` among them selects a preset).
    reference : ndarray
        The plane whose intensity normalization every call uses (so a perturbed or
        masked copy is scaled exactly like it).
    seed : int
        The method's seed: a per-image fit (FM2S, calibration) is redone on each call
        with this seed.

    Returns
    -------
    callable
        ``f(x) -> float64 plane``. Trained methods given by name, and methods that
        change the image size, raise :class:`InputError`.
    """
    params = dict(params)
    preset = params.pop("preset", None)  # name:preset=P:k=v selects a preset
    den, fresh = core.prepare(method, preset=None if preset is None else str(preset),
                              params=params or None, seed=seed)
    if den.fit_policy == "trained" and fresh:
        raise InputError(f"{den.key} must be trained first (microdenoise train); compare "
                         "a trained model by passing it instead of its name")
    if den.upscale != 1:
        raise InputError(f"{den.key} changes the image size (upscale={den.upscale}): its "
                         "error cannot be measured against the input")
    lay = core.layout(reference.shape, "YX", den)
    norms = core.image_normalizers(den, reference, lay, {})
    per_image = fresh and den.fit_policy == "per_image"
    pair = None if per_image else core.normalizers(den, norms, 0)

    def f(x: np.ndarray) -> np.ndarray:
        # As the core does: a method fitted per image is a fresh copy fitted on x, and
        # the normalizers are the fitted copy's (a model-normalized network, N2V or
        # DecoNoising with fit_per_image, computes them from x; the others use the
        # reference's).
        model = core.fit_unit(den, x, [()], lay, norms) if per_image else den
        p = core.normalizers(model, norms, 0) if pair is None else pair
        return np.asarray(core.denoise_block(model, x, p), dtype=np.float64)

    return f


def _planes(image: np.ndarray, axes: str | None, pairs_axis: str | None, max_planes: int
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Planes to score and, with ``pairs_axis``, the second capture of each."""
    if image.ndim == 2:
        if pairs_axis is not None:
            raise InputError(f"--pairs-axis {pairs_axis} needs a stack; this image is 2D")
        return [image], []
    axes = axes or ("S" * (image.ndim - 2) + "YX")
    if len(axes) != image.ndim or not axes.endswith("YX"):
        raise InputError(f"axes {axes!r} do not fit an image of shape {image.shape}")
    if pairs_axis is None:
        flat = image.reshape((-1, *image.shape[-2:]))
        picks = np.unique(np.linspace(0, len(flat) - 1, min(max_planes, len(flat))).round())
        return [flat[int(i)] for i in picks], []
    if pairs_axis not in axes[:-2]:
        raise InputError(f"--pairs-axis {pairs_axis} is not an axis of this image ({axes})")
    moved = np.moveaxis(image, axes.index(pairs_axis), 0)
    if moved.shape[0] < 2:
        raise InputError(f"--pairs-axis {pairs_axis} has {moved.shape[0]} plane; pairs need 2")
    firsts = moved[0::2][: moved.shape[0] // 2].reshape((-1, *image.shape[-2:]))
    seconds = moved[1::2][: moved.shape[0] // 2].reshape((-1, *image.shape[-2:]))
    return list(firsts[:max_planes]), list(seconds[:max_planes])


def _coverage(shape: tuple[int, ...], pairs_axis: str | None, used: int,
              plane: tuple[int, ...]) -> str:
    """What part of the data was scored, in words (nothing is left out silently)."""
    total = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    what = (f"{used} pair(s) of consecutive planes along {pairs_axis}" if pairs_axis
            else f"{used} of {total} plane(s)" + (" (evenly spaced)" if used < total else ""))
    region = ("whole planes" if tuple(plane) == tuple(shape[-2:])
              else f"a central {plane[0]}x{plane[1]} crop of {shape[-2]}x{shape[-1]}")
    return f"scored: {what}, {region}"


def _crop(x: np.ndarray, size: int | None) -> np.ndarray:
    if size is None:
        return x
    y0, x0 = (max(0, (n - size) // 2) for n in x.shape)
    return x[y0:y0 + size, x0:x0 + size]


def compare(image: np.ndarray, *, methods: Sequence[MethodSpec] = DEFAULT_METHODS,
            second: np.ndarray | None = None, axes: str | None = None,
            pairs_axis: str | None = None, grid: bool = True, crop: int | None = None,
            max_planes: int = 3, budget: float | None = None, seed: int = 0,
            probes: int = 1, single: str = "masked",
            progress: Callable[[Row, np.ndarray | None, int, int], None] | None = None
            ) -> CompareResult:
    """Estimate each method's MSE on ``image`` without ground truth and rank them.

    Parameters
    ----------
    image : ndarray
        A 2D plane or a stack (``axes``); stacks are scored on ``max_planes`` evenly
        spaced planes (or the first ``max_planes`` pairs along ``pairs_axis``).
    methods : sequence of str or Denoiser
        ``name`` or ``name:k=v:...``, or fitted models. Filters named alone expand into
        their calibration grid when ``grid`` is true.
    second : ndarray, optional
        A second capture of the same scene (same shape): the two-capture estimator.
    pairs_axis : str, optional
        Axis letter of a static stack whose consecutive planes are captures of one scene.
    crop : int, optional
        Score a central ``crop`` x ``crop`` region of each plane (faster).
    budget : float, optional
        Seconds. Candidates are scored plane by plane, every candidate on a plane before
        the next plane; once the budget is spent, the planes that every candidate has
        finished are used (a note says how many), and if the first plane is not finished,
        the candidates left are listed as not run.
    seed, probes
        The methods' seed and SURE's random probes (single image).
    single : {"masked", "sure"}
        The single-image estimator: the Noise2Self masked loss (default; two runs: the
        output and one masked phase) or Monte-Carlo SURE (two runs per candidate); not
        used with a second capture or ``pairs_axis``. Masked is the default by the rule
        in ``benchmarks/compare.py`` (``tune_masked``), measured on the 30 W2S training
        crops: median Spearman 0.85 vs 0.75 for SURE, mean regret 0.21 vs 1.29 dB.
    progress : callable, optional
        ``progress(row, output, done, total)`` after each candidate on each plane: its
        row so far, its output on the first plane (else None), steps done and in all;
        an exception raised there stops the comparison.

    Returns
    -------
    CompareResult
        Rows ranked; ``recommended`` is None when no reliable estimate exists.
    """
    if second is not None and pairs_axis is not None:
        raise InputError("give a second capture or --pairs-axis, not both")
    if single not in SINGLE_ESTIMATORS:
        raise InputError(f"single-image estimator {single!r}: choose from "
                         f"{', '.join(SINGLE_ESTIMATORS)}")
    plist, slist = _planes(np.asarray(image), axes, pairs_axis, max_planes)
    if second is not None:
        second = np.asarray(second)
        if second.shape != np.asarray(image).shape:
            raise InputError(f"the second capture has shape {second.shape}, the image "
                             f"{np.asarray(image).shape}: give a capture of the same scene")
        slist = _planes(second, axes, None, max_planes)[0]
    planes = [est.check_plane(_crop(p, crop), name=f"plane {k}") for k, p in enumerate(plist)]
    raw = [_crop(p, crop) for p in plist]
    notes: list[str] = []
    pairs: list[est.PairFit] = []
    seconds = [est.check_plane(_crop(s, crop), name="second capture") for s in slist]
    for k, s in enumerate(seconds):
        fit = est.fit_pair(planes[k], s)
        pairs.append(fit)
        notes.append(f"plane {k}: {fit.describe()}")
    checks = [est.noise_check(p) for p in planes]
    notes += [f"plane {k}: {c.describe()}" for k, c in enumerate(checks)]
    estimator = "two-capture" if pairs else ("masked" if single == "masked" else "sure-gat")
    cands = candidates(methods, grid=grid)
    meta = {label: (method.key if isinstance(method, Denoiser) else str(method), params)
            for label, method, params in cands}
    parts: dict[str, list[_Part]] = {label: [] for label, _, _ in cands}
    errors: dict[str, tuple[str, float]] = {}
    outputs: dict[str, np.ndarray] = {}
    start, done, total = time.perf_counter(), 0, len(cands) * len(planes)
    used = len(planes)
    for k in range(len(planes)):
        for label, method, params in cands:
            if label in errors:
                continue
            if budget is not None and done and time.perf_counter() - start > budget:
                used = max(k, 1)
                break
            t0 = time.perf_counter()
            try:
                part, out = _score_plane(method, params, raw[k], planes[k],
                                         seconds[k] if pairs else None,
                                         pairs[k] if pairs else None, checks[k],
                                         seed=seed, probes=probes, single=single, k=k)
                parts[label].append(part)
                if k == 0:
                    outputs[label] = out
            except Exception as exc:  # noqa: BLE001  (a failing method is a row, not the end)
                msg = (str(exc) if isinstance(exc, InputError)
                       else f"{type(exc).__name__}: {exc}")
                errors[label] = (f"failed: {msg}", time.perf_counter() - t0)
                done += len(planes) - k - 1  # its later planes are not run: counted done
            done += 1
            if progress is not None:
                progress(_row(label, meta[label], parts[label], errors.get(label), estimator),
                         outputs.get(label) if k == 0 else None, done, total)
        else:
            continue
        break
    notes.insert(0, _coverage(np.asarray(image).shape, pairs_axis, used, planes[0].shape))
    if used < len(planes):
        notes.insert(1, f"budget: {used} of the {len(planes)} planes chosen were scored "
                        f"within {budget:g} s (every candidate on the same planes)")
    for label in parts:
        if label not in errors and len(parts[label]) < used:
            errors[label] = (f"not run: the {budget:g} s budget was spent", 0.0)
    rows = [_row(label, meta[label], parts[label][:used], errors.get(label), estimator)
            for label in parts]
    ranked = rank(rows)
    recommended, reason = recommend(ranked)
    return CompareResult(ranked, recommended, reason, estimator, notes, planes[0],
                         _data_range(np.asarray(image)), outputs)


def _data_range(image: np.ndarray) -> float:
    """The integer type's range (255 for 8-bit), else the image's max - min."""
    if image.dtype.kind in "ui":
        info = np.iinfo(image.dtype)
        return float(info.max) - float(min(info.min, 0))
    return float(np.max(image) - np.min(image)) or 1.0


@dataclass(frozen=True)
class _Part:
    """One candidate on one plane: its estimate, residual diagnostics and cost."""

    estimate: est.Estimate
    ratio: float
    ac1: float
    seconds: float


def _score_plane(method: MethodSpec, params: dict[str, Any], raw: np.ndarray, x: np.ndarray,
                 second: np.ndarray | None, pair: est.PairFit | None, check: est.NoiseCheck,
                 *, seed: int, probes: int, single: str, k: int) -> tuple[_Part, np.ndarray]:
    t0 = time.perf_counter()
    f = applier(method, params, raw, seed=seed)
    fx = f(raw)
    if pair is not None and second is not None:
        e = est.two_capture_mse(fx, x, second, pair)
    elif single == "masked":
        e = masked_mse(x, f, check, seed=seed + k)
    elif check.correlated and np.isfinite(check.white_ratio):
        e = sure_correlated(x, f, check, fx=fx, probes=probes, seed=seed + k)[0]
    else:
        e = est.sure_gat(x, f, check, fx=fx, probes=probes, seed=seed + k)
    if e.estimator.startswith("sure") and e.reliable and _trained_on_the_image(method):
        e = dataclasses.replace(e, reliable=False, reason=TRAINED_SURE_REASON)
    ratio, ac1, _ = est.residual_diagnostics(x, fx, check.model)
    return _Part(e, ratio, ac1, time.perf_counter() - t0), fx


def _trained_on_the_image(method: MethodSpec) -> bool:
    """Whether ``method`` is trained on each image by stochastic optimization (the
    zero-shot family: FM2S), so that SURE's two runs are two different trainings."""
    return isinstance(method, str) and describe(method)["family"] == "zero-shot"


def _row(label: str, meta: tuple[str, dict[str, Any]], parts: list[_Part],
         error: tuple[str, float] | None, estimator: str) -> Row:
    """A candidate's row from its planes (mean estimate; SE of the mean of independent
    planes), or its error."""
    name, params = meta
    if error is not None or not parts:
        msg, sec = error if error is not None else ("not run", 0.0)
        return Row(label, name, params, estimator=estimator, error=msg, seconds=sec)
    n = len(parts)
    bad = [p.estimate.reason for p in parts if not p.estimate.reliable]
    return Row(label, name, params, float(np.mean([p.estimate.value for p in parts])),
               float(math.sqrt(sum(p.estimate.se ** 2 for p in parts)) / n),
               parts[0].estimate.estimator, not bad, bad[0] if bad else "",
               sum(p.seconds for p in parts), "",
               float(np.mean([p.ratio for p in parts])), float(np.mean([p.ac1 for p in parts])),
               np.concatenate([p.estimate.blocks for p in parts]))
