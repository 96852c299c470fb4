"""Built-in methods; importing this package registers them."""

from . import care, classical, clidim, deconoising, fm2s, n2v, restoration  # noqa: F401
