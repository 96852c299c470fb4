"""What a BioImage Model Zoo package may do before the user says they trust it.

A package is code: its TorchScript weights are programs (a scripted
``torch.from_file(..., shared=True)`` writes any file the user can write), and a
``pytorch_state_dict`` entry names an architecture (a ``.py`` file in the package,
or any importable callable, ``os.system`` included) that bioimageio.core imports
and calls with arguments from the YAML. So microdenoise's policy is:

* **Our own packages load without asking**, because nothing of theirs runs: the
  model is rebuilt from microdenoise's own registered classes and the stored
  config, and the weights are read with ``torch.load(..., weights_only=True)``. A
  package counts as ours only if its ``pytorch_state_dict`` architecture is exactly
  an entry of :data:`OWN_ARCHITECTURES` (``microdenoise.bmz_net.PackagedNet``, by
  that exact name, not a prefix) with exactly the keyword arguments our export
  writes, consistent with its ``config.microdenoise`` (:func:`own_package`); or,
  for packages that carry the architecture as a file, a file whose sha256 is in
  :data:`OWN_SOURCE_SHA256`.
* **Everything else runs only with the user's word** (:func:`untrusted`): another
  architecture, and TorchScript from any package (no rdf proves who wrote it).
  ``--trust-model`` on the command line, ``trust=True`` in
  :func:`microdenoise.load`, the "Trust the model's code" box in napari.

Independently of trust, everything a package *declares* is bounded before it is
read (:func:`check_package`): the size of ``rdf.yaml``, its YAML nodes with
aliases expanded (a "billion laughs" document is refused, not parsed into
memory), the number of files and each file's declared size (a 3 MB zip cannot
hold a 3 GiB weights file that is then read whole), and the input sizes and
halos it declares (:func:`check_axis`).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["MAX_FILE_BYTES", "MAX_HALO", "MAX_SIDE", "MAX_YAML_BYTES", "MAX_YAML_NODES",
           "OWN_ARCHITECTURES", "OWN_SOURCE_SHA256", "TRUST_HINT", "check_axis",
           "check_package", "check_yaml", "own_package", "untrusted"]

#: (module, callable) -> the exact keyword arguments our export writes.
OWN_ARCHITECTURES: dict[tuple[str, str], frozenset[str]] = {
    ("microdenoise.bmz_net", "PackagedNet"): frozenset({"method", "params"}),
}
#: sha256 of architecture source files microdenoise writes into its own packages, by
#: callable name. Empty while our packages import the architecture from microdenoise;
#: a package that carries ``bmz_net.py`` itself is recognized by this hash.
OWN_SOURCE_SHA256: dict[str, frozenset[str]] = {}

TRUST_HINT = ("run it only if you trust where it came from: --trust-model (command line), "
              "trust=True (microdenoise.load), or the 'Trust the model's code' box (napari)")

MAX_YAML_BYTES = 1 << 20  # rdf.yaml: ours are ~5 KB
MAX_YAML_NODES = 100_000  # YAML nodes with every alias expanded
MAX_YAML_DEPTH = 64
MAX_FILES = 1000  # files in a package
MAX_FILE_BYTES = 2 << 30  # any one file's declared (uncompressed) size
MAX_RATIO = 200  # declared / compressed size above 16 MiB: a zip bomb, not weights
MAX_SIDE = 8192  # a declared minimum or fixed input side, in pixels
MAX_HALO = 1024  # a declared halo, in pixels


def untrusted(path: str | Path, why: str) -> InputError:
    """The one-line refusal of a package whose code would run: ``why`` and the flag."""
    return InputError(f"{Path(path).name}: {why}; microdenoise does not run code from a "
                      f"model package unless told to: {TRUST_HINT}")


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**27 else f"{nbytes / 2**20:.1f} MiB"


def check_package(path: str | Path) -> None:
    """Refuse a package whose declared contents are out of bounds, before bioimageio reads it.

    A zip's central directory is read (not its members): at most :data:`MAX_FILES`
    files, none declaring more than :data:`MAX_FILE_BYTES`, none over 16 MiB declaring
    more than :data:`MAX_RATIO` times its compressed size; for a folder (or its
    ``rdf.yaml``) the files' sizes. Then ``rdf.yaml`` itself (:func:`check_yaml`).
    A path that is neither is left to the loader's own error.
    """
    p = Path(path)
    if p.is_file() and p.suffix.lower() == ".zip" and not zipfile.is_zipfile(p):
        raise InputError(f"{p.name} is not a zip file (a BioImage Model Zoo package is a "
                         ".zip, or a folder with its rdf.yaml)")
    if p.is_file() and zipfile.is_zipfile(p):
        try:
            with zipfile.ZipFile(p) as z:
                infos = z.infolist()
                _check_entries(p, [(i.filename, i.file_size, i.compress_size) for i in infos])
                names = {i.filename: i for i in infos}
                rdf = next((n for n in ("rdf.yaml", "bioimageio.yaml") if n in names),
                           next((n for n in names if n.endswith(".bioimageio.yaml")
                                 and "/" not in n), None))
                if rdf is None:
                    return  # bioimageio says what is missing
                with z.open(names[rdf]) as f:
                    text = f.read(MAX_YAML_BYTES + 1)
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError,
                RuntimeError) as exc:  # RuntimeError: an encrypted member
            raise InputError(f"{p.name} is not a readable zip ({type(exc).__name__}: "
                             f"{exc})") from None
        check_yaml(p, text)
        return
    folder = p if p.is_dir() else p.parent
    rdf_file = p if p.is_file() else next(
        (folder / n for n in ("rdf.yaml", "bioimageio.yaml") if (folder / n).is_file()), None)
    if rdf_file is None:
        return
    files: list[tuple[str, int, int]] = []
    for root, _, found in os.walk(folder if p.is_dir() else rdf_file.parent, followlinks=False):
        for n in found:
            member = Path(root) / n
            size = member.stat().st_size if member.is_file() else 0
            files.append((str(member.relative_to(folder)), size, size))
            if len(files) > MAX_FILES:
                break
        if len(files) > MAX_FILES or not p.is_dir():
            break
    _check_entries(p, files)
    with rdf_file.open("rb") as f:
        check_yaml(p, f.read(MAX_YAML_BYTES + 1))


def _check_entries(p: Path, entries: list[tuple[str, int, int]]) -> None:
    if len(entries) > MAX_FILES:
        raise InputError(f"{p.name} holds more than {MAX_FILES} files; microdenoise reads "
                         "model packages of at most that many")
    for name, size, packed in entries:
        if size > MAX_FILE_BYTES:
            raise InputError(f"{p.name}: {name} declares {_size(size)}, more than the "
                             f"{_size(MAX_FILE_BYTES)} microdenoise reads from one file of a "
                             "model package")
        if size > 16 << 20 and size > MAX_RATIO * max(packed, 1):
            raise InputError(f"{p.name}: {name} declares {_size(size)} compressed into "
                             f"{packed} bytes, an implausible ratio (a zip bomb?); the "
                             "package is refused")


def check_yaml(path: str | Path, text: bytes) -> None:
    """Refuse an ``rdf.yaml`` over :data:`MAX_YAML_BYTES`, or whose nodes, with aliases
    expanded, exceed :data:`MAX_YAML_NODES` (or nest deeper than 64): counted on the
    parser's events, so nothing is built in memory."""
    name = Path(path).name
    if len(text) > MAX_YAML_BYTES:
        raise InputError(f"{name}: its rdf.yaml is over {_size(MAX_YAML_BYTES)}; a model "
                         "description is a few kilobytes")
    from ruyaml import YAML
    from ruyaml.error import YAMLError

    sizes: dict[str, int] = {}
    stack: list[list[Any]] = []  # [anchor, nodes so far] of each open collection
    total = 0

    def add(n: int) -> None:
        nonlocal total
        if stack:
            stack[-1][1] += n
        else:
            total += n
        if total > MAX_YAML_NODES or (stack and stack[-1][1] > MAX_YAML_NODES):
            raise InputError(f"{name}: its rdf.yaml expands to more than {MAX_YAML_NODES} "
                             "YAML nodes (aliases of aliases: a 'billion laughs' document?); "
                             "refused before parsing")

    try:
        for event in YAML(typ="safe").parse(text.decode("utf-8", errors="replace")):
            kind = type(event).__name__
            anchor = getattr(event, "anchor", None)
            if kind == "ScalarEvent":
                if anchor:
                    sizes[str(anchor)] = 1
                add(1)
            elif kind in ("SequenceStartEvent", "MappingStartEvent"):
                stack.append([anchor, 1])
                if len(stack) > MAX_YAML_DEPTH:
                    raise InputError(f"{name}: its rdf.yaml nests more than {MAX_YAML_DEPTH} "
                                     "levels deep; refused")
            elif kind in ("SequenceEndEvent", "MappingEndEvent"):
                done, n = stack.pop()
                if done:
                    sizes[str(done)] = n
                add(n)
            elif kind == "AliasEvent":
                add(sizes.get(str(anchor), 1))
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{name}: its rdf.yaml is not valid YAML ({first})") from None


def check_axis(name: str, axis: str, size: Any, halo: int) -> None:
    """Refuse declared input sizes (a minimum, a fixed size, a step) over
    :data:`MAX_SIDE` px, or a halo over :data:`MAX_HALO` px, before any allocation."""
    for what, value in (("minimum", getattr(size, "min", None)),
                        ("step", getattr(size, "step", None)),
                        ("size", size if isinstance(size, int) else None)):
        if value is not None and int(value) > MAX_SIDE:
            raise InputError(f"{name!r} declares a {what} input of {int(value)} px along "
                             f"{axis}; microdenoise runs models declaring at most {MAX_SIDE}")
    if halo > MAX_HALO:
        raise InputError(f"{name!r} declares a halo of {halo} px along {axis}; microdenoise "
                         f"runs models declaring at most {MAX_HALO}")


def own_package(ours: Any, weights: Any) -> str | None:
    """Why a package with ``config.microdenoise`` = ``ours`` and the state-dict entry
    ``weights`` is NOT ours (None when it is: its architecture is exactly one of
    :data:`OWN_ARCHITECTURES` with the keyword arguments our export writes for the
    stored method and config, or a source file with an own hash)."""
    if weights is None:
        return "it has no pytorch_state_dict weights microdenoise could rebuild"
    arch = getattr(weights, "architecture", None)
    callable_name = str(getattr(arch, "callable", ""))
    module = getattr(arch, "import_from", None)
    source = getattr(arch, "source", None)
    if module is not None:
        allowed = OWN_ARCHITECTURES.get((str(module), callable_name))
        where = f"{module}.{callable_name}"
    else:
        digest = _sha256(arch)
        allowed = (next(iter(OWN_ARCHITECTURES.values()))
                   if digest in OWN_SOURCE_SHA256.get(callable_name, frozenset()) else None)
        where = f"{callable_name} from {source}"
    if allowed is None:
        return f"its architecture {where} is not microdenoise's"
    if not isinstance(ours, dict):
        return (f"its architecture {where} is microdenoise's, but the package has no "
                "config.microdenoise to rebuild the model from")
    kwargs = dict(getattr(arch, "kwargs", {}) or {})
    if set(kwargs) != allowed:
        return (f"its architecture {where} is given the arguments {sorted(kwargs)}, not the "
                f"ones microdenoise writes ({sorted(allowed)})")
    if kwargs.get("method") != ours.get("key") or not isinstance(kwargs.get("params"), dict):
        return "its architecture's arguments do not match its microdenoise config"
    return None


def _sha256(arch: Any) -> str | None:
    """sha256 of an architecture file, read (its declared hash is not trusted)."""
    try:
        data = arch.get_reader().read(MAX_YAML_BYTES + 1)
    except Exception:  # noqa: BLE001  (an unreadable file is simply not ours)
        return None
    return hashlib.sha256(data).hexdigest()
