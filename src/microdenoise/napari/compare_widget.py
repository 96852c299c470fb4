"""The Compare widget: with a ground-truth layer, the PSNR and SSIM of several methods
(:mod:`microdenoise.metrics`, data range of the ground truth) on a noisy layer, in a
table with the noisy input as the baseline; each method's output is added as a layer.

Methods are added to the list with the same method picker as the Denoise widget (a
preset and parameters each); the runs go one after another in a worker thread.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QListWidget,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..errors import InputError
from ..metrics import gt_range, psnr, ssim
from ..pipeline import denoise_array
from ..registry import list_methods
from .forms import LayerBox, MethodPicker, run_buttons
from .layers import layer_data, layer_shape, result_data, result_kwargs
from .runner import Job, notify

__all__ = ["CompareWidget", "scores"]


def scores(image: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of ``image`` against ``gt`` with the ground truth's data range
    (a stack: its planes' mean)."""
    rng = gt_range(gt)
    x, y = image.reshape(-1, *image.shape[-2:]), gt.reshape(-1, *gt.shape[-2:])
    p = [psnr(a, b, data_range=rng) for a, b in zip(x, y, strict=True)]
    s = [ssim(a, b, data_range=rng) for a, b in zip(x, y, strict=True)]
    return float(np.mean(p)), float(np.mean(s))


class CompareWidget(QWidget):
    """Score several methods against a ground truth (see the module docstring)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.entries: list[tuple[str, str, str | None, dict[str, str]]] = []
        self.rows: list[tuple[str, float, float]] = []
        layout = QVBoxLayout(self)
        top = QFormLayout()
        self.noisy_box = LayerBox(napari_viewer)
        self.gt_box = LayerBox(napari_viewer)
        top.addRow("noisy", self.noisy_box)
        top.addRow("ground truth", self.gt_box)
        layout.addLayout(top)
        self.picker = MethodPicker(list_methods(), default="fm2s")
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.picker)
        layout.addWidget(scroll)
        edit = QHBoxLayout()
        self.add_button = QPushButton("Add method")
        self.add_button.clicked.connect(self.add)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self.remove)
        edit.addWidget(self.add_button)
        edit.addWidget(self.remove_button)
        layout.addLayout(edit)
        self.list = QListWidget()
        self.list.setMaximumHeight(90)
        layout.addWidget(self.list)
        self.progress = QProgressBar()
        layout.addWidget(self.progress)
        run, self.run_button, self.cancel_button = run_buttons("Compare", self.run, self.cancel)
        layout.addLayout(run)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["method", "PSNR (dB)", "SSIM"])
        layout.addWidget(self.table)

    @property
    def busy(self) -> bool:
        """Whether a comparison is going on."""
        return self.job is not None and self.job.running

    def add(self) -> None:
        """Add the picked method, preset and parameters to the list (checked first)."""
        try:
            self.picker.build()
        except InputError as exc:
            notify(exc)
            return
        entry = (self.picker.label(), self.picker.method, self.picker.preset,
                 self.picker.params())
        self.entries.append(entry)
        self.list.addItem(entry[0])

    def remove(self) -> None:
        """Remove the selected method from the list."""
        row = self.list.currentRow()
        if 0 <= row < len(self.entries):
            self.entries.pop(row)
            self.list.takeItem(row)

    def run(self) -> None:
        """Denoise the noisy layer with each listed method and score it (Compare)."""
        if self.busy:
            show_error("a comparison is going on: wait for it or cancel it")
            return
        noisy, gt = self.noisy_box.layer(), self.gt_box.layer()
        try:
            if noisy is None or gt is None:
                raise InputError("choose a noisy layer and its ground-truth layer")
            if layer_shape(noisy) != layer_shape(gt):
                raise InputError(f"the noisy layer is {layer_shape(noisy)} but the ground "
                                 f"truth {layer_shape(gt)}; they must have the same shape")
            if not self.entries:
                raise InputError("no methods to compare: pick one and press Add method")
        except InputError as exc:
            notify(exc)
            return
        entries = list(self.entries)

        def work(job: Job) -> None:
            x, y = layer_data(noisy), layer_data(gt).astype(np.float64)
            job.report(("row", "noisy input", None, *scores(x, y)))
            for label, method, preset, params in entries:
                out = denoise_array(x, method, preset=preset, params=params)
                job.report(("row", label, out, *scores(out, y)))

        self.rows = []
        self.table.setRowCount(0)
        self.progress.setMaximum(len(entries) + 1)
        self.progress.setValue(0)
        self.job = Job(work, on_done=lambda _: None, on_progress=self.scored,
                       on_end=self.ended, label="comparison")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.job.start()

    def scored(self, payload: tuple[str, str, np.ndarray | None, float, float]) -> None:
        _, label, out, p, s = payload
        self.rows.append((label, p, s))
        row = self.table.rowCount()
        self.table.insertRow(row)
        for col, text in enumerate((label, f"{p:.2f}", f"{s:.4f}")):
            self.table.setItem(row, col, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.progress.setValue(self.progress.value() + 1)
        noisy = self.noisy_box.layer()
        if out is not None and noisy is not None:
            self.viewer.add_image(result_data(noisy, out), **result_kwargs(noisy, label))

    def cancel(self) -> None:
        """Stop after the current method (the Cancel button)."""
        if self.job is not None:
            self.job.cancel()

    def ended(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
