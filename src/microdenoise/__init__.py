"""microdenoise: denoising for fluorescence microscopy under one API.

Classical filters, FM2S (zero-shot), Noise2Void and DecoNoising (self-supervised),
CARE (supervised) and CLIDiM (few-shot) share one registry and one prediction core
(:mod:`microdenoise.core`); the default, ``auto``, measures the noise and routes to
VST-BM3D (white noise) or FM2S (spatially correlated noise)::

    import microdenoise as md
    image = md.read_image("cells.tif")
    clean = md.denoise_array(image.data)              # auto: the noise decides
    fm2s = md.denoise_array(image.data, "fm2s", preset="confocal")
    model = md.train(noisy_stack, method="n2v", params={"epochs": 20})
    restored = md.denoise_array(image.data, model)
    md.export_bmz(model, "model.zip")    # a BioImage Model Zoo package (extra: bmz)
    same = md.load("model.zip")          # packages load like .pt models
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# First: OMP_WAIT_POLICY must be in the environment before anything imports torch.
from . import threads  # noqa: F401
from .bmz import export_bmz
from .errors import InputError
from .io import ImageData, read_image, write_image
from .pipeline import denoise_array, denoise_file, denoise_files
from .registry import Denoiser, create, list_methods, load, register, save
from .training_io import train
from .version import __version__

__all__ = [
    "Denoiser",
    "compare",
    "ImageData",
    "InputError",
    "create",
    "denoise_array",
    "denoise_file",
    "denoise_files",
    "export_bmz",
    "list_methods",
    "load",
    "read_image",
    "register",
    "save",
    "train",
    "write_image",
    "__version__",
]


if TYPE_CHECKING:
    from .comparison import compare


def __getattr__(name: str) -> Any:
    """``compare`` is imported on first use: its estimators load scipy.ndimage, about
    0.3 s that every ``microdenoise`` command would otherwise pay at start-up."""
    if name == "compare":
        from .comparison import compare

        return compare
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

