"""Built-in methods; importing this package registers them."""

from . import care, clidim, deconoising, fm2s, global_filters, local_filters, n2v  # noqa: F401
