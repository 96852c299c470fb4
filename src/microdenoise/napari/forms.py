"""The widgets' shared controls: layer pickers, and parameter forms generated from a
method's ``Config`` dataclass, so that a newly registered method appears in the
widgets without GUI code.

Every field gets an editor by its type: a check box (``bool``), a drop-down
(``Literal``), or a text box that takes what ``--param k=v`` takes on the command
line (numbers, ``none``, comma-separated tuples). Values are checked exactly as
the CLI checks them: :func:`MethodPicker.create` calls
:func:`microdenoise.registry.create`, whose :class:`~microdenoise.InputError` text
the widgets show. Only fields the user changed are passed, so a preset's values
are not overridden by the defaults.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..registry import Denoiser, create, describe, method_class

__all__ = ["NO_LAYER", "LayerBox", "MethodPicker", "ParamForm", "format_value", "trainable_methods"]

NO_PRESET = "(none)"
NO_LAYER = "(none)"


def format_value(value: Any) -> str:
    """``value`` as the CLI's ``--param`` would spell it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(format_value(v) for v in value)
    return str(value)


def choices(hint: Any) -> list[str] | None:
    """The values a drop-down offers for ``hint`` (``Literal``, or a union of literals
    and ``bool``); ``None`` for a type edited as text or as a check box."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        return [format_value(a) for a in args]
    if origin in (typing.Union, types.UnionType):
        out: list[str] = []
        for arg in args:
            if arg is bool:
                out += ["true", "false"]
            elif typing.get_origin(arg) is typing.Literal:
                out += [format_value(a) for a in typing.get_args(arg)]
            else:
                return None
        return out
    return None


def trainable_methods() -> list[str]:
    """Methods ``microdenoise.train`` trains: self-supervised ones and those trained on
    pairs (the same rule as :func:`microdenoise.train`)."""
    from ..registry import list_methods

    return [m for m in list_methods()
            if method_class(m).family == "self-supervised" or method_class(m).needs == "pairs"]


def run_buttons(label: str, run: Callable[[], Any], cancel: Callable[[], Any], *,
                cancel_tip: str = "") -> tuple[QHBoxLayout, QPushButton, QPushButton]:
    """A row with the widget's action button (``label``) and a Cancel button, disabled
    until a run starts: (row, action button, cancel button)."""
    row = QHBoxLayout()
    action, stop = QPushButton(label), QPushButton("Cancel")
    action.clicked.connect(run)
    stop.clicked.connect(cancel)
    stop.setEnabled(False)
    if cancel_tip:
        stop.setToolTip(cancel_tip)
    row.addWidget(action)
    row.addWidget(stop)
    return row, action, stop


class LayerBox(QComboBox):
    """A drop-down of the viewer's image layers, kept up to date as layers come, go or
    are renamed; :meth:`layer` is the chosen one (``None`` when there is none)."""

    def __init__(self, viewer: Any, *, optional: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.optional = viewer, optional
        events = viewer.layers.events
        for event in (events.inserted, events.removed, events.moved, events.reordered):
            event.connect(self.refresh)
        self.refresh()
        if optional:  # an optional layer starts unchosen
            self.setCurrentText(NO_LAYER)

    def refresh(self, event: Any = None) -> None:
        """Re-list the image layers, keeping the choice where it still exists."""
        from napari.layers import Image

        current = self.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        for layer in self.viewer.layers:
            layer.events.name.connect(self.refresh)
        self.blockSignals(True)
        self.clear()
        self.addItems(([NO_LAYER] if self.optional else []) + names)
        self.blockSignals(False)
        if current in names or (self.optional and current == NO_LAYER):
            self.setCurrentText(current)  # a choice, "(none)" included, is kept
        elif names:  # the selected layer, else the top one
            active = self.viewer.layers.selection.active
            self.setCurrentText(active.name if getattr(active, "name", None) in names
                                else names[-1])
        if self.currentText() != current:
            self.currentTextChanged.emit(self.currentText())

    def layer(self) -> Any:
        """The chosen image layer, or ``None``."""
        name = self.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None


class ParamForm(QWidget):
    """One editor per field of a method's ``Config``, filled with the defaults updated
    by the chosen preset; :meth:`params` returns the fields the user changed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.form = QFormLayout(self)
        self.form.setContentsMargins(0, 0, 0, 0)
        self.editors: dict[str, QWidget] = {}
        self.shown: dict[str, str] = {}  # the text each editor was filled with

    def fill(self, method: str, preset: str | None) -> None:
        """Show ``method``'s fields with its defaults and ``preset``'s values."""
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors, self.shown = {}, {}
        cls = method_class(method)
        values = dict(describe(method)["params"])
        if preset:
            values.update(cls.PRESETS.get(preset, {}))
        hints = typing.get_type_hints(cls.Config)
        for f in dataclasses.fields(cls.Config):
            hint = hints[f.name]
            text = format_value(values[f.name])
            editor: QWidget
            options = choices(hint)
            if hint is bool:
                editor = QCheckBox()
                editor.setChecked(bool(values[f.name]))
            elif options is not None:
                editor = QComboBox()
                editor.addItems(options)
                editor.setCurrentText(text)
            else:
                editor = QLineEdit(text)
            editor.setObjectName(f"param_{f.name}")
            editor.setToolTip(f"{f.name}: {getattr(hint, '__name__', str(hint))}")
            self.editors[f.name] = editor
            self.shown[f.name] = text
            self.form.addRow(f.name, editor)

    def text(self, name: str) -> str:
        """What the editor of field ``name`` holds, spelled as for ``--param``."""
        editor = self.editors[name]
        if isinstance(editor, QCheckBox):
            return format_value(editor.isChecked())
        if isinstance(editor, QComboBox):
            return editor.currentText()
        return typing.cast(QLineEdit, editor).text().strip()

    def set_text(self, name: str, value: Any) -> None:
        """Set field ``name`` as a user would (``value`` spelled as for ``--param``)."""
        editor = self.editors[name]
        text = format_value(value)
        if isinstance(editor, QCheckBox):
            editor.setChecked(text.lower() in ("1", "true", "yes", "on"))
        elif isinstance(editor, QComboBox):
            editor.setCurrentText(text)
        elif isinstance(editor, QLineEdit):
            editor.setText(text)

    def params(self) -> dict[str, str]:
        """The fields changed from what was shown, as strings (the config coerces them)."""
        return {name: self.text(name) for name in self.editors
                if self.text(name) != self.shown[name]}


class MethodPicker(QWidget):
    """A method drop-down (from the registry), its presets, and its :class:`ParamForm`."""

    def __init__(self, methods: list[str], *, default: str = "fm2s",
                 on_change: Callable[[], None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QFormLayout()
        self.method_box = QComboBox()
        self.method_box.setObjectName("method")
        for name in methods:
            info = describe(name)
            self.method_box.addItem(name)
            self.method_box.setItemData(self.method_box.count() - 1,
                                        f"{info['family']}: {info['summary']}",
                                        Qt.ItemDataRole.ToolTipRole)
        self.preset_box = QComboBox()
        self.preset_box.setObjectName("preset")
        top.addRow("method", self.method_box)
        top.addRow("preset", self.preset_box)
        layout.addLayout(top)
        self.form = ParamForm()
        layout.addWidget(self.form)
        self.on_change: Callable[[], None] | None = None  # not while building
        self.method_box.currentTextChanged.connect(self.method_changed)
        self.preset_box.currentTextChanged.connect(self.preset_changed)
        if default in methods:
            self.method_box.setCurrentText(default)
        self.method_changed(self.method_box.currentText())
        self.on_change = on_change

    @property
    def method(self) -> str:
        """The chosen method's registry name."""
        return self.method_box.currentText()

    @property
    def preset(self) -> str | None:
        """The chosen preset, or ``None``."""
        text = self.preset_box.currentText()
        return None if text in ("", NO_PRESET) else text

    def set_method(self, name: str, preset: str | None = None) -> None:
        """Choose ``name`` (and ``preset``) as a user would."""
        self.method_box.setCurrentText(name)
        self.preset_box.setCurrentText(preset or NO_PRESET)

    def method_changed(self, name: str) -> None:
        if not name:
            return
        self.preset_box.blockSignals(True)
        self.preset_box.clear()
        self.preset_box.addItems([NO_PRESET, *method_class(name).PRESETS])
        self.preset_box.blockSignals(False)
        self.form.fill(name, None)
        if self.on_change is not None:
            self.on_change()

    def preset_changed(self, _text: str) -> None:
        if self.method:
            self.form.fill(self.method, self.preset)

    def params(self) -> dict[str, str]:
        """The parameters the user changed (strings, as ``--param`` gives them)."""
        return self.form.params()

    def build(self) -> Denoiser:
        """The configured method; an :class:`~microdenoise.InputError` (the CLI's message)
        for a bad value."""
        return create(self.method, preset=self.preset, **self.params())

    def label(self) -> str:
        """``method`` with its preset and changed parameters, for names and tables."""
        extra = ([f"preset={self.preset}"] if self.preset else []) + \
            [f"{k}={v}" for k, v in self.params().items()]
        return f"{self.method} ({', '.join(extra)})" if extra else self.method
