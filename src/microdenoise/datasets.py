"""The benchmark sets: FMD test mix, W2S 8-bit, SRDTrans subset, folders of pairs.

Each loader returns a list of :class:`Pair` (noisy and clean arrays as
stored, sorted by name). The data live outside the package, under
``../shared/data`` or wherever ``MICRODENOISE_DATA`` points.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from .errors import InputError
from .io import list_images, read_image

__all__ = [
    "DATASETS",
    "Pair",
    "data_root_or_none",
    "default_data_root",
    "fmd_test_mix",
    "folder_pairs",
    "load_dataset",
    "srdtrans_subset",
    "w2s_8bit",
]

DATASETS: tuple[str, ...] = ("fmd_test_mix", "srdtrans_subset", "w2s_8bit")
ENV_VAR = "MICRODENOISE_DATA"
_FMD_GROUPS = ("Confocal", "TwoPhoton", "WideField")
_W2S_FOVS = {"train": range(1, 11), "test": range(81, 101), "all": range(1, 1000)}


@dataclass(frozen=True, eq=False)
class Pair:
    """A noisy image and its clean ground truth.

    Attributes
    ----------
    name : str
        File stem, e.g. ``"Confocal_BPAE_B_1"`` (FMD) or ``"081_0"`` (W2S: FOV_channel).
    noisy, clean : numpy.ndarray
        The images as stored (same shape; FMD/W2S/SRDTrans: uint8).
    group : str
        FMD: the microscope (``"Confocal"``, ``"TwoPhoton"``, ``"WideField"``);
        otherwise the set's name (``"w2s"``, ``"srdtrans"``, the folder's name).
    """

    name: str
    noisy: np.ndarray
    clean: np.ndarray
    group: str


def default_data_root() -> Path:
    """Return the benchmark data folder.

    ``$MICRODENOISE_DATA`` if set, else the first existing of ``../shared/data``
    relative to the working directory and to the repository root.

    Raises
    ------
    InputError
        If no such folder exists.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        if not Path(env).is_dir():
            raise InputError(f"{ENV_VAR}={env} is not a folder; point it at the benchmark "
                             "data or pass --data-root")
        return Path(env)
    candidates = [Path.cwd() / "../shared/data",
                  Path(__file__).resolve().parents[2] / "../shared/data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    looked = ", ".join(str(c.resolve()) for c in candidates)
    raise InputError(f"benchmark data not found (looked in {looked}); pass --data-root "
                     f"or set {ENV_VAR}")


def data_root_or_none() -> Path | None:
    """Return :func:`default_data_root`, or None when the data are absent."""
    try:
        return default_data_root()
    except InputError:
        return None


def _dataset_dir(root: str | Path | None, name: str) -> Path:
    base = default_data_root() if root is None else Path(root)
    folder = base / name
    if not folder.is_dir():
        raise InputError(f"dataset {name!r} not found at {folder}; pass --data-root "
                         "pointing at the folder that holds it")
    return folder


def _by_stem(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for f in list_images([folder]):
        stem = f.name[: -len(f.suffix)]
        if stem in files:
            raise InputError(f"{folder} holds both {files[stem].name} and {f.name}; "
                             "keep one file per image name")
        files[stem] = f
    return files


def _select(stems: list[str], names: Sequence[str] | None, where: str) -> list[str]:
    if names is None:
        return stems
    patterns = [names] if isinstance(names, str) else list(names)
    chosen: set[str] = set()
    for pattern in patterns:
        hits = fnmatch.filter(stems, pattern)
        if not hits:
            examples = ", ".join(stems[:3])
            raise InputError(f"no image in {where} matches {pattern!r}; names look like "
                             f"{examples} (glob patterns such as '*_1' work)")
        chosen.update(hits)
    return [s for s in stems if s in chosen]


def folder_pairs(
    noisy_dir: str | Path,
    clean_dir: str | Path,
    *,
    names: Sequence[str] | None = None,
    group: str | None = None,
) -> list[Pair]:
    """Pair the images of two folders by file stem.

    Parameters
    ----------
    noisy_dir, clean_dir : str or pathlib.Path
        Folders of noisy images and of their ground truth (TIFF, PNG or NPY).
    names : sequence of str, optional
        Keep only these stems; glob patterns (``"*_3"``) allowed.
    group : str, optional
        Group of every pair; default: the name of the folder above ``noisy_dir``.

    Raises
    ------
    InputError
        If a folder is missing or empty, a name is in one folder only, or a
        pair's shapes differ.
    """
    noisy_dir, clean_dir = Path(noisy_dir), Path(clean_dir)
    for d in (noisy_dir, clean_dir):
        if not d.is_dir():
            raise InputError(f"{d} is not a folder; pass folders of noisy and clean images")
    noisy, clean = _by_stem(noisy_dir), _by_stem(clean_dir)
    for a, b, da, db in ((noisy, clean, noisy_dir, clean_dir),
                         (clean, noisy, clean_dir, noisy_dir)):
        alone = sorted(set(a) - set(b))
        if alone:
            more = f" and {len(alone) - 5} more" if len(alone) > 5 else ""
            raise InputError(f"{len(alone)} image(s) in {da} have no counterpart in {db} "
                             f"({', '.join(alone[:5])}{more}); pairs are matched by file name")
    group = group or noisy_dir.resolve().parent.name
    pairs = []
    for stem in _select(sorted(noisy), names, str(noisy_dir.parent)):
        n, c = read_image(noisy[stem]).data, read_image(clean[stem]).data
        if n.shape != c.shape:
            raise InputError(f"pair {stem!r}: noisy {noisy[stem]} has shape {n.shape} but "
                             f"clean {clean[stem]} has {c.shape}; they must match")
        pairs.append(Pair(stem, n, c, group))
    return pairs


def fmd_test_mix(root: str | Path | None = None, *,
                 names: Sequence[str] | None = None) -> list[Pair]:
    """FMD test mix: 48 raw frames (``raw/``) and their avg50 ground truth (``gt/``).

    512x512 uint8; ``group`` is the microscope (Confocal, TwoPhoton, WideField).
    """
    folder = _dataset_dir(root, "fmd_test_mix")
    pairs = folder_pairs(folder / "raw", folder / "gt", names=names)
    return [Pair(p.name, p.noisy, p.clean, _fmd_group(p.name)) for p in pairs]


def _fmd_group(name: str) -> str:
    prefix = name.split("_", 1)[0]
    return prefix if prefix in _FMD_GROUPS else "fmd"


def srdtrans_subset(root: str | Path | None = None, *,
                    names: Sequence[str] | None = None) -> list[Pair]:
    """SRDTrans subset: 10 calcium-imaging frames (490x490 uint8) and their ground truth."""
    folder = _dataset_dir(root, "srdtrans_subset")
    return folder_pairs(folder / "noisy", folder / "gt", names=names, group="srdtrans")


def w2s_8bit(
    root: str | Path | None = None,
    *,
    split: Literal["train", "test", "all"] = "test",
    names: Sequence[str] | None = None,
) -> list[Pair]:
    """W2S widefield, 8-bit: single frame (``noisy/``) vs avg400 (``gt/``), ``FOV_C`` names.

    ``split``: ``"train"`` = FOVs 001-010 (30 pairs), ``"test"`` = FOVs 081-100
    (60 pairs), ``"all"``. Noisy and clean were rescaled separately (see DESIGN).
    """
    if split not in _W2S_FOVS:
        raise InputError(f"unknown W2S split {split!r}; use 'train', 'test' or 'all'")
    folder = _dataset_dir(root, "w2s_8bit")
    fovs = {f"{i:03d}_*" for i in _W2S_FOVS[split]}
    stems = sorted(_by_stem(folder / "noisy"))
    keep = [s for s in stems if any(fnmatch.fnmatchcase(s, f) for f in fovs)]
    if names is not None:
        keep = _select(keep, names, f"{folder} ({split} split)")
    if not keep:
        raise InputError(f"{folder} holds no images of the W2S {split} split")
    return folder_pairs(folder / "noisy", folder / "gt", names=keep, group="w2s")


def load_dataset(
    name_or_path: str | Path,
    root: str | Path | None = None,
    *,
    names: Sequence[str] | None = None,
) -> list[Pair]:
    """Load a benchmark set by name, or a folder of pairs.

    Parameters
    ----------
    name_or_path : str or pathlib.Path
        ``"fmd_test_mix"``, ``"srdtrans_subset"``, ``"w2s_8bit"`` (test split), or
        a folder with ``noisy/`` (or ``raw/``) and ``gt/`` (or ``clean/``) subfolders.
    root : str or pathlib.Path, optional
        Folder holding the named sets; default :func:`default_data_root`.
    names : sequence of str, optional
        Keep only these names (glob patterns allowed).
    """
    key = str(name_or_path)
    if key == "fmd_test_mix":
        return fmd_test_mix(root, names=names)
    if key == "srdtrans_subset":
        return srdtrans_subset(root, names=names)
    if key == "w2s_8bit":
        return w2s_8bit(root, names=names)
    folder = Path(name_or_path)
    if not folder.is_dir():
        raise InputError(f"unknown dataset {key!r}; use one of {', '.join(DATASETS)} or a "
                         "folder with noisy/ and gt/ subfolders")
    noisy = next((folder / s for s in ("noisy", "raw") if (folder / s).is_dir()), None)
    clean = next((folder / s for s in ("gt", "clean") if (folder / s).is_dir()), None)
    if noisy is None or clean is None:
        raise InputError(f"{folder} has no noisy/ (or raw/) and gt/ (or clean/) "
                         "subfolders; put the noisy images and their ground truth there")
    return folder_pairs(noisy, clean, names=names, group=folder.resolve().name)
