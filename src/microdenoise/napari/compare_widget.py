"""The Compare widget: which of several methods to trust on a noisy layer.

- With a ground-truth layer: the PSNR and SSIM of each method (:mod:`microdenoise.metrics`,
  data range of the ground truth), with the noisy input as the baseline.
- Without one (the usual case): :func:`microdenoise.compare`'s estimate of each
  method's MSE against the unknown clean image, from a second capture of the scene
  when one is chosen (two-capture estimate) or from the noisy layer alone (SURE); the
  table is ranked when the comparison ends and the recommendation, or why there is
  none, is shown under it.

Each method's output on a 2D layer is added as a layer. Methods are added to the list
with the same method picker as the Denoise widget (a preset and parameters each); the
runs go one after another in a worker thread, and Cancel stops after the current one
(without a ground truth: after the current method on the current plane).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
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
from .layers import guess_axes, layer_data, layer_shape, result_data, result_kwargs
from .runner import Job, notify

__all__ = ["CompareWidget", "scores", "spec"]

GT_COLUMNS = ["method", "PSNR (dB)", "SSIM"]
EST_COLUMNS = ["method", "est. MSE", "SE", "estimator", "reliable", "note"]


def scores(image: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM of ``image`` against ``gt`` with the ground truth's data range
    (a stack: its planes' mean)."""
    rng = gt_range(gt)
    x, y = image.reshape(-1, *image.shape[-2:]), gt.reshape(-1, *gt.shape[-2:])
    p = [psnr(a, b, data_range=rng) for a, b in zip(x, y, strict=True)]
    s = [ssim(a, b, data_range=rng) for a, b in zip(x, y, strict=True)]
    return float(np.mean(p)), float(np.mean(s))


def spec(method: str, preset: str | None, params: dict[str, str]) -> str:
    """The ``name:preset=P:k=v`` string :func:`microdenoise.compare` takes."""
    items = ([f"preset={preset}"] if preset else []) + [f"{k}={v}" for k, v in params.items()]
    return ":".join([method, *items])


class CompareWidget(QWidget):
    """Score or rank several methods on a noisy layer (see the module docstring)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.entries: list[tuple[str, str, str | None, dict[str, str]]] = []
        self.rows: list[tuple[str, float, float]] = []
        self.result: Any = None  # the CompareResult of the last run without ground truth
        self.labels: dict[str, str] = {}  # compare's labels -> the list's, for the last run
        layout = QVBoxLayout(self)
        top = QFormLayout()
        self.noisy_box = LayerBox(napari_viewer)
        self.gt_box = LayerBox(napari_viewer, optional=True)
        self.gt_box.setToolTip("with a ground truth: PSNR and SSIM; without: estimated MSE")
        self.second_box = LayerBox(napari_viewer, optional=True)
        self.second_box.setToolTip("another capture of the same scene: the two-capture "
                                   "estimate (exact for any method); else SURE on one image")
        top.addRow("noisy", self.noisy_box)
        top.addRow("ground truth", self.gt_box)
        top.addRow("second capture", self.second_box)
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
        self.table = QTableWidget(0, len(GT_COLUMNS))
        self.table.setHorizontalHeaderLabels(GT_COLUMNS)
        layout.addWidget(self.table)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

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
        if any(e[0] == entry[0] for e in self.entries):
            notify(InputError(f"{entry[0]} is already in the list"))
            return
        self.entries.append(entry)
        self.list.addItem(entry[0])

    def remove(self) -> None:
        """Remove the selected method from the list."""
        row = self.list.currentRow()
        if 0 <= row < len(self.entries):
            self.entries.pop(row)
            self.list.takeItem(row)

    def run(self) -> None:
        """Score (ground truth) or rank (estimates) each listed method (Compare)."""
        if self.busy:
            show_error("a comparison is going on: wait for it or cancel it")
            return
        noisy, gt, second = self.noisy_box.layer(), self.gt_box.layer(), self.second_box.layer()
        try:
            if noisy is None:
                raise InputError("choose a noisy layer")
            for other, what in ((gt, "ground truth"), (second, "second capture")):
                if other is not None and layer_shape(noisy) != layer_shape(other):
                    raise InputError(f"the noisy layer is {layer_shape(noisy)} but the {what} "
                                     f"{layer_shape(other)}; they must have the same shape")
                if other is not None and other.name == noisy.name:
                    raise InputError(f"the {what} is the noisy layer itself: choose another "
                                     "layer or (none)")
            if not self.entries:
                raise InputError("no methods to compare: pick one and press Add method")
        except InputError as exc:
            notify(exc)
            return
        entries = list(self.entries)
        self.labels = self._compare_labels(entries)
        self.rows, self.result = [], None
        self.status.setText("")
        columns = GT_COLUMNS if gt is not None else EST_COLUMNS
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels(columns)
        self.progress.setMaximum(len(entries) + (1 if gt is not None else 0))
        self.progress.setValue(0)
        work = self._scores(noisy, gt, entries) if gt is not None else \
            self._estimates(noisy, second, entries)
        self.job = Job(work, on_done=self.done, on_progress=self.scored,
                       on_end=self.ended, label="comparison")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.job.start()

    @staticmethod
    def _scores(noisy: Any, gt: Any, entries: list[Any]) -> Any:
        def work(job: Job) -> None:
            x, y = layer_data(noisy), layer_data(gt).astype(np.float64)
            job.report(("row", "noisy input", None, *scores(x, y)))
            for label, method, preset, params in entries:
                out = denoise_array(x, method, preset=preset, params=params)
                job.report(("row", label, out, *scores(out, y)))

        return work

    @staticmethod
    def _estimates(noisy: Any, second: Any, entries: list[Any]) -> Any:
        from ..comparison import compare

        def work(job: Job) -> Any:
            x = layer_data(noisy)
            axes = guess_axes(len(layer_shape(noisy)), bool(getattr(noisy, "rgb", False)))
            return compare(x, methods=[spec(m, p, kv) for _, m, p, kv in entries],
                           second=None if second is None else layer_data(second),
                           axes=axes or None, grid=False,
                           progress=lambda row, out, done, total: job.report(
                               ("estimate", row, out, done, total)))

        return work

    def scored(self, payload: tuple[Any, ...]) -> None:
        """A method scored (ground truth) or estimated on one plane: its table row, the
        progress bar and, for a 2D layer, its output as a layer (GUI thread)."""
        if payload[0] == "row":
            _, label, out, p, s = payload
            self.rows.append((label, p, s))
            self._add_row([label, f"{p:.2f}", f"{s:.4f}"])
            self.progress.setValue(self.progress.value() + 1)
        else:
            _, row, out, done, total = payload
            label = self.labels.get(row.label, row.label)
            self._add_row([label, *self._cells(row)[1:]], replace=True)
            self.progress.setMaximum(total)
            self.progress.setValue(done)
        noisy = self.noisy_box.layer()
        if out is not None and noisy is not None and out.shape == layer_shape(noisy):
            self.viewer.add_image(result_data(noisy, out), **result_kwargs(noisy, label))

    def _compare_labels(self, entries: list[Any]) -> dict[str, str]:
        """compare's label of each listed method -> the list's label."""
        from ..comparison import candidates

        specs = [spec(m, p, kv) for _, m, p, kv in entries]
        try:
            return {c[0]: e[0] for c, e in zip(candidates(specs, grid=False), entries,
                                               strict=True)}
        except InputError:
            return {}

    @staticmethod
    def _cells(row: Any) -> list[str]:
        if row.error:
            return [row.label, "-", "-", row.estimator, "no", row.error]
        return [row.label, f"{row.estimate:.4g}", f"{row.se:.2g}", row.estimator,
                "yes" if row.reliable else "no", row.reason]

    def _add_row(self, cells: list[str], *, replace: bool = False) -> None:
        """Append a row, or with ``replace`` overwrite the row of the same method."""
        found = [i for i in range(self.table.rowCount())
                 if (item := self.table.item(i, 0)) is not None and item.text() == cells[0]]
        if replace and found:
            row = found[0]
        else:
            row = self.table.rowCount()
            self.table.insertRow(row)
        for col, text in enumerate(cells):
            self.table.setItem(row, col, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def done(self, result: Any) -> None:
        """Without ground truth: the table in ranked order and the recommendation."""
        if result is None:
            return
        self.result = result
        self.table.setRowCount(0)
        for row in result.rows:
            self._add_row([self.labels.get(row.label, row.label), *self._cells(row)[1:]])
        self.progress.setValue(self.progress.maximum())
        best = self.labels.get(result.recommended or "", result.recommended)
        self.status.setText(f"recommended: {best}: {result.reason}"
                            if result.recommended else result.reason)

    def cancel(self) -> None:
        """Stop after the current method (the Cancel button)."""
        if self.job is not None:
            self.job.cancel()

    def ended(self) -> None:
        """The run is over (done, failed or cancelled): the buttons back."""
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
