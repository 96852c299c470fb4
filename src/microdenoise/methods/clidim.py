"""CLIDiM: few-shot denoising with a pix2pix cGAN, contrastive, SSIM and TV terms.

Fuentes-Hurtado, Sibarita, Viasnoff, "CLIDiM: contrastive learning for image
denoising in microscopy" (code: ``ffuhu/cl-microscopy-image-denoising``, a fork of
pix2pix, Isola et al., "Image-to-image translation with conditional adversarial
networks", CVPR 2017). As the official code does it:

* G: pix2pix ``unet_256`` (:class:`~microdenoise.networks.UnetGenerator`, 8
  downsamplings, ngf 64, batch norm, dropout 0.5, Tanh; data in [-1, 1]).
  D: PatchGAN, 3 layers, ndf 64, batch norm, on concat(noisy, candidate).
* G loss: vanilla GAN + ``lambda_l1`` L1 (100; the paper writes 1: preset
  ``"paper"``) + ``lambda_ssim`` (1 - SSIM)/2 (window 5, on [0, 1]) +
  ``lambda_tv`` anisotropic TV. D loss: 0.5 (real + fake).
* Contrastive term on D: two augmented views of each (noisy, clean) and
  (noisy, G(noisy)) pair, the flattened 30x30 logit map through a projection
  head, InfoNCE (temperature 0.1); one extra D step per iteration. Order per
  iteration: G forward, contrastive D step, D step, G step.
* Adam (2e-4, betas (0.5, 0.999)), random crops with flips and 90-degree
  rotations, learning rate constant for ``n_epochs`` then linearly to 0 over
  ``n_epochs_decay``. An "epoch" here is ``steps_per_epoch`` iterations: the
  defaults (500 + 300 epochs of 3 iterations at batch 128, about 2.4k iterations)
  match the official run (one epoch = one pass over ~300 crops at batch 128).

Differences, by design: (1) the official code scales each batch by the joint min/max
of the noisy input *and the ground truth*, which uses the ground truth at test time.
The default here, ``normalization="per_image_minmax"``, is the leak-free counterpart
closest to it: each image by its own *noisy* min..max onto [-1, 1] (uint8 data: 0..255,
as the core's ``"unit"`` scaling), the target by the same map in training (so it may
leave [-1, 1]); the core computes it on each plane by itself, as in training (never
per tile nor per stack: ``per_unit_statistics``), and maps the output back with it, and
the model stores no normalizers. It became the default by a rule
written before the run (W2S validation FOVs, small budget: +0.09 dB SI-PSNR, SE 0.02,
n = 9; raw PSNR parity; ``benchmarks/results/faithful_checks``). ``normalization=
"training"`` (the former default; model files without the field load so) scales inputs
by the 1/99.8 percentiles of the training inputs (``percentiles``) and targets by the
exact min/max of the training targets (``target_percentiles`` 0/100), both stored in
the model as affine maps onto [-1, 1]; every training target then lies in Tanh's
range, and Tanh caps the output there: a test image brighter than every training
target comes out at most at their max (saturated). (2) The official
projection head is never trained (it is built after the optimizers); it is trained
by default here, ``cl_head_trainable=False`` reproduces the code. (3) Model
selection uses a validation split of the training pairs (the official code selects
on the test set, and only among epochs whose output beats the input): the generator
weights with the best validation PSNR (G in eval mode) are kept, with that epoch's
discriminator, head, optimizers and RNG; if no split can be held back, a warning and
the last generator (never selected on training data). (4) Any image size
works at inference: reflection padding (bottom and right) to a multiple of ``2**num_downs``, cropped
back (the official code tests on 512x512 images). (5) The schedule is pix2pix's,
``n_epochs + n_epochs_decay`` epochs; the CLIDiM fork starts its epoch count at 0
and so runs one more epoch at the constant rate (801 in all). An epoch draws
``steps_per_epoch`` batches of random crops (with replacement), not one pass over a
fixed set of crops.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch
from torch import nn

from .. import patches
from ..contrastive import ProjectionHead
from ..errors import InputError
from ..metrics import psnr
from ..networks import NLayerDiscriminator, UnetGenerator, pix2pix_receptive_field
from ..normalize import Identity, MeanStd, Percentile
from ..registry import register
from ..training import deterministic, epoch_status, resolve_device, seeded
from ..training_progress import progress_bar
from .clidim_train import TrainState, train_step
from .trained import TrainedMethod, run_plan
from .trained_parts import fit_normalizers

__all__ = ["CLIDiM", "CLIDiMConfig", "tanh_range"]

Variant = Literal["baseline", "tv", "ssim", "cl", "cl+tv+ssim"]


def per_image_minmax(noisy: Any, clean: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each noisy plane and its target mapped onto [-1, 1] by the *noisy* plane's range
    (``2 (v - low) / (high - low) - 1``): min..max, or 0..255 for uint8 data, as the
    core's ``"unit"`` normalization scales an image at prediction. Leak-free: the
    target follows the input's transform, so it may leave [-1, 1]."""
    xs = list(noisy) if isinstance(noisy, list | tuple) else [noisy]
    ys = list(clean) if isinstance(clean, list | tuple) else [clean]
    out_x, out_y = [], []
    for x, y in zip(xs, ys, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim < 2 or y.shape != x.shape:
            out_x.append(x)  # TrainedMethod.pairs explains what is wrong
            out_y.append(y)
            continue
        fx = x.reshape(-1, *x.shape[-2:]).astype(np.float64)
        fy = y.reshape(-1, *y.shape[-2:]).astype(np.float64)
        if x.dtype == np.uint8:
            low, high = np.zeros((len(fx), 1, 1)), np.full((len(fx), 1, 1), 255.0)
        else:
            low, high = fx.min(axis=(1, 2), keepdims=True), fx.max(axis=(1, 2), keepdims=True)
        scale = np.where(high > low, high - low, 1.0)
        out_x.append((2 * (fx - low) / scale - 1).astype(np.float32).reshape(x.shape))
        out_y.append((2 * (fy - low) / scale - 1).astype(np.float32).reshape(y.shape))
    return out_x, out_y


def tanh_range(p: Percentile) -> MeanStd:
    """The affine map of ``p``'s ``low..high`` onto Tanh's ``-1..1`` (``2 p(x) - 1``),
    stored as the fixed standardization ``(x - centre) / half_range``."""
    return MeanStd((p.low + p.high) / 2, (p.high - p.low) / 2)


@dataclass(frozen=True)
class CLIDiMConfig:
    """CLIDiM parameters; defaults are the official training command (module docstring),
    but for ``precision`` (bf16 training steps on CPUs with native bf16; see below).

    ``variant`` picks the paper's ablation rows: ``"baseline"`` (pix2pix: GAN + L1),
    ``"tv"``, ``"ssim"``, ``"cl"`` (baseline plus that term) or ``"cl+tv+ssim"``.
    ``n_train=K`` trains on exactly the first K pairs after a seeded shuffle (16 or 32
    in the paper) and selects on ``max(1, round(val_fraction x given))`` of the pairs
    outside the K (none left: a warning and the last generator); without ``n_train``,
    ``val_fraction`` of the pairs (or strips of a single image) are held back. Validation
    runs every ``val_every`` epochs from epoch ``val_from`` on.
    ``normalization``: ``"per_image_minmax"`` (each image by its own noisy min..max, the
    default) or ``"training"`` (training-set statistics stored in the model); see the
    module docstring.
    ``keep="best"`` keeps the generator with the best validation PSNR, with that epoch's
    discriminator, head, optimizers and RNG (the last one if no validation ran or no
    validation split could be held back). Every ``checkpoint_every`` epochs ``last.pt``
    is written to ``checkpoint_dir`` (``best.pt`` on a better validation PSNR), with the optimizers'
    state for ``resume``; a model saved after ``fit`` holds no optimizer state.
    ``precision``: training-step arithmetic of G and D; ``auto`` is bfloat16 autocast
    (channels-last) on CPUs with native bf16, 1.7x to 1.8x cheaper iterations there,
    float32 elsewhere; ``fp32`` is the official code's. Losses, validation and
    prediction run in float32.
    """

    #: Upper bounds of the sizes that set an allocation (config.check_range).
    MAXIMA: ClassVar[dict[str, float]] = {
        "num_downs": 12, "ngf": 1024, "ndf": 1024, "n_layers_d": 8, "crop": 4096,
        "batch_size": 4096, "cl_dim": 4096}

    variant: Variant = "cl+tv+ssim"
    num_downs: int = 8
    ngf: int = 64
    ndf: int = 64
    n_layers_d: int = 3
    dropout: bool = True
    crop: int = 256
    batch_size: int = 128
    n_epochs: int = 500
    n_epochs_decay: int = 300
    steps_per_epoch: int = 3
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_gan: float = 1.0
    lambda_l1: float = 100.0
    lambda_ssim: float = 10.0
    lambda_tv: float = 1e-4
    lambda_cl: float = 1.0
    cl_temperature: float = 0.1
    cl_dim: int = 128
    cl_head_trainable: bool = True
    normalization: Literal["training", "per_image_minmax"] = "per_image_minmax"
    percentiles: tuple[float, float] = (1.0, 99.8)
    target_percentiles: tuple[float, float] = (0.0, 100.0)
    val_fraction: float = 0.1
    val_from: int = 150
    val_every: int = 1
    n_train: int | None = None
    keep: Literal["best", "last"] = "best"
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 10
    resume: str | None = None

    def __post_init__(self) -> None:
        if self.num_downs < 1:
            raise ValueError("num_downs must be >= 1")
        if self.batch_size < 1 or self.steps_per_epoch < 1:
            raise ValueError("batch_size and steps_per_epoch must be >= 1")
        if self.n_epochs < 0 or self.n_epochs_decay < 0 or self.n_epochs + self.n_epochs_decay < 1:
            raise ValueError("n_epochs + n_epochs_decay must be >= 1")
        if self.val_every < 1 or self.checkpoint_every < 1:
            raise ValueError("val_every and checkpoint_every must be >= 1")

    @property
    def terms(self) -> frozenset[str]:
        """The extra terms of ``variant`` among ``"cl"``, ``"tv"``, ``"ssim"``."""
        return frozenset(self.variant.split("+")) - {"baseline"}


@register("clidim")
class CLIDiM(TrainedMethod):
    """CLIDiM (Fuentes-Hurtado, Sibarita, Viasnoff): few-shot pix2pix cGAN + contrastive D.

    Train on a few noisy/clean pairs with ``fit(noisy, clean)`` or ``microdenoise
    train --method clidim --input NOISY_DIR --target CLEAN_DIR --n-train 16``. By
    default (``normalization="per_image_minmax"``) the core scales each image to
    [0, 1] by its own range and ``denoise`` returns [0, 1]; with ``"training"`` its
    normalizers map the training percentiles onto Tanh's [-1, 1] (both affine, see
    :func:`tanh_range`) and ``denoise`` maps normalized inputs to the generator's
    output in [-1, 1].
    """

    family = "few-shot"
    needs = "pairs"
    Config = CLIDiMConfig
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"lambda_l1": 1.0, "n_epochs": 1000, "n_epochs_decay": 500},
        "code": {},
    }
    ARCHITECTURE: ClassVar[tuple[str, ...]] = (
        "variant", "num_downs", "ngf", "ndf", "n_layers_d", "dropout", "cl_dim")
    TRAIN_ARGS = "--input NOISY_DIR --target CLEAN_DIR --n-train 16"
    MODULES = ("net", "disc", "head")
    TRAIN_KEYS = ("opt_g", "opt_d", "rng")
    HIGHER_IS_BETTER = True  # validation PSNR

    def __init__(self, config: Any = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self.net: UnetGenerator | None = None  # the generator
        self.disc: NLayerDiscriminator | None = None
        self.head: ProjectionHead | None = None

    @property
    def normalization(self) -> str:  # type: ignore[override]
        """``"model"`` (affine maps onto [-1, 1] stored in the model), or with
        ``normalization="per_image_minmax"`` ``"unit"``: the core scales each plane to
        [0, 1] by its own min..max (uint8: 0..255; ``per_unit_statistics``), ``denoise``
        maps that onto [-1, 1] and back, and the core maps the prediction back with the
        plane's range."""
        return "unit" if self.config.normalization == "per_image_minmax" else "model"

    @property
    def receptive_field(self) -> int:
        """Half-width bound of the generator's receptive field (1020 px for unet_256)."""
        return pix2pix_receptive_field(self.config.num_downs)

    def build(self, features: int | None) -> tuple[UnetGenerator, NLayerDiscriminator,
                                                   ProjectionHead | None]:
        """Fresh G, D and (for the contrastive variants) a head on ``features`` inputs."""
        cfg = self.config
        g = UnetGenerator(num_downs=cfg.num_downs, ngf=cfg.ngf, dropout=cfg.dropout)
        d = NLayerDiscriminator(in_channels=2, ndf=cfg.ndf, n_layers=cfg.n_layers_d)
        head = None
        if "cl" in cfg.terms and features is not None:
            head = ProjectionHead(features, dim=cfg.cl_dim)
            head.requires_grad_(cfg.cl_head_trainable)
        return g, d, head

    def build_modules(self, state: dict[str, Any]) -> dict[str, nn.Module | None]:
        features = state.get("head_features")
        g, d, head = self.build(int(features) if features is not None else None)
        return {"net": g, "disc": d, "head": head}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output. A model whose stored normalizers are not
        identities was trained with ``normalization="training"`` (files from before
        that option lack the field, whose default is now ``"per_image_minmax"``)."""
        super().load_state_dict(state)
        kind = state.get("norm_in", {}).get("kind") if state else None
        if kind not in (None, "none") and self.config.normalization != "training":
            self.config = dataclasses.replace(self.config, normalization="training")

    def extra_state(self) -> dict[str, Any]:
        return {"head_features": self.head.features} if self.head is not None else {}

    def migrate(self, state: dict[str, Any]) -> dict[str, Any]:
        """Format 1 stored the percentile normalizers (mapped to [-1, 1] inside
        ``denoise``): now the equivalent affine maps onto [-1, 1]."""
        for key in ("norm_in", "norm_out"):
            if state.get(key, {}).get("kind") == "percentile":
                state[key] = tanh_range(Percentile.from_dict(state[key])).to_dict()
        return state

    # --- training -------------------------------------------------------------------
    def fit(self, noisy: Any, clean: Any = None) -> Self:
        """Train (or continue training) on raw noisy/clean pairs; see the module docstring.

        A fresh model computes its normalizers from these pairs; a loaded or resumed
        one keeps its own and continues its schedule (a finished one starts another
        ``n_epochs + n_epochs_decay`` epochs), with its optimizers when resumed from a
        checkpoint. Without a validation split: a warning, and the last generator.
        """
        cfg = self.config
        per_image = cfg.normalization == "per_image_minmax"
        if per_image:  # each pair onto [-1, 1] by its noisy plane's range, before pairs()
            noisy, clean = per_image_minmax(noisy, clean)
        inputs, targets, spare_in, spare_tg = self.pairs(noisy, clean)
        if self.net is None and cfg.resume:
            self.resume(cfg.resume)
        device = resolve_device(self.device)
        m = 2**cfg.num_downs
        side = min(cfg.crop, *(min(p.shape) for p in inputs))
        if side < max(m, patches.MIN_PATCH):
            fit_downs = int(math.log2(side)) if side >= patches.MIN_PATCH else 0
            hint = f"use num_downs={fit_downs} or less" if fit_downs else "use larger images"
            raise InputError(f"clidim with num_downs={cfg.num_downs} trains on crops whose "
                             f"side is a multiple of {m}, but the crop and the smallest "
                             f"training image allow {side} px; {hint}")
        fresh = not self.trained
        if per_image:
            if fresh:
                self.norm_in, self.norm_out = Identity(), Identity()
            xs, ys, spare = inputs, targets, (spare_in, spare_tg)
        elif fresh:
            p_in, p_out = fit_normalizers(inputs, targets, percentiles=cfg.percentiles,
                                          target_percentiles=cfg.target_percentiles)
            assert isinstance(p_in, Percentile) and isinstance(p_out, Percentile)
            self.norm_in, self.norm_out = tanh_range(p_in), tanh_range(p_out)
            # 2 p(x) - 1 equals the stored affine up to float32 rounding; computed so, a
            # fresh run trains on the same bits as format-1 models did.
            xs = [2 * p_in(x) - 1 for x in inputs]
            ys = [2 * p_out(y) - 1 for y in targets]
            spare = ([2 * p_in(x) - 1 for x in spare_in], [2 * p_out(y) - 1 for y in spare_tg])
        else:
            norm_in, norm_out = self.normalizers
            xs, ys = [norm_in(x) for x in inputs], [norm_out(y) for y in targets]
            spare = ([norm_in(x) for x in spare_in], [norm_out(y) for y in spare_tg])
        crop = patches.choose_patch(ys, cfg.crop, multiple=m)
        train_x, train_y, val_x, val_y, validated = self.split(xs, ys, patch=crop, spare=spare)
        # Seeded init and dropout; the global RNGs of every device untouched.
        with seeded(cfg.seed + self.epoch), deterministic(device):
            if fresh or self.disc is None:
                g, d, head = self.build((crop // 2**cfg.n_layers_d - 2) ** 2)  # 900 at 256
                if not fresh and self.net is not None:
                    g = self.net
                self.net, self.disc, self.head = g, d, head
            features = (crop // 2**cfg.n_layers_d - 2) ** 2
            if self.head is not None and self.head.features != features:
                raise InputError(f"this model's projection head was built for "
                                 f"{self.head.features} discriminator outputs, but crops of "
                                 f"{crop} px give {features}; continue with the crop it was "
                                 "trained with")
            state = TrainState.create(self, device)
            self._run(state, (train_x, train_y), (val_x, val_y), crop, validated)
        return self

    def _run(self, state: TrainState, train: tuple[list[np.ndarray], list[np.ndarray]],
             val: tuple[list[np.ndarray], list[np.ndarray]], crop: int, validated: bool) -> None:
        cfg = self.config
        gen = self.run_generator()
        total = cfg.n_epochs + cfg.n_epochs_decay
        base = (self.epoch // total) * total
        stop = base + total
        bar = progress_bar((stop - self.epoch) * cfg.steps_per_epoch, f"training {self.key}",
                           plan=run_plan(stop - self.epoch, cfg.steps_per_epoch, cfg,
                                         state.device))
        self.begin_selection(validated, lambda: self.validate(*val))
        try:
            for _ in range(self.epoch, stop):
                e = self.epoch - base
                factor = 1.0 - max(0, e + 1 - cfg.n_epochs) / float(cfg.n_epochs_decay + 1)
                state.set_lr(cfg.lr * factor)
                sums: dict[str, float] = {}
                for _ in range(cfg.steps_per_epoch):
                    batch = patches.sample_pairs(*train, cfg.batch_size, crop, gen=gen)
                    batch = patches.augment(batch, gen).to(state.device)
                    for k, v in train_step(state, batch, gen).items():
                        sums[k] = sums.get(k, 0.0) + v
                    bar.update(1)
                self.epoch += 1
                row = {"epoch": float(self.epoch), "lr": cfg.lr * factor}
                row.update({k: v / cfg.steps_per_epoch for k, v in sums.items()})
                self.history.append(row)
                self.train_state = {**state.optimizer_state(), "rng": gen.get_state()}
                improved = False
                if self.epoch >= cfg.val_from and (self.epoch - cfg.val_from) % cfg.val_every == 0:
                    row["val_psnr"] = self.validate(*val)
                    improved = self.select(row["val_psnr"], validated)
                epoch_status(bar, f"training {self.key}", self.epoch, stop,
                             g=f"{row['loss_g']:.4g}", d=f"{row['loss_d']:.4g}",
                             val=f"{row.get('val_psnr', float('nan')):.2f}")
                if improved or self.epoch % cfg.checkpoint_every == 0:
                    self.checkpoint(improved)
                if self.epoch_done(stop):
                    break
        finally:
            bar.close()
            state.release()
            self.end_selection()

    @torch.no_grad()
    def validate(self, inputs: list[np.ndarray], targets: list[np.ndarray]) -> float:
        """Mean PSNR (data range of each target, as the paper) of G in eval mode on
        normalized planes in [-1, 1]."""
        scores = []
        for x, y in zip(inputs, targets, strict=True):
            pred = self._forward(x)
            scores.append(psnr(pred, y, data_range=float(y.max() - y.min())))
        return float(np.mean(scores))

    # --- prediction -----------------------------------------------------------------
    def _forward(self, x: np.ndarray) -> np.ndarray:
        """G (eval mode) on one normalized plane, reflection-padded at its bottom and right
        to its multiple, so that the pooling grid starts at the plane's first pixel: tiles
        starting on multiples of ``2**num_downs`` (:attr:`tile_multiple`) with the
        receptive field as overlap then give the untiled output."""
        net, device = self.prediction_net()
        m = net.multiple
        h, w = x.shape
        padded = np.pad(x, ((0, -h % m), (0, -w % m)), mode="reflect")
        out = net(torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))
                  [None, None].to(device))
        return out[0, 0, :h, :w].float().cpu().numpy()

    @torch.no_grad()
    def denoise(self, image: np.ndarray) -> np.ndarray:
        """Denoise a normalized 2D image (or each plane of a stack; any size) and return
        the generator's output in [-1, 1] (the core applies ``normalizers[1].inverse``);
        with ``normalization="per_image_minmax"`` the image and the output are in
        [0, 1] (the image's own range, which the core applies and undoes)."""
        arr = self.planes(image)
        if self.config.normalization == "per_image_minmax":  # [0, 1] from the core
            planes = [(self._forward(2 * p - 1) + 1) / 2 for p in arr.reshape(-1, *arr.shape[-2:])]
        else:
            planes = [self._forward(p) for p in arr.reshape(-1, *arr.shape[-2:])]
        return np.stack(planes).reshape(arr.shape).astype(np.float32)
