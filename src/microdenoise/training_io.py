"""The train entry points: :func:`train` (:func:`microdenoise.train`, the Python twin of
``microdenoise train``) and :func:`train_files` (the command), and reading training
data from image files.

Noisy images become samples plane by plane (or volume by volume for 3D networks);
noisy/clean pairs are matched by file name. The model's folder is checked writable
before any work; an interrupted training (Ctrl-C, SIGTERM) keeps what it learned in
``<out stem>.interrupted.pt`` and says so.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import io
from .atomic import check_writable
from .axes import volume_axis
from .errors import InputError
from .training import resolve_device

if TYPE_CHECKING:
    from .registry import Denoiser

__all__ = ["read_training_data", "read_training_pairs", "train", "train_files"]


def read_training_data(inputs: Iterable[str | Path], *, axes: str | None = None,
                       volumes: bool = False) -> list[np.ndarray]:
    """Read image files or folders for training; each file's planes become samples.

    With ``volumes`` (3D networks) each file's Z axis (else T) is moved in front of
    YX, so its ZYX volumes become the samples; a file with neither is an
    :class:`InputError`.
    """
    arrays = []
    for path in io.list_images(inputs):
        image = io.read_image(path, axes=axes)
        data = image.data
        if volumes:
            vax = volume_axis(image.axes)
            if vax is None:
                raise InputError(f"{path}: axes {image.axes!r} have no Z (or T) axis, but "
                                 "a 3D network (dims=3) trains on ZYX stacks; give the "
                                 "axes with --axes (e.g. ZYX) or use dims=2")
            data = np.moveaxis(data, vax, -3)
        arrays.append(data)
    return arrays


def read_training_pairs(inputs: Iterable[str | Path], target: str | Path, *,
                        scale: int = 1, axes: str | None = None
                        ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read (noisy, clean) training pairs: two folders matched by file name, or two files.

    Parameters
    ----------
    inputs
        One folder of noisy images, or one file (an image or a stack, e.g. ``.npy``).
    target
        The folder of clean images with the same names (stems), or the clean file.
    scale
        Clean images are ``scale`` x the noisy ones in Y and X (2 for ``upscale=2``).
    axes
        Axes of the files, overriding their metadata.

    Raises
    ------
    InputError
        Unmatched names, shapes that do not match, or a folder paired with a file.
    """
    given = [Path(p) for p in inputs]
    if len(given) != 1:
        raise InputError(f"--target pairs one --input with it; got {len(given)} inputs: give "
                         "one folder of noisy images (or one noisy file)")
    source, clean_path = given[0], Path(target)
    for p in (source, clean_path):
        if not p.exists():
            raise InputError(f"{str(p)!r} does not exist")
    if source.is_dir() != clean_path.is_dir():
        raise InputError(f"--input {str(source)!r} and --target {str(clean_path)!r} must both "
                         "be folders (pairs matched by file name) or both be files")
    if source.is_dir():
        def stems(folder: Path) -> dict[str, Path]:
            return {f.name[: -len(f.suffix)]: f for f in io.list_images([folder])}

        noisy, clean = stems(source), stems(clean_path)
        for a, b, da, db in ((noisy, clean, source, clean_path),
                             (clean, noisy, clean_path, source)):
            alone = sorted(set(a) - set(b))
            if alone:
                raise InputError(f"{len(alone)} image(s) in {da} have no counterpart in {db} "
                                 f"({', '.join(alone[:5])}); pairs are matched by file name")
        files = [(noisy[k], clean[k]) for k in sorted(noisy)]
    else:
        files = [(source, clean_path)]
    xs, ys = [], []
    for n_path, c_path in files:
        x, y = io.read_image(n_path, axes=axes).data, io.read_image(c_path, axes=axes).data
        want = (*x.shape[:-2], x.shape[-2] * scale, x.shape[-1] * scale)
        if y.shape != want:
            must = "the same shape" if scale == 1 else f"exactly {scale}x the noisy in Y and X"
            raise InputError(f"noisy {n_path} has shape {x.shape} but clean {c_path} has "
                             f"{y.shape}; the clean image must have {must}, {want}")
        xs.append(x)
        ys.append(y)
    return xs, ys


def _arrays(value: Any) -> bool:
    """Whether ``value`` is an array or a list/tuple of arrays (not paths)."""
    if isinstance(value, np.ndarray):
        return True
    return isinstance(value, list | tuple) and bool(value) and all(
        isinstance(v, np.ndarray) for v in value)


def train(inputs: Any, *, method: str, out: str | Path | None = None,
          target: Any = None, preset: str | None = None,
          params: dict[str, Any] | None = None, axes: str | None = None,
          device: str = "auto", seed: int | None = None,
          on_epoch: Callable[[int, int, dict[str, float]], bool | None] | None = None
          ) -> Denoiser:
    """Train ``method`` and return it (the Python twin of ``microdenoise train``).

    Parameters
    ----------
    inputs : path, list of paths, array or list of arrays
        Image files or folders (the planes of stacks, S, T, Z, C, are samples), or the
        training images themselves. For a method trained on pairs: one folder of noisy
        images or one file, paired with ``target``; or noisy arrays.
    method : str
        A trainable method: self-supervised (``"n2v"``, ``"deconoising"``), supervised
        (``"care"``) or few-shot (``"clidim"``); the latter two need ``target``.
    out : path, optional
        Also save the model there (a ``.pt`` file, replaced if it exists); apply it
        with :func:`microdenoise.load` or ``microdenoise denoise --model``.
    target : path or array(s), optional
        Methods trained on pairs: the folder of clean images named as the noisy ones,
        or one clean file (see :func:`~microdenoise.training_io.read_training_pairs`);
        or clean arrays matching ``inputs`` item by item.
    preset, params : optional
        A named parameter set and explicit method parameters (they win).
    axes : str, optional
        Axes of the input files, overriding their metadata (files only).
    device : str, optional
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    seed : int, optional
        Overrides the method's seed.
    on_epoch : callable, optional
        ``on_epoch(epoch, stop, row)`` after each epoch (the epoch, the run's last
        epoch, its history row: loss, validation score); returning true stops the run
        there with keep-best applied (a GUI's progress and Cancel).

    Returns
    -------
    Denoiser
        The trained method.

    Raises
    ------
    InputError
        A method that is not trained this way, a missing or needless ``target``, or
        unreadable or mismatched data.
    """
    from .registry import create, method_class, save

    cls = method_class(method)
    pairs = cls.needs == "pairs"
    if pairs and target is None:
        raise InputError(f"{method!r} is trained on noisy/clean pairs: add --target CLEAN_DIR "
                         "(clean images named as the noisy ones in --input)")
    if not pairs and target is not None:
        raise InputError(f"--target is for methods trained on pairs (care, clidim); "
                         f"{method!r} trains on noisy images only")
    if not pairs and cls.family != "self-supervised":
        raise InputError(f"`train` trains n2v and deconoising (noisy images), care and "
                         f"clidim (noisy/clean pairs); {method!r} is {cls.family}: "
                         + ("it is fitted on each image by `microdenoise denoise`"
                            if cls.family in ("zero-shot", "classical")
                            else "training it from files is not supported yet"))
    if out is not None:
        if Path(out).is_dir():
            raise InputError(f"--out {str(out)!r} is a folder; give a model file name "
                             "(model.pt)")
        check_writable(Path(out).parent, what="the model's folder")  # before any work
    params = dict(params or {})
    if seed is not None:
        params["seed"] = seed
    model = create(method, preset=preset, **params)
    resolve_device(device)
    model.device = device
    if on_epoch is not None:
        from .methods.trained import TrainedMethod

        if isinstance(model, TrainedMethod):
            model.on_epoch = on_epoch
    noisy: Any  # lists of arrays: sizes may differ
    fit: tuple[Any, ...]  # the arguments of model.fit
    if pairs:
        clean: Any
        if _arrays(inputs) != _arrays(target):
            raise InputError("give inputs and target both as arrays or both as paths")
        if _arrays(inputs):
            noisy, clean = inputs, target
        else:
            paths = [inputs] if isinstance(inputs, str | Path) else inputs
            noisy, clean = read_training_pairs(paths, target, scale=model.upscale, axes=axes)
        fit = (noisy, clean)
    else:
        if _arrays(inputs):
            noisy = inputs
        else:
            paths = [inputs] if isinstance(inputs, str | Path) else inputs
            noisy = read_training_data(paths, axes=axes, volumes=model.supports_3d)
        fit = (noisy,)
    try:
        model.fit(*fit)
    except KeyboardInterrupt:
        if out is not None and getattr(model, "epoch", 0) > 0:
            _save_interrupted(model, Path(out))
        raise
    if out is not None:
        save(model, out)
    return model


def _save_interrupted(model: Any, out: Path) -> None:
    """Keep an interrupted training's model (Ctrl-C, SIGTERM): the best epoch so far where
    a validation split selects one (keep-best has restored it), else the last finished
    epoch; beside ``out`` as ``<out stem>.interrupted<suffix>``, and say where."""
    from .registry import save

    target = out.with_name(f"{out.stem}.interrupted{out.suffix or '.pt'}")
    save(model, target)
    # Keep-best restored the best epoch only with keep="best" and a validation score.
    best = (getattr(model.config, "keep", "best") == "best"
            and math.isfinite(getattr(model, "best", math.inf)))
    which = "the best epoch so far" if best else "the last finished epoch"
    print(f"microdenoise: training interrupted after epoch {model.epoch}: the model so far "
          f"({which}) is saved in {target}; continue with --param resume=... from "
          "checkpoint_dir, or use it as it is", file=sys.stderr, flush=True)


def train_files(inputs: Iterable[str | Path], method: str, out: str | Path, *,
                preset: str | None = None, params: dict[str, Any] | None = None,
                axes: str | None = None, device: str = "auto", seed: int | None = None,
                overwrite: bool = False, target: str | Path | None = None,
                n_train: int | None = None) -> Path:
    """Train ``method`` on image files (``microdenoise train``) and save it to ``out``.

    Parameters
    ----------
    inputs
        Image files or folders; the planes of stacks (S, T, Z, C) are samples. For a
        method trained on pairs: one folder of noisy images (or one file) paired with
        ``target``.
    method
        A trainable method: self-supervised (``"n2v"``, ``"deconoising"``), supervised
        (``"care"``) or few-shot (``"clidim"``); the latter two need ``target``.
    target
        Methods trained on pairs: the folder of clean images named as the noisy ones
        (or one clean file); see :func:`~microdenoise.training_io.read_training_pairs`.
    n_train
        Methods trained on pairs: train on the first ``n_train`` pairs after a seeded
        shuffle (few-shot; the method's ``n_train`` parameter).
    out
        The model file to write (``.pt``); apply it with ``microdenoise denoise --model``.
    preset, params, seed
        Method parameters; ``seed`` overrides the method's.
    axes
        Axes of the inputs, overriding the files' metadata.
    device
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    overwrite
        Replace an existing ``out``.
    """
    from .registry import method_class

    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{str(out)!r} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise InputError(f"--out {str(out)!r} is a folder; give a model file name (model.pt)")
    if n_train is not None:
        if method_class(method).needs != "pairs":
            raise InputError(f"--target and --n-train are for methods trained on pairs "
                             f"(care, clidim); {method!r} trains on noisy images only")
        params = {**(params or {}), "n_train": n_train}
    train(list(inputs), method=method, out=out, target=target, preset=preset, params=params,
          axes=axes, device=device, seed=seed)
    return out
