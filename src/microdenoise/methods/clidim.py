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
of the noisy input *and the ground truth*, which uses the ground truth at test time;
here inputs are scaled by the 1/99.8 percentiles of the training inputs
(``percentiles``) and targets by the min/max of the training targets
(``target_percentiles`` 0/100, so that every target lies in Tanh's range, as in the
official code), both stored in the model and mapped to [-1, 1]. (2) The official
projection head is never trained (it is built after the optimizers); it is trained
by default here, ``cl_head_trainable=False`` reproduces the code. (3) Model
selection uses a validation split of the training pairs (the official code selects
on the test set, and only among epochs whose output beats the input): the generator
weights with the best validation PSNR (G in eval mode) are kept. (4) Any image size
works at inference: reflection padding to a multiple of ``2**num_downs``, cropped
back (the official code tests on 512x512 images). (5) The schedule is pix2pix's,
``n_epochs + n_epochs_decay`` epochs; the CLIDiM fork starts its epoch count at 0
and so runs one more epoch at the constant rate (801 in all). An epoch draws
``steps_per_epoch`` batches of random crops (with replacement), not one pass over a
fixed set of crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Self

import numpy as np
import torch

from .. import data
from ..contrastive import ProjectionHead
from ..errors import InputError
from ..metrics import psnr
from ..networks import NLayerDiscriminator, UnetGenerator, pix2pix_receptive_field
from ..normalize import Normalizer, Percentile, normalizer_from_dict
from ..registry import Denoiser, register
from ..training import (
    epoch_status,
    generator,
    progress_bar,
    resolve_device,
    resume_state,
    to_cpu,
    trained_planes,
    write_checkpoints,
)
from .clidim_train import TrainState, train_step

__all__ = ["CLIDiM", "CLIDiMConfig"]

Variant = Literal["baseline", "tv", "ssim", "cl", "cl+tv+ssim"]


@dataclass(frozen=True)
class CLIDiMConfig:
    """CLIDiM parameters; defaults are the official training command (module docstring),
    but for ``precision`` (bf16 training steps on CPUs with native bf16; see below).

    ``variant`` picks the paper's ablation rows: ``"baseline"`` (pix2pix: GAN + L1),
    ``"tv"``, ``"ssim"``, ``"cl"`` (baseline plus that term) or ``"cl+tv+ssim"``.
    ``n_train=K`` trains on the first K pairs after a seeded shuffle (16 or 32 in the
    paper); ``val_fraction`` of them (or strips of a single image) are held back for
    model selection, evaluated every ``val_every`` epochs from epoch ``val_from`` on.
    ``keep="best"`` keeps the generator with the best validation PSNR (the last one if
    no validation ran). Every ``checkpoint_every`` epochs ``last.pt`` is written to
    ``checkpoint_dir`` (``best.pt`` on a better validation PSNR), with the optimizers'
    state for ``resume``; a model saved after ``fit`` holds no optimizer state.
    ``precision``: training-step arithmetic of G and D; ``auto`` is bfloat16 autocast
    (channels-last) on CPUs with native bf16, 1.7x to 1.8x cheaper iterations there,
    float32 elsewhere; ``fp32`` is the official code's. Losses, validation and
    prediction run in float32.
    """

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
class CLIDiM(Denoiser):
    """CLIDiM (Fuentes-Hurtado, Sibarita, Viasnoff): few-shot pix2pix cGAN + contrastive D.

    Train on a few noisy/clean pairs with ``fit(noisy, clean)`` or ``microdenoise
    train --method clidim --input NOISY_DIR --target CLEAN_DIR --n-train 16``.
    """

    family = "few-shot"
    needs = "pairs"
    zero_shot = False
    normalization = "none"  # training-set percentiles, applied inside the method
    Config = CLIDiMConfig
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "paper": {"lambda_l1": 1.0, "n_epochs": 1000, "n_epochs_decay": 500},
        "code": {},
    }
    ARCHITECTURE: ClassVar[tuple[str, ...]] = (
        "variant", "num_downs", "ngf", "ndf", "n_layers_d", "dropout", "cl_dim")

    def __init__(self, config: Any = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self.device = "auto"
        self.net: UnetGenerator | None = None  # the generator
        self.disc: NLayerDiscriminator | None = None
        self.head: ProjectionHead | None = None
        self.norm_in: Normalizer | None = None
        self.norm_out: Normalizer | None = None
        self.epoch = 0
        self.best = -math.inf  # validation PSNR
        self.history: list[dict[str, float]] = []
        self._train_state: dict[str, Any] = {}
        self._with_optimizer = False

    @property
    def receptive_field(self) -> int:
        """Half-width bound of the generator's receptive field (1020 px for unet_256)."""
        return pix2pix_receptive_field(self.config.num_downs)

    @property
    def tile_multiple(self) -> int:
        """1: the generator pads each input centred to its multiple, so the pooling grid
        moves with the tile size whatever the tile starts are; aligning them would only
        force tiles of at least 2 x 1020 + 256 px."""
        return 1

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

    # --- data -----------------------------------------------------------------------
    def pairs(self, noisy: Any, clean: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The training pairs as float32 YX planes, shuffled (seeded), ``n_train`` applied."""
        if clean is None:
            raise InputError(f"{self.key} is trained on pairs: fit(noisy, clean) needs the "
                             "clean targets (or train with --input NOISY_DIR --target CLEAN_DIR)")
        xs = list(noisy) if isinstance(noisy, list | tuple) else [noisy]
        ys = list(clean) if isinstance(clean, list | tuple) else [clean]
        if len(xs) != len(ys):
            raise InputError(f"{len(xs)} noisy image(s) but {len(ys)} clean one(s); pass "
                             "one clean target per noisy image")
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if np.shape(x) != np.shape(y):
                raise InputError(f"pair {i}: noisy shape {np.shape(x)} but clean "
                                 f"{np.shape(y)}; they must have the same shape")
        inputs = data.as_planes(xs, name="the noisy images")
        targets = data.as_planes(ys, name="the clean images")
        order = np.random.default_rng(self.config.seed).permutation(len(inputs))
        k = self.config.n_train
        if k is not None:
            if k < 1 or k > len(inputs):
                raise InputError(f"n_train={k} but {len(inputs)} pair(s) were given (each "
                                 "plane of a stack is a pair); use 1 to that number")
            order = order[:k]
        return [inputs[i] for i in order], [targets[i] for i in order]

    def _normalizers(self, inputs: list[np.ndarray],
                     targets: list[np.ndarray]) -> tuple[Percentile, Percentile]:
        def fit(planes: list[np.ndarray], percents: tuple[float, float]) -> Percentile:
            return Percentile.fit(np.concatenate([p.ravel() for p in planes]),
                                  p_low=percents[0], p_high=percents[1])

        return fit(inputs, self.config.percentiles), fit(targets,
                                                         self.config.target_percentiles)

    # --- training -------------------------------------------------------------------
    def fit(self, noisy: Any, clean: Any = None) -> Self:
        """Train (or continue training) on noisy/clean pairs; see the module docstring.

        A fresh model computes its normalization from these pairs; a loaded or
        resumed one keeps its own and continues its schedule (a finished one starts
        another ``n_epochs + n_epochs_decay`` epochs).
        """
        cfg = self.config
        inputs, targets = self.pairs(noisy, clean)
        if self.net is None and cfg.resume:
            self.load_state_dict(resume_state(self, cfg.resume, self.ARCHITECTURE))
        device = resolve_device(self.device)
        m = 2**cfg.num_downs
        side = min(cfg.crop, *(min(p.shape) for p in inputs))
        if side < max(m, data.MIN_PATCH):
            fit_downs = int(math.log2(side)) if side >= data.MIN_PATCH else 0
            hint = f"use num_downs={fit_downs} or less" if fit_downs else "use larger images"
            raise InputError(f"clidim with num_downs={cfg.num_downs} trains on crops whose "
                             f"side is a multiple of {m}, but the crop and the smallest "
                             f"training image allow {side} px; {hint}")
        fresh = self.net is None or self.norm_in is None or self.norm_out is None
        if fresh:
            self.norm_in, self.norm_out = self._normalizers(inputs, targets)
        norm_in, norm_out = self.norm_in, self.norm_out
        if norm_in is None or norm_out is None:  # pragma: no cover  (set just above)
            raise RuntimeError("normalization missing")
        xs = [2 * norm_in(x) - 1 for x in inputs]
        ys = [2 * norm_out(y) - 1 for y in targets]
        crop = data.choose_patch(ys, cfg.crop, multiple=m)
        train_x, val_x = data.hold_out(xs, fraction=cfg.val_fraction, patch=crop)
        train_y, val_y = data.hold_out(ys, fraction=cfg.val_fraction, patch=crop)
        if not val_x:
            val_x, val_y = train_x, train_y
        with torch.random.fork_rng(devices=[]):  # seeded init and dropout; global RNG untouched
            torch.manual_seed(cfg.seed + self.epoch)
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
            self._run(state, train_x, train_y, val_x, val_y, crop)
        return self

    def _run(self, state: TrainState, train_x: list[np.ndarray], train_y: list[np.ndarray],
             val_x: list[np.ndarray], val_y: list[np.ndarray], crop: int) -> None:
        cfg = self.config
        gen = generator(cfg.seed)
        if "rng" in self._train_state:
            gen.set_state(self._train_state["rng"])
        total = cfg.n_epochs + cfg.n_epochs_decay
        base = (self.epoch // total) * total
        stop = base + total
        bar = progress_bar((stop - self.epoch) * cfg.steps_per_epoch, f"training {self.key}")
        best_g = None
        try:
            for _ in range(self.epoch, stop):
                e = self.epoch - base
                factor = 1.0 - max(0, e + 1 - cfg.n_epochs) / float(cfg.n_epochs_decay + 1)
                state.set_lr(cfg.lr * factor)
                sums: dict[str, float] = {}
                for _ in range(cfg.steps_per_epoch):
                    batch = data.sample_pairs(train_x, train_y, cfg.batch_size, crop, gen=gen)
                    batch = data.augment(batch, gen).to(state.device)
                    for k, v in train_step(state, batch, gen).items():
                        sums[k] = sums.get(k, 0.0) + v
                    bar.update(1)
                self.epoch += 1
                row = {"epoch": float(self.epoch), "lr": cfg.lr * factor}
                row.update({k: v / cfg.steps_per_epoch for k, v in sums.items()})
                improved = False
                if self.epoch >= cfg.val_from and (self.epoch - cfg.val_from) % cfg.val_every == 0:
                    row["val_psnr"] = self.validate(val_x, val_y)
                    improved = row["val_psnr"] > self.best
                    if improved:
                        self.best = row["val_psnr"]
                        best_g = to_cpu(state.g.state_dict())
                self.history.append(row)
                self._train_state = {**state.optimizer_state(), "rng": gen.get_state()}
                epoch_status(bar, f"training {self.key}", self.epoch, stop,
                             g=f"{row['loss_g']:.4g}", d=f"{row['loss_d']:.4g}",
                             val=f"{row.get('val_psnr', float('nan')):.2f}")
                if cfg.checkpoint_dir and (improved or self.epoch % cfg.checkpoint_every == 0):
                    self._with_optimizer = True
                    try:
                        write_checkpoints(self, cfg.checkpoint_dir, improved=improved)
                    finally:
                        self._with_optimizer = False
        finally:
            bar.close()
            state.release()
            if cfg.keep == "best" and best_g is not None:
                state.g.load_state_dict(best_g)

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
        """G (eval mode) on one normalized plane, reflection-padded to its multiple."""
        net = self.net
        if net is None:
            raise InputError(f"{self.key} is not trained")
        device = resolve_device(self.device)
        net.to(device).eval()
        m = net.multiple
        h, w = x.shape
        ph, pw = -h % m, -w % m
        padded = np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)), mode="reflect")
        out = net(torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))
                  [None, None].to(device))
        return out[0, 0, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w].float().cpu().numpy()

    @torch.no_grad()
    def denoise(self, image: np.ndarray) -> np.ndarray:
        """Denoise a 2D image (or each plane of a stack) in raw intensity units; any size."""
        ready = all(x is not None for x in (self.net, self.norm_in, self.norm_out))
        arr = trained_planes(self, image, trained=ready,
                             train_args="--input NOISY_DIR --target CLEAN_DIR --n-train 16")
        norm_in, norm_out = self.norm_in, self.norm_out
        assert norm_in is not None and norm_out is not None
        planes = [norm_out.inverse((self._forward(2 * norm_in(p) - 1) + 1) / 2)
                  for p in arr.reshape(-1, *arr.shape[-2:])]
        return np.stack(planes).reshape(arr.shape).astype(np.float32)

    # --- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.net is None or self.norm_in is None or self.norm_out is None:
            return {}
        state: dict[str, Any] = {
            "net": to_cpu(self.net.state_dict()), "norm_in": self.norm_in.to_dict(),
            "norm_out": self.norm_out.to_dict(), "epoch": self.epoch, "best": self.best,
            "history": list(self.history)}
        if self.disc is not None:
            state["disc"] = to_cpu(self.disc.state_dict())
        if self.head is not None:
            state["head"] = to_cpu(self.head.state_dict())
            state["head_features"] = self.head.features
        if self._with_optimizer:
            state.update(self._train_state)
        elif "rng" in self._train_state:
            state["rng"] = self._train_state["rng"]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            self.net = self.disc = self.head = None
            self.norm_in = self.norm_out = None
            return
        g, d, head = self.build(int(state["head_features"]) if "head_features" in state
                                else None)
        try:
            g.load_state_dict(state["net"])
            if "disc" in state:
                d.load_state_dict(state["disc"])
            if head is not None:
                head.load_state_dict(state["head"])
            norm_in = normalizer_from_dict(state["norm_in"])
            norm_out = normalizer_from_dict(state["norm_out"])
        except (KeyError, RuntimeError, InputError) as exc:
            raise InputError(f"the saved {self.key} weights do not fit its config "
                             f"({type(exc).__name__}); was the file edited?") from None
        self.net, self.disc, self.head = g.eval(), d.eval(), head
        self.norm_in, self.norm_out = norm_in, norm_out
        self.epoch, self.best = int(state["epoch"]), float(state["best"])
        self.history = [dict(h) for h in state.get("history", [])]
        self._train_state = {k: state[k] for k in ("opt_g", "opt_d", "rng") if k in state}
