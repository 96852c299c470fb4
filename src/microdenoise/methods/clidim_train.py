"""One CLIDiM training iteration (Fuentes-Hurtado, Sibarita, Viasnoff; pix2pix, Isola
et al., CVPR 2017), in the official order: G forward; contrastive D step; D step; G step.

Kept apart from :mod:`microdenoise.methods.clidim` (the method, its data and state) so
each module stays short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..contrastive import ProjectionHead, augment_pairs
from ..losses import anisotropic_tv, gan_loss, info_nce, ssim_loss
from ..networks import NLayerDiscriminator, UnetGenerator
from ..training import step_module

if TYPE_CHECKING:
    from .clidim import CLIDiM, CLIDiMConfig

__all__ = ["TrainState", "train_step"]


@dataclass
class TrainState:
    """Networks, optimizers and settings of one training run."""

    config: CLIDiMConfig
    g: UnetGenerator
    d: NLayerDiscriminator
    head: ProjectionHead | None
    opt_g: torch.optim.Adam
    opt_d: torch.optim.Adam
    device: torch.device
    g_step: nn.Module  # g itself, or g under bf16 autocast (``precision``)
    d_step: nn.Module

    @classmethod
    def create(cls, method: CLIDiM, device: torch.device) -> TrainState:
        """Move ``method``'s networks to ``device`` and make (or restore) the optimizers:
        Adam(lr, betas) for G, and for D plus the projection head when it is trained."""
        cfg = method.config
        g, d, head = method.net, method.disc, method.head
        if g is None or d is None:
            raise RuntimeError("build the networks before training")  # pragma: no cover
        g.to(device)
        d.to(device)
        params = list(d.parameters())
        if head is not None:
            head.to(device)
            if cfg.cl_head_trainable:
                params += list(head.parameters())
        betas = (cfg.beta1, cfg.beta2)
        opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=betas)
        opt_d = torch.optim.Adam(params, lr=cfg.lr, betas=betas)
        saved = method.train_state
        if "opt_g" in saved and "opt_d" in saved:
            opt_g.load_state_dict(saved["opt_g"])
            opt_d.load_state_dict(saved["opt_d"])
        return cls(cfg, g, d, head, opt_g, opt_d, device,
                   step_module(g, cfg.precision, device), step_module(d, cfg.precision, device))

    def release(self) -> None:
        """End of training: both networks back in the default layout, in eval mode."""
        for net in (self.g, self.d):
            net.to(memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of both optimizers (the linear-decay schedule)."""
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

    def optimizer_state(self) -> dict[str, Any]:
        """CPU copies of both optimizers' states (for checkpoints)."""
        from ..training import to_cpu

        return {"opt_g": to_cpu(self.opt_g.state_dict()),
                "opt_d": to_cpu(self.opt_d.state_dict())}


def _set_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def contrastive_loss(d: nn.Module, head: ProjectionHead, pairs: torch.Tensor,
                     gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries and keys of ``pairs`` (n, 2, h, w): the head on D's flattened logit map
    of two independent random views (:func:`~microdenoise.contrastive.augment_pairs`)."""
    q = head(d(augment_pairs(pairs, gen)))
    k = head(d(augment_pairs(pairs, gen)))
    return q, k


def train_step(state: TrainState, batch: torch.Tensor, gen: torch.Generator) -> dict[str, float]:
    """One iteration on a (n, 2, h, w) batch of (noisy, clean) crops in [-1, 1].

    G and D run through ``state.g_step`` / ``state.d_step`` (bf16 autocast where the
    config's ``precision`` says so); their outputs, and so every loss, are float32.
    Returns the losses (``loss_g``, ``loss_d`` and, for contrastive variants,
    ``loss_cl``) as floats.
    """
    cfg, g, d = state.config, state.g_step, state.d_step
    terms = cfg.terms
    g.train()
    d.train()
    a, b = batch[:, :1], batch[:, 1:]
    fake = g(a)
    out: dict[str, float] = {}
    fake_ab = torch.cat([a, fake.detach()], dim=1)
    real_ab = torch.cat([a, b], dim=1)
    if "cl" in terms and state.head is not None:
        # Fake pairs first, then real ones, as the official ContrastiveLearner calls.
        qf, kf = contrastive_loss(d, state.head, fake_ab, gen)
        qr, kr = contrastive_loss(d, state.head, real_ab, gen)
        loss_cl = cfg.lambda_cl * info_nce(torch.cat([qf, qr]), torch.cat([kf, kr]),
                                           temperature=cfg.cl_temperature)
        state.opt_d.zero_grad(set_to_none=True)
        loss_cl.backward()
        state.opt_d.step()
        out["loss_cl"] = float(loss_cl.detach())
    state.opt_d.zero_grad(set_to_none=True)
    loss_d = 0.5 * (gan_loss(d(fake_ab), False) + gan_loss(d(real_ab), True))
    loss_d.backward()
    state.opt_d.step()
    _set_grad(state.d, False)
    try:
        state.opt_g.zero_grad(set_to_none=True)
        loss_g = cfg.lambda_gan * gan_loss(d(torch.cat([a, fake], dim=1)), True)
        loss_g = loss_g + cfg.lambda_l1 * F.l1_loss(fake, b)
        if "ssim" in terms:
            loss_g = loss_g + cfg.lambda_ssim * ssim_loss((b + 1) / 2, (fake + 1) / 2, window=5)
        if "tv" in terms:
            loss_g = loss_g + cfg.lambda_tv * anisotropic_tv(fake)
        loss_g.backward()
        state.opt_g.step()
    finally:
        _set_grad(state.d, True)
    out["loss_d"] = float(loss_d.detach())
    out["loss_g"] = float(loss_g.detach())
    return out
