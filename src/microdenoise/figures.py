"""Figures: side-by-side comparisons with one shared contrast.

Every panel of a figure is displayed with the same intensity window (1st to 99.8th
percentile of the reference panel), so that brightness differences are real.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _window(reference: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(reference, (1.0, 99.8))
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def side_by_side(
    panels: Sequence[np.ndarray],
    titles: Sequence[str],
    path: str | Path,
    *,
    reference: int = -1,
    dpi: int = 100,
) -> Path:
    """Save 2D ``panels`` next to each other as a PNG with ``titles`` and one contrast.

    The intensity window comes from ``panels[reference]`` (the ground truth when given).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = _window(np.asarray(panels[reference], dtype=np.float64))
    h, w = np.asarray(panels[0]).shape[-2:]
    scale = 3.2 / max(h, w)
    fig, axes = plt.subplots(1, len(panels), figsize=(len(panels) * w * scale, h * scale + 0.4))
    for ax, panel, title in zip(np.atleast_1d(axes), panels, titles, strict=True):
        ax.imshow(np.asarray(panel, dtype=np.float64), cmap="gray", vmin=lo, vmax=hi,
                  interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def crop_grid(
    rows: Sequence[Sequence[np.ndarray]],
    row_titles: Sequence[str],
    col_titles: Sequence[str],
    path: str | Path,
    *,
    crop: int = 128,
    dpi: int = 100,
) -> Path:
    """A grid of centre crops: one row per image, one column per method (last = ground truth)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), len(col_titles)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.7 * n_rows + 0.3),
                             squeeze=False)
    for r, panels in enumerate(rows):
        lo, hi = _window(np.asarray(panels[-1], dtype=np.float64))
        for c, panel in enumerate(panels):
            arr = np.asarray(panel, dtype=np.float64)
            y0 = max(0, (arr.shape[0] - crop) // 2)
            x0 = max(0, (arr.shape[1] - crop) // 2)
            ax = axes[r][c]
            ax.imshow(arr[y0:y0 + crop, x0:x0 + crop], cmap="gray", vmin=lo, vmax=hi,
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(col_titles[c], fontsize=7)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=6)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def output_residual_grid(
    image: np.ndarray,
    panels: Sequence[tuple[str, np.ndarray]],
    path: str | Path,
    *,
    maps: Sequence[np.ndarray] | None = None,
    crop: int = 128,
    dpi: int = 100,
) -> Path:
    """Centre crops of ``image`` and of each output (top row, one contrast) above each
    residual ``image - output`` (middle row, one symmetric contrast) and, when given,
    each structure map (bottom row, -1..1: where the residual follows the image);
    written as PNG to ``path`` whatever its extension (so a temporary name works)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref = np.asarray(image, dtype=np.float64)
    y0, x0 = (max(0, (n - crop) // 2) for n in ref.shape[-2:])
    cut = (slice(y0, y0 + crop), slice(x0, x0 + crop))
    lo, hi = _window(ref[cut])
    residuals = [ref - np.asarray(out, dtype=np.float64) for _, out in panels]
    spread = max([float(np.percentile(np.abs(r[cut]), 99)) for r in residuals] + [1e-12])
    n = len(panels) + 1
    n_rows = 2 if maps is None else 3
    fig, axes = plt.subplots(n_rows, n, figsize=(1.9 * n, 2.1 * n_rows), squeeze=False)
    cols = [("input", ref, None), *((t, np.asarray(o, dtype=np.float64), r)
                                    for (t, o), r in zip(panels, residuals, strict=True))]
    for c, (title, out, res) in enumerate(cols):
        axes[0][c].imshow(out[cut], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        axes[0][c].set_title(title, fontsize=6)
        if res is not None:
            axes[1][c].imshow(res[cut], cmap="RdBu_r", vmin=-spread, vmax=spread,
                              interpolation="nearest")
            axes[1][c].set_title("residual", fontsize=6)
            if maps is not None:
                axes[2][c].imshow(np.asarray(maps[c - 1])[cut], cmap="PuOr_r", vmin=-1.0,
                                  vmax=1.0, interpolation="nearest")
                axes[2][c].set_title("structure in residual", fontsize=6)
        for ax in axes[:, c]:
            ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi, format="png")
    plt.close(fig)
    return path
