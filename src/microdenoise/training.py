"""Shared training utilities: device choice, seeding, precision, loop pieces, and the
train entry points (:func:`train`, the Python twin of ``microdenoise train``, and
:func:`train_files`, the command itself).

The trained methods' common loop lives in :mod:`microdenoise.methods.trained`; what
any loop needs (the device, seeded generators and RNG forks) lives here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def use_bf16(setting: bool | str, device: torch.device) -> bool:
    """Resolve a precision setting: ``auto`` is bf16 only on a CPU with native bfloat16.

    ``setting`` is a bool or ``"auto"``/``"bf16"``/``"fp32"``.
    """
    if setting in ("bf16", "fp32"):
        return setting == "bf16"
    if setting != "auto":
        return bool(setting)
    return device.type == "cpu" and native_cpu_bf16()


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX tiles)."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


class Autocast(torch.nn.Module):
    """``module`` run under bfloat16 autocast, its output returned in float32."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last_3d if x.ndim == 5 else torch.channels_last
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return self.module(x.contiguous(memory_format=layout)).float()


def step_module(net: torch.nn.Module, precision: bool | str, device: torch.device
                ) -> torch.nn.Module:
    """The module training steps call: ``net`` itself, or, where :func:`use_bf16` says
    so, ``net`` in channels-last layout wrapped in :class:`Autocast`.

    Undo the layout after training with ``net.to(memory_format=torch.contiguous_format)``.
    A 3D network (``net.dims == 3``) on the CPU always trains in float32: ``auto``
    keeps it there and ``bf16`` is an :class:`InputError`.
    """
    volumetric = getattr(net, "dims", 2) == 3
    if volumetric and device.type == "cpu" and precision in ("auto", "bf16", True):
        # torch 2.13's oneDNN bf16 3D convolutions on the CPU are not reproducible and
        # turned the loss into NaN in 1 of 3 identical seeded runs: float32 there.
        if precision == "auto":
            return net
        raise InputError("precision=bf16 is not offered for 3D networks on the CPU (its "
                         "bf16 3D convolutions are not reproducible); use precision=auto")
    if not use_bf16(precision, device):
        return net
    layout = torch.channels_last_3d if volumetric else torch.channels_last
    net.to(memory_format=layout)  # type: ignore[call-overload]
    return Autocast(net)


def generator(seed: int, device: torch.device | None = None) -> torch.Generator:
    """A torch generator seeded with ``seed`` on ``device`` (CPU by default)."""
    gen = torch.Generator(device=device if device is not None else "cpu")
    gen.manual_seed(int(seed))
    return gen


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with the global torch RNGs seeded with ``seed``, restoring them after.

    Forks the CPU generator and those of every CUDA device present (and MPS's), so
    seeded network initialization (or CLIDiM's dropout) leaves the caller's random
    streams untouched on every device.
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    mps = torch.backends.mps.is_available()
    mps_state = torch.mps.get_rng_state() if mps else None
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        try:
            yield
        finally:
            if mps_state is not None:
                torch.mps.set_rng_state(mps_state)


@contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """On CUDA, deterministic cuDNN kernels (no benchmark autotuning) for the block's
    duration, the previous settings restored after; elsewhere nothing changes."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    saved = cudnn.deterministic, cudnn.benchmark
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark = saved


# --- Loop pieces shared by the trained methods (see methods/trained.py) ---


def epoch_status(bar: Any, label: str, epoch: int, stop: int, *, interval: float = 60.0,
                 **values: str) -> None:
    """Show a finished epoch's numbers on ``bar`` (a
    :class:`~microdenoise.training_progress.Progress`).

    Where the bar is off (stderr is no terminal: batch jobs, log files), write them as
    a plain stderr line instead, ``"LABEL: epoch E/STOP k v ..."``, for the first
    epoch, then at most once every ``interval`` seconds, and for the last epoch, so
    that a long run on a cluster still shows its progress.
    """
    bar.set_postfix(**values)
    if not getattr(bar, "disable", False):
        return
    now, last = time.monotonic(), getattr(bar, "status_time", None)
    if last is not None and now - last < interval and epoch < stop:
        return
    bar.status_time = now
    text = " ".join(f"{k} {v}" for k, v in values.items())
    print(f"{label}: epoch {epoch}/{stop} {text}", file=sys.stderr, flush=True)


def train_epoch(module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                loss_fn: Callable[[], torch.Tensor], *, steps: int, accumulate: int = 1,
                bar: Any = None) -> float:
    """Run ``steps`` optimizer steps and return the mean training loss.

    Each step sums the gradients of ``accumulate`` calls of ``loss_fn`` (each
    scaled by ``1 / accumulate``: a virtual batch, as DecoNoising does), then
    steps ``optimizer``. ``bar`` (a
    :class:`~microdenoise.training_progress.Progress`) advances per step
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
    """Save ``method`` with its optimizer state as ``directory/last.pt``, and as
    ``best.pt`` when ``improved``."""
    from .registry import save

    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot write checkpoints to {str(folder)!r} "
                         f"({exc.strerror or exc}); give a writable folder") from None
    save(method, folder / "last.pt", training=True)
    if improved:
        save(method, folder / "best.pt", training=True)
