"""Shared training utilities: device choice, seeding and thread settings.

One plain PyTorch loop per method lives in its module; what every loop needs
(the device, a seeded generator) lives here.
"""

from __future__ import annotations

import torch

from .errors import InputError

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
        raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("--device mps was asked for but MPS is not available; use --device cpu")
    return torch.device(name)


def generator(seed: int, device: torch.device | None = None) -> torch.Generator:
    """A torch generator seeded with ``seed`` on ``device`` (CPU by default)."""
    gen = torch.Generator(device=device if device is not None else "cpu")
    gen.manual_seed(int(seed))
    return gen
