"""Export a trained model as a BioImage Model Zoo package (bioimage.io model spec 0.5).

The package (a zip with ``rdf.yaml``, https://bioimage.io/spec, model format
0.5) predicts as microdenoise does, without microdenoise:

* weights: ``torchscript`` (what deepImageJ, ilastik and QuPath run) and
  ``pytorch_state_dict`` whose architecture is
  :class:`microdenoise.bmz_net.PackagedNet` (``ArchitectureFromLibraryDescr``). Both
  are the method's whole ``denoise`` on normalized tensors: padding, pooling phases,
  CARE's 2x input upsampling, DecoNoising's PSF, CLIDiM's Tanh (:mod:`~.bmz_net`);
* the stored normalizers (:attr:`~microdenoise.registry.Denoiser.normalizers`), all
  affine, as pre/post-processing (:func:`preprocessing`, :func:`postprocessing`):

  - ``mean_std``: preprocessing ``fixed_zero_mean_unit_variance`` (mean, std);
    postprocessing ``scale_linear`` with gain std, offset mean;
  - ``percentile``, ``fixed_range`` (values fixed on the training data, not per
    image): preprocessing ``scale_linear`` with gain 1/(high-low), offset
    -low/(high-low); postprocessing ``scale_linear`` with gain high-low, offset low;
  - ``none``: neither. Preprocessing starts, and postprocessing ends, with
    ``ensure_dtype`` float32.

* axes (batch, channel, [z,] y, x); Y/X sizes ``min + n * tile_multiple`` (the
  pooling grid), a halo of the receptive field rounded up to that grid
  (:func:`~microdenoise.bmz_net.halo`; on the output, in output pixels: times
  ``upscale``), reflection padding; Z (3D N2V) a multiple of the pooling, predicted
  whole (no halo);
* test tensors (``.npy``) computed by :func:`microdenoise.denoise_array`, a cover
  (input | output), a README, authors, citations, BSD-3-Clause, tags, and the
  microdenoise model itself under ``config.microdenoise`` (so that
  :func:`microdenoise.load` rebuilds it exactly).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .bmz_net import halo, min_side, package_net, packageable, prediction_params, trace
from .errors import InputError
from .methods.clidim import CLIDiM
from .methods.trained import TrainedMethod
from .normalize import FixedRange, Identity, MeanStd, Normalizer, Percentile
from .registry import FORMAT_VERSION

__all__ = ["INSTALL_HINT", "PAPERS", "export_bmz", "postprocessing", "preprocessing",
           "require_bioimageio"]

INSTALL_HINT = ("BioImage Model Zoo packages need bioimageio.core: pip install "
                "'microdenoise[bmz]' (or pip install bioimageio.core==0.11.0)")
MICRODENOISE_CITE = {"text": "microdenoise: denoising for fluorescence microscopy under one API",
                     "url": "https://pypi.org/project/microdenoise/"}
#: (text, doi or url) per paper, and which papers each kind of model cites.
PAPERS = {
    "n2v": ("Krull, Buchholz, Jug. Noise2Void - Learning Denoising from Single Noisy "
            "Images. CVPR 2019", "10.1109/CVPR.2019.00223"),
    "n2v2": ("Hoeck et al. N2V2 - Fixing Noise2Void Checkerboard Artifacts with Modified "
             "Sampling Strategies and a Tweaked Network Architecture. ECCV Workshops 2022",
             "10.1007/978-3-031-25069-9_33"),
    "structn2v": ("Broaddus, Krull, Weigert, Schmidt, Myers. Removing Structured Noise with "
                  "Self-Supervised Blind-Spot Networks. ISBI 2020",
                  "10.1109/ISBI45749.2020.9098336"),
    "deconoising": ("Goncharova, Honigmann, Jug, Krull. Improving Blind Spot Denoising for "
                    "Microscopy. ECCV Workshops (BioImage Computing) 2020 (code)",
                    "https://github.com/juglab/DecoNoising"),
    "care": ("Weigert et al. Content-aware image restoration: pushing the limits of "
             "fluorescence microscopy. Nature Methods 15, 1090-1097 (2018)",
             "10.1038/s41592-018-0216-7"),
    "clidim": ("Fuentes-Hurtado, Sibarita, Viasnoff. CLIDiM: contrastive learning for image "
               "denoising in microscopy (code)",
               "https://github.com/ffuhu/cl-microscopy-image-denoising"),
    "pix2pix": ("Isola, Zhu, Zhou, Efros. Image-to-Image Translation with Conditional "
                "Adversarial Networks. CVPR 2017", "10.1109/CVPR.2017.632"),
}
#: Config fields that are paths on the training machine: never exported.
LOCAL_PATHS = ("checkpoint_dir", "resume")
TITLES = {"n2v": "Noise2Void", "deconoising": "DecoNoising", "care": "CARE", "clidim": "CLIDiM"}


def require_bioimageio() -> None:
    """An :class:`InputError` saying how to install the ``bmz`` extra, if it is missing."""
    try:
        import bioimageio.core  # noqa: F401
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise InputError(INSTALL_HINT) from None


def papers(model: TrainedMethod) -> list[str]:
    """The :data:`PAPERS` keys ``model`` cites: its method and the options it uses."""
    cfg = model.config
    keys = [model.key]
    if getattr(cfg, "n2v2", False):
        keys.append("n2v2")
    if getattr(cfg, "struct_axis", "none") != "none":
        keys.append("structn2v")
    keys = (["n2v"] if model.key == "deconoising" else []) + keys
    return keys + (["pix2pix"] if model.key == "clidim" else [])


def preprocessing(norm: Normalizer) -> list[dict[str, Any]]:
    """The input normalizer as spec-0.5 preprocessing steps (after ``ensure_dtype``).

    Parameters
    ----------
    norm : Normalizer
        ``MeanStd`` -> ``fixed_zero_mean_unit_variance``; ``Percentile``/``FixedRange``
        (fixed values of the training data) -> ``scale_linear``; ``Identity`` -> none.
    """
    steps: list[dict[str, Any]] = [{"id": "ensure_dtype", "kwargs": {"dtype": "float32"}}]
    if isinstance(norm, MeanStd):
        steps.append({"id": "fixed_zero_mean_unit_variance",
                      "kwargs": {"mean": norm.mean, "std": norm.std}})
    elif isinstance(norm, Percentile | FixedRange):
        span = norm.high - norm.low
        steps.append({"id": "scale_linear", "kwargs": {"gain": 1.0 / span,
                                                       "offset": -norm.low / span}})
    return steps


def postprocessing(norm: Normalizer) -> list[dict[str, Any]]:
    """The inverse of the output normalizer as a spec-0.5 ``scale_linear`` step
    (``y * gain + offset``: std/mean, or high-low/low), then ``ensure_dtype`` float32."""
    steps: list[dict[str, Any]] = []
    if isinstance(norm, MeanStd):
        steps.append({"id": "scale_linear", "kwargs": {"gain": norm.std, "offset": norm.mean}})
    elif isinstance(norm, Percentile | FixedRange):
        steps.append({"id": "scale_linear", "kwargs": {"gain": norm.high - norm.low,
                                                       "offset": norm.low}})
    steps.append({"id": "ensure_dtype", "kwargs": {"dtype": "float32"}})
    return steps


def own_range(model: TrainedMethod) -> bool:
    """Whether ``model`` scales each image by its own min..max (CLIDiM's
    ``per_image_minmax``): then the packaged network does it (:mod:`~.bmz_net`)."""
    return model.normalization == "unit"


def package_normalizers(model: TrainedMethod) -> tuple[Normalizer, Normalizer]:
    """The normalizers the package's pre/post-processing apply: the model's stored
    ones, or identities when the network scales each image itself (:func:`own_range`)."""
    if own_range(model):
        return Identity(), Identity()
    return model.normalizers


def exportable(model: Any) -> TrainedMethod:
    """``model`` if it is a trained network; a clear :class:`InputError` otherwise."""
    if not isinstance(model, TrainedMethod):
        key = getattr(model, "key", type(model).__name__)
        raise InputError(f"{key!r} cannot be exported to the BioImage Model Zoo: nothing is "
                         "trained (FM2S and the classical filters fit each image as it comes, "
                         "there are no weights to package); export a trained n2v, deconoising, "
                         "care or clidim model")
    if not model.trained:
        raise model.untrained_error()
    packageable(model)
    return model


def valid_size(n: int, low: int, step: int) -> int:
    """The smallest ``low + k * step`` >= ``n``."""
    return low + max(0, math.ceil((n - low) / step)) * step


def fit_to(arr: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """``arr`` cropped (centred) and reflection-padded to ``shape``."""
    out = arr
    for ax, n in enumerate(shape):
        size = out.shape[ax]
        if size > n:
            start = (size - n) // 2
            out = np.take(out, range(start, start + n), axis=ax)
        elif size < n:
            width = [(0, 0)] * out.ndim
            width[ax] = ((n - size) // 2, n - size - (n - size) // 2)
            out = np.pad(out, width, mode="symmetric" if size < 2 else "reflect")
    return out


def default_sample(model: TrainedMethod, side: int, depth: int) -> np.ndarray:
    """The bundled FMD confocal sample in the model's raw units: its 1/99.8 percentiles
    standardized (mean/std models), onto 0..1 (range models) or -1..1 (CLIDiM), then
    mapped back through the model's input normalizer (as read, for a model that scales
    each image itself); ``depth`` planes shifted 3 px apart for 3D models."""
    from importlib import resources

    from .io import read_image

    with resources.as_file(resources.files("microdenoise") / "data" /
                           "confocal_fish_raw.png") as png:
        plane = read_image(png).data.astype(np.float32)
    norm_in = package_normalizers(model)[0]
    u = Percentile.fit(plane)(plane)
    if own_range(model):
        raw = plane
    elif isinstance(model, CLIDiM):
        raw = norm_in.inverse(2 * u - 1)
    elif isinstance(norm_in, MeanStd):
        raw = norm_in.inverse((u - u.mean()) / u.std())
    else:
        raw = norm_in.inverse(u)
    if depth:
        raw = np.stack([np.roll(raw, 3 * k, axis=(0, 1)) for k in range(depth)])
    return raw


def cover(inp: np.ndarray, out: np.ndarray, path: Path) -> Path:
    """A PNG of input | output (middle plane of volumes, input enlarged to the output's
    size), each scaled by its own 0.5/99.5 percentiles to 8 bits."""
    from .io import write_image

    def view(a: np.ndarray) -> np.ndarray:
        a = a.reshape(-1, *a.shape[-2:])[a.reshape(-1, *a.shape[-2:]).shape[0] // 2]
        lo, hi = np.percentile(a, [0.5, 99.5])
        return np.clip((a - lo) / max(hi - lo, 1e-12) * 255, 0, 255).astype(np.uint8)

    left, right = view(inp), view(out)
    left = np.kron(left, np.ones((right.shape[0] // left.shape[0],) * 2, dtype=np.uint8))
    return write_image(path, np.concatenate([left, right], axis=1), dtype="uint8",
                       overwrite=True)


def readme(model: TrainedMethod, name: str, rf: int, step: int, low: int) -> str:
    """The package's documentation (markdown)."""
    cfg, key = model.config, model.key
    norm_in, norm_out = package_normalizers(model)
    last = model.history[-1] if model.history else {}
    scores = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "epoch")
    refs = "\n".join(f"- {PAPERS[p][0]} ({PAPERS[p][1]})" for p in papers(model))
    fields = ", ".join(f"{f.name}={getattr(cfg, f.name)!r}" for f in dataclasses.fields(cfg)
                       if f.name not in LOCAL_PATHS)
    dims = "3D (Z, Y, X volumes)" if model.supports_3d else "2D (Y, X planes)"
    if own_range(model):
        scaling = ("The network itself scales each image by its own min..max (the "
                   "`per_image_minmax` normalization it was trained with) and maps its "
                   "output back with them; the package's pre/post-processing are identities "
                   "(the spec has no per-image inverse). A consumer that tiles the image scales "
                   "each tile by the tile's range, which changes the output: prefer whole "
                   "images. microdenoise itself scales 8-bit images by 0..255 instead of "
                   "their min..max (as in training on 8-bit data), so on an 8-bit image that "
                   "does not span 0..255 this package and microdenoise differ")
    else:
        scaling = ("Preprocessing applies the normalization fitted on the training data "
                   f"({norm_in.to_dict()})")
    return f"""# {name}

A {TITLES.get(key, key)} model ({model.family}) for denoising fluorescence microscopy
images, {dims}, trained and exported with microdenoise (method `{key}`).

## What it does
Input: one channel of raw intensities. {scaling}; the network predicts the normalized
{"deconvolved image (DecoNoising's phantom s, before the PSF)"
 if getattr(cfg, "output", "") == "deconvolved" else "restored image"}{
 f", upsampled {model.upscale}x in Y and X" if model.upscale != 1 else ""}; postprocessing
maps it back to raw intensities (the inverse of {norm_out.to_dict()}), so outputs are
quantitative in the input's units. The weights include everything the method does
beyond the affine normalization (reflection padding, pooling phases, upsampling, PSF).

## Training
Trained for {model.epoch} epoch(s) with microdenoise ({scores or "no history"}).
Parameters: {fields}.

## How to run
- bioimageio.core: `bioimageio predict --inputs image.npy model.zip` (or
  `bioimageio.core.predict(model="model.zip", inputs=...)`).
- deepImageJ, ilastik, QuPath: open the package; they run the TorchScript weights.
- microdenoise: `microdenoise denoise --model model.zip IMAGE -o OUTDIR` or
  `microdenoise.load("model.zip")`; this rebuilds the original model exactly.

Tiles: Y/X sizes are {low} + n * {step} px; overlap tiles by the halo, {rf} px
(the receptive field rounded up to the pooling grid, in input pixels), padding
the image by reflection{"; Z is predicted whole (do not tile along Z)"
                     if model.supports_3d else ""}.

## References
{refs}
- microdenoise ({MICRODENOISE_CITE["url"]})
"""


def export_bmz(model: Any, path: str | Path, *, name: str | None = None,
               authors: Sequence[str | dict[str, str]] | None = None,
               description: str | None = None, sample: np.ndarray | None = None,
               test_size: int = 128, tags: Sequence[str] = (), version: str = "0.1.0",
               overwrite: bool = False) -> Path:
    """Write ``model`` as a BioImage Model Zoo package (spec 0.5 zip); see the module
    docstring for its contents.

    Parameters
    ----------
    model : TrainedMethod
        A trained n2v (incl. N2V2, structN2V, ``dims=3``), deconoising, care (incl.
        ``upscale=2``) or clidim model. Others raise an :class:`InputError`.
    path : str or Path
        The zip to write.
    name, description : str, optional
        Defaults name the method.
    authors : sequence of str or dict, optional
        Names, or dicts with ``name`` (and ``affiliation``, ``orcid``, ``github_user``);
        default ``["microdenoise"]``.
    sample : ndarray, optional
        A raw (Y, X) image, or (Z, Y, X) for 3D models, for the test tensors and cover;
        default: the bundled FMD confocal sample in the model's units. Cropped or
        reflection-padded to a valid size near ``test_size``.
    tags : sequence of str
        Extra tags.
    version : str
        The package's version.
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    Path
        ``path``.
    """
    model = exportable(model)
    require_bioimageio()
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5

    from .pipeline import denoise_array

    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{str(path)!r} exists; pass overwrite=True (--overwrite) to replace it")
    key, q = model.key, model.tile_multiple
    low, dims3 = min_side(model), model.supports_3d
    mz = int(getattr(model.net, "multiple", 1))
    side = valid_size(max(test_size, low), low, q)
    depth = valid_size(8, mz, mz) if dims3 else 0
    raw = default_sample(model, side, depth) if sample is None else np.asarray(sample, np.float32)
    if raw.ndim != (3 if dims3 else 2):
        raise InputError(f"sample must be a {'ZYX volume' if dims3 else 'YX plane'} for this "
                         f"{key} model; got shape {raw.shape}")
    if dims3:
        depth = valid_size(raw.shape[0], mz, mz)
    raw = fit_to(raw, ((depth,) if dims3 else ()) + (side, side)).astype(np.float32)
    pred = denoise_array(raw, model, axes="ZYX" if dims3 else "YX", device="cpu")
    packaged = package_net(model)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        x_t = torch.from_numpy(package_normalizers(model)[0](raw))[None, None]
        np.save(d / "test_input.npy", raw[None, None])
        np.save(d / "test_output.npy", pred[None, None].astype(np.float32))
        torch.save(packaged.state_dict(), d / "weights.pt")
        trace(packaged, x_t).save(str(d / "weights_torchscript.pt"))
        cover(raw, pred, d / "cover.png")
        title = name or f"microdenoise {TITLES.get(key, key)} denoising{' 3D' if dims3 else ''}"
        (d / "README.md").write_text(readme(model, title, halo(model), q, low))
        descr = v0_5.ModelDescr(**_rdf(model, d, title, authors, description, tags, version,
                                       prediction_params(model), float(np.ptp(pred))))
        # Written aside, then moved: a failure leaves no half-written package.
        tmp_zip = d / "package.zip"
        save_bioimageio_package(descr, output_path=tmp_zip)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp_zip, path)
    return path


def _rdf(model: TrainedMethod, d: Path, title: str,
         authors: Sequence[str | dict[str, str]] | None, description: str | None,
         tags: Sequence[str], version: str, params: dict[str, Any], span: float
         ) -> dict[str, Any]:
    """The ``rdf.yaml`` fields (spec 0.5) of ``model``'s package, files in ``d``."""
    key, s, q = model.key, model.upscale, model.tile_multiple
    dims3 = model.supports_3d
    mz = int(getattr(model.net, "multiple", 1))
    low = min_side(model)
    norm_in, norm_out = package_normalizers(model)
    space = (["z"] if dims3 else []) + ["y", "x"]
    in_axes: list[dict[str, Any]] = [{"type": "batch"},
                                     {"type": "channel", "channel_names": ["raw"]}]
    out_axes: list[dict[str, Any]] = [{"type": "batch"}, {"type": "channel", "channel_names": [
        "deconvolved" if getattr(model.config, "output", "") == "deconvolved" else "denoised"]}]
    for a in space:
        z = a == "z"
        in_axes.append({"type": "space", "id": a, "size": {"min": mz if z else low,
                                                           "step": mz if z else q}})
        ref = {"tensor_id": "input", "axis_id": a}
        out: dict[str, Any] = {"type": "space", "id": a, "size": ref}
        if not z:
            out.update(scale=1.0 / s, halo=halo(model) * s)
        out_axes.append(out)
    who = [a if isinstance(a, dict) else {"name": a} for a in (authors or ["microdenoise"])]
    cite = [{"text": PAPERS[p][0], **({"url": PAPERS[p][1]} if PAPERS[p][1].startswith("http")
                                      else {"doi": PAPERS[p][1]})} for p in papers(model)]
    version_t = torch.__version__.split("+")[0]
    # Training-only local paths (checkpoint_dir, resume) mean nothing on another machine
    # and say where the author's files were: not written.
    cfg = {k: (list(v) if isinstance(v, tuple) else v)
           for k, v in dataclasses.asdict(model.config).items() if k not in LOCAL_PATHS}
    best = model.best if math.isfinite(model.best) else None
    return {
        "name": title,
        "description": description or (
            f"{TITLES.get(key, key)} ({model.family}) denoising of fluorescence microscopy "
            f"{'volumes' if dims3 else 'images'}, trained with microdenoise"),
        "authors": who, "cite": cite + [MICRODENOISE_CITE], "license": "BSD-3-Clause",
        "documentation": {"source": d / "README.md"}, "covers": [{"source": d / "cover.png"}],
        "version": version,
        "tags": sorted({"denoising", "fluorescence-light-microscopy", "pytorch", "microdenoise",
                        "3d" if dims3 else "2d", key, *tags}),
        "inputs": [{"id": "input", "axes": in_axes, "test_tensor": {"source": d / "test_input.npy"},
                    "data": {"type": "float32"}, "pad": {"mode": "reflect"},
                    "preprocessing": preprocessing(norm_in)}],
        "outputs": [{"id": "output", "axes": out_axes,
                     "test_tensor": {"source": d / "test_output.npy"},
                     "data": {"type": "float32"}, "postprocessing": postprocessing(norm_out)}],
        "weights": {
            "pytorch_state_dict": {
                "source": d / "weights.pt", "pytorch_version": version_t,
                "architecture": {"callable": "PackagedNet", "import_from": "microdenoise.bmz_net",
                                 "kwargs": {"method": key, "params": params}}},
            "torchscript": {"source": d / "weights_torchscript.pt",
                            "pytorch_version": version_t, "parent": "pytorch_state_dict"}},
        "config": {
            "bioimageio": {"reproducibility_tolerance": [
                {"relative_tolerance": 1e-3, "absolute_tolerance": max(1e-3 * span, 1e-6)}]},
            "microdenoise": {"format_version": FORMAT_VERSION, "key": key, "config": cfg,
                             "norm_in": norm_in.to_dict(), "norm_out": norm_out.to_dict(),
                             "epoch": model.epoch, "best": best}},
    }
