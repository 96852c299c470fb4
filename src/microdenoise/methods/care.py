"""CARE: supervised content-aware image restoration from noisy/clean pairs.

Weigert et al., "Content-aware image restoration: pushing the limits of
fluorescence microscopy", Nature Methods 15, 1090-1097 (2018), as CSBDeep's
``csbdeep.models.CARE`` does it in 2D (its ``Config`` defaults): a U-Net of depth 2
with 32 initial filters, 5x5 kernels, no batch norm, nearest upsampling,
concatenated skips, a linear 1x1 output conv plus the input (residual); the L1
("mae") loss; Adam (lr 4e-4), batches of 16 patches, 100 epochs of 400 steps,
ReduceLROnPlateau (factor 0.5, patience 10) on the validation loss, and the best
weights by validation loss kept at the end.

Differences from CSBDeep (the defaults here, then how to get CSBDeep's):

* normalization: by default (``"percentile"``) 1 / 99.8 percentiles computed once over
  all training inputs and, separately, all training targets, stored in the model (a
  fixed affine map, exportable as such). CSBDeep normalizes each image by its own
  percentiles (training pairs at percents jittered in 1..3 / 99.5..99.9, the target at
  the same percents as its input; prediction at 2 / 99.8, the output mapped back with
  the input's): ``normalization="per_image"`` does that (:func:`per_image_percentiles`)
  but predicts at 1 / 99.8 (the core's percentile scaling, each plane by its own, as
  in training: ``per_unit_statistics``); such a model
  stores no normalizers. On W2S 8-bit validation FOVs (rescaled per image) it scored
  +0.47 dB SI-PSNR (SE 0.15, n = 9, 200 steps; ``benchmarks/results/faithful_checks``),
  but its output takes the *noisy* input's percentile range, so raw intensities are
  not kept: on the contract test's synthetic Poisson-Gaussian pairs its output was
  further from the clean image than the noisy input was. Hence not the default.
  ``"meanstd"``: the training inputs' mean/std for inputs and targets;
* augmentation: patches are flipped and rotated by 90 degrees (the 8 dihedral views)
  by default; CSBDeep does not augment: ``augment=False``;
* patches: drawn afresh at random from the whole training images for every batch;
  CSBDeep extracts a fixed set of patches once (``create_patches``) and skips
  background patches (``no_background_patches(0.4)``: only patches whose target
  reaches 0.4 x the image's 99.9th percentile); there is no background filter here;
* validation: whole pairs held back (``val_fraction`` of the images, or the pairs
  outside ``n_train``); CSBDeep holds back 10 % of its patches;
* ``shift_average=True`` averages the network over its pooling phases (16x the
  prediction cost at depth 2; off by default, as CSBDeep: tiles start on the pooling
  grid, :attr:`Denoiser.tile_multiple`, so tiled output equals untiled output anyway).

``upscale=2`` restores and super-resolves jointly, as CSBDeep's
``UpsamplingCARE``: the low-resolution input is upsampled 2x by linear
interpolation, then the U-Net maps it to the high-resolution clean target; the
output is twice the input's size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import patches
from ..networks import Net, UNet, receptive_field
from ..normalize import Identity, Percentile
from ..registry import register
from ..training import generator, resolve_device, seeded, step_module
from .trained import TrainedMethod
from .trained_parts import fit_normalizers, predict_phases

__all__ = ["CARE", "CAREConfig", "CARENet", "fit_normalizers", "per_image_percentiles"]

JITTER_LOW, JITTER_HIGH = (1.0, 3.0), (99.5, 99.9)  # CSBDeep's sample_percentiles()


def per_image_percentiles(inputs: list[np.ndarray], targets: list[np.ndarray],
                          rng: np.random.Generator) -> tuple[list[np.ndarray],
                                                             list[np.ndarray]]:
    """CSBDeep's training normalization (``create_patches`` with ``norm_percentiles``):
    each pair draws percents ``p_low ~ U(1, 3)``, ``p_high ~ U(99.5, 99.9)``; the input
    is mapped by its own ``p_low``/``p_high`` percentiles to 0/1 and the target by its
    own at the same percents."""
    xs, ys = [], []
    for x, y in zip(inputs, targets, strict=True):
        lo, hi = rng.uniform(*JITTER_LOW), rng.uniform(*JITTER_HIGH)
        xs.append(Percentile.fit(x, p_low=lo, p_high=hi)(x))
        ys.append(Percentile.fit(y, p_low=lo, p_high=hi)(y))
    return xs, ys


@dataclass(frozen=True)
class CAREConfig:
    """CARE parameters; defaults are CSBDeep's 2D ``Config`` (see the module docstring).

    ``patch_size`` is the input patch side (default 128, or 64 for ``upscale=2``: the
    target patch is then 128). ``n_train=K`` trains on the first K pairs after a
    seeded shuffle (few-shot; each YX plane of a stack is a pair) and validates on
    ``max(1, round(val_fraction x given))`` of the pairs outside the K (none left:
    a warning and the last weights). ``stop_patience=N``
    stops after N epochs without a better validation loss (0: never). ``keep`` is
    the weights ``fit`` ends with: ``"best"`` by validation loss (with that epoch's
    optimizer, scheduler and RNG state) or ``"last"`` (always, when no validation
    split can be held back).
    ``precision``: training-step arithmetic; ``auto`` is bfloat16 autocast (channels-last)
    on CPUs with native bf16, ~2x cheaper steps there, float32 elsewhere; ``fp32`` is
    CSBDeep's. Validation and prediction run in float32.
    """

    #: Upper bounds of the sizes that set an allocation (config.check_range).
    MAXIMA: ClassVar[dict[str, float]] = {
        "depth": 8, "filters": 1024, "kernel_size": 15, "patch_size": 4096,
        "batch_size": 4096, "val_patches": 100_000}

    depth: int = 2
    filters: int = 32
    kernel_size: int = 5
    batch_norm: bool = False
    residual: bool = True
    loss: Literal["l1", "l2"] = "l1"
    upscale: int = 1
    normalization: Literal["percentile", "meanstd", "per_image"] = "percentile"
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
        if self.patch_size is not None and self.patch_size * self.upscale < patches.MIN_PATCH:
            raise ValueError(f"patch_size must give target patches of >= {patches.MIN_PATCH} px")
        if len(self.percentiles) != 2 or not 0 <= self.percentiles[0] < self.percentiles[1] \
                <= 100:
            raise ValueError("percentiles must be two numbers 0 <= low < high <= 100")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        if not (self.lr > 0 and 0 < self.lr_factor < 1 and self.lr_patience >= 0):
            raise ValueError("lr must be > 0, lr_factor in (0, 1), lr_patience >= 0")
        if self.stop_patience < 0 or (self.n_train is not None and self.n_train < 1):
            raise ValueError("stop_patience must be >= 0 and n_train >= 1 (or none: all)")


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
class CARE(TrainedMethod):
    """CARE (Weigert et al., Nature Methods 2018): supervised U-Net, CSBDeep defaults.

    Train on noisy/clean pairs with ``fit(noisy, clean)`` or ``microdenoise train
    --method care --input NOISY_DIR --target CLEAN_DIR``; ``upscale=2`` also
    super-resolves 2x (clean targets twice the noisy size). Its normalizers are
    ``norm_in`` (inputs) and ``norm_out`` (targets): ``denoise`` maps ``norm_in``-
    normalized images to ``norm_out``-normalized predictions.
    """

    family = "supervised"
    needs = "pairs"
    Config = CAREConfig
    ARCHITECTURE: ClassVar[tuple[str, ...]] = (
        "depth", "filters", "kernel_size", "batch_norm", "residual", "upscale")

    @property
    def normalization(self) -> str:  # type: ignore[override]
        """``"model"`` (normalizers stored in the model), or with
        ``normalization="per_image"`` ``"percentile"``: the core scales each plane by
        its own 1/99.8 percentiles, as training scaled each pair (over the whole plane,
        never per tile: ``per_unit_statistics``), and maps the prediction back with
        them (the stored normalizers are then identities)."""
        return "percentile" if self.config.normalization == "per_image" else "model"

    @property
    def upscale(self) -> int:
        return int(self.config.upscale)

    @property
    def patch_size(self) -> int:
        """Input patch side: ``patch_size``, or 128 // ``upscale`` by default."""
        return int(self.config.patch_size or 128 // self.upscale)

    @property
    def tiles_exactly(self) -> bool:
        """Not with ``shift_average``: the shifted passes see each tile's borders."""
        return not self.config.shift_average

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

    def build_modules(self, state: dict[str, Any]) -> dict[str, nn.Module | None]:
        return {"net": self.build_net()}

    # --- training -------------------------------------------------------------------
    def fit(self, noisy: Any, clean: Any = None) -> Self:
        """Train (or continue training) on raw noisy/clean pairs.

        A fresh model computes its normalizers from these pairs and trains ``epochs``
        epochs; a model resumed from a checkpoint (``resume``) continues its run up to
        ``epochs`` with its optimizer and scheduler, then trains ``epochs`` more; a
        loaded exported model continues the same way with a fresh optimizer. The
        normalizers are kept. A validation split (``val_fraction`` of the pairs, or
        strips of a single image) is held back; without one, a warning and
        ``keep="last"`` for that run (see :meth:`TrainedMethod.split`).
        """
        cfg = self.config
        s = self.upscale
        inputs, targets, spare_in, spare_tg = self.pairs(noisy, clean, scale=s)
        if self.net is None and cfg.resume:
            self.resume(cfg.resume)
        device = resolve_device(self.device)
        if cfg.normalization == "per_image":  # CSBDeep: each pair by its own percentiles
            rng = np.random.default_rng(cfg.seed + self.epoch)
            inputs, targets = per_image_percentiles(inputs, targets, rng)
            spare_in, spare_tg = per_image_percentiles(spare_in, spare_tg, rng)
        if self.net is None or self.norm_in is None or self.norm_out is None:
            norm_in, norm_out = (Identity(), Identity()) if cfg.normalization == "per_image" \
                else fit_normalizers(inputs, targets, kind=cfg.normalization,
                                     percentiles=tuple(cfg.percentiles))
            with seeded(cfg.seed):  # seeded init; the global RNGs untouched
                net = self.build_net()
        else:
            net, norm_in, norm_out = self.net, self.norm_in, self.norm_out
        xs = [patches.upsample(norm_in(x), s).numpy() for x in inputs]
        ys = [norm_out(y) for y in targets]
        spare = ([patches.upsample(norm_in(x), s).numpy() for x in spare_in],
                 [norm_out(y) for y in spare_tg])
        patch = patches.choose_patch(ys, self.patch_size * s, multiple=net.multiple)
        self.net, self.norm_in, self.norm_out = net.to(device), norm_in, norm_out
        train_x, train_y, val_x, val_y, validated = self.split(xs, ys, patch=patch,
                                                               spare=spare)
        val_gen = generator(cfg.seed + 1)
        val_batches = [patches.sample_pairs(val_x, val_y, min(cfg.batch_size, cfg.val_patches - i),
                                         patch, step=s, gen=val_gen)
                       for i in range(0, cfg.val_patches, cfg.batch_size)]
        gen = self.run_generator()
        step_net = step_module(net, cfg.precision, device)  # bf16 where the CPU has it

        def batch_loss() -> torch.Tensor:
            batch = patches.sample_pairs(train_x, train_y, cfg.batch_size, patch, step=s, gen=gen)
            if cfg.augment:
                batch = patches.augment(batch, gen)  # the same view of input and target
            return self.loss(step_net, batch.to(device))

        self.loss_loop(net, gen, batch_loss, lambda b: self.loss(net, b.to(device)),
                       val_batches, steps=cfg.steps_per_epoch, device=device,
                       validated=validated)
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
        """Restore a ``norm_in``-normalized 2D image (or each plane of a stack); the
        prediction is ``norm_out``-normalized (the core applies ``norm_out.inverse``).

        Any size works (reflection padding to the U-Net's multiple, cropped back).
        The output has the input's shape, Y and X times ``upscale``.
        """
        arr = self.planes(image)
        net, device = self.prediction_net()
        s = self.upscale
        # Phases of the pooling grid, in input pixels: an input shift moves the network's
        # grid by s, so multiple // s shifts per axis cover every phase a tile can have.
        out = [predict_phases(lambda b: net(patches.upsample(b, s)), p, pad=self.receptive_field,
                              multiple=max(1, net.multiple // s), scale=s, device=device,
                              shift_average=self.config.shift_average)
               for p in arr.reshape(-1, *arr.shape[-2:])]
        return np.stack(out).reshape(*arr.shape[:-2], arr.shape[-2] * s,
                                     arr.shape[-1] * s).astype(np.float32)
