"""Built-in methods; importing this package registers them."""

from . import (  # noqa: F401
    auto,
    care,
    clidim,
    deconoising,
    fm2s,
    global_filters,
    local_filters,
    n2v,
)
