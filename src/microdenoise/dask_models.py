"""How a model reaches Dask workers, and the few each worker process keeps ready.

A model travels as the least that rebuilds it (:func:`ship_model`, :func:`ship_to_files`):

- a model of a registered class: its config and learned state (:class:`Spec`, for the
  blocks of a Dask array), or a file saved once beside a batch's outputs
  (:class:`ModelFile`, for a file batch: a task then carries a path, not weights);
- a model loaded from a file of another format that records its ``source`` (a
  BioImage Model Zoo package, :class:`microdenoise.bmz_import.BMZModel`): that path and
  the trust the user gave it (:class:`Package`); each worker loads it with
  :func:`microdenoise.registry.load` and the same trust, so shipping never widens
  what may run. Workers need the path, as they need the inputs (a shared filesystem);
- any other object (an unregistered subclass): itself, pickled.

A worker process builds each model once and keeps it in :data:`MODELS`, a
least-recently-used cache of at most :data:`CACHE_SIZE` models keyed by what the
model computes (:func:`model_digest`: class, config, the bytes of its learned state;
or the package's path and trust) and the device it runs on, so repeated runs with one
model add one entry, and memory stays bounded however many models pass through.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .registry import Denoiser, list_methods, load, method_class, save

__all__ = ["CACHE_SIZE", "MODELS", "ModelCache", "ModelFile", "Package", "Shipped", "Spec",
           "model_digest", "ship_model", "ship_to_files", "worker_model"]

CACHE_SIZE = 4  # models a worker process keeps ready; the least recently used goes first


class ModelCache:
    """Models by key, at most ``size`` of them (the least recently used is dropped
    first); thread-safe. ``built`` counts the models built (tests, diagnostics)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.built = 0
        self._models: OrderedDict[str, Denoiser] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, build: Callable[[], Denoiser]) -> Denoiser:
        """The model cached under ``key``, or ``build()``'s, then cached."""
        with self._lock:
            den = self._models.get(key)
            if den is None:
                den = build()
                self.built += 1
                self._models[key] = den
                while len(self._models) > self.size:
                    self._models.popitem(last=False)
            self._models.move_to_end(key)
            return den

    def keys(self) -> list[str]:
        """The keys cached, least recently used first."""
        with self._lock:
            return list(self._models)

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        """Drop every cached model."""
        with self._lock:
            self._models.clear()


MODELS = ModelCache(CACHE_SIZE)  # this process's models


def model_digest(model: Denoiser) -> str:
    """A digest of what ``model`` computes: its class, config and learned state.

    The same for every copy of one model (unlike a pickle of its tensors, which differs
    from call to call), different when any weight, statistic or parameter differs.
    """
    h = hashlib.sha256()
    h.update(f"{type(model).__module__}.{type(model).__qualname__}:{model.config!r}".encode())
    _feed(h, model.state_dict())
    return h.hexdigest()


def _feed(h: Any, value: Any) -> None:
    """Add ``value`` (nested mappings and sequences, tensors, arrays, plain values)."""
    torch = sys.modules.get("torch")  # a tensor means torch is imported
    if isinstance(value, Mapping):
        h.update(b"{")
        for k in sorted(value, key=repr):
            _feed(h, k)
            _feed(h, value[k])
        h.update(b"}")
    elif isinstance(value, list | tuple):
        h.update(b"[")
        for v in value:
            _feed(h, v)
        h.update(b"]")
    elif torch is not None and isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        h.update(f"tensor {t.dtype} {tuple(t.shape)}:".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, np.ndarray):
        h.update(f"array {value.dtype} {value.shape}:".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    else:
        h.update(f"{type(value).__name__} {value!r};".encode())


@dataclass(frozen=True)
class Spec:
    """A model of a registered class: rebuilt from its config and state."""

    name: str
    config: Any
    state: dict[str, Any]
    digest: str


@dataclass(frozen=True)
class ModelFile:
    """A model saved by :func:`microdenoise.registry.save`: loaded from that file."""

    path: str


@dataclass(frozen=True)
class Package:
    """A model loaded from a file of another format: loaded again from it, with the
    trust the user gave it."""

    path: str
    trusted: bool


Shipped = Spec | ModelFile | Package | Denoiser


def registered(model: Denoiser) -> bool:
    """Whether ``model``'s class is the one registered under its key."""
    return model.key in list_methods() and type(model) is method_class(model.key)


def _package(model: Denoiser) -> Package | None:
    """A model of an unregistered class whose config names the file it came from."""
    source = getattr(model.config, "source", None)
    if registered(model) or not isinstance(source, str) or not Path(source).exists():
        return None
    return Package(str(Path(source).resolve()), bool(getattr(model, "trusted", False)))


def ship_model(model: Denoiser) -> Shipped:
    """``model`` for the blocks of a Dask array: a :class:`Spec`, a :class:`Package`,
    or the object itself."""
    if registered(model):
        return Spec(model.key, model.config, model.state_dict(), model_digest(model))
    return _package(model) or model


def ship_to_files(method: str | Denoiser, out_dir: Path
                  ) -> str | ModelFile | Package | Denoiser:
    """``method`` for the tasks of a file batch: a name as it is; a model of a registered
    class saved once in ``out_dir`` (a :class:`ModelFile`, removed by the caller); a
    :class:`Package`; or the object itself."""
    if isinstance(method, str):
        return method
    if not registered(method):
        return _package(method) or method
    path = Path(out_dir) / f".microdenoise-model-{model_digest(method)[:16]}.pt"
    save(method, path)
    return ModelFile(str(path))


def worker_model(shipped: Shipped, device: str | None) -> Denoiser:
    """The model ``shipped`` stands for, built once per process (:data:`MODELS`, keyed by
    its digest or path and ``device``), set to run on ``device`` (``None``: its own).

    An object shipped as itself is given as a shallow copy on ``device``, so the caller's
    own object (the same one under a local scheduler) keeps its device.
    """
    if isinstance(shipped, Denoiser):
        den = type(shipped).__new__(type(shipped))
        den.__dict__.update(vars(shipped))
        if device is not None:
            den.device = device
        return den

    def build() -> Denoiser:
        if isinstance(shipped, Spec):
            made = method_class(shipped.name)(shipped.config)
            if shipped.state:
                made.load_state_dict(shipped.state)
        elif isinstance(shipped, Package):
            made = load(shipped.path, trust=shipped.trusted)
        else:
            made = load(shipped.path)
        if device is not None:
            made.device = device
        return made

    what = (shipped.digest if isinstance(shipped, Spec)
            else f"{shipped.path} trusted={shipped.trusted}" if isinstance(shipped, Package)
            else shipped.path)
    return MODELS.get(f"{what} @{device}", build)
