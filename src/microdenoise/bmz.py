"""BioImage Model Zoo: export trained models as bioimage.io packages, run packages.

The BioImage Model Zoo (https://bioimage.io) shares models as packages described by
the bioimage.io model spec (here format 0.5: ``rdf.yaml``, weights, test tensors,
documentation). This module is the light entry point (bioimageio is imported only
when a package is written or read; install it with ``pip install
'microdenoise[bmz]'``):

* :func:`export_bmz` (:mod:`microdenoise.bmz_export`): a trained n2v, deconoising,
  care or clidim model as a package that deepImageJ, ilastik, QuPath and
  bioimageio.core run without microdenoise;
* :func:`load_bmz` (:mod:`microdenoise.bmz_import`): a package as a
  :class:`~microdenoise.registry.Denoiser`; :func:`microdenoise.load` and
  ``microdenoise denoise --model model.zip`` call it for packages (registered here
  with :func:`microdenoise.registry.register_loader`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .registry import Denoiser, load, register_loader

__all__ = ["export_bmz", "export_file", "is_package", "load_bmz"]

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")


def is_package(path: str | Path) -> bool:
    """Whether ``path`` looks like a bioimage.io package: a ``.zip``, an ``rdf.yaml`` /
    ``*bioimageio.yaml`` file, or a folder holding one."""
    p = Path(path)
    if p.is_dir():
        return any((p / n).is_file() for n in RDF_NAMES)
    return p.suffix.lower() == ".zip" or p.name in RDF_NAMES or p.name.endswith(".bioimageio.yaml")


def export_bmz(model: Denoiser, path: str | Path, **options: Any) -> Path:
    """Write ``model`` as a BioImage Model Zoo package (spec 0.5) at ``path``.

    See :func:`microdenoise.bmz_export.export_bmz` for ``options`` (``name``,
    ``authors``, ``description``, ``sample``, ``test_size``, ``tags``, ``version``,
    ``overwrite``).

    Raises
    ------
    InputError
        ``model`` is not a trained network (FM2S, classical filters), or bioimageio.core
        is not installed.
    """
    from .bmz_export import export_bmz as write

    return write(model, path, **options)


def load_bmz(path: str | Path, *, trust: bool = False) -> Denoiser:
    """The model in the package ``path``: our own rebuilt exactly (no code of the package
    runs), another one as a :class:`microdenoise.bmz_import.BMZModel` only with
    ``trust=True`` (its weights are code; see :mod:`microdenoise.bmz_safety`)."""
    from .bmz_import import load_bmz as read

    return read(path, trust=trust)


def export_file(model_path: str | Path, out: str | Path, *, name: str | None = None,
                authors: Sequence[str] | None = None, overwrite: bool = False) -> Path:
    """``microdenoise export``: the saved model ``model_path`` (``.pt``) as the package ``out``."""
    return export_bmz(load(model_path), out, name=name, authors=authors, overwrite=overwrite)


register_loader(is_package, load_bmz)
