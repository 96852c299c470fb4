"""FM2S: zero-shot denoising of fluorescence micrographs.

Liu, Teng, Ma, Jiang, "FM2S: Towards Spatially-Correlated Noise Modeling in
Zero-Shot Fluorescence Microscopy Image Denoising", arXiv:2412.10031 (v2, 2025);
official code Danielement321/FM2S @ afc05d8.

A 3-layer CNN (901*lambda + 2628 parameters) is trained on the noisy image
itself: the image is median filtered (pre-denoise), copied into lambda
identical channels (channel amplification), and the network learns to map
fresh region-wise Poisson-Gaussian noise injections of the filtered image
back to it (stage 2), after a short warm-up mapping the raw image to its
filtered version (stage 1). Inference in the official code is one forward pass on
the raw image.

Two schedules share the method:

``paper``  the official code's training: whole image, batch 1, Adam 1e-3,
           5 stage-1 steps, 450 noise samples x 5 steps, one prediction pass.
           It differs from the official script in what surrounds the training:
           the output is float (the script truncates it to 8 bits with ``.int()``
           and writes a PNG); the script reads every image as 8-bit and divides by
           255 (OpenCV down-converts 16-bit files), where we scale uint8 by 255 and
           other types by their own min..max (``normalization="unit"``); and the
           network initialisation and noise come from separate seeded generators,
           so outputs are not bit-identical to the script's.
``fast``   the default: stage 2 on random crops with a fresh noise sample per
           step, a one-cycle learning rate and bf16 where the CPU has it natively,
           and it changes inference too: the prediction is averaged over the 8
           flips/rotations of the image (``tta="d8"``). On a 512x512 image and
           2 CPU cores it took 13.9x less wall time than the official script with
           native bf16 and about 12x with fp32 steps; on an H200 GPU, 2.3x
           (``benchmarks/results/speed/``; ``fm2s_tune/schedule.md`` says how the
           schedule was chosen).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..registry import Denoiser, register
from ..tiling import plan_tiles
from ..training import generator, resolve_device, step_module
from .fm2s_noise import (
    fit_constants,
    inject_noise,
    is_8bit_plane,
    noise_maps,
    predenoise,
    preset_name,
)

# (g_map, p_map, lam_p) per FMD noise level, from the FM2S README / supplementary.
_LEVELS = {
    "confocal": ((200, 30, 70), (125, 95, 285), (70, 195, 485), (10, 240, 650), (5, 650, 1400)),
    "twophoton": ((175, 30, 60), (150, 85, 300), (90, 300, 480), (20, 185, 600), (15, 850, 3800)),
    "widefield": ((220, 45, 2000), (220, 100, 2500), (60, 650, 3500), (20, 600, 4000),
                  (1, 1500, 4800)),
}
_BASE = {"confocal": (2, 75, 3), "twophoton": (2, 75, 3), "widefield": (1, 75, 11)}


def _presets() -> dict[str, dict[str, Any]]:
    presets: dict[str, dict[str, Any]] = {}
    for micro, levels in _LEVELS.items():
        n_chan, stride, w_size = _BASE[micro]
        for avg, (g, p, lam) in zip((1, 2, 4, 8, 16), levels, strict=True):
            values = {"n_chan": n_chan, "stride": stride, "w_size": w_size,
                      "g_map": float(g), "p_map": float(p), "lam_p": float(lam)}
            presets[f"{micro}_avg{avg}"] = values
            if avg == 1:
                presets[micro] = values
    base = {"n_chan": 6, "stride": 5, "w_size": 3, "g_map": 60.0, "p_map": 40.0, "lam_p": 125.0}
    presets["srdtrans"] = base
    presets["base"] = base
    return presets


@dataclass(frozen=True)
class FM2SConfig:
    """Parameters of FM2S; defaults are the official CONFOCAL config and the fast schedule.

    Noise model (8-bit units for ``g_map``), per ``stride`` x ``stride`` region R with
    n_R = clamp(mean(R), 1e-5, 0.15): sigma_R = g_map * n_R, a_R = p_map / n_R,
    y = clamp(Poisson(a_R c) / a_R + N(0, (sigma_R/255)^2), 0, 1),
    z = clamp(Poisson(lam_p y) / lam_p, 0, 1).

    ``tta``: test-time averaging over the 8 flips/90-degree rotations (``d8``) or a
    single pass (``off``); ``auto`` is ``d8`` for the fast schedule and ``off`` for the
    paper schedule (the official code predicts once).

    ``fast_bf16``: bfloat16 autocast in the fast schedule's training steps; ``auto`` uses
    it on CPUs with native bf16 (AVX512-BF16 or AMX), where it makes the convolutions
    ~2.4x cheaper at the same PSNR, and fp32 elsewhere (emulated bf16 is slow).

    ``noise_clamp``: clamp the injected noise at 0 (official). With ``False`` the region
    noise is left unclamped below 0 and the global Poisson is added as a zero-mean
    fluctuation, ``z = y + Poisson(lam_p max(y,0))/lam_p - max(y,0)``, so that
    E[z] = c also in dark regions. ``out_clamp``: clamp the output to [0, 1] (official).

    ``mean_correction``: ``plane`` shifts the output by one constant per fitted plane so
    that its mean equals the input's (a correction of the bias, computed in ``fit``
    on the whole plane; see ``benchmarks/results/intensity_bias``); ``off`` = official.

    ``noise_constants``: ``preset`` uses g_map/p_map/lam_p as given (8-bit presets);
    ``fit`` scales them by the image's own Poisson-Gaussian fit (:func:`fit_constants`);
    ``auto`` = ``fit`` for planes that are not 8-bit data (values off the k/255 grid,
    e.g. 16-bit input normalized by its own range) and ``preset`` for 8-bit data.
    """

    #: Upper bounds of the sizes that set an allocation (config.check_range).
    MAXIMA: ClassVar[dict[str, float]] = {"n_chan": 64, "w_size": 63, "stride": 4096,
                                          "fast_crop": 4096, "fast_batch": 1024}

    schedule: Literal["fast", "paper"] = "fast"
    n_chan: int = 2
    stride: int = 75
    w_size: int = 3
    g_map: float = 200.0
    p_map: float = 30.0
    lam_p: float = 70.0
    lr: float = 1e-3
    stage1_steps: int = 5
    samples: int = 450
    steps_per_sample: int = 5
    fast_steps: int = 1600
    fast_crop: int = 128
    fast_batch: int = 2
    fast_lr: float = 4e-3
    fast_bf16: bool | Literal["auto"] = "auto"
    tta: Literal["auto", "off", "d8"] = "auto"
    predenoise: Literal["median", "gaussian", "nlm", "bm3d"] = "median"
    noise_clamp: bool = True
    out_clamp: bool = True
    mean_correction: Literal["off", "plane"] = "off"
    noise_constants: Literal["auto", "preset", "fit"] = "auto"
    region_noise: bool = True
    overall_noise: bool = True
    stage1: bool = True
    stage2: bool = True
    seed: int = 3407

    def __post_init__(self) -> None:
        for name in ("n_chan", "stride", "w_size", "fast_crop", "fast_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("p_map", "lam_p", "lr", "fast_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        if not self.g_map >= 0:
            raise ValueError("g_map must be >= 0")


class FM2SNet(nn.Module):
    """Conv(l,24,5) - LeakyReLU(1e-3) - Conv(24,12,3) - LeakyReLU(1e-3) - Conv(12,l,5)."""

    def __init__(self, n_chan: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(n_chan, 24, 5, padding=2)
        self.conv2 = nn.Conv2d(24, 12, 3, padding=1)
        self.conv3 = nn.Conv2d(12, n_chan, 5, padding=2)
        self.act = nn.LeakyReLU(negative_slope=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))


T = TypeVar("T")
PREDICT_TILE = 256  # side of the tiles a plane is predicted in (see tiled_forward)
RECEPTIVE_RADIUS = 5  # FM2SNet: 5x5, 3x3, 5x5 convolutions, 2 + 1 + 2 pixels


def tiled_forward(net: nn.Module, x: torch.Tensor, *, tile: int = PREDICT_TILE,
                  halo: int = RECEPTIVE_RADIUS + 3) -> torch.Tensor:
    """``net(x)`` computed on pieces of at most ``tile`` x ``tile`` pixels, each with
    ``halo`` pixels of context (:func:`microdenoise.tiling.plan_tiles`): the same values
    as one pass over the whole plane (``halo`` covers the network's receptive field, and
    at the plane's borders a piece sees the same zero padding), up to float rounding, at
    a cost that stays linear in the plane's size.

    One pass over a large plane is slower per pixel than over small ones (activations
    of 24 channels leave the caches: 0.28 us per pixel at 256^2, 0.71 at 4096^2 on the
    development machine, ``benchmarks/results/speed/scaling.md``).
    """
    plan = plan_tiles(x.shape, tile=tile + 2 * halo, overlap=halo)
    if len(plan) == 1:
        return net(x)
    out: torch.Tensor | None = None
    for (ys, xs), (yt, xt), (yc, xc) in plan:
        piece = net(x[:, :, ys, xs])
        if out is None:
            out = piece.new_empty((x.shape[0], piece.shape[1], *x.shape[-2:]))
        out[:, :, yt, xt] = piece[:, :, yc, xc]
    assert out is not None
    return out


def prefetched(draw: Callable[[], T], n: int) -> Iterator[T]:
    """``draw()`` ``n`` times, each computed one step ahead in a background thread.

    The draws run one after another in that one thread, in order, so their random
    numbers are those of calling ``draw()`` in the loop; the caller's step overlaps the
    next draw (torch releases the GIL in its kernels). FM2S's noise sampling is about a
    third of a fast-schedule step on a 2-core CPU (``benchmarks/results/fm2s_profile``).
    """
    if n <= 0:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fm2s-noise") as pool:
        ahead = pool.submit(draw)
        for i in range(n):
            item = ahead.result()
            if i + 1 < n:
                ahead = pool.submit(draw)
            yield item


def _random_crops(n: int, crop_h: int, crop_w: int, h: int, w: int,
                  gen: torch.Generator) -> list[tuple[int, int]]:
    ys = torch.randint(0, h - crop_h + 1, (n,), generator=gen).tolist()
    xs = torch.randint(0, w - crop_w + 1, (n,), generator=gen).tolist()
    return list(zip(ys, xs, strict=True))


@register("fm2s")
class FM2S(Denoiser):
    """FM2S zero-shot denoiser (Liu et al., arXiv:2412.10031): a tiny CNN fit to the image itself.

    Presets: ``confocal`` (default values), ``twophoton``, ``widefield``, ``srdtrans``/``base``,
    and ``<microscope>_avg{1,2,4,8,16}`` for the FMD noise levels.
    """

    family = "zero-shot"
    needs = "the noisy image itself"
    normalization = "unit"
    Config = FM2SConfig
    bytes_per_pixel = 408  # see benchmarks/results/bytes_per_pixel/table.md
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = _presets()

    def __init__(self, config: Any = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self.net: FM2SNet | None = None
        self.losses: list[float] = []
        self.offset = 0.0  # mean_correction="plane": added to the [0, 1] output
        self.fit_info = ""  # describe_fit(): preset and noise constants of the last fit

    @property
    def fit_policy(self) -> str:
        """``"per_image"``: zero-shot, fitted on each image it denoises."""
        return "per_image"

    @property
    def receptive_field(self) -> int:
        return 5  # 5x5, 3x3 and 5x5 convolutions: radius 2 + 1 + 2

    def _make_net(self) -> FM2SNet:
        from ..training import seeded

        with seeded(self.config.seed):  # seeded init; the global RNGs of every device untouched
            return FM2SNet(self.config.n_chan)

    def fit(self, noisy: np.ndarray, clean: np.ndarray | None = None) -> FM2S:
        """Train on ``noisy`` (2D, scaled to [0, 1]); ``clean`` is ignored (zero-shot)."""
        cfg = self.config
        image = _check_unit_range(_check_plane(noisy))
        device = resolve_device(self.device)
        # Noise is drawn where a seeded generator exists: CPU or CUDA (not MPS).
        noise_device = device if device.type == "cuda" else torch.device("cpu")
        gen = generator(cfg.seed, noise_device)
        target = predenoise(image, kind=cfg.predenoise, w_size=cfg.w_size)
        x = torch.from_numpy(image).to(device)[None, None].repeat(1, cfg.n_chan, 1, 1)
        c = torch.from_numpy(target).to(noise_device)[None, None].repeat(1, cfg.n_chan, 1, 1)
        net = self._make_net().to(device)
        g_map, p_map, lam_p = self._constants(image)
        sigma, scale = noise_maps(c, stride=cfg.stride, g_map=g_map, p_map=p_map,
                                  region=cfg.region_noise)
        self.losses = []
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        net.train()
        if cfg.stage1:
            for _ in range(cfg.stage1_steps):
                self._step(net, opt, x, c)
        if cfg.stage2:
            inject = {"lam_p": lam_p, "gen": gen, "region": cfg.region_noise,
                      "overall": cfg.overall_noise, "clamp": cfg.noise_clamp}
            if cfg.schedule == "paper":
                for _ in range(cfg.samples):
                    sample = inject_noise(c, sigma, scale, **inject)
                    for _ in range(cfg.steps_per_sample):
                        self._step(net, opt, sample, c)
            else:
                self._fit_fast(net, c, sigma, scale, inject, gen)
        self.net = net.to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
        self.offset = 0.0
        if cfg.mean_correction == "plane":
            self.offset = float(image.mean(dtype=np.float64)
                                - self._predict(image).mean(dtype=np.float64))
        return self

    def _constants(self, image: np.ndarray) -> tuple[float, float, float]:
        """(g_map, p_map, lam_p) for ``image`` per ``noise_constants``; sets ``fit_info``."""
        cfg = self.config
        mode = cfg.noise_constants
        if mode == "auto":
            mode = "preset" if is_8bit_plane(image) else "fit"
        if mode == "fit":
            g, p, lam, self.fit_info = fit_constants(image, cfg, self.PRESETS)
            return g, p, lam
        self.fit_info = (f"preset {preset_name(cfg, self.PRESETS)}; noise constants as given "
                         "(8-bit scale): "
                         f"g_map={cfg.g_map:g}, p_map={cfg.p_map:g}, lam_p={cfg.lam_p:g}")
        return cfg.g_map, cfg.p_map, cfg.lam_p

    def describe_fit(self) -> str:
        """Which preset and noise constants the last :meth:`fit` used, and any correction."""
        if not self.fit_info:
            return ""
        extra = ""
        if self.config.mean_correction == "plane":
            extra = f"; mean correction {self.offset:+.4g} (on [0,1]) added to the output"
        return self.fit_info + extra

    def _fit_fast(self, net: FM2SNet, c: torch.Tensor, sigma: torch.Tensor,
                  scale: torch.Tensor, inject: dict[str, Any], gen: torch.Generator) -> None:
        cfg = self.config
        _, _, h, w = c.shape
        crop_h, crop_w = min(cfg.fast_crop, h), min(cfg.fast_crop, w)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.fast_lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.fast_lr, total_steps=max(cfg.fast_steps, 2), pct_start=0.15)
        cpu_gen = gen if gen.device.type == "cpu" else generator(cfg.seed + 1)
        # bf16 autocast where fast_bf16 resolves to it (training.use_bf16); channels-last
        # either way, the faster layout for these convolutions.
        step_net = step_module(net, cfg.fast_bf16, next(net.parameters()).device)
        net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

        def draw() -> tuple[torch.Tensor, torch.Tensor]:
            where = _random_crops(cfg.fast_batch, crop_h, crop_w, h, w, cpu_gen)
            cut = [(slice(None), slice(y, y + crop_h), slice(x, x + crop_w)) for y, x in where]
            cc = torch.stack([c[0][s] for s in cut])
            sample = inject_noise(cc, torch.stack([sigma[0][s] for s in cut]),
                                  torch.stack([scale[0][s] for s in cut]), **inject)
            return sample.contiguous(memory_format=torch.channels_last), cc

        for sample, cc in prefetched(draw, cfg.fast_steps):
            self._step(step_net, opt, sample, cc)
            sched.step()

    def _step(self, net: nn.Module, opt: torch.optim.Optimizer, inp: torch.Tensor,
              target: torch.Tensor) -> None:
        """One Adam step of the MSE between ``net(inp)`` (float32 out) and ``target``."""
        opt.zero_grad(set_to_none=True)
        device = next(net.parameters()).device
        inp, target = inp.to(device), target.to(device)
        loss = F.mse_loss(net(inp), target)
        loss.backward()
        opt.step()
        self.losses.append(float(loss.detach()))

    @torch.no_grad()
    def denoise(self, image: np.ndarray) -> np.ndarray:
        """Forward pass on the channel-amplified image, clamped to [0, 1], channel mean.

        With test-time averaging (``tta``) the pass is repeated on the 8 flips/rotations
        of the plane and the back-transformed outputs are averaged.
        """
        if self.net is None:
            raise InputError("fm2s must be fitted before denoising (zero-shot: fit on the image)")
        out = self._predict(_check_plane(image))
        if self.config.mean_correction == "plane":
            out += np.float32(self.offset)
        return out

    @torch.no_grad()
    def _predict(self, plane: np.ndarray) -> np.ndarray:
        net = self.net
        if net is None:
            raise InputError("fm2s must be fitted before denoising (zero-shot: fit on the image)")
        device = resolve_device(self.device)
        net.to(device)
        x = torch.from_numpy(plane).to(device)[None, None].repeat(1, self.config.n_chan, 1, 1)
        tta = self.config.tta

        def run(view: torch.Tensor) -> torch.Tensor:
            out = tiled_forward(net, view)
            return out.clamp(0.0, 1.0) if self.config.out_clamp else out

        if tta == "off" or (tta == "auto" and self.config.schedule == "paper"):
            return run(x).mean(dim=1)[0].cpu().numpy().astype(np.float32)
        total = torch.zeros_like(x[0, 0])
        for k in range(4):
            for flip in (False, True):
                view = torch.rot90(x, k, dims=(2, 3))
                view = view.flip(3) if flip else view
                out = run(view).mean(dim=1)[0]
                out = out.flip(1) if flip else out
                total += torch.rot90(out, -k, dims=(0, 1))
        return (total / 8.0).cpu().numpy().astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        if self.net is None:
            return {}
        state: dict[str, Any] = {
            "net": {k: v.detach().cpu() for k, v in self.net.state_dict().items()}}
        if self.config.mean_correction != "off":
            state["offset"] = torch.tensor(self.offset, dtype=torch.float64)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self.net = None
            return
        net = FM2SNet(self.config.n_chan)
        net.load_state_dict(state["net"])
        self.net = net.eval()
        self.offset = float(state["offset"]) if "offset" in state else 0.0


def _check_plane(image: np.ndarray) -> np.ndarray:
    if image.ndim != 2:
        raise InputError(f"fm2s denoises 2D planes; got an array of shape {image.shape}")
    return np.ascontiguousarray(image, dtype=np.float32)


UNIT_SLACK = 1.0  # fit refuses values more than this far outside [0, 1]


def _check_unit_range(plane: np.ndarray) -> np.ndarray:
    """``plane`` if its values lie near [0, 1], where FM2S's noise model is defined.

    The injected noise's rates (``p_map / n``, ``lam_p``) assume intensities on [0, 1]:
    a raw 16-bit plane would be sampled at thousands of times those rates and train the
    network to predict a constant. A perturbed copy of a [0, 1] image (``compare``'s
    SURE) stays within the slack.
    """
    low, high = float(np.nanmin(plane)), float(np.nanmax(plane))
    if low < -UNIT_SLACK or high > 1.0 + UNIT_SLACK:
        raise InputError(
            f"fm2s fits a plane scaled to [0, 1] (its noise model is in those units); got "
            f"values from {low:g} to {high:g}. denoise_array, the command line and napari "
            "scale images for you; when calling fit directly, scale first (uint8: divide "
            "by 255; other types: by their own range)")
    return plane


def n_parameters(n_chan: int) -> int:
    """Parameter count of :class:`FM2SNet`: 901 * n_chan + 2628."""
    return sum(p.numel() for p in FM2SNet(n_chan).parameters())


def paper_steps(config: FM2SConfig) -> int:
    """Optimiser steps of the paper schedule: 5 + 450 x 5 = 2255 by default."""
    return config.stage1_steps + config.samples * config.steps_per_sample

