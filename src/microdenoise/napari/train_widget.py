"""The Train widget: N2V and DecoNoising on a noisy layer, CARE and CLIDiM on a noisy
and a clean layer (the trainable methods, from the registry), with the epoch, loss and
time left, a live loss plot, a Cancel that keeps the best model so far, and Save model /
Export to BMZ.

Training is :func:`microdenoise.train` in a worker thread; its ``on_epoch`` hook reports
each epoch and stops the run after the current epoch once Cancel is pressed (keep-best
still applies, so a cancelled run leaves a usable model).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

import microdenoise

from ..errors import InputError
from ..registry import Denoiser, method_class, save
from ..training_io import train
from .forms import LayerBox, MethodPicker, run_buttons, trainable_methods
from .layers import layer_data
from .runner import Job, notify

__all__ = ["TrainWidget", "eta", "status_line"]


def eta(seconds: float) -> str:
    """``seconds`` as ``h:mm:ss`` or ``m:ss``."""
    s = max(0, round(seconds))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def status_line(epoch: int, stop: int, row: dict[str, float], left: float | None) -> str:
    """``epoch E/STOP, loss ..., val ..., ETA m:ss`` for one finished epoch."""
    parts = [f"epoch {epoch}/{stop}"]
    for key in ("loss", "val_loss", "loss_g", "loss_d", "val_psnr"):
        if key in row:
            parts.append(f"{key.replace('_loss', '')} {row[key]:.4g}")
    if left is not None:
        parts.append(f"ETA {eta(left)}")
    return ", ".join(parts)


class LossPlot(FigureCanvasQTAgg):
    """The training (and validation) loss by epoch, redrawn after each epoch."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(3.2, 2.0), dpi=80, tight_layout=True)
        super().__init__(self.figure)
        self.axes = self.figure.add_subplot()
        self.setMinimumHeight(140)
        self.clear()

    def clear(self) -> None:
        self.axes.clear()
        self.axes.set_xlabel("epoch")
        self.axes.set_ylabel("loss")
        self.draw_idle()

    def show_history(self, history: list[dict[str, float]]) -> None:
        self.axes.clear()
        epochs = [row["epoch"] for row in history]
        for key, label in (("loss", "train"), ("loss_g", "generator"),
                           ("val_loss", "validation")):
            values = [row.get(key, np.nan) for row in history]
            if not all(np.isnan(values)):
                self.axes.plot(epochs, values, marker=".", label=label)
        self.axes.set_xlabel("epoch")
        self.axes.set_ylabel("loss")
        self.axes.legend(fontsize=8)
        self.draw_idle()


class TrainWidget(QWidget):
    """Train a denoising model on image layers (see the module docstring)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.model: Denoiser | None = None
        self.history: list[dict[str, float]] = []
        self.started = 0.0
        layout = QVBoxLayout(self)
        top = QFormLayout()
        self.noisy_box = LayerBox(napari_viewer)
        self.clean_box = LayerBox(napari_viewer, optional=True)
        self.clean_box.setToolTip("the clean (ground-truth) layer, for methods trained on "
                                  "pairs (care, clidim)")
        top.addRow("noisy", self.noisy_box)
        top.addRow("clean", self.clean_box)
        layout.addLayout(top)
        self.picker = MethodPicker(trainable_methods(), default="n2v",
                                   on_change=self.method_changed)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.picker)
        layout.addWidget(scroll)
        self.progress = QProgressBar()
        self.status = QLabel("not trained")
        self.status.setWordWrap(True)
        self.plot = LossPlot()
        for widget in (self.progress, self.status, self.plot):
            layout.addWidget(widget)
        run, self.train_button, self.cancel_button = run_buttons(
            "Train", self.run, self.cancel,
            cancel_tip="stop after the current epoch, keeping the best model")
        layout.addLayout(run)
        out = QHBoxLayout()
        self.save_button = QPushButton("Save model…")
        self.save_button.clicked.connect(self.ask_save)
        self.export_button = QPushButton("Export to BMZ…")
        self.export_button.clicked.connect(self.ask_export)
        out.addWidget(self.save_button)
        out.addWidget(self.export_button)
        layout.addLayout(out)
        self.method_changed()
        self.update_buttons()

    @property
    def busy(self) -> bool:
        """Whether a training is going on."""
        return self.job is not None and self.job.running

    def method_changed(self) -> None:
        pairs = method_class(self.picker.method).needs == "pairs"
        self.clean_box.setEnabled(pairs)

    def update_buttons(self) -> None:
        busy = self.busy
        self.train_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.save_button.setEnabled(self.model is not None and not busy)
        self.export_button.setEnabled(self.model is not None and not busy)
        self.export_button.setToolTip("export as a BioImage Model Zoo package (.zip), which "
                                      "deepImageJ, ilastik and QuPath run")

    def run(self) -> None:
        """Start training (the Train button)."""
        if self.busy:
            show_error("a training is going on: wait for it or cancel it")
            return
        try:
            noisy, clean = self.noisy_box.layer(), self.clean_box.layer()
            if noisy is None:
                raise InputError("no noisy image layer: open the images to train on and "
                                 "choose them")
            pairs = method_class(self.picker.method).needs == "pairs"
            if pairs and clean is None:
                raise InputError(f"{self.picker.method!r} is trained on noisy/clean pairs: "
                                 "choose the clean layer")
            self.picker.build()  # the CLI's checks and messages, before any thread starts
        except InputError as exc:
            notify(exc)
            return
        method, preset, params = self.picker.method, self.picker.preset, self.picker.params()

        def work(job: Job) -> Denoiser:
            def on_epoch(epoch: int, stop: int, row: dict[str, float]) -> bool:
                job.send((epoch, stop, row))
                return job.cancelled

            target = layer_data(clean) if pairs else None
            return train(layer_data(noisy), method=method, target=target, preset=preset,
                         params=params, on_epoch=on_epoch)

        self.history = []
        self.plot.clear()
        self.progress.setValue(0)
        self.status.setText(f"training {method}…")
        self.started = time.monotonic()
        self.job = Job(work, on_done=self.trained, on_progress=self.epoch_done,
                       on_end=self.ended, label="training")
        self.job.start()
        self.update_buttons()

    def epoch_done(self, payload: tuple[int, int, dict[str, float]]) -> None:
        epoch, stop, row = payload
        self.history.append(row)
        spent = time.monotonic() - self.started
        left = spent / len(self.history) * (stop - epoch)
        self.progress.setMaximum(stop)
        self.progress.setValue(epoch)
        self.status.setText(status_line(epoch, stop, row, left))
        self.plot.show_history(self.history)

    def cancel(self) -> None:
        """Stop after the current epoch, keeping the best model (the Cancel button)."""
        if self.job is not None:
            self.job.cancel()
            self.status.setText("stopping after this epoch…")

    def trained(self, model: Denoiser) -> None:
        self.model = model
        done = "stopped" if self.job is not None and self.job.cancelled else "trained"
        epochs = getattr(model, "epoch", len(self.history))
        self.status.setText(f"{model.key} {done} after {epochs} epoch(s): save it, or "
                            "export it")
        show_info(f"{model.key} {done} after {epochs} epoch(s)")

    def ended(self) -> None:
        self.update_buttons()

    def ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the model", "model.pt",
                                              "microdenoise models (*.pt)")
        if path:
            self.save_model(path)

    def save_model(self, path: str) -> None:
        """Save the trained model to ``path`` (:func:`microdenoise.save`)."""
        if self.model is None:
            show_error("nothing to save: train a model first")
            return
        try:
            written = save(self.model, path)
        except (InputError, OSError) as exc:
            notify(exc if isinstance(exc, InputError) else
                   InputError(f"cannot write {path!r} ({exc.strerror or exc})"))
            return
        show_info(f"saved {written}")

    def ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export to the BioImage Model Zoo",
                                              "model.zip", "BMZ packages (*.zip)")
        if path:
            self.export(path)

    def export(self, path: str) -> None:
        """Export the trained model as a BioImage Model Zoo package (``export_bmz``)."""
        if self.model is None:
            show_error("nothing to export: train a model first")
            return
        try:
            written = microdenoise.export_bmz(self.model, path)
        except InputError as exc:
            notify(exc)
            return
        show_info(f"exported {written or path}")
