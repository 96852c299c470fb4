"""Run BioImage Model Zoo packages (bioimage.io model spec 0.5; 0.4 is converted on load).

:func:`load_bmz` reads a package (zip, folder, or its ``rdf.yaml``), after bounding
what it declares (:func:`microdenoise.bmz_safety.check_package`):

* our own (``config.microdenoise`` and ``pytorch_state_dict`` weights whose
  architecture is exactly :class:`microdenoise.bmz_net.PackagedNet` with the
  arguments our export writes, :func:`microdenoise.bmz_safety.own_package`): the
  microdenoise model is rebuilt from its stored config, normalizers and network
  weights (read with ``weights_only=True``), so it predicts exactly as the model
  that was exported, and no code of the package runs;
* any other model is code (TorchScript, or an architecture of its own) and loads
  only with ``trust=True`` (``--trust-model``); then, for a denoising model with
  ``torchscript`` or ``pytorch_state_dict`` weights, one input and one output: a
  :class:`BMZModel`, which applies the package's own pre- and post-processing
  (:func:`apply_steps`), pads by the halo (its ``receptive_field``) to a valid size
  (``min + n * step``; ``tile_multiple`` is the step), and runs the weights.

A package that cannot run here (TensorFlow/ONNX/Keras-only weights, several inputs or
outputs, no y/x axes, several channels, sizes over the bounds) gives a one-line
:class:`InputError`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bmz_export import require_bioimageio
from .bmz_safety import check_axis, check_package, own_package, untrusted
from .errors import InputError
from .registry import FORMAT_VERSION, Denoiser, create
from .training import resolve_device

__all__ = ["BMZConfig", "BMZModel", "apply_steps", "load_bmz"]

PER_SAMPLE = ("zero_mean_unit_variance", "scale_range", "scale_mean_variance")
AXES = ("batch", "channel", "z", "y", "x")  # the order a unit is held in here


def load_bmz(path: str | Path, *, trust: bool = False) -> Denoiser:
    """The model in the BioImage Model Zoo package ``path`` (module docstring).

    ``trust``: the user's word that the package's code (TorchScript, an architecture
    other than microdenoise's own) may run; without it such a package is refused.
    """
    descr = describe(path)
    ours = (descr.config.model_extra or {}).get("microdenoise")
    sd = descr.weights.pytorch_state_dict
    why = own_package(ours, sd)
    if why is None and isinstance(ours, dict):
        return rebuild(ours, sd, name=Path(path).name)
    if not trust:
        if descr.weights.torchscript is not None and sd is None:
            why = "its weights are TorchScript, which is code (no rdf proves who wrote it)"
        elif sd is not None:
            why = f"{why}: its pytorch_state_dict weights run that architecture's code"
        else:
            have = [f for f, w in descr.weights if w is not None]
            raise InputError(f"{descr.name!r} has only {', '.join(have)} weights; microdenoise "
                             "runs PyTorch weights (torchscript or pytorch_state_dict): convert "
                             "them (bioimageio.core weight converters) or use a tool that runs "
                             "them")
        raise untrusted(path, why)
    return BMZModel(source=str(path), trust=True)


def describe(path: str | Path) -> Any:
    """The package's validated spec-0.5 model description; an :class:`InputError` if it
    is invalid or no model."""
    require_bioimageio()
    from bioimageio.spec import InvalidDescr, load_description
    from bioimageio.spec.model import v0_5

    if not Path(path).exists():
        raise InputError(f"model package {str(path)!r} does not exist")
    check_package(path)
    descr = load_description(path, format_version="latest", perform_io_checks=False)
    if isinstance(descr, InvalidDescr):
        errors = descr.validation_summary.details[-1].errors[:1]
        first = (f"{'.'.join(map(str, errors[0].loc))}: {errors[0].msg}" if errors
                 else "no details").replace("\n", " ")[:300]
        raise InputError(f"{str(path)!r} is not a valid bioimage.io package: {first}")
    if not isinstance(descr, v0_5.ModelDescr):
        raise InputError(f"{str(path)!r} describes a {descr.type}, not a model")
    return descr


#: The model format of packages written before ``config.microdenoise.format_version``
#: was stored (every one of them held format-2 normalizers).
UNSTAMPED_VERSION = 2


def rebuild(ours: dict[str, Any], weights: Any, *, name: str = "the package") -> Denoiser:
    """The microdenoise model a package of ours was exported from (nothing of the
    package runs: our registered class, its stored config, ``weights_only`` weights)."""
    version = ours.get("format_version", UNSTAMPED_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{name}: config.microdenoise.format_version {version!r} is not a "
                         "model format version")
    if version > FORMAT_VERSION:
        raise InputError(f"{name} was made by a newer microdenoise (model format {version}; "
                         f"this one reads up to {FORMAT_VERSION}): upgrade microdenoise")
    missing = sorted({"key", "config", "norm_in", "norm_out"} - set(ours))
    if missing:
        raise InputError(f"{name}: config.microdenoise lacks {', '.join(missing)}; the package "
                         "is damaged (export it again)")
    key = str(ours["key"])
    config = {k: v for k, v in dict(ours["config"]).items() if v is not None}
    model = create(key, **config)
    _check_params(model, weights.architecture.kwargs.get("params", {}), name)
    data = io.BytesIO(weights.get_reader().read())
    packaged = torch.load(data, map_location="cpu", weights_only=True)
    net = {k.removeprefix("net."): v for k, v in packaged.items() if k.startswith("net.")}
    higher = bool(getattr(model, "HIGHER_IS_BETTER", False))
    best = ours.get("best")
    model.load_state_dict({
        "version": version, "norm_in": dict(ours["norm_in"]),
        "norm_out": dict(ours["norm_out"]), "epoch": int(ours.get("epoch", 0)),
        "best": (-math.inf if higher else math.inf) if best is None else float(best),
        "history": [], "net": net})
    return model


def _check_params(model: Denoiser, params: Any, name: str) -> None:
    """The architecture's ``params`` must be what our export writes for the stored
    config (:func:`microdenoise.bmz_net.prediction_params`; older packages may lack
    fields added since), else the package is not ours as it claims."""
    from .bmz_net import prediction_params

    expected = {k: list(v) if isinstance(v, tuple) else v
                for k, v in prediction_params(model).items()}
    given = {k: list(v) if isinstance(v, tuple) else v for k, v in dict(params).items()}
    wrong = sorted(k for k in given if k not in expected or given[k] != expected[k])
    if wrong:
        raise untrusted(name, f"its architecture's params ({', '.join(wrong)}) differ from "
                              "its stored microdenoise config, so it is not a package "
                              "microdenoise wrote as it claims")


@dataclass(frozen=True)
class BMZConfig:
    """``source``: the package (zip, folder or ``rdf.yaml``); ``trust``: the user's word
    that its code (TorchScript, its own architecture) may run (required)."""

    source: str = ""
    trust: bool = False


class BMZModel(Denoiser):
    """A BioImage Model Zoo model run as a microdenoise method (``normalization="none"``:
    the package's own pre/post-processing normalizes). Not registered: load it with
    :func:`microdenoise.load` on the package."""

    key = "bmz"
    family = "pretrained (BioImage Model Zoo)"
    needs = "nothing"
    normalization = "none"
    Config = BMZConfig

    def __init__(self, config: Any = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        if not self.config.trust:
            raise untrusted(self.config.source, "a third-party package's weights are code")
        self.descr = describe(self.config.source)
        d = self.descr
        if len(d.inputs) != 1 or len(d.outputs) != 1:
            raise InputError(f"{d.name!r} has {len(d.inputs)} input(s) and {len(d.outputs)} "
                             "output(s); microdenoise runs models with one image in, one out")
        self.inp, self.out = d.inputs[0], d.outputs[0]
        self.in_ids, self.out_ids = axis_ids(self.inp, d.name), axis_ids(self.out, d.name)
        formats = [f for f in ("torchscript", "pytorch_state_dict")
                   if getattr(d.weights, f) is not None]
        if not formats:
            have = [f for f, w in d.weights if w is not None]
            raise InputError(f"{d.name!r} has only {', '.join(have)} weights; microdenoise runs "
                             "PyTorch weights (torchscript or pytorch_state_dict): convert them "
                             "(bioimageio.core weight converters) or use a tool that runs them")
        self.weights_format = formats[0]
        self.module: Any = None
        steps = list(self.inp.preprocessing) + list(self.out.postprocessing)
        for step in steps:
            if step.id not in STEPS:
                raise InputError(f"{d.name!r} uses the processing step {step.id!r}, which "
                                 f"microdenoise does not run (it runs {', '.join(STEPS)})")
        self.per_sample = any(
            s.id in PER_SAMPLE or getattr(s.kwargs, "min_percentile", None) is not None
            or getattr(s.kwargs, "max_percentile", None) is not None for s in steps)
        self.sizes = {a.id: a.size for a in self.inp.axes}
        for a in self.inp.axes:
            if a.type == "space":
                check_axis(d.name, str(a.id), a.size, 0)
        scales, halos = {}, {}
        for a in self.out.axes:
            if str(a.id) in ("y", "x"):
                ref = a.size
                if not hasattr(ref, "axis_id") or ref.offset != 0:
                    raise InputError(f"{d.name!r}: output axis {a.id} is not the input's size "
                                     "(a size reference without offset); not supported")
                ref_axis = next(b for b in self.inp.axes if b.id == ref.axis_id)
                scales[str(a.id)] = ref_axis.scale / a.scale
                halos[str(a.id)] = int(getattr(a, "halo", 0))
                check_axis(d.name, str(a.id), None, halos[str(a.id)])
        up = {round(v) for v in scales.values()}
        if len(up) != 1 or min(up) < 1 or any(abs(v - round(v)) > 1e-6 for v in scales.values()):
            raise InputError(f"{d.name!r}: output Y/X scale {scales} is not one whole factor")
        self._upscale = up.pop()
        self.halo = max(math.ceil(h / self._upscale) for h in halos.values())

    @property
    def trusted(self) -> bool:
        """The user said this package's code may run (always, for a BMZModel)."""
        return bool(self.config.trust)

    # --- the contract -----------------------------------------------------------------
    @property
    def receptive_field(self) -> int:
        """The package's halo, in input pixels."""
        return self.halo

    @property
    def tile_multiple(self) -> int:
        """The Y/X size step (``ParameterizedSize.step``; 1 for fixed sizes)."""
        steps = [int(getattr(self.sizes[a], "step", 1)) for a in self.sizes
                 if str(a) in ("y", "x")]
        return math.lcm(*steps)

    @property
    def upscale(self) -> int:
        return int(self._upscale)

    @property
    def supports_3d(self) -> bool:
        return "z" in self.in_ids

    @property
    def global_field(self) -> bool:
        """Per-sample statistics (``zero_mean_unit_variance``, ``scale_range``,
        percentile ``clip``) make each tile's output depend on the whole tile."""
        return bool(self.per_sample)

    def fresh(self) -> BMZModel:
        copy = BMZModel(self.config)
        copy.device, copy.module = self.device, self.module
        return copy

    def network(self, device: torch.device) -> Any:
        """The weights as a torch module on ``device`` (loaded once)."""
        if self.module is None:
            w = getattr(self.descr.weights, self.weights_format)
            if self.weights_format == "torchscript":
                data = io.BytesIO(w.get_reader().read())
                self.module = torch.jit.load(data, map_location="cpu")
            else:
                from bioimageio.core.backends.pytorch_backend import load_torch_model

                self.module = load_torch_model(w, devices=["cpu"])
            self.module.eval()
        return self.module.to(device)

    @torch.no_grad()
    def denoise(self, image: np.ndarray) -> np.ndarray:
        """Pre-process, pad (halo, valid size), run, crop and post-process one raw
        unit (a YX plane, or a ZYX volume for models with a z axis)."""
        arr = np.asarray(image, dtype=np.float32)
        nd = 3 if self.supports_3d else 2
        if arr.ndim < nd:
            what = "ZYX volumes" if nd == 3 else "YX planes"
            raise InputError(f"{self.descr.name!r} takes {what}; got shape {arr.shape}")
        units = arr.reshape(-1, *arr.shape[-nd:])
        out = [self._unit(u) for u in units]
        s = self.upscale
        return np.stack(out).reshape(*arr.shape[:-2], arr.shape[-2] * s,
                                     arr.shape[-1] * s).astype(np.float32)

    def _unit(self, unit: np.ndarray) -> np.ndarray:
        ids = ["batch", "channel"] + (["z"] if unit.ndim == 3 else []) + ["y", "x"]
        raw = unit[None, None]
        x = apply_steps(self.inp.preprocessing, raw, ids, raw)
        width = [(0, 0), (0, 0)]
        for k, a in enumerate(ids[2:]):
            n, halo = unit.shape[k], (self.halo if a in ("y", "x") else 0)
            size = self._size(a, n + 2 * halo)
            width.append((halo, size - n - halo))
        x = np.pad(x, width, mode="reflect" if min(unit.shape) > 1 else "symmetric")
        device = resolve_device(self.device)
        batch = torch.from_numpy(np.ascontiguousarray(to_axes(x, ids, self.in_ids)))
        y = self.network(device)(batch.to(device))
        y = y[0] if isinstance(y, list | tuple) else y
        y = from_axes(y.float().cpu().numpy(), self.out_ids, ids)
        s = self.upscale
        crop = [slice(None), slice(0, 1)] + [
            slice(lo * (s if a != "z" else 1), (lo + n) * (s if a != "z" else 1))
            for a, (lo, _), n in zip(ids[2:], width[2:], unit.shape, strict=True)]
        y = apply_steps(self.out.postprocessing, y[tuple(crop)], ids, raw)
        return np.asarray(y[0, 0], dtype=np.float32)

    def _size(self, axis: str, n: int) -> int:
        """The smallest valid input size >= ``n`` along ``axis``."""
        size = self.sizes[next(a for a in self.sizes if str(a) == axis)]
        if isinstance(size, int):
            if n > size:
                raise InputError(f"{self.descr.name!r} takes {size} px along {axis}; this "
                                 f"needs {n} with the halo: use --tile {size - 2 * self.halo}")
            return size
        low, step = int(size.min), int(size.step)
        return low + max(0, math.ceil((n - low) / step)) * step


def axis_ids(tensor: Any, name: str) -> list[str]:
    """The tensor's axes as ``batch``/``channel``/``z``/``y``/``x``; an :class:`InputError`
    for other axes, missing y/x, or more than one channel."""
    ids = []
    for a in tensor.axes:
        kind = a.type
        if kind in ("batch", "channel"):
            if kind == "channel" and len(a.channel_names) != 1:
                raise InputError(f"{name!r} has {len(a.channel_names)} channels in "
                                 f"{tensor.id}; microdenoise runs one-channel models")
            ids.append(kind)
        elif kind == "space" and str(a.id) in ("z", "y", "x"):
            ids.append(str(a.id))
        else:
            raise InputError(f"{name!r} has a {kind} axis {str(a.id)!r} in {tensor.id}; "
                             "microdenoise runs models on (batch, channel, [z,] y, x) images")
    if not {"y", "x"} <= set(ids):
        raise InputError(f"{name!r} has no y and x axes in {tensor.id} (axes {ids}); it is "
                         "not an image-to-image model microdenoise can run")
    return ids


def to_axes(x: np.ndarray, ids: list[str], target: list[str]) -> np.ndarray:
    """``x`` (axes ``ids``) in the order ``target``, missing batch/channel axes dropped."""
    kept = [a for a in ids if a in target]
    x = x.reshape([n for a, n in zip(ids, x.shape, strict=True) if a in target])
    return np.transpose(x, [kept.index(a) for a in target])


def from_axes(y: np.ndarray, source: list[str], ids: list[str]) -> np.ndarray:
    """``y`` (axes ``source``) in the order ``ids``, batch/channel added where missing."""
    y = np.transpose(y, [source.index(a) for a in ids if a in source])
    return y.reshape([y.shape[[a for a in ids if a in source].index(a)] if a in source else 1
                      for a in ids])


def apply_steps(steps: Any, x: np.ndarray, ids: list[str], raw: np.ndarray) -> np.ndarray:
    """Spec-0.5 processing ``steps`` on ``x`` (axes ``ids``, size 1 batch and channel),
    as bioimageio.core computes them; ``raw`` is the unprocessed input
    (``scale_range``'s ``reference_tensor``)."""
    for step in steps:
        x = STEPS[step.id](step.kwargs, np.asarray(x, dtype=np.float32), ids, raw)
    return x


def _along(kwargs: Any, name: str, ids: list[str], ndim: int) -> Any:
    """A kwarg, as a scalar or shaped to broadcast along ``kwargs.axis``."""
    value = getattr(kwargs, name)
    axis = getattr(kwargs, "axis", None)
    if not isinstance(value, list):
        return float(value)
    shape = [1] * ndim
    where = "channel" if str(axis) not in ids else str(axis)
    shape[ids.index(where)] = -1
    return np.asarray(value, dtype=np.float32).reshape(shape)


def _reduce(kwargs: Any, ids: list[str]) -> tuple[int, ...] | None:
    axes = getattr(kwargs, "axes", None)
    return None if axes is None else tuple(ids.index(str(a)) for a in axes if str(a) in ids)


def _scale_linear(kw: Any, x: np.ndarray, ids: list[str], raw: np.ndarray) -> np.ndarray:
    return x * _along(kw, "gain", ids, x.ndim) + _along(kw, "offset", ids, x.ndim)


def _fixed_zmuv(kw: Any, x: np.ndarray, ids: list[str], raw: np.ndarray) -> np.ndarray:
    eps = 1e-6  # bioimageio.core's FixedZeroMeanUnitVariance
    return (x - _along(kw, "mean", ids, x.ndim)) / (_along(kw, "std", ids, x.ndim) + eps)


def _zmuv(kw: Any, x: np.ndarray, ids: list[str], raw: np.ndarray) -> np.ndarray:
    axes = _reduce(kw, ids)
    mean = x.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x.std(axis=axes, keepdims=True, dtype=np.float64)
    return ((x - mean) / (std + kw.eps)).astype(np.float32)


def _scale_range(kw: Any, x: np.ndarray, ids: list[str], raw: np.ndarray) -> np.ndarray:
    ref = raw if kw.reference_tensor is not None else x
    axes = _reduce(kw, ids)
    lo = np.percentile(ref, kw.min_percentile, axis=axes, keepdims=True)
    hi = np.percentile(ref, kw.max_percentile, axis=axes, keepdims=True)
    return ((x - lo) / (hi - lo + kw.eps)).astype(np.float32)


def _clip(kw: Any, x: np.ndarray, ids: list[str], raw: np.ndarray) -> np.ndarray:
    axes = _reduce(kw, ids)
    lo = kw.min if kw.min_percentile is None else np.percentile(x, kw.min_percentile, axis=axes,
                                                                keepdims=True)
    hi = kw.max if kw.max_percentile is None else np.percentile(x, kw.max_percentile, axis=axes,
                                                                keepdims=True)
    return np.clip(x, lo, hi)


def _sigmoid(kw: Any, x: np.ndarray, ids: list[str], raw: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def _ensure_dtype(kw: Any, x: np.ndarray, ids: list[str], raw: np.ndarray) -> np.ndarray:
    return x if np.dtype(kw.dtype).kind == "f" else x.astype(kw.dtype)


STEPS = {"scale_linear": _scale_linear, "fixed_zero_mean_unit_variance": _fixed_zmuv,
         "zero_mean_unit_variance": _zmuv, "scale_range": _scale_range, "clip": _clip,
         "sigmoid": _sigmoid, "ensure_dtype": _ensure_dtype}
