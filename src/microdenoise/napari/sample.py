"""napari sample data: the bundled FMD crop (a noisy confocal frame and its 50-frame
average), as File > Open Sample > microdenoise shows it."""

from __future__ import annotations

from importlib import resources
from typing import Any

from ..io import read_image

__all__ = ["fmd_confocal_fish"]


def fmd_confocal_fish() -> list[tuple[Any, dict[str, Any], str]]:
    """The noisy frame and its ground truth (256x256 uint8, ``data/README.md``), as two
    image layers."""
    folder = resources.files("microdenoise") / "data"
    layers = []
    for stem, name in (("confocal_fish_gt", "FMD ground truth"),
                       ("confocal_fish_raw", "FMD noisy")):
        with resources.as_file(folder / f"{stem}.png") as path:
            data = read_image(path).data
        layers.append((data, {"name": name, "colormap": "gray",
                              "contrast_limits": [0, 255],
                              "metadata": {"source": "FMD Confocal_FISH_1, 256x256 crop"}},
                       "image"))
    return layers
