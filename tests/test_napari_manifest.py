"""The napari plugin's packaging, without a display: ``import microdenoise`` imports no
Qt, the npe2 manifest validates (and its commands import), and pyproject declares the
entry point and ships the manifest. The widgets themselves: tests/test_napari.py."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import microdenoise

MANIFEST = Path(microdenoise.__file__).parent / "napari" / "napari.yaml"
ROOT = Path(__file__).resolve().parents[1]


def test_import_microdenoise_imports_neither_qt_nor_napari() -> None:
    code = ("import sys, microdenoise, microdenoise.napari; "
            "bad = [m for m in ('qtpy', 'PyQt5', 'napari', 'superqt') if m in sys.modules]; "
            "print(bad); sys.exit(bool(bad))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_manifest_validates_and_its_commands_import() -> None:
    npe2 = pytest.importorskip("npe2", reason="npe2 comes with microdenoise[napari]")
    pytest.importorskip("napari", reason="napari is not installed: "
                        "pip install microdenoise[napari]")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "microdenoise"
    manifest.validate_imports()  # every python_name resolves (npe2 validate --imports)
    contrib = manifest.contributions
    assert [w.display_name for w in contrib.widgets or []] == ["Denoise", "Train", "Compare"]
    assert [s.key for s in contrib.sample_data or []] == ["fmd_confocal_fish"]


def test_pyproject_declares_the_entry_point_extra_and_package_data() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    entry = project["project"]["entry-points"]["napari.manifest"]["microdenoise"]
    assert entry == "microdenoise.napari:napari.yaml"
    assert any(d.startswith("napari") for d in project["project"]["optional-dependencies"]
               ["napari"])
    data = project["tool"]["setuptools"]["package-data"]["microdenoise"]
    assert "napari/napari.yaml" in data


def test_the_sample_is_the_bundled_fmd_crop() -> None:
    from microdenoise.napari.sample import fmd_confocal_fish

    (gt, gt_meta, kind), (noisy, noisy_meta, _) = fmd_confocal_fish()
    assert kind == "image" and gt.shape == noisy.shape == (256, 256)
    assert gt_meta["name"] == "FMD ground truth" and noisy_meta["name"] == "FMD noisy"
    assert gt.std() < noisy.std()
