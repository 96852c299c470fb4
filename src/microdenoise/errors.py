"""The one error type users see.

Every problem with user input (a file, a parameter, an image) raises
:class:`InputError` with a message that says what is wrong and what to do.
The CLI prints that message on one line and exits non-zero; no traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message says what is wrong and what to do instead."""


class AxesWarning(UserWarning):
    """The axes given for a file differ from those its metadata record."""


class FormatWarning(UserWarning):
    """An output's format or metadata differ from what was asked or read (and why)."""


class NoticeWarning(UserWarning):
    """Something done that the user must know about: data passed through unchanged,
    pixels clipped, files skipped. The CLI prints each as one line on stderr."""
