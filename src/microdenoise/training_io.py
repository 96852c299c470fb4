"""Reading training data from image files (``microdenoise train``, :func:`microdenoise.train`).

Noisy images become samples plane by plane (or volume by volume for 3D networks);
noisy/clean pairs are matched by file name.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from . import io
from .axes import volume_axis
from .errors import InputError

__all__ = ["read_training_data", "read_training_pairs"]


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
