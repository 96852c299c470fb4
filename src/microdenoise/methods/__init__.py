"""Built-in methods; importing this package registers them."""

from . import classical, fm2s  # noqa: F401
