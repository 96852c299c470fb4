"""``auto``, the default: measure the noise first, then run the method that wins on it.

A microscopist's image has one of two kinds of noise, and the best method this
toolkit has differs between them (``benchmarks/results/default/``):

* **pixel-independent ("white") noise** (confocal, two-photon, sCMOS/EMCCD frames
  straight off the camera): BM3D after the generalized Anscombe transform
  (``bm3d``, ``vst="gat"``, its defaults) is the strongest: on the FMD test mix it
  beats FM2S by 0.8 dB on Confocal and 0.5 dB on TwoPhoton, on W2S by far more, at
  a third of FM2S's time;
* **spatially correlated noise** (FMD's widefield images: binned, interpolated or
  filtered by the acquisition): BM3D with a white-noise sigma barely denoises
  (25.9 dB against the noisy 25.2) and FM2S with its official widefield
  configuration (``preset="widefield"``), which injects noise correlated as this
  noise is, is 7 dB better (33.2 dB; with its default, confocal configuration FM2S
  reaches only about 30.3 dB there). BM3D with a noise PSD estimated from the image,
  a Gaussian and a Wiener filter were measured against it and did not replace it
  (``benchmarks/results/correlated_probe/``).

:meth:`Auto.route` fits the Poisson-Gaussian model and compares the noise variance
of the 2x2-binned image with the pixel-level one
(:func:`microdenoise.compare_estimators.noise_check`: about 1 for white noise; FMD
confocal and two-photon 1.2-2.6, W2S 1.0-1.1, SRDTrans 1.2-1.3, FMD widefield
7.2-8.1); above ``limit`` (4) the noise is correlated. The decision is made once per
channel of an image, on up to ``planes`` evenly spaced planes (the median ratio), so
the planes of one acquisition get one method and channels may differ; the prediction
core then fits the chosen method on each plane as it fits that method by name.

Nothing here depends on time or machine load: the same input gives the same choice
and the same output. Choosing costs one noise fit per plane measured (about 0.02 s
for 512x512).

Without the ``bm3d`` package (its licence allows non-commercial use only) the white
route is FM2S, the best permissive method measured on white noise (FMD: FM2S 35.07
dB on Confocal against VST-NLM's 34.44); ``white="nlm"`` gives the fast permissive
route. When BM3D is chosen the run says, once, that its licence is non-commercial.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import statistics
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np

from ..compare_estimators import WHITE_RATIO_LIMIT, noise_check
from ..errors import InputError
from ..registry import Denoiser, create, register
from .fm2s import FM2S
from .global_filters import BM3D
from .local_filters import NLMeans

__all__ = ["BM3D_LICENCE", "Auto", "AutoConfig", "Route", "bm3d_installed"]

BM3D_LICENCE = ("the default chose BM3D, from the bm3d package, whose licence allows "
                "non-commercial use only; for other use, uninstall bm3d (the default then "
                "uses FM2S) or give --method fm2s")

#: What each route runs: the method and its parameters (the library defaults).
ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "bm3d": ("bm3d", {"vst": "gat"}),
    "fm2s": ("fm2s", {}),
    "nlm": ("nlm", {"vst": "gat"}),
}
#: The preset a route takes for correlated noise: FM2S's official widefield
#: configuration (on FMD WideField, both scene-disjoint folds: +2.0 and +3.3 dB over
#: its default confocal configuration, ``benchmarks/results/default/``).
CORRELATED_PRESETS = {"fm2s": "widefield"}
LABELS = {"bm3d": "VST-BM3D", "fm2s": "FM2S", "nlm": "VST-NLM"}


def bm3d_installed() -> bool:
    """Whether the ``bm3d`` package can be imported (without importing it)."""
    return importlib.util.find_spec("bm3d") is not None


@dataclass(frozen=True)
class AutoConfig:
    """Parameters of :class:`Auto`.

    ``white``: the method for pixel-independent noise (``"auto"``: ``bm3d`` where the
    ``bm3d`` package is installed, else ``fm2s``); ``correlated``: for spatially
    correlated noise; ``limit``: the coarse/fine noise ratio above which noise is
    correlated; ``planes``: planes per channel the noise is measured on; ``seed``:
    given to a method that draws random numbers (FM2S; None: that method's own).
    """

    white: Literal["auto", "bm3d", "fm2s", "nlm"] = "auto"
    correlated: Literal["fm2s", "bm3d", "nlm"] = "fm2s"
    limit: float = WHITE_RATIO_LIMIT
    planes: int = 3
    seed: int | None = None
    MAXIMA: ClassVar[dict[str, float]] = {"planes": 64, "limit": 1000}


@dataclass(frozen=True)
class Route:
    """What :meth:`Auto.route` chose: the method (unfitted), why, and a notice to give
    once per run ("" when none)."""

    method: Denoiser
    reason: str
    notice: str = ""
    preset: str | None = None


@register("auto")
class Auto(Denoiser):
    """The default: measures the noise, then runs VST-BM3D on white noise, FM2S (its
    widefield preset) on spatially correlated noise (module docstring; issue 28).

    Parameters
    ----------
    white, correlated : str
        The method for each kind of noise (:class:`AutoConfig`).
    limit : float
        Coarse/fine noise-variance ratio above which the noise is correlated (4).
    planes : int
        Planes of each channel the noise is measured on (3, evenly spaced).
    seed : int or None
        Seed of the chosen method where it has one (None: its default).

    References
    ----------
    Noise model and test: Foi et al., "Practical Poissonian-Gaussian noise modeling and
    fitting for single-image raw-data", IEEE TIP 17 (2008); the routes: Dabov et al.
    (BM3D, IEEE TIP 16, 2007) with Makitalo & Foi's GAT, and FM2S (Liu et al. 2025).
    """

    family = "noise-aware"
    needs = "nothing"
    normalization = "unit"
    routes = True
    Config = AutoConfig
    bytes_per_pixel = max(FM2S.bytes_per_pixel, BM3D.bytes_per_pixel, NLMeans.bytes_per_pixel)

    def __init__(self, config: Any = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self._route: Route | None = None
        self._fitted: Denoiser | None = None

    # --- the choice -----------------------------------------------------------------
    def white_method(self) -> str:
        """The route for white noise: ``white``, with ``"auto"`` resolved."""
        if self.config.white != "auto":
            return str(self.config.white)
        return "bm3d" if bm3d_installed() else "fm2s"

    def candidates(self) -> list[Denoiser]:
        """An instance of every method a route can run (for tiling and memory)."""
        return [self._make(self.white_method(), None),
                self._make(self.config.correlated, CORRELATED_PRESETS.get(
                    self.config.correlated))]

    def _make(self, route: str, preset: str | None) -> Denoiser:
        name, params = ROUTES[route]
        params = dict(params)
        if self.config.seed is not None and "seed" in {
                f.name for f in dataclasses.fields(create(name).config)}:
            params["seed"] = self.config.seed
        made = create(name, preset=preset, **params)
        made.device = self.device
        return made

    def route(self, planes: list[np.ndarray]) -> Route:
        """The method for a channel whose normalized planes (or a few of them) are
        ``planes``, and why; never changes this model."""
        if not planes:
            raise InputError("auto needs at least one plane to measure the noise on")
        checks = [noise_check(np.asarray(p, dtype=np.float64)) for p in planes]
        ratios = [c.white_ratio for c in checks if np.isfinite(c.white_ratio)]
        white = False
        if not ratios:
            chosen, what = self.config.correlated, "no noise measurable at one scale"
        else:
            ratio = statistics.median(ratios)
            white = ratio <= self.config.limit
            chosen = self.white_method() if white else self.config.correlated
            what = (f"{'white' if white else 'spatially correlated'} noise (coarse/fine "
                    f"variance ratio {ratio:.2f} {'<=' if white else '>'} "
                    f"{self.config.limit:g}")
            what += f", median of {len(ratios)} planes)" if len(ratios) > 1 else ")"
        preset = None if white else CORRELATED_PRESETS.get(chosen)
        method = self._make(chosen, preset)
        label = LABELS[chosen] + (f" (preset {preset})" if preset else "")
        fallback = ("" if chosen != "fm2s" or self.config.white != "auto" or bm3d_installed()
                    or "correlated" in what else
                    " (BM3D, the white-noise choice, needs the bm3d package)")
        reason = f"auto: {what}: {label}{fallback}"
        return Route(method, reason, BM3D_LICENCE if chosen == "bm3d" else "", preset)

    # --- the contract ---------------------------------------------------------------
    @property
    def fit_policy(self) -> str:
        return "per_image"

    @property
    def fitted(self) -> bool:
        return self._fitted is not None

    @property
    def receptive_field(self) -> int:
        return max(m.receptive_field for m in self.candidates())

    @property
    def global_field(self) -> bool:
        return any(m.global_field for m in self.candidates())

    @property
    def tiles_exactly(self) -> bool:
        return False

    def fit(self, noisy: np.ndarray, clean: np.ndarray | None = None) -> Self:
        """Route on ``noisy`` (one normalized plane) and fit the chosen method on it."""
        route = self.route([noisy])
        self._route, self._fitted = route, route.method.fit(noisy)
        return self

    def describe_fit(self) -> str:
        return "" if self._route is None else self._route.reason

    @property
    def chosen(self) -> Denoiser | None:
        """The fitted method :meth:`fit` chose (None before a fit)."""
        return self._fitted

    def denoise(self, image: np.ndarray) -> np.ndarray:
        """The fitted choice's output; unfitted, route and fit a copy on ``image`` for this
        call only (this model is not changed)."""
        if self._fitted is not None:
            return self._fitted.denoise(image)
        route = self.route([image])
        return route.method.fit(image).denoise(image)

    def state_dict(self) -> dict[str, Any]:
        if self._fitted is None:
            return {}
        preset = None if self._route is None else self._route.preset
        return {"route": self._fitted.key, "preset": preset or "",
                "reason": self.describe_fit(), "state": self._fitted.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self._route = self._fitted = None
            return
        key = str(state.get("route", ""))
        if key not in ROUTES:
            raise InputError(f"state for method 'auto' names the route {key!r}; expected one "
                             f"of {', '.join(ROUTES)}")
        preset = str(state.get("preset") or "") or None
        method = self._make(key, preset)
        method.load_state_dict(state.get("state", {}))
        self._route = Route(method, str(state.get("reason", f"auto: {key}")), "", preset)
        self._fitted = method
