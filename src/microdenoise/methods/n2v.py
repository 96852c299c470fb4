"""Noise2Void: self-supervised denoising with blind-spot masking.

Krull, Buchholz, Jug, "Noise2Void - Learning Denoising from Single Noisy Images",
CVPR 2019; as CAREamics 0.3.5 does it: a U-Net (depth 2, 32 filters, batch norm,
linear output) maps 64x64 patches, in which about 0.2 % of the pixels (a jittered
grid) are replaced by a random neighbour within +-5 pixels, to the original
values; the loss is the MSE on those pixels only. Patches are flipped and rotated
by 90 degrees; intensities are standardized by the mean/std of the training data
(stored in the model); Adam (lr 1e-3) with ReduceLROnPlateau on the validation
loss of patches held back from the training images. The training *length* is not
CAREamics': see :class:`BlindSpotConfig` (``epochs``, ``steps_per_epoch``).

Options: ``n2v2=True`` (Höck et al., "N2V2 - Fixing Noise2Void Checkerboard
Artifacts with Modified Sampling Strategies and a Tweaked Network Architecture",
ECCV-W 2022: median replacement, max-blur-pool, no top skip), and
``struct_axis``/``struct_span`` (Broaddus et al., "Removing Structured Noise with
Self-Supervised Blind-Spot Networks", ISBI 2020: structN2V, for noise correlated
along an axis).

:class:`BlindSpotMethod` holds what N2V and DecoNoising share (blind-spot data,
masking, tiling-safe prediction) on top of
:class:`~microdenoise.methods.trained.TrainedMethod` (normalizers, training loop,
keep-best, checkpoints, resume); a method adds its network, loss and output.
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
from ..errors import InputError
from ..losses import masked_mse
from ..networks import Net, UNet, receptive_field
from ..normalize import MeanStd, Normalizer
from ..registry import register
from ..training import generator, resolve_device, seeded, step_module
from .trained import TrainedMethod
from .trained_parts import predict_phases


@dataclass(frozen=True)
class BlindSpotConfig:
    """Data, masking and training parameters shared by ``n2v`` and ``deconoising``.

    ``steps_per_epoch=None`` uses one step per ``batch_size`` patch-sized cells of
    the training data (CAREamics' epoch), clipped to 50..400; with ``epochs=100`` that
    is **not CAREamics' length**, which is 30 epochs of one pass (no clipping): on one
    512x512 image 100 x 50 = 5,000 steps here vs 30 x 4 = 120 there (~40x). The
    longer default is deliberate: on FMD ``_1`` frames 600 steps beat CAREamics' 120
    (``benchmarks/results/faithful_checks``, n2v_length); for CAREamics' length pass
    ``epochs=30`` and ``steps_per_epoch`` = ceil(patch-sized cells / ``batch_size``).
    ``fit_per_image=True`` makes ``microdenoise denoise --method n2v`` (and
    ``denoise_array``) train a fresh network on each input image itself (its former
    name ``calibrate`` is refused with the new name, and renamed when an older model
    file is loaded; ``calibrate`` means J-invariant calibration of the classical
    filters only).
    ``shift_average`` averages the prediction over the pooling phases, which makes
    it shift-equivariant, at 4**pools x the prediction cost. It is off by default:
    tiled prediction starts tiles on multiples of the pooling grid
    (:attr:`Denoiser.tile_multiple`), so tiled output equals untiled output without it.
    ``precision``: the training steps' arithmetic; ``auto`` is bfloat16 autocast (with
    channels-last convolutions) on CPUs with native bf16 (AVX512-BF16 or AMX), about
    2x cheaper steps there, and float32 elsewhere; ``fp32`` is CAREamics' (and the
    official DecoNoising code's) arithmetic. Validation and prediction run in float32.
    ``dims=3`` (``n2v`` only) trains a 3D U-Net on ``patch_size_z`` x ``patch_size`` x
    ``patch_size`` ZYX patches with 3D blind spots and denoises whole ZYX volumes; it
    uses uniform replacement, no struct mask and no shift averaging.
    ``keep`` is the weights ``fit`` ends with: ``"last"`` (CAREamics' model in memory)
    or ``"best"`` by validation loss (with that epoch's optimizer state).
    """

    patch_size: int = 64
    patch_size_z: int = 16
    batch_size: int = 16
    masked_percentage: float = 0.2
    roi_radius: int = 5
    replacement: Literal["auto", "uniform", "median"] = "auto"
    struct_axis: Literal["none", "x", "y"] = "none"
    struct_span: int = 5
    augment: bool = True
    epochs: int = 100
    steps_per_epoch: int | None = None
    accumulate: int = 1
    lr: float = 1e-3
    lr_factor: float = 0.1
    lr_patience: int = 10
    val_fraction: float = 0.1
    val_patches: int = 32
    shift_average: bool = False
    dims: int = 2
    seed: int = 42
    checkpoint_dir: str | None = None
    resume: str | None = None
    fit_per_image: bool = False
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    keep: Literal["last", "best"] = "last"
    RENAMED: ClassVar[dict[str, str]] = {"calibrate": "fit_per_image"}  # old -> new names
    #: Upper bounds of the sizes that set an allocation (config.check_range), for N2V
    #: and DecoNoising: far above any use, far below a failed allocation.
    MAXIMA: ClassVar[dict[str, float]] = {
        "patch_size": 4096, "patch_size_z": 1024, "batch_size": 4096, "roi_radius": 64,
        "struct_span": 255, "val_patches": 100_000, "accumulate": 1024, "depth": 8,
        "filters": 1024, "psf_sigma": 64}

    def __post_init__(self) -> None:
        for name in ("patch_size", "patch_size_z", "batch_size", "roi_radius", "epochs",
                     "accumulate", "val_patches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.patch_size < patches.MIN_PATCH:
            raise ValueError(f"patch_size must be >= {patches.MIN_PATCH}")
        if not 0 < self.masked_percentage <= 50:
            raise ValueError("masked_percentage must be in (0, 50]")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ValueError("steps_per_epoch must be >= 1 (or none: automatic)")
        if self.struct_span < 3 or self.struct_span % 2 == 0:
            raise ValueError("struct_span must be odd and >= 3")
        if not 0 <= self.val_fraction < 1:
            raise ValueError("val_fraction must be in [0, 1)")
        if not (self.lr > 0 and 0 < self.lr_factor < 1 and self.lr_patience >= 0):
            raise ValueError("lr must be > 0, lr_factor in (0, 1), lr_patience >= 0")
        if self.dims not in (2, 3):
            raise ValueError("dims must be 2 (YX planes) or 3 (ZYX volumes)")
        if self.dims == 3 and (self.struct_axis != "none" or self.replacement == "median"
                               or self.shift_average):
            raise ValueError("dims=3 uses uniform replacement, no struct_axis and no "
                             "shift_average (those are 2D only)")


class BlindSpotMethod(TrainedMethod):
    """Base of the blind-spot methods: data, masking, loss and tiling-safe prediction.

    Both normalizers are the :class:`~microdenoise.normalize.MeanStd` of the training
    data: ``denoise`` takes standardized images and returns standardized predictions.
    """

    family = "self-supervised"
    needs = "noisy images"
    TRAIN_ARGS = "--input NOISY..."
    FIT_HINT = "m.fit(noisy) in Python; or --param fit_per_image=true to train on each image"

    # --- what a method defines -------------------------------------------------------
    def build_net(self) -> Net:
        """A freshly initialized network (``multiple`` and ``receptive_field`` attributes)."""
        raise NotImplementedError

    def build_modules(self, state: dict[str, Any]) -> dict[str, nn.Module | None]:
        return {"net": self.build_net()}

    def loss(self, net: nn.Module, masked: patches.Masked, target: torch.Tensor) -> torch.Tensor:
        """Training loss on a masked batch; ``target`` holds the standardized patches."""
        raise NotImplementedError

    def predict(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Standardized prediction for a standardized batch (pooling-aligned sizes)."""
        return net(x)

    def finish(self, y: np.ndarray) -> np.ndarray:
        """The output from the phase-averaged standardized prediction (identity here)."""
        return y

    @property
    def replacement(self) -> str:
        return "uniform" if self.config.replacement == "auto" else self.config.replacement

    @property
    def supports_3d(self) -> bool:
        """``dims=3``: ``denoise`` takes ZYX volumes (the pipeline passes them whole)."""
        return bool(self.config.dims == 3)

    @property
    def mean(self) -> float:
        """Mean of the training data (the standardization's offset)."""
        norm = self.norm_in
        return float(norm.mean) if isinstance(norm, MeanStd) else 0.0

    @property
    def std(self) -> float:
        """Standard deviation of the training data (the standardization's scale)."""
        norm = self.norm_in
        return float(norm.std) if isinstance(norm, MeanStd) else 1.0

    def migrate(self, state: dict[str, Any]) -> dict[str, Any]:
        """Format 1 stored ``mean`` and ``std``: now one MeanStd as both normalizers."""
        if "mean" in state:
            both = MeanStd(float(state.pop("mean")), float(state.pop("std"))).to_dict()
            state["norm_in"] = state["norm_out"] = both
        return state

    # --- Denoiser API -------------------------------------------------------------------
    @property
    def receptive_field(self) -> int:
        """Half-width of the network's receptive field (see :func:`networks.receptive_field`)."""
        raise NotImplementedError

    @property
    def tiles_exactly(self) -> bool:
        """Not with ``shift_average``: the shifted passes see each tile's borders."""
        return not self.config.shift_average

    def fit(self, noisy: Any, clean: np.ndarray | None = None) -> Self:
        """Train (or continue training) on raw ``noisy``; ``clean`` is ignored.

        ``noisy`` is a 2D image, a stack whose leading axes are samples, or a list of
        such arrays (with ``dims=3``: ZYX stacks, the axes before ZYX samples). A
        fresh model computes its normalizers (mean/std) from them and trains ``epochs``
        epochs; a model resumed from a checkpoint (``resume``) continues its run up to
        ``epochs`` with its optimizer and scheduler, and once that is done trains
        ``epochs`` more. A loaded exported model continues the same way with a fresh
        optimizer (exports hold no optimizer state). The normalizers are kept.
        """
        cfg = self.config
        planes = patches.as_volumes(noisy) if cfg.dims == 3 else patches.as_planes(noisy)
        if self.net is None and cfg.resume:
            self.resume(cfg.resume)
        device = resolve_device(self.device)
        if self.net is None or self.norm_in is None:
            stack = np.concatenate([p.ravel() for p in planes]).astype(np.float64)
            norm: Normalizer = MeanStd(float(stack.mean()), float(stack.std()))
            with seeded(cfg.seed):  # seeded init; the global RNGs untouched
                net = self.build_net()
        else:
            net, norm = self.net, self.norm_in
        xs = [norm(p) for p in planes]
        patch = patches.choose_patch(xs, cfg.patch_size, multiple=net.multiple)
        depth = (patches.choose_depth(xs, cfg.patch_size_z, multiple=net.multiple)
                 if cfg.dims == 3 else 0)
        self.net, self.norm_in, self.norm_out = net.to(device), norm, norm  # data usable
        train, _, held, _, validated = self.split(xs, None, patch=patch)
        val_gen = generator(cfg.seed + 1)
        val_batches = []
        for start in range(0, cfg.val_patches, cfg.batch_size):
            n = min(cfg.batch_size, cfg.val_patches - start)
            batch = patches.sample_patches(held, n, patch, val_gen, depth=depth)
            val_batches.append((self._mask(batch, val_gen), batch))
        steps = cfg.steps_per_epoch or self._auto_steps(train, patch, depth)
        gen = self.run_generator()
        # bf16 autocast for the training steps where the CPU has it (fp32 outputs, so
        # the losses stay in float32); validation and prediction use ``net`` as is.
        step_net = step_module(net, cfg.precision, device)

        def batch_loss() -> torch.Tensor:
            batch = patches.sample_patches(train, cfg.batch_size, patch, gen, depth=depth)
            if cfg.augment:  # structN2V: flips only, the line mask stays along the noise
                batch = patches.augment(batch, gen, rotate=cfg.struct_axis == "none")
            return self._loss_on(step_net, self._mask(batch, gen), batch, device)

        self.loss_loop(net, gen, batch_loss, lambda b: self._loss_on(net, b[0], b[1], device),
                       val_batches, steps=steps, accumulate=cfg.accumulate, device=device,
                       validated=validated)
        return self

    def _mask(self, batch: torch.Tensor, gen: torch.Generator) -> patches.Masked:
        cfg = self.config
        return patches.blind_spot_mask(batch, percentage=cfg.masked_percentage,
                                    radius=cfg.roi_radius, replacement=self.replacement,
                                    struct_axis=cfg.struct_axis, struct_span=cfg.struct_span,
                                    gen=gen)

    def _loss_on(self, net: nn.Module, masked: patches.Masked, batch: torch.Tensor,
                 device: torch.device) -> torch.Tensor:
        moved = dataclasses.replace(masked, inputs=masked.inputs.to(device),
                                    mask=masked.mask.to(device))
        return self.loss(net, moved, batch.to(device))

    def _auto_steps(self, planes: list[np.ndarray], patch: int, depth: int = 0) -> int:
        sides = (depth, patch, patch) if depth else (patch, patch)
        cells = sum(math.prod(math.ceil(n / k) for n, k in zip(p.shape, sides, strict=True))
                    for p in planes)
        return min(max(math.ceil(cells / self.config.batch_size), 50), 400)

    @torch.no_grad()
    def denoise(self, image: np.ndarray) -> np.ndarray:
        """Denoise a standardized 2D image (or each plane of a stack), returning the
        standardized prediction (the core maps it back with ``normalizers[1]``); with
        ``dims=3`` a ZYX volume (or each volume of a stack), predicted whole."""
        arr = self.planes(image)
        if self.config.dims == 3:
            if arr.ndim < 3:
                raise InputError(f"this {self.key} model is 3D (dims=3) and denoises ZYX "
                                 f"volumes, but got a plane of shape {arr.shape}: give the "
                                 "stack with its Z (or T) axis, e.g. --axes ZYX")
            vols = arr.reshape(-1, *arr.shape[-3:])
            return np.stack([self._denoise_volume(v) for v in vols]).reshape(arr.shape)
        net, device = self.prediction_net()
        out = [self.finish(predict_phases(
            lambda b: self.predict(net, b), p, pad=int(net.receptive_field),
            multiple=int(net.multiple), device=device, shift_average=self.config.shift_average))
            for p in arr.reshape(-1, *arr.shape[-2:])]
        return np.stack(out).reshape(arr.shape).astype(np.float32)

    def _denoise_volume(self, volume: np.ndarray) -> np.ndarray:
        """One standardized ZYX volume (``dims=3``), reflection-padded by the receptive
        field in Y and X (to the pooling multiple in Z), predicted whole; the core tiles
        large volumes in YX."""
        net, device = self.prediction_net()
        m, rf = int(net.multiple), int(net.receptive_field)
        z, h, w = volume.shape
        ez, ey, ex = -z % m, -(h + 2 * rf) % m, -(w + 2 * rf) % m
        padded = np.pad(volume, ((ez // 2, ez - ez // 2), (rf, rf + ey), (rf, rf + ex)),
                        mode="reflect")
        batch = torch.from_numpy(padded[None, None].astype(np.float32)).to(device)
        out = self.predict(net, batch)[0, 0, ez // 2:ez // 2 + z, rf:rf + h, rf:rf + w]
        return self.finish(out.float().cpu().numpy()).astype(np.float32)


@dataclass(frozen=True)
class N2VConfig(BlindSpotConfig):
    """Noise2Void parameters; defaults are CAREamics 0.3.5's but for the training length
    (see :class:`BlindSpotConfig`) and structN2V's augmentation (flips only, where
    CAREamics turns augmentation off).

    ``n2v2=True`` switches to N2V2 (median replacement unless ``replacement`` is set,
    max-blur-pool, no top skip). ``struct_axis="x"`` (or ``"y"``) hides a line of
    ``struct_span`` pixels along X (Y) around each blind spot: structN2V for noise
    correlated along that axis.
    """

    depth: int = 2
    filters: int = 32
    batch_norm: bool = True
    n2v2: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.depth <= 5 or self.filters < 1:
            raise ValueError("depth must be in 1..5 and filters >= 1")
        if self.dims == 3 and self.n2v2:
            raise ValueError("n2v2 (max-blur-pool) is 2D only; use dims=2 with n2v2")


@register("n2v")
class N2V(BlindSpotMethod):
    """Noise2Void (Krull et al., CVPR 2019), CAREamics-style; N2V2, structN2V and 3D options.

    Train with ``microdenoise train --method n2v`` (or ``fit``), then denoise with the
    saved model. Presets: ``n2v2``.
    """

    Config = N2VConfig
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"n2v2": {"n2v2": True}}
    ARCHITECTURE = ("depth", "filters", "batch_norm", "n2v2", "dims")

    @property
    def replacement(self) -> str:
        if self.config.replacement == "auto":
            return "median" if self.config.n2v2 else "uniform"
        return str(self.config.replacement)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.config.depth, blur=self.config.n2v2)

    def build_net(self) -> UNet:
        cfg = self.config
        return UNet(depth=cfg.depth, filters=cfg.filters, batch_norm=cfg.batch_norm,
                    n2v2=cfg.n2v2, dims=cfg.dims)

    def loss(self, net: nn.Module, masked: patches.Masked, target: torch.Tensor) -> torch.Tensor:
        return masked_mse(net(masked.inputs), target, masked.mask)
