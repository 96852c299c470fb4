"""The Denoise widget: an image layer, a method from the registry (default ``auto``: the
noise decides, and the widget says what it chose and why) or a
saved model, its preset and parameters; the result is a new layer ``<input> (<method>)``
with the input's scale, translate and metadata.

A model package from elsewhere is code (:mod:`microdenoise.bmz_safety`): it loads only
when "Trust the model's code" is ticked; the box is cleared whenever the model path
changes, so trust given to one file never carries over to another.

The run is :func:`microdenoise.denoise_array` in a worker thread (:class:`.runner.Job`),
with a progress bar advanced after each plane and a Cancel that stops between planes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from .. import core
from .. import feedback as fb
from ..axes import check_axes
from ..errors import InputError
from ..pipeline import default_axes, denoise_array
from ..registry import DEFAULT_METHOD, Denoiser, create, list_methods, load
from .forms import LayerBox, MethodPicker, run_buttons
from .layers import guess_axes, layer_data, layer_shape, result_data, result_kwargs
from .runner import Job, notify

__all__ = ["DenoiseWidget", "model_filter"]


def model_filter() -> str:
    """The file-dialog filter for models: ``.pt``, and BioImage Model Zoo ``.zip``."""
    return "microdenoise models (*.pt *.zip);;all files (*)"


class DenoiseWidget(QWidget):
    """Denoise an image layer with a method or a saved model (see the module docstring)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.job: Job | None = None
        self.result: Any = None  # the last result layer
        layout = QVBoxLayout(self)
        top = QFormLayout()
        self.layer_box = LayerBox(napari_viewer)
        self.layer_box.currentTextChanged.connect(self.layer_changed)
        top.addRow("image", self.layer_box)
        self.axes_edit = QLineEdit()
        self.axes_edit.setToolTip("axes of the layer, letters from STCZYX (as --axes): one "
                                  "per dimension; an RGB layer's colour is C")
        top.addRow("axes", self.axes_edit)
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("a saved model (.pt) instead of a method")
        self.model_edit.textChanged.connect(self.model_changed)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        row = QHBoxLayout()
        row.addWidget(self.model_edit)
        row.addWidget(browse)
        top.addRow("model", row)
        self.trust_box = QCheckBox("Trust the model's code")
        self.trust_box.setToolTip(
            "A model package from elsewhere is a program: its TorchScript weights or its "
            "own network code run with your permissions and could read, change or delete "
            "your files. Packages exported by microdenoise load without this. Tick it only "
            "for a package from a source you trust.")
        self.trust_box.setEnabled(False)
        top.addRow("", self.trust_box)
        layout.addLayout(top)
        self.picker = MethodPicker(list_methods(), default=DEFAULT_METHOD)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.picker)
        layout.addWidget(scroll)
        self.progress = QProgressBar()
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        buttons, self.run_button, self.cancel_button = run_buttons("Run", self.run, self.cancel)
        layout.addLayout(buttons)
        self.layer_changed(self.layer_box.currentText())

    @property
    def busy(self) -> bool:
        """Whether a run is going on."""
        return self.job is not None and self.job.running

    def layer_changed(self, _name: str) -> None:
        layer = self.layer_box.layer()
        if layer is not None:
            rgb = bool(getattr(layer, "rgb", False))
            self.axes_edit.setText(guess_axes(len(layer_shape(layer)), rgb))

    def model_changed(self, text: str) -> None:
        self.picker.setEnabled(not text.strip())
        self.trust_box.setChecked(False)  # trust is given to one file, not to the box
        self.trust_box.setEnabled(bool(text.strip()))

    def browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a model", "", model_filter())
        if path:
            self.model_edit.setText(path)

    def settings(self) -> tuple[Any, str, str | None, dict[str, Any]]:
        """Check the choices in the GUI thread: (layer, axes, model path or ``None``,
        method options); an :class:`InputError` (the CLI's message) says what to change."""
        layer = self.layer_box.layer()
        if layer is None:
            raise InputError("no image layer: open an image (or File > Open Sample > "
                             "microdenoise) and choose it")
        shape = layer_shape(layer)
        text = self.axes_edit.text().strip()
        axes = check_axes(text or default_axes(len(shape)), ndim=len(shape), shape=shape,
                          source=f"layer {layer.name!r}")
        path = self.model_edit.text().strip()
        if path:
            return layer, axes, path, {"trust": self.trust_box.isChecked()}
        self.picker.build()  # the CLI's checks and messages, before any thread starts
        return layer, axes, None, {"method": self.picker.method, "preset": self.picker.preset,
                                   "params": self.picker.params()}

    def run(self) -> None:
        """Start denoising the chosen layer (the Run button)."""
        if self.busy:
            show_error("a run is going on: wait for it or cancel it")
            return
        try:
            layer, axes, path, options = self.settings()
        except InputError as exc:
            notify(exc)
            return

        def work(job: Job) -> tuple[np.ndarray, str, dict[int, str]]:
            method: str | Denoiser
            if path is not None:
                den = method = load(path, trust=bool(options.get("trust")))
            else:
                den = create(options["method"], preset=options["preset"], **options["params"])
                method = options["method"]  # by name: fitted per image as the CLI does
            data = layer_data(layer)
            job.report(("total", len(core.layout(data.shape, axes, den).units())))
            # One run, one Feedback: a notice (the BM3D licence) once per run, and what
            # the default chose, per channel, shown and kept with the result.
            feedback = fb.Feedback(info=lambda line: job.send(("info", line)))
            with fb.reporting(feedback):
                out = denoise_array(data, method, axes=axes, preset=options.get("preset"),
                                    params=options.get("params"),
                                    progress=lambda n: job.report(("step", n)))
            return out, den.key, dict(feedback.choices)

        def done(result: tuple[np.ndarray, str, dict[int, str]]) -> None:
            out, label, choices = result
            up = max(1, out.shape[-1] // layer_shape(layer)[-1])
            kwargs = result_kwargs(layer, label, upscale=up)
            if choices:
                kwargs["metadata"]["microdenoise_choice"] = "; ".join(choices.values())
            self.result = self.viewer.add_image(result_data(layer, out), **kwargs)

        self.progress.setValue(0)
        self.job = Job(work, on_done=done, on_progress=self.advance, on_end=self.ended,
                       label="denoising")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.job.start()

    def advance(self, payload: tuple[str, Any]) -> None:
        kind, n = payload
        if kind == "info":
            if str(n).startswith("auto:"):  # what the default chose and why
                show_info(str(n))
            return
        if kind == "total":
            self.progress.setMaximum(max(1, n))
            self.progress.setValue(0)
        else:
            self.progress.setValue(self.progress.value() + n)

    def cancel(self) -> None:
        """Stop the run after the current plane (the Cancel button)."""
        if self.job is not None:
            self.job.cancel()

    def ended(self) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
