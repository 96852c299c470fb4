"""Hostile and unusual BioImage Model Zoo packages, built from real ones for the tests.

Each starts from a real package (one microdenoise exported, or a third party's built
as CAREamics lays them out) and changes what an attacker or a careless exporter
would: the architecture named in ``rdf.yaml``, the weights, the declared sizes, the
zip's directory. Every payload writes a *marker* file when its code runs, so a test
proves that nothing ran by that file's absence.
"""

from __future__ import annotations

import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn


def unpack(package: Path, folder: Path) -> Path:
    """The package's files in ``folder`` (created)."""
    folder.mkdir(parents=True)
    with zipfile.ZipFile(package) as z:
        z.extractall(folder)
    return folder


def repack(folder: Path, out: Path) -> Path:
    """``folder``'s files as the zip ``out``."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f.name)
    return out


def edited(package: Path, out: Path, edit: Callable[[dict[str, Any], Path], None]) -> Path:
    """A copy of ``package`` at ``out`` whose ``rdf.yaml`` ``edit(rdf, folder)`` changed
    (it may also add files to ``folder``)."""
    folder = unpack(package, out.with_suffix(".d"))
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    edit(rdf, folder)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
    repack(folder, out)
    shutil.rmtree(folder)
    return out


def shell_architecture(marker: Path) -> Callable[[dict[str, Any], Path], None]:
    """The state-dict architecture becomes ``os.system("touch MARKER")``."""

    def edit(rdf: dict[str, Any], folder: Path) -> None:
        rdf["weights"]["pytorch_state_dict"]["architecture"] = {
            "callable": "system", "import_from": "os", "kwargs": {"command": f"touch {marker}"}}
        rdf["weights"].pop("torchscript", None)

    return edit


def source_architecture(marker: Path) -> Callable[[dict[str, Any], Path], None]:
    """The architecture becomes a ``.py`` file in the package that writes ``marker``
    when it is imported."""

    def edit(rdf: dict[str, Any], folder: Path) -> None:
        (folder / "evil_net.py").write_text(
            f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
            "import torch\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n"
            "        return x\n")
        rdf["weights"]["pytorch_state_dict"]["architecture"] = {
            "callable": "Net", "source": "evil_net.py", "kwargs": {}}
        rdf["weights"].pop("torchscript", None)

    return edit


class FileWriter(nn.Module):
    """TorchScript that creates and writes a file of its choosing when it runs
    (``torch.from_file(..., shared=True)`` and ``copy_``)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.path, shared=True, size=4, dtype=torch.uint8)
        t.copy_(torch.full([4], 65, dtype=torch.uint8))
        return x


def torchscript_writer(marker: Path) -> Callable[[dict[str, Any], Path], None]:
    """TorchScript weights only, a :class:`FileWriter` of ``marker``."""

    def edit(rdf: dict[str, Any], folder: Path) -> None:
        torch.jit.script(FileWriter(str(marker))).save(str(folder / "evil_ts.pt"))
        rdf["weights"] = {"torchscript": {"source": "evil_ts.pt", "pytorch_version": "2.0"}}

    return edit


def lying_member(package: Path, out: Path, member: str, size: int) -> Path:
    """A copy of ``package`` whose zip directory declares ``member`` ``size`` bytes
    long (the bytes stay small: a file that lies about its size)."""
    data = bytearray(package.read_bytes())
    name = member.encode()
    for sig, field in ((b"PK\x01\x02", 24), (b"PK\x03\x04", 22)):
        header_name = 46 if sig == b"PK\x01\x02" else 30
        at = 0
        while (at := data.find(sig, at)) >= 0:
            n = struct.unpack_from("<H", data, at + (28 if sig == b"PK\x01\x02" else 26))[0]
            if bytes(data[at + header_name: at + header_name + n]) == name:
                struct.pack_into("<I", data, at + field, size)
            at += 4
    out.write_bytes(bytes(data))
    return out


def laughs_text(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, levels):
        refs = ",".join([f"*a{k - 1}"] * 10)
        lines.append(f"a{k}: &a{k} [{refs}]")
    return "\n".join(lines) + "\n"


def with_laughs(package: Path, out: Path, levels: int = 9) -> Path:
    """A copy of ``package`` whose ``rdf.yaml`` starts with a billion-laughs block."""
    folder = unpack(package, out.with_suffix(".d"))
    rdf = folder / "rdf.yaml"
    rdf.write_text(laughs_text(levels) + rdf.read_text())
    repack(folder, out)
    shutil.rmtree(folder)
    return out


def declared_input(minimum: int | None = None, halo: int | None = None
                   ) -> Callable[[dict[str, Any], Path], None]:
    """The input's Y/X minimum size and/or the output's halo become these."""

    def edit(rdf: dict[str, Any], folder: Path) -> None:
        for axis in rdf["inputs"][0]["axes"]:
            if minimum is not None and axis.get("id") in ("y", "x"):
                axis["size"]["min"] = minimum
        for axis in rdf["outputs"][0]["axes"]:
            if halo is not None and axis.get("id") in ("y", "x"):
                axis["halo"] = halo

    return edit
