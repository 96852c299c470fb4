"""Method registry, the :class:`Denoiser` base class, and model save/load.

A method is a class decorated with :func:`register`. It holds its parameters
in a frozen dataclass (``Config``), learns in :meth:`Denoiser.fit` and applies
itself in :meth:`Denoiser.denoise` to a *normalized* float32 image. The
prediction core (:mod:`microdenoise.core`), not the method, reads, normalizes,
fits as the method's :attr:`Denoiser.fit_policy` says, and tiles.

Models are saved as ``{"key", "config", "state"}`` with :func:`torch.save`
and loaded with ``torch.load(..., weights_only=True)``, so loading a model
file never executes code from it.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch

from .config import field_types, make_config
from .errors import InputError

#: The method every driver runs when none is named: the noise-aware router
#: (:mod:`microdenoise.methods.auto`; issue 28, ``benchmarks/results/default/``).
DEFAULT_METHOD = "auto"
FORMAT = "microdenoise-model"
FORMAT_VERSION = 2  # 2: trained methods store (norm_in, norm_out) normalizers

_REGISTRY: dict[str, type[Denoiser]] = {}
# Other model formats load() reads: (accepts(path), loader(path)), see register_loader.
# ``loader(path, trust=...)``: ``trust`` is the user's word that code in the file may run.
_LOADERS: list[tuple[typing.Callable[[Path], bool], typing.Callable[..., Denoiser]]] = []


class Denoiser(ABC):
    """Base class of every method.

    Class attributes declare what the pipeline needs to know:

    ``key``            registry name (``create(key)``)
    ``family``         classical, zero-shot, self-supervised, supervised, few-shot
    ``needs``          what training needs: nothing, the image, noisy images, pairs
    ``fit_policy``     (property) ``"none"``: applied as it is (plain filters);
                       ``"per_image"``: the core fits a fresh copy on each image (or once
                       with ``fit_on``) before denoising it (FM2S, filters that estimate
                       their noise level or calibrate, ``fit_per_image`` networks);
                       ``"trained"``: fitted once on training data, then applied
    ``normalization``  ``"unit"``: [0, 1] by the 8-bit range for uint8 data and by the
                       image's own min/max otherwise; ``"percentile"``: 1/99.8 percentiles;
                       ``"model"``: the model's stored :attr:`normalizers` (trained methods)
    ``supports_3d``    (property) ``denoise`` accepts a ZYX volume
    ``bytes_per_pixel`` peak working memory of ``denoise`` per pixel of a float32 tile
                       (measured, see ``benchmarks/bytes_per_pixel.py``); ``--max-memory``
                       picks the tile size from it
    ``Config``         frozen dataclass of parameters; ``PRESETS`` named parameter sets
    ``routes``         the method chooses another per channel (:meth:`route`: ``auto``);
                       the core routes each channel once, then fits the choice per unit
    """

    key: ClassVar[str] = ""
    family: ClassVar[str] = ""
    needs: ClassVar[str] = "nothing"
    normalization: ClassVar[str] = "unit"
    bytes_per_pixel: ClassVar[int] = 2048  # conservative, for unmeasured methods (n2v: 1120)
    Config: ClassVar[type[Any]]
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    routes: ClassVar[bool] = False

    def __init__(self, config: Any = None, /, **params: Any) -> None:
        if config is None:
            config = make_config(self.Config, params, method=self.key)
        elif params:
            config = dataclasses.replace(config, **params)
        self.config = config
        #: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda`` or ``mps``.
        self.device = "auto"

    @property
    def fit_policy(self) -> str:
        """``"none"``, ``"per_image"`` or ``"trained"`` (see the class docstring)."""
        return "none"

    @property
    def fitted(self) -> bool:
        """Whether the model holds what :meth:`fit` learns, so that it can be applied as it
        is. The core fits a :meth:`fresh` copy on each image for an unfitted ``per_image``
        model and never refits a fitted one. By default: a method with nothing to fit
        (``fit_policy == "none"``) is fitted; others once they hold learned state
        (:meth:`state_dict` not empty: FM2S's network). Filters and trained methods say
        it more cheaply."""
        return self.fit_policy == "none" or bool(self.state_dict())

    @property
    def per_unit_statistics(self) -> bool:
        """Whether each unit (plane or volume) is scaled by its own statistics rather than
        the image's per channel: a model trained on pairs scaled one by one (CARE's
        ``per_image``, CLIDiM's ``per_image_minmax``) predicts as it was trained."""
        return False

    @property
    def normalizers(self) -> tuple[Any, Any]:
        """(input, output) normalizers a trained model stores (``normalization == "model"``)."""
        raise InputError(f"method {self.key!r} normalizes by the image "
                         f"({self.normalization!r}), it stores no normalizers")

    def route(self, planes: list[np.ndarray]) -> Any:
        """For a method that ``routes``: the method to run on a channel whose normalized
        planes (a few of them) are ``planes``, as an object with ``method`` (unfitted),
        ``reason`` and ``notice`` (:class:`microdenoise.methods.auto.Route`)."""
        raise InputError(f"method {self.key!r} does not route")

    def describe_fit(self) -> str:
        """What the last :meth:`fit` chose, in words, for the user ("" when nothing worth
        saying: the core prints it after a per-image fit)."""
        return ""

    def fresh(self) -> Self:
        """An unfitted copy: the same config and device, no learned state."""
        copy = type(self)(self.config)
        copy.device = self.device
        return copy

    @property
    def supports_3d(self) -> bool:
        """Whether ``denoise`` takes ZYX volumes (the pipeline then passes them whole)."""
        return False

    @property
    def receptive_field(self) -> int:
        """Half-width in pixels of the neighbourhood one output pixel depends on.

        Tiled prediction uses at least this overlap so that tiled equals untiled.
        """
        return 0

    @property
    def global_field(self) -> bool:
        """Whether one output pixel depends on the whole image (TV, wavelet, BM3D): then
        tiles (or Dask chunks) give slightly different output than one whole pass, and
        the core says so when it tiles."""
        return False

    @property
    def tiles_exactly(self) -> bool:
        """Whether tiles aligned on :attr:`tile_multiple`, each with
        :attr:`receptive_field` pixels of context, give exactly the one-pass output;
        the core tiles a large plane on its own only then (:func:`core.auto_tile`)."""
        return not self.global_field

    @property
    def tile_multiple(self) -> int:
        """Tiled prediction starts every tile at a multiple of this many pixels (Y and X).

        A U-Net pools ``depth`` times; if tiles start on multiples of ``2**depth``,
        its pooling grid falls on the same pixels in every tile as in the whole
        image, so tiled output equals untiled output. The default reads the
        ``multiple`` of a network held in ``self.net`` (divided by :attr:`upscale`);
        a method whose padding moves the grid with the image size declares 1.
        """
        net = getattr(self, "net", None)
        return max(1, int(getattr(net, "multiple", 1)) // self.upscale)

    @property
    def upscale(self) -> int:
        """Output pixels per input pixel along Y and X: 1, or 2 for joint denoising and
        2x super-resolution (``care`` with ``upscale=2``); the pipeline then halves the
        pixel size it writes."""
        return 1

    def fit(self, noisy: np.ndarray, clean: np.ndarray | None = None) -> Self:
        """Learn from ``noisy`` (and ``clean`` for supervised methods); no-op by default."""
        return self

    @abstractmethod
    def denoise(self, image: np.ndarray) -> np.ndarray:
        """Denoise one normalized float32 image and return an array of the same shape
        (Y and X times :attr:`upscale`)."""

    def state_dict(self) -> dict[str, Any]:
        """Learned state (tensors, numbers, strings); empty for filters."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise InputError(f"method {self.key!r} has no learned state to load")


def register(key: str) -> typing.Callable[[type[Denoiser]], type[Denoiser]]:
    """Class decorator adding a :class:`Denoiser` subclass to the registry under ``key``."""

    def deco(cls: type[Denoiser]) -> type[Denoiser]:
        if key in _REGISTRY and _REGISTRY[key] is not cls:
            raise RuntimeError(f"method {key!r} registered twice")
        cls.key = key
        _REGISTRY[key] = cls
        return cls

    return deco


def _load_builtin_methods() -> None:
    from . import methods  # noqa: F401  (importing registers them)


def list_methods() -> list[str]:
    """Names of all registered methods, sorted."""
    _load_builtin_methods()
    return sorted(_REGISTRY)


def method_class(name: str) -> type[Denoiser]:
    """The class registered as ``name``; a clear error naming the choices otherwise."""
    _load_builtin_methods()
    name = str(name).strip().lower()  # keys are lower-case; FM2S and N2V are meant
    if name not in _REGISTRY:
        raise InputError(
            f"unknown method {name!r}; choose one of: {', '.join(sorted(_REGISTRY))} "
            "(see `microdenoise list`)"
        )
    return _REGISTRY[name]


def create(name: str, *, preset: str | None = None, **params: Any) -> Denoiser:
    """Create method ``name`` with a named ``preset`` and/or explicit parameters.

    Explicit parameters override the preset's. Unknown names give an
    :class:`InputError` that lists the valid ones.
    """
    cls = method_class(name)
    merged: dict[str, Any] = {}
    if preset is not None:
        if preset not in cls.PRESETS:
            choices = ", ".join(cls.PRESETS) or "none"
            raise InputError(f"method {name!r} has no preset {preset!r}; presets: {choices}")
        merged.update(cls.PRESETS[preset])
    merged.update(params)
    return cls(make_config(cls.Config, merged, method=cls.key))


def describe(name: str) -> dict[str, Any]:
    """Family, needs and default parameters of method ``name`` (for ``microdenoise list``)."""
    cls = method_class(name)
    defaults = {f.name: _default(f) for f in dataclasses.fields(cls.Config)}
    return {
        "key": name,
        "family": cls.family,
        "needs": cls.needs,
        "summary": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
        "params": defaults,
        "presets": list(cls.PRESETS),
    }


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _to_safe(value: Any) -> Any:
    """Numpy arrays become tensors so that ``weights_only`` loading accepts them."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _to_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_safe(v) for v in value)
    return value


def save(method: Denoiser, path: str | Path, *, training: bool = False) -> Path:
    """Save ``method`` (its config and learned state) to ``path`` (a ``.pt`` file).

    ``training=True`` (checkpoints) also saves a trained method's optimizer state.
    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "key": method.key,
        "config": _to_safe(dataclasses.asdict(method.config)),
        "state": _to_safe(method.state_dict(training=True)  # type: ignore[call-arg]
                          if training else method.state_dict()),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def register_loader(accepts: typing.Callable[[Path], bool],
                    loader: typing.Callable[..., Denoiser]) -> None:
    """Let :func:`load` read another model format: ``loader(path, trust=trust)`` for the
    paths ``accepts(path)`` is true of (BioImage Model Zoo packages: :mod:`microdenoise.bmz`).
    ``trust`` is the user's word that code the file carries may run; without it a loader
    must refuse anything that would run such code."""
    _LOADERS.append((accepts, loader))


def load(path: str | Path, *, trust: bool = False) -> Denoiser:
    """Load a model saved by :func:`save`, or one of another registered format
    (:func:`register_loader`: BioImage Model Zoo packages).

    Parameters
    ----------
    path
        A ``.pt`` file from :func:`save` / ``microdenoise train``, or a package.
    trust
        The user's word that code the model carries may run. A ``.pt`` file never runs
        code (it is read with ``torch.load(..., weights_only=True)``), nor does a
        package microdenoise exported; any other package (TorchScript, or an
        architecture of its own) is code, refused unless ``trust=True``.
    """
    # Building a network draws its initial weights from torch's global generator:
    # loading leaves the caller's random stream as it was (the weights are replaced).
    with torch.random.fork_rng(devices=[]):
        return _load(Path(path), trust=trust)


def _load(path: Path, *, trust: bool) -> Denoiser:
    for accepts, loader in _LOADERS:
        if accepts(path):
            return loader(path, trust=trust)
    if path.is_dir():
        raise InputError(f"model {str(path)!r} is a folder; give the model file (.pt) in it")
    if not path.is_file():
        raise InputError(f"model file {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any unpickling failure is a bad file)
        raise InputError(
            f"{str(path)!r} is not a microdenoise model file ({type(exc).__name__}); "
            "make one with `microdenoise train` or microdenoise.save()"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{str(path)!r} is not a microdenoise model file")
    if int(payload.get("version", 1)) > FORMAT_VERSION:
        raise InputError(f"{str(path)!r} was made by a newer microdenoise (model format "
                         f"{payload['version']}; this one reads up to {FORMAT_VERSION}): "
                         "upgrade microdenoise to load it")
    cls = method_class(payload["key"])
    hints = field_types(cls.Config)
    config = {k: (tuple(v) if typing.get_origin(hints.get(k)) is tuple else v)
              for k, v in payload["config"].items()}
    # Older files may hold a field under its former name (and, for a while, both
    # names): a value set under the old name is kept under the new one.
    for old, new in getattr(cls.Config, "RENAMED", {}).items():
        if old in config:
            value = config.pop(old)
            if new not in config or value:
                config[new] = value
    method = cls(make_config(cls.Config, config, method=payload["key"]))
    method.load_state_dict(payload["state"])
    return method
