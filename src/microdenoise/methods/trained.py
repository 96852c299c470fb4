"""The base of the trained methods (``n2v``, ``deconoising``, ``care``, ``clidim``).

:class:`TrainedMethod` holds what they share: training pairs, normalizers fitted on
the training data and stored in the model, the validation split (never the training
data silently), the loss-validated loop, keep-best with the kept epoch's training
state, resume, checkpoints, and the state of networks, normalizers and history.

The contract with the prediction core (``normalization = "model"``): after ``fit``
or ``load_state_dict``, :attr:`TrainedMethod.normalizers` is ``(input, output)``;
the core normalizes the raw image with the first, calls ``denoise`` on the
normalized float32 array, and maps the result back with the second's ``inverse``.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .. import patches
from ..errors import InputError
from ..normalize import Normalizer, normalizer_from_dict
from ..registry import FORMAT_VERSION, Denoiser, load
from ..training import (
    deterministic,
    epoch_status,
    generator,
    make_optimizer,
    resolve_device,
    to_cpu,
    train_epoch,
    use_bf16,
    validate,
    write_checkpoints,
)
from ..training_progress import progress_bar

__all__ = ["TrainedMethod", "run_plan"]

def run_plan(epochs: int, steps: int, cfg: Any, device: torch.device) -> str:
    """The plan of a run in words: epochs, steps, batch, device and arithmetic."""
    bf16 = use_bf16(getattr(cfg, "precision", "fp32"), device)
    plural = "" if epochs == 1 else "s"
    return (f"{epochs} epoch{plural} x {steps} steps of {cfg.batch_size} patches "
            f"({epochs * steps} steps) on {device.type}, "
            f"{'bfloat16 autocast' if bf16 else 'float32'} steps")


class TrainedMethod(Denoiser):
    """Base of the trained methods (the contract: see the module docstring). Subclasses
    set ``ARCHITECTURE`` (fields fixing the weights' shapes), ``TRAIN_ARGS``/``FIT_HINT``,
    ``MODULES`` (networks, ``"net"`` first), ``TRAIN_KEYS`` (optimizer/scheduler/RNG, for
    checkpoints only), ``HIGHER_IS_BETTER``, and define ``build_modules`` and ``fit``."""

    normalization = "model"
    ARCHITECTURE: ClassVar[tuple[str, ...]] = ()
    TRAIN_ARGS: ClassVar[str] = "--input NOISY_DIR --target CLEAN_DIR"
    FIT_HINT: ClassVar[str] = "m.fit(noisy, clean) in Python"
    MODULES: ClassVar[tuple[str, ...]] = ("net",)
    TRAIN_KEYS: ClassVar[tuple[str, ...]] = ("optimizer", "scheduler", "rng")
    HIGHER_IS_BETTER: ClassVar[bool] = False
    _kept: dict[str, Any] | None  # keep-best: the snapshot of the best epoch in this run

    def __init__(self, config: Any = None, /, **params: Any) -> None:
        super().__init__(config, **params)
        self.net: Any = None
        self.norm_in: Normalizer | None = None  # set by fit / load_state_dict
        self.norm_out: Normalizer | None = None
        self.epoch = 0
        self.best = -math.inf if self.HIGHER_IS_BETTER else math.inf
        self.history: list[dict[str, float]] = []
        self.train_state: dict[str, Any] = {}  # optimizer, scheduler, RNG of the last epoch
        self._select, self._kept = False, None  # keep-best in this run
        #: ``on_epoch(epoch, stop, row)``, called after each training epoch (see
        #: :meth:`epoch_done`); not saved, not copied by :meth:`fresh`.
        self.on_epoch: Callable[[int, int, dict[str, float]], bool | None] | None = None

    # --- the contract ---------------------------------------------------------------
    @property
    def trained(self) -> bool:
        """Whether a trained network and its normalizers are held."""
        return self.net is not None and self.norm_in is not None and self.norm_out is not None

    @property
    def fitted(self) -> bool:
        """:attr:`trained` (the core never refits a trained model)."""
        return self.trained

    @property
    def per_unit_statistics(self) -> bool:
        """The core scales each plane by its own statistics (never a tile's), as training
        scaled each pair, when the model stores no normalizers (CARE ``per_image``,
        CLIDiM ``per_image_minmax``)."""
        return self.normalization != "model"

    def untrained_error(self) -> InputError:
        """The "train it first" error, naming the command that trains this method."""
        return InputError(
            f"{self.key} is not trained: train it first: microdenoise train --method "
            f"{self.key} {self.TRAIN_ARGS} --out model.pt, then microdenoise denoise --model "
            f"model.pt INPUT... -o OUTDIR (or {self.FIT_HINT})")

    @property
    def normalizers(self) -> tuple[Normalizer, Normalizer]:
        """``(input, output)`` normalizers fitted on the training data: ``denoise`` takes
        ``input(raw)`` and returns what ``output.inverse`` maps to raw units. A method
        set to normalize each image by itself (``normalization`` not ``"model"``:
        CARE's ``per_image``, CLIDiM's ``per_image_minmax``) stores none: an
        :class:`InputError`, as for the filters, so that no exporter mistakes its
        stored identities for the model's scaling."""
        if self.normalization != "model":
            raise InputError(f"this {self.key} model normalizes each image by itself "
                             f"({self.normalization!r}), it stores no normalizers")
        if self.norm_in is None or self.norm_out is None:
            raise self.untrained_error()
        return self.norm_in, self.norm_out

    @property
    def fit_policy(self) -> str:
        """``"per_image"`` with ``fit_per_image`` (a fresh copy fitted on each image),
        else ``"trained"`` (fitted once on training data, then applied)."""
        return "per_image" if getattr(self.config, "fit_per_image", False) else "trained"

    def planes(self, image: np.ndarray) -> np.ndarray:
        """``image`` as float32 (..., Y, X), after checking that the method is trained."""
        if not self.trained:
            raise self.untrained_error()
        arr = np.asarray(image, dtype=np.float32)
        if arr.ndim < 2:
            raise InputError(f"{self.key} restores 2D planes; got shape {arr.shape}")
        return arr

    def prediction_net(self) -> tuple[Any, torch.device]:
        """The trained network in eval mode on its device, and the device."""
        if self.net is None:
            raise self.untrained_error()
        device = resolve_device(self.device)
        self.net.to(device).eval()
        return self.net, device

    def pairs(self, noisy: Any, clean: Any, *, scale: int = 1
              ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray],
                         list[np.ndarray]]:
        """``(inputs, targets, spare_inputs, spare_targets)``: float32 YX planes after a
        seeded shuffle; ``noisy``/``clean``: arrays or lists of them (clean ``scale`` x
        larger in YX). With ``n_train=K`` the first K pairs are the training pairs and
        the others are *spare*: :meth:`split` validates on them, so that K means K
        training pairs; without ``n_train`` every pair is a training pair (spare: none)."""
        if clean is None:
            raise InputError(f"{self.key} is trained on noisy/clean pairs: fit(noisy, clean) "
                             "needs the clean targets (or train with --input NOISY_DIR "
                             "--target CLEAN_DIR)")
        xs = list(noisy) if isinstance(noisy, list | tuple) else [noisy]
        ys = list(clean) if isinstance(clean, list | tuple) else [clean]
        if len(xs) != len(ys):
            raise InputError(f"{len(xs)} noisy image(s) but {len(ys)} clean one(s); pass "
                             "one clean target per noisy image")
        for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
            if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.ndim >= 2):
                continue  # patches.as_planes explains what is wrong with other data
            sx, sy = x.shape, y.shape
            want = (*sx[:-2], sx[-2] * scale, sx[-1] * scale)
            if sy != want:
                must = "the same shape" if scale == 1 else f"exactly {scale}x the noisy in YX"
                raise InputError(f"pair {i}: noisy shape {sx} but clean {sy}; the clean "
                                 f"image must have {must}, {want}")
        inputs = patches.as_planes(xs, name="the noisy images")
        targets = patches.as_planes(ys, name="the clean images")
        order = np.random.default_rng(self.config.seed).permutation(len(inputs))
        k = self.config.n_train
        if k is not None and (k < 1 or k > len(inputs)):
            raise InputError(f"n_train={k} but only {len(inputs)} pair(s) were given "
                             "(each plane of a stack is a pair); lower n_train or add "
                             "pairs")
        used, spare = (order, order[:0]) if k is None else (order[:k], order[k:])
        return ([inputs[i] for i in used], [targets[i] for i in used],
                [inputs[i] for i in spare], [targets[i] for i in spare])

    def split(self, xs: list[np.ndarray], ys: list[np.ndarray] | None, *, patch: int,
              spare: tuple[list[np.ndarray], list[np.ndarray]] | None = None
              ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray],
                         list[np.ndarray], bool]:
        """``(train_x, train_y, val_x, val_y, validated)``.

        With ``n_train`` set, every pair in ``xs``/``ys`` is trained on and validation
        uses the ``spare`` pairs (those outside the K, :meth:`pairs`): the first
        ``max(1, round(val_fraction * (K + spare)))`` of them (none if ``val_fraction``
        is 0). Without ``n_train``, ``val_fraction`` of ``xs`` is held back
        (:func:`patches.hold_out`). If no validation data result, the training data
        stand in (for the learning-rate schedule only) and a warning says that this run
        keeps its last weights (``keep="last"``) and writes no ``best.pt``: never select
        on them."""
        cfg = self.config
        few_shot = getattr(cfg, "n_train", None) is not None
        if few_shot:
            sx, sy = spare if spare is not None else ([], [])
            n_val = (min(len(sx), max(1, round(cfg.val_fraction * (len(xs) + len(sx)))))
                     if cfg.val_fraction > 0 else 0)
            train_x, train_y = list(xs), list(ys) if ys is not None else []
            val_x, val_y = list(sx[:n_val]), list(sy[:n_val])
        else:
            train_x, val_x = patches.hold_out(xs, fraction=cfg.val_fraction, patch=patch)
            train_y, val_y = patches.hold_out(ys, fraction=cfg.val_fraction, patch=patch) \
                if ys is not None else ([], [])
        if val_x:
            return train_x, train_y, val_x, val_y, True
        if cfg.val_fraction > 0 or cfg.keep == "best":
            why = ("val_fraction=0" if cfg.val_fraction <= 0 else
                   f"n_train={cfg.n_train} uses every given pair for training and none is "
                   "left to validate on" if few_shot else
                   f"val_fraction={cfg.val_fraction} of {len(xs)} image(s) rounds to none and "
                   f"no image is 2 x {patch} px long")
            warnings.warn(f"{self.key}: no validation data could be held back ({why}); "
                          "validating on the training data, so this run keeps its last "
                          "weights (keep='last') and writes no best.pt. Give more images "
                          "(or larger ones) to hold some back.", UserWarning, stacklevel=3)
        return train_x, train_y, train_x, train_y, False

    # --- training -------------------------------------------------------------------
    def resume(self, path: str | Path) -> None:
        """Load the checkpoint ``path`` with its optimizer state; an :class:`InputError`
        if it is missing, another method, or of another ``ARCHITECTURE``."""
        if not Path(path).is_file():
            raise InputError(f"resume={str(path)!r}: no such checkpoint file")
        other = load(path)
        if type(other) is not type(self) or not isinstance(other, TrainedMethod):
            raise InputError(f"resume={str(path)!r} is a {other.key!r} model, not {self.key!r}")
        differ = [k for k in self.ARCHITECTURE
                  if getattr(other.config, k) != getattr(self.config, k)]
        if differ:
            raise InputError(f"resume={str(path)!r} was trained with different "
                             f"{', '.join(differ)}; use the same values to resume")
        self.load_state_dict(other.state_dict(training=True))

    def run_generator(self) -> torch.Generator:
        """The training generator: seeded with ``config.seed``, or at the resumed state."""
        gen = generator(self.config.seed)
        if "rng" in self.train_state:
            gen.set_state(self.train_state["rng"])
        return gen

    def begin_selection(self, validated: bool, evaluate: Callable[[], float]) -> None:
        """Start a run's keep-best: with ``keep="best"`` and a validation split, a
        continuing run first scores the weights it starts from (``evaluate``), so that
        only an epoch beating them on this run's validation data replaces them."""
        self._select = self.config.keep == "best" and validated
        self._kept = None
        if self._select and self.epoch > 0 and math.isfinite(self.best):
            self.best = evaluate()
            self._kept = self.snapshot()

    def select(self, score: float, validated: bool) -> bool:
        """Whether validation ``score`` improves (call after storing the epoch's
        ``train_state``; keep-best then snapshots). Training-data scores never do."""
        beats = score > self.best if self.HIGHER_IS_BETTER else score < self.best
        if not (validated and beats):
            return False
        self.best = score
        if self._select:
            self._kept = self.snapshot()
        return True

    def end_selection(self) -> None:
        """End a run's keep-best: restore the kept epoch's networks and training state."""
        if self._select and self._kept is not None:
            self.restore(self._kept)
        self._select, self._kept = False, None

    def snapshot(self) -> dict[str, Any]:
        """CPU copies of the networks and the training state (keep-best)."""
        state: dict[str, Any] = {name: getattr(self, name).state_dict()
                                 for name in self.MODULES if getattr(self, name) is not None}
        state.update(self.train_state)
        return to_cpu(state)

    def restore(self, snap: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` back."""
        for name in self.MODULES:
            if name in snap and getattr(self, name) is not None:
                getattr(self, name).load_state_dict(snap[name])
        self.train_state = {k: snap[k] for k in self.TRAIN_KEYS if k in snap}

    def epoch_done(self, stop: int) -> bool:
        """Tell :attr:`on_epoch` about the epoch just finished; whether it asks to stop.

        ``on_epoch(epoch, stop, row)`` gets the epoch number, the run's last epoch and
        the epoch's ``history`` row (call after appending it). A true return ends the
        run after this epoch as an early stop does: keep-best still applies, so the
        model is usable (a GUI's Cancel).
        """
        if self.on_epoch is None:
            return False
        return bool(self.on_epoch(self.epoch, stop, dict(self.history[-1])))

    def checkpoint(self, improved: bool) -> None:
        """``last.pt`` (``best.pt`` if improved) in ``checkpoint_dir``, optimizer included."""
        if self.config.checkpoint_dir:
            write_checkpoints(self, self.config.checkpoint_dir, improved=improved)

    def loss_loop(self, net: nn.Module, gen: torch.Generator, batch_loss: Callable[[], Any],
                  val_loss: Callable[[Any], torch.Tensor], val_batches: Iterable[Any], *,
                  steps: int, device: torch.device, validated: bool, accumulate: int = 1
                  ) -> None:
        """The loss-validated run (n2v, deconoising, care): Adam with reduce-on-plateau
        (restored when resuming) up to ``epochs`` (a finished run: ``epochs`` more),
        each epoch in ``history`` and checkpoints, early stop after ``stop_patience``
        epochs without improvement, and keep-best at the end."""
        cfg = self.config
        batches = list(val_batches)
        optimizer, scheduler = make_optimizer(net, lr=cfg.lr, factor=cfg.lr_factor,
                                              patience=cfg.lr_patience)
        if "optimizer" in self.train_state:
            optimizer.load_state_dict(self.train_state["optimizer"])
            scheduler.load_state_dict(self.train_state["scheduler"])
        stop = cfg.epochs if self.epoch < cfg.epochs else self.epoch + cfg.epochs
        bar = progress_bar((stop - self.epoch) * steps, f"training {self.key}",
                           plan=run_plan(stop - self.epoch, steps, cfg, device))
        patience = int(getattr(cfg, "stop_patience", 0))
        self.begin_selection(validated, lambda: validate(net, val_loss, batches))
        stale = 0
        with deterministic(device):
            try:
                for _ in range(self.epoch, stop):
                    train_loss = train_epoch(net, optimizer, batch_loss, steps=steps,
                                             accumulate=accumulate, bar=bar)
                    loss = validate(net, val_loss, batches)
                    scheduler.step(loss)
                    self.epoch += 1
                    lr = float(optimizer.param_groups[0]["lr"])
                    self.history.append({"epoch": float(self.epoch), "loss": train_loss,
                                         "val_loss": loss, "lr": lr})
                    self.train_state = {"optimizer": to_cpu(optimizer.state_dict()),
                                        "scheduler": to_cpu(scheduler.state_dict()),
                                        "rng": gen.get_state()}
                    epoch_status(bar, f"training {self.key}", self.epoch, stop,
                                 loss=f"{train_loss:.4g}", val=f"{loss:.4g}")
                    improved = self.select(loss, validated)
                    self.checkpoint(improved)
                    stale = 0 if improved else stale + 1
                    if self.epoch_done(stop):
                        break
                    if validated and patience and stale >= patience:
                        bar.write(f"{self.key}: early stop after epoch {self.epoch} (no better "
                                  f"validation loss for {stale} epochs)", file=sys.stderr)
                        break
            finally:
                bar.close()
                net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
                self.end_selection()
                net.eval()

    # --- state ----------------------------------------------------------------------
    def build_modules(self, state: dict[str, Any]) -> dict[str, nn.Module | None]:
        """Freshly built networks to load ``state`` into, by ``MODULES`` name."""
        raise NotImplementedError

    def migrate(self, state: dict[str, Any]) -> dict[str, Any]:
        """A format-1 state in the current format (the default: unchanged)."""
        return state

    def extra_state(self) -> dict[str, Any]:
        """Method-specific plain entries of :meth:`state_dict` (none by default)."""
        return {}

    def state_dict(self, *, training: bool = False) -> dict[str, Any]:
        """Networks, normalizers, epoch, best score and history; with ``training`` (for
        checkpoints and resume) also the optimizer, scheduler and RNG state. Exported
        models (``microdenoise train --out``, :func:`microdenoise.save`) hold none."""
        if not self.trained or self.norm_in is None or self.norm_out is None:
            return {}
        state: dict[str, Any] = {"version": FORMAT_VERSION, "norm_in": self.norm_in.to_dict(),
                                 "norm_out": self.norm_out.to_dict(), "epoch": self.epoch,
                                 "best": self.best, "history": list(self.history)}
        for name in self.MODULES:
            module = getattr(self, name)
            if module is not None:
                state[name] = to_cpu(module.state_dict())
        state.update(self.extra_state())
        if training:
            state.update(self.train_state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output; format-1 states are migrated first."""
        if not state:
            for name in self.MODULES:
                setattr(self, name, None)
            self.norm_in = self.norm_out = None
            return
        version = int(state.get("version", 1))
        if version > FORMAT_VERSION:
            raise InputError(f"this {self.key} model was made by a newer microdenoise "
                             f"(format {version} > {FORMAT_VERSION}); upgrade microdenoise")
        if version < 2:
            state = self.migrate(dict(state))
        modules = self.build_modules(state)
        try:
            for name, module in modules.items():
                if module is not None and (name == "net" or name in state):
                    module.load_state_dict(state[name])
            norm_in = normalizer_from_dict(state["norm_in"])
            norm_out = normalizer_from_dict(state["norm_out"])
        except (KeyError, RuntimeError, InputError) as exc:
            raise InputError(f"the saved {self.key} weights do not fit its config "
                             f"({type(exc).__name__}); was the file edited?") from None
        for name, module in modules.items():
            setattr(self, name, module.eval() if module is not None else None)
        self.norm_in, self.norm_out = norm_in, norm_out
        self.epoch, self.best = int(state["epoch"]), float(state["best"])
        self.history = [dict(h) for h in state.get("history", [])]
        self.train_state = {k: state[k] for k in self.TRAIN_KEYS if k in state}
