"""Work off the GUI thread: one :class:`Job` per run, with progress, Cancel, and errors
shown as napari notifications with the CLI's one-line messages (never a traceback).

A job's function runs in a worker thread (superqt's ``create_worker``, which napari's
``thread_worker`` wraps) and reports through :meth:`Job.report`, which is safe to
call from that thread: its payload reaches the GUI thread through a queued Qt signal.
Cancel sets a flag; :meth:`Job.report` then stops a denoising between planes, and a
training reads :attr:`Job.cancelled` after each epoch and stops with its best model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Signal
from superqt.utils import create_worker

from ..errors import InputError

__all__ = ["Job", "message", "notify"]


class _Cancelled(Exception):
    """Raised in the worker by :meth:`Job.report` after Cancel (never leaves this module)."""


def message(exc: BaseException) -> str:
    """The one line the CLI prints for ``exc``: an :class:`InputError`'s text as it is;
    anything else is an internal error (a bug)."""
    if isinstance(exc, InputError):
        return str(exc)
    return (f"internal error: {type(exc).__name__}: {exc} (this is a bug; please report "
            "it with the steps that led to it)")


def notify(exc: BaseException) -> None:
    """Show ``exc`` as a napari error notification: one line, no traceback."""
    show_error(message(exc))


class Job(QObject):
    """``fn(job)`` in a worker thread; ``on_progress(payload)`` for each :meth:`report`,
    ``on_done(result)`` with its return value, ``on_end()`` in every case (all three in
    the GUI thread). Errors and warnings become notifications; a cancelled run says so."""

    progressed = Signal(object)

    def __init__(self, fn: Callable[[Job], Any], *, on_done: Callable[[Any], None],
                 on_progress: Callable[[Any], None] | None = None,
                 on_end: Callable[[], None] | None = None, label: str = "run") -> None:
        super().__init__()
        self.label = label
        self.stop = threading.Event()
        self.running = False
        self.on_done, self.on_end = on_done, on_end
        if on_progress is not None:
            self.progressed.connect(on_progress)
        self.worker = create_worker(fn, self, _ignore_errors=True)
        self.worker.returned.connect(self.returned)
        self.worker.errored.connect(self.errored)
        self.worker.warned.connect(self.warned)
        self.worker.finished.connect(self.finished)

    def start(self) -> None:
        """Start the worker thread."""
        self.running = True
        self.worker.start()

    def cancel(self) -> None:
        """Ask the run to stop (between planes, or after the current epoch)."""
        self.stop.set()

    @property
    def cancelled(self) -> bool:
        """Whether Cancel was pressed (read by trainings after each epoch)."""
        return self.stop.is_set()

    def report(self, payload: Any) -> None:
        """Send ``payload`` to ``on_progress`` (from the worker thread); after Cancel,
        stop the run here instead."""
        if self.stop.is_set():
            raise _Cancelled
        self.send(payload)

    def send(self, payload: Any) -> None:
        """Send ``payload`` to ``on_progress`` (from the worker thread), cancelled or not."""
        self.progressed.emit(payload)

    def returned(self, result: Any) -> None:
        self.on_done(result)

    def errored(self, exc: BaseException) -> None:
        if isinstance(exc, _Cancelled):
            show_info(f"{self.label} cancelled")
        else:
            notify(exc)

    def warned(self, args: tuple[Any, ...]) -> None:
        """Our warnings (``warnings.showwarning``'s arguments) as napari warnings, as the
        CLI prints them; other libraries' warnings are left to the console."""
        text, category, filename = args[0], args[1], str(args[2])
        if "microdenoise" in filename and issubclass(category, UserWarning):
            show_warning(str(text))

    def finished(self) -> None:
        self.running = False
        if self.on_end is not None:
            self.on_end()
