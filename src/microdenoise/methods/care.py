"""CARE: supervised content-aware image restoration from noisy/clean pairs.

Weigert et al., "Content-aware image restoration: pushing the limits of
fluorescence microscopy", Nature Methods 15, 1090-1097 (2018), as CSBDeep's
``csbdeep.models.CARE`` does it in 2D (its ``Config`` defaults): a U-Net of depth 2
with 32 initial filters, 5x5 kernels, no batch norm, nearest upsampling,
concatenated skips, a linear 1x1 output conv plus the input (residual); the L1
("mae") loss; Adam (lr 4e-4), batches of 16 random patches, flipped and rotated,
100 epochs of 400 steps, ReduceLROnPlateau (factor 0.5, patience 10) on the
validation loss, and the best weights by validation loss kept at the end.

Differences, all options: intensities are normalized by percentiles (1 / 99.8)
computed once over the training inputs and, separately, the training targets
and stored in the model (CSBDeep: per image), or by the mean/std of the training
inputs applied to inputs and targets (``normalization="meanstd"``);
``shift_average=True`` averages the network over its pooling phases (16x the
prediction cost at depth 2; off by default, as CSBDeep: tiles start on the pooling
grid, :attr:`Denoiser.tile_multiple`, so tiled output equals untiled output anyway).

``upscale=2`` restores and super-resolves jointly, as CSBDeep's
``UpsamplingCARE``: the low-resolution input is upsampled 2x by linear
interpolation, then the U-Net maps it to the high-resolution clean target; the
output is twice the input's size.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import data
from ..errors import InputError
from ..networks import Net, UNet, receptive_field
from ..normalize import MeanStd, Normalizer, Percentile, normalizer_from_dict
from ..registry import Denoiser, register
from ..training import (
    end_epoch,
    generator,
    resolve_device,
    resume_state,
    start_run,
    step_module,
    to_cpu,
    train_epoch,
    trained_planes,
    validate,
)

__all__ = ["CARE", "CAREConfig", "CARENet", "fit_normalizers"]

MAX_PIXELS = 2**21  # network pixels per prediction forward pass


@dataclass(frozen=True)
class CAREConfig:
    """CARE parameters; defaults are CSBDeep's 2D ``Config`` (see the module docstring).

    ``patch_size`` is the input patch side (default 128, or 64 for ``upscale=2``: the
    target patch is then 128). ``n_train=K`` trains on the first K pairs after a
    seeded shuffle (few-shot); each YX plane of a stack is a pair. ``stop_patience=N``
    stops after N epochs without a better validation loss (0: never). ``keep`` is
    the weights ``fit`` ends with: ``"best"`` by validation loss or ``"last"``.
    ``precision``: training-step arithmetic; ``auto`` is bfloat16 autocast (channels-last)
    on CPUs with native bf16, ~2x cheaper steps there, float32 elsewhere; ``fp32`` is
    CSBDeep's. Validation and prediction run in float32.
    """

    depth: int = 2
    filters: int = 32
    kernel_size: int = 5
    batch_norm: bool = False
    residual: bool = True
    loss: Literal["l1", "l2"] = "l1"
    upscale: int = 1
    normalization: Literal["percentile", "meanstd"] = "percentile"
    percentiles: tuple[float, float] = (1.0, 99.8)
    patch_size: int | None = None
    batch_size: int = 16
    augment: bool = True
    epochs: int = 100
    steps_per_epoch: int = 400
    lr: float = 4e-4
    lr_factor: float = 0.5
    lr_patience: int = 10
    stop_patience: int = 0
    val_fraction: float = 0.1
    val_patches: int = 32
    n_train: int | None = None
    keep: Literal["best", "last"] = "best"
    shift_average: bool = False
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    checkpoint_dir: str | None = None
    resume: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= 5 or self.filters < 1:
            raise ValueError("depth must be in 1..5 and filters >= 1")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError("kernel_size must be odd and >= 1")
        if self.upscale not in (1, 2):
            raise ValueError("upscale must be 1 (denoising) or 2 (denoising + 2x "
                             "super-resolution)")
        for name in ("batch_size", "epochs", "steps_per_epoch", "val_patches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.patch_size is not None and self.patch_size * self.upscale < data.MIN_PATCH:
            raise ValueError(f"patch_size must give target patches of >= {data.MIN_PATCH} px")
        if len(self.percentiles) != 2 or not 0 <= self.percentiles[0] < self.percentiles[1] \
                <= 100:
            raise ValueError("percentiles must be two numbers 0 <= low < high <= 100")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        if not (self.lr > 0 and 0 < self.lr_factor < 1 and self.lr_patience >= 0):
            raise ValueError("lr must be > 0, lr_factor in (0, 1), lr_patience >= 0")
        if self.stop_patience < 0 or (self.n_train is not None and self.n_train < 1):
            raise ValueError("stop_patience must be >= 0 and n_train >= 1 (or none: all)")


def fit_normalizers(inputs: list[np.ndarray], targets: list[np.ndarray], *,
                    kind: str = "percentile", percentiles: tuple[float, float] = (1.0, 99.8)
                    ) -> tuple[Normalizer, Normalizer]:
    """Input and target normalizers, computed once over the whole training set.

    ``"percentile"``: inputs and targets each map their own ``percentiles`` to 0 and
    1 (CSBDeep's ``normalize(x, 1, 99.8)``, with training-set instead of per-image
    statistics). ``"meanstd"``: the mean and standard deviation of the inputs
    standardize inputs and targets alike.
    """
    if kind == "meanstd":
        both = MeanStd.fit(inputs)
        return both, both
    low, high = percentiles

    def fit(planes: list[np.ndarray]) -> Percentile:
        return Percentile.fit(np.concatenate([p.ravel() for p in planes]), p_low=low,
                              p_high=high)

    return fit(inputs), fit(targets)


class CARENet(Net):
    """The CARE network: a U-Net whose output is added to its input when ``residual``."""

    def __init__(self, unet: UNet, *, residual: bool) -> None:
        super().__init__()
        self.unet, self.residual = unet, residual
        self.multiple, self.receptive_field = unet.multiple, unet.receptive_field

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.unet(x)
        return y + x if self.residual else y


@register("care")
class CARE(Denoiser):
    """CARE (Weigert et al., Nature Methods 2018): supervised U-Net, CSBDeep defaults.

    Train on noisy/clean pairs with ``fit(noisy, clean)`` or ``microdenoise train
    --method care --input NOISY_DIR --target CLEAN_DIR``; ``upscale=2`` also
    super-resolves 2x (clean targets twice the noisy size).
    """

    family = "supervised"
    needs = "pairs"
    zero_shot = False
    normalization = "none"  # training-set statistics, applied inside the method
    Config = CAREConfig
    ARCHITECTURE: ClassVar[tuple[str, ...]] = (
        "depth", "filters", "kernel_size", "batch_norm", "residual", "upscale")

    def __init__(self, config: Any = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self.device = "auto"
        self.net: CARENet | None = None
        self.norm_in: Normalizer | None = None  # inputs
        self.norm_out: Normalizer | None = None  # targets; its inverse applies to outputs
        self.epoch = 0
        self.best = math.inf
        self.history: list[dict[str, float]] = []
        self._train_state: dict[str, Any] = {}

    @property
    def upscale(self) -> int:
        return int(self.config.upscale)

    @property
    def patch_size(self) -> int:
        """Input patch side: ``patch_size``, or 128 // ``upscale`` by default."""
        return int(self.config.patch_size or 128 // self.upscale)

    @property
    def receptive_field(self) -> int:
        """Context in input pixels one output pixel depends on (the U-Net's, plus the
        upsampling's one pixel for ``upscale=2``)."""
        cfg = self.config
        rf = receptive_field(cfg.depth, upsample="nearest", kernel=cfg.kernel_size)
        return rf if self.upscale == 1 else math.ceil(rf / self.upscale) + 1

    def build_net(self) -> CARENet:
        """A freshly initialized network."""
        cfg = self.config
        unet = UNet(depth=cfg.depth, filters=cfg.filters, batch_norm=cfg.batch_norm,
                    kernel_size=cfg.kernel_size, upsample="nearest")
        return CARENet(unet, residual=cfg.residual)

    # --- data -----------------------------------------------------------------------
    def pairs(self, noisy: Any, clean: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The training pairs as (input, target) float32 YX planes, ``n_train`` applied.

        ``noisy`` and ``clean`` are arrays (2D or stacks) or lists of them, item by
        item of matching shape (clean ``upscale`` x larger in Y and X).
        """
        if clean is None:
            raise InputError(f"{self.key} is supervised: fit(noisy, clean) needs the clean "
                             "targets (or train with --input NOISY_DIR --target CLEAN_DIR)")
        xs = list(noisy) if isinstance(noisy, list | tuple) else [noisy]
        ys = list(clean) if isinstance(clean, list | tuple) else [clean]
        if len(xs) != len(ys):
            raise InputError(f"{len(xs)} noisy image(s) but {len(ys)} clean one(s); pass "
                             "one clean target per noisy image")
        s = self.upscale
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.ndim >= 2:
                want = (*x.shape[:-2], x.shape[-2] * s, x.shape[-1] * s)
                if y.shape != want:
                    must = "the same shape" if s == 1 else f"exactly {s}x the noisy in YX"
                    raise InputError(f"pair {i}: noisy shape {x.shape} but clean {y.shape}; "
                                     f"the clean image must have {must}, {want}")
        inputs = data.as_planes(xs, name="the noisy images")
        targets = data.as_planes(ys, name="the clean images")
        order = np.random.default_rng(self.config.seed).permutation(len(inputs))
        k = self.config.n_train
        if k is not None:
            if k > len(inputs):
                raise InputError(f"n_train={k} but only {len(inputs)} pair(s) were given "
                                 "(each plane of a stack is a pair); lower n_train or add "
                                 "pairs")
            order = order[:k]
        return [inputs[i] for i in order], [targets[i] for i in order]

    # --- training -------------------------------------------------------------------
    def fit(self, noisy: Any, clean: Any = None) -> Self:
        """Train (or continue training) on noisy/clean pairs.

        A fresh model computes its normalization from these pairs and trains
        ``epochs`` epochs; a loaded model, or one resumed from ``resume``, continues
        its run up to ``epochs``, then trains ``epochs`` more, keeping its
        normalization, optimizer and scheduler. A validation split (``val_fraction``
        of the pairs, or strips of a single image) is held back.
        """
        cfg = self.config
        inputs, targets = self.pairs(noisy, clean)
        if self.net is None and cfg.resume:
            self.load_state_dict(resume_state(self, cfg.resume, self.ARCHITECTURE))
        device = resolve_device(self.device)
        if self.net is None or self.norm_in is None or self.norm_out is None:
            norm_in, norm_out = fit_normalizers(inputs, targets, kind=cfg.normalization,
                                                percentiles=tuple(cfg.percentiles))
            with torch.random.fork_rng(devices=[]):  # seeded init, global RNG untouched
                torch.manual_seed(cfg.seed)
                net = self.build_net()
        else:
            net, norm_in, norm_out = self.net, self.norm_in, self.norm_out
        s = self.upscale
        xs = [data.upsample(norm_in(x), s).numpy() for x in inputs]
        ys = [norm_out(y) for y in targets]
        patch = data.choose_patch(ys, self.patch_size * s, multiple=net.multiple)
        self.net, self.norm_in, self.norm_out = net.to(device), norm_in, norm_out
        train_x, val_x = data.hold_out(xs, fraction=cfg.val_fraction, patch=patch)
        train_y, val_y = data.hold_out(ys, fraction=cfg.val_fraction, patch=patch)
        if not val_x:
            val_x, val_y = train_x, train_y
        val_gen = generator(cfg.seed + 1)
        val_batches = [data.sample_pairs(val_x, val_y, min(cfg.batch_size, cfg.val_patches - i),
                                         patch, step=s, gen=val_gen)
                       for i in range(0, cfg.val_patches, cfg.batch_size)]
        gen, optimizer, scheduler, stop, bar = start_run(self, net,
                                                         steps_per_epoch=cfg.steps_per_epoch)

        step_net = step_module(net, cfg.precision, device)  # bf16 where the CPU has it

        def batch_loss() -> torch.Tensor:
            batch = data.sample_pairs(train_x, train_y, cfg.batch_size, patch, step=s, gen=gen)
            if cfg.augment:
                batch = data.augment(batch, gen)  # the same view of input and target
            return self.loss(step_net, batch.to(device))

        best_net, stale = None, 0
        held = math.inf  # validation loss of best_net, on this run's validation patches
        if self.epoch > 0 and cfg.keep == "best":
            # Continuing: the weights we start from are the ones to beat (a loaded
            # model's best), so an epoch that does not improve on them cannot replace them.
            held = validate(net, lambda b: self.loss(net, b.to(device)), val_batches)
            best_net = to_cpu(net.state_dict())
        try:
            for _ in range(self.epoch, stop):
                train_loss = train_epoch(net, optimizer, batch_loss, steps=cfg.steps_per_epoch,
                                         bar=bar)
                val_loss = validate(net, lambda b: self.loss(net, b.to(device)), val_batches)
                scheduler.step(val_loss)
                self.epoch += 1
                improved = val_loss < self.best
                if improved:
                    self.best, stale = val_loss, 0
                else:
                    stale += 1
                if val_loss < held:
                    held, best_net = val_loss, to_cpu(net.state_dict())
                end_epoch(self, optimizer=optimizer, scheduler=scheduler, gen=gen, bar=bar,
                          stop=stop, train_loss=train_loss, val_loss=val_loss,
                          improved=improved)
                if cfg.stop_patience and stale >= cfg.stop_patience:
                    bar.write(f"{self.key}: early stop after epoch {self.epoch} (no better "
                              f"validation loss for {stale} epochs)", file=sys.stderr)
                    break
        finally:
            bar.close()
            if cfg.keep == "best" and best_net is not None:
                net.load_state_dict(best_net)
            net.to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]
        return self

    def loss(self, net: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        """L1 or L2 loss of ``net`` on a (n, 2, h, w) batch of (input, target) patches."""
        pred = net(batch[:, :1])
        if self.config.loss == "l2":
            return F.mse_loss(pred, batch[:, 1:])
        return F.l1_loss(pred, batch[:, 1:])

    # --- prediction -----------------------------------------------------------------
    @torch.no_grad()
    def denoise(self, image: np.ndarray) -> np.ndarray:
        """Restore a 2D image (or each plane of a stack) in raw intensity units.

        Any size works (reflection padding to the U-Net's multiple, cropped back).
        The output has the input's shape, Y and X times ``upscale``.
        """
        ready = all(x is not None for x in (self.net, self.norm_in, self.norm_out))
        arr = trained_planes(self, image, trained=ready,
                             train_args="--input NOISY_DIR --target CLEAN_DIR")
        s = self.upscale
        out = np.stack([self._denoise_plane(p) for p in arr.reshape(-1, *arr.shape[-2:])])
        return out.reshape(*arr.shape[:-2], arr.shape[-2] * s, arr.shape[-1] * s)

    def _denoise_plane(self, plane: np.ndarray) -> np.ndarray:
        net, norm_in, norm_out = self.net, self.norm_in, self.norm_out
        if net is None or norm_in is None or norm_out is None:
            raise InputError(f"{self.key} is not trained")
        device = resolve_device(self.device)
        net.to(device).eval()
        s, m, pad = self.upscale, net.multiple, self.receptive_field
        # Phases of the pooling grid, in input pixels: an input shift moves the network's
        # grid by s, so m // s shifts per axis cover every phase a tile can have.
        q = max(1, m // s)
        phases = [(sy, sx) for sy in range(q) for sx in range(q)] \
            if self.config.shift_average else [(0, 0)]
        h, w = plane.shape
        x = norm_in(plane)
        ey, ex = (-(h + 2 * pad + q)) % q, (-(w + 2 * pad + q)) % q
        views = [np.pad(x, ((pad + sy, pad + q - sy + ey), (pad + sx, pad + q - sx + ex)),
                        mode="reflect") for sy, sx in phases]
        chunk = max(1, min(len(views), MAX_PIXELS // (views[0].size * s * s)))
        total = np.zeros((h * s, w * s), dtype=np.float64)
        for start in range(0, len(views), chunk):
            group = phases[start:start + chunk]
            batch = torch.from_numpy(np.stack(views[start:start + chunk])[:, None]).to(device)
            pred = net(data.upsample(batch, s))[:, 0].double().cpu().numpy()
            for k, (sy, sx) in enumerate(group):
                y0, x0 = (pad + sy) * s, (pad + sx) * s
                total += pred[k, y0:y0 + h * s, x0:x0 + w * s]
        return norm_out.inverse(total / len(phases))

    # --- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.net is None or self.norm_in is None or self.norm_out is None:
            return {}
        state = {"net": to_cpu(self.net.state_dict()), "norm_in": self.norm_in.to_dict(),
                 "norm_out": self.norm_out.to_dict(),
                 "epoch": self.epoch, "best": self.best, "history": list(self.history)}
        state.update(self._train_state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self.net, self.norm_in, self.norm_out = None, None, None
            return
        net = self.build_net()
        try:
            net.load_state_dict(state["net"])
            norm_in = normalizer_from_dict(state["norm_in"])
            norm_out = normalizer_from_dict(state["norm_out"])
        except (KeyError, RuntimeError, InputError) as exc:
            raise InputError(f"the saved {self.key} weights do not fit its config "
                             f"({type(exc).__name__}); was the file edited?") from None
        self.net, self.norm_in, self.norm_out = net.eval(), norm_in, norm_out
        self.epoch, self.best = int(state["epoch"]), float(state["best"])
        self.history = [dict(h) for h in state.get("history", [])]
        self._train_state = {k: state[k] for k in ("optimizer", "scheduler", "rng")
                             if k in state}
