"""Shared training utilities: device choice, seeding and thread settings.

One plain PyTorch loop per method lives in its module; what every loop needs
(the device, a seeded generator) lives here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .errors import InputError

if TYPE_CHECKING:
    from .registry import Denoiser

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str = "auto") -> torch.device:
    """Return the torch device for ``name``: CUDA, then MPS, then CPU for ``"auto"``.

    Asking for an accelerator that is not there is an :class:`InputError`.
    """
    if name not in DEVICES and not name.startswith("cuda:"):
        raise InputError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available; "
                         "use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps was asked for but MPS is not available; "
                         "use --device cpu")
    return torch.device(name)


def generator(seed: int, device: torch.device | None = None) -> torch.Generator:
    """A torch generator seeded with ``seed`` on ``device`` (CPU by default)."""
    gen = torch.Generator(device=device if device is not None else "cpu")
    gen.manual_seed(int(seed))
    return gen


# --- Loop pieces shared by the trained methods (n2v, deconoising; care, clidim later) ---


def progress_bar(total: int, desc: str) -> Any:
    """A tqdm bar on stderr, off when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", disable=None, file=sys.stderr,
                dynamic_ncols=True)


def train_epoch(module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                loss_fn: Callable[[], torch.Tensor], *, steps: int, accumulate: int = 1,
                bar: Any = None) -> float:
    """Run ``steps`` optimizer steps and return the mean training loss.

    Each step sums the gradients of ``accumulate`` calls of ``loss_fn`` (each
    scaled by ``1 / accumulate``: a virtual batch, as DecoNoising does), then
    steps ``optimizer``. ``bar`` (from :func:`progress_bar`) advances per step
    and shows the running loss.
    """
    module.train()
    total = 0.0
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        value = 0.0
        for _ in range(accumulate):
            loss = loss_fn() / accumulate
            loss.backward()
            value += float(loss.detach())
        optimizer.step()
        total += value
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / (step + 1):.4g}", refresh=False)
    return total / max(steps, 1)


@torch.no_grad()
def validate(module: torch.nn.Module, loss_fn: Callable[[Any], torch.Tensor],
             batches: Iterable[Any]) -> float:
    """Mean of ``loss_fn(batch)`` over ``batches`` with ``module`` in eval mode."""
    module.eval()
    values = [float(loss_fn(batch)) for batch in batches]
    return sum(values) / max(len(values), 1)


def make_optimizer(module: torch.nn.Module, *, lr: float, factor: float,
                   patience: int) -> tuple[torch.optim.Adam,
                                           torch.optim.lr_scheduler.ReduceLROnPlateau]:
    """Adam with learning rate ``lr`` and a ReduceLROnPlateau on the validation loss."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min",
                                                           factor=factor, patience=patience)
    return optimizer, scheduler


def to_cpu(state: Any) -> Any:
    """A copy of a (nested) state dict with every tensor on the CPU (for saving)."""
    if isinstance(state, torch.Tensor):
        return state.detach().cpu().clone()
    if isinstance(state, dict):
        return {k: to_cpu(v) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(to_cpu(v) for v in state)
    return state


def write_checkpoints(method: Denoiser, directory: str | Path, *, improved: bool) -> None:
    """Save ``method`` as ``directory/last.pt``, and as ``best.pt`` when ``improved``."""
    from .registry import save

    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write checkpoints to {str(folder)!r} "
                         f"({exc.strerror or exc}); give a writable folder") from None
    save(method, folder / "last.pt")
    if improved:
        save(method, folder / "best.pt")


def read_training_data(inputs: Iterable[str | Path], *, axes: str | None = None
                       ) -> list[np.ndarray]:
    """Read image files or folders for training; each file's planes become samples."""
    from . import io

    return [io.read_image(path, axes=axes).data for path in io.list_images(inputs)]


def train_files(inputs: Iterable[str | Path], method: str, out: str | Path, *,
                preset: str | None = None, params: dict[str, Any] | None = None,
                axes: str | None = None, device: str = "auto", seed: int | None = None,
                overwrite: bool = False) -> Path:
    """Train ``method`` on image files (``microdenoise train``) and save it to ``out``.

    Parameters
    ----------
    inputs
        Image files or folders; the planes of stacks (S, T, Z, C) are samples.
    method
        A trainable (self-supervised) method, e.g. ``"n2v"`` or ``"deconoising"``.
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
    from .registry import create, method_class, save

    out = Path(out)
    if out.exists() and not overwrite:
        raise InputError(f"{str(out)!r} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise InputError(f"--out {str(out)!r} is a folder; give a model file name (model.pt)")
    cls = method_class(method)
    if cls.family != "self-supervised":
        raise InputError(f"`train` trains the self-supervised methods (n2v, deconoising); "
                         f"{method!r} is {cls.family}: "
                         + ("it is fitted on each image by `microdenoise denoise`"
                            if cls.family in ("zero-shot", "classical")
                            else "training it from files is not supported yet"))
    params = dict(params or {})
    if seed is not None:
        params["seed"] = seed
    model = create(method, preset=preset, **params)
    resolve_device(device)
    model.device = device  # type: ignore[attr-defined]
    images: Any = read_training_data(inputs, axes=axes)  # a list: sizes may differ
    model.fit(images)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save(model, out)
