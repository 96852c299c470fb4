"""OpenMP's wait policy for the processes microdenoise runs in (issue 18).

torch's CPU kernels run on OpenMP threads that, by default, spin at every barrier
waiting for work. FM2S trains with thousands of small steps, each a few
milliseconds of convolutions; when another CPU-heavy process shares the cores (a
second training, napari, a Dask worker), the spinning threads fight it and a fit
that takes ~30 s alone took 539 s. With ``OMP_WAIT_POLICY=PASSIVE`` waiting threads
sleep instead (``benchmarks/results/speed_load/table.md``).

The policy is read once, when torch loads its OpenMP runtime, so it must be in the
environment before ``import torch``: importing :mod:`microdenoise` sets it first
(``microdenoise/__init__.py`` imports this module before anything that imports
torch). A value already in the environment is kept, and a program that imported
torch before microdenoise keeps torch's default.
"""

from __future__ import annotations

import os

__all__ = ["WAIT_POLICY"]

#: The ``OMP_WAIT_POLICY`` of this process: the user's, or ``PASSIVE``.
WAIT_POLICY = os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
