"""What the trained methods share besides their base class: the normalizers fitted on
the training data (:func:`fit_normalizers`) and the padded, phase-averaged prediction
of one plane (:func:`predict_phases`)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..normalize import MeanStd, Normalizer, Percentile

__all__ = ["MAX_PIXELS", "fit_normalizers", "predict_phases"]

MAX_PIXELS = 2**21  # network pixels per prediction forward pass (phases are batched up to this)


def fit_normalizers(inputs: list[np.ndarray], targets: list[np.ndarray], *,
                    kind: str = "percentile", percentiles: tuple[float, float] = (1.0, 99.8),
                    target_percentiles: tuple[float, float] | None = None
                    ) -> tuple[Normalizer, Normalizer]:
    """Input and target normalizers, computed once over the whole training set:
    ``"percentile"``, inputs' ``percentiles`` and targets' ``target_percentiles``
    (default: the same) map to 0 and 1 (CSBDeep's ``normalize(x, 1, 99.8)`` with
    training-set statistics; a percent of 0 or 100 is the exact min or max of all the
    pixels, not an estimate from a subsample); ``"meanstd"``, the inputs' mean/std for
    both."""
    if kind == "meanstd":
        both = MeanStd.fit(inputs)
        return both, both

    def fit(planes: list[np.ndarray], percents: tuple[float, float]) -> Percentile:
        pixels = np.concatenate([p.ravel() for p in planes])
        p = Percentile.fit(pixels, p_low=percents[0], p_high=percents[1])
        low = float(pixels.min()) if percents[0] <= 0 else p.low
        high = float(pixels.max()) if percents[1] >= 100 else p.high
        return p if (low, high) == (p.low, p.high) else Percentile(low, high)

    return fit(inputs, percentiles), fit(targets, target_percentiles or percentiles)


def predict_phases(forward: Callable[[torch.Tensor], torch.Tensor], plane: np.ndarray, *,
                   pad: int, multiple: int, device: torch.device, scale: int = 1,
                   shift_average: bool = False) -> np.ndarray:
    """``forward`` on one plane reflection-padded by ``pad`` (>= the receptive field)
    plus up to the pooling ``multiple``, as float64 (h*scale, w*scale); with
    ``shift_average`` averaged over the ``multiple**2`` grid phases (batched up to
    :data:`MAX_PIXELS`). Predictions reach the CPU in float32 before any float64
    arithmetic (MPS has no float64)."""
    q, s = multiple, scale
    phases = [(sy, sx) for sy in range(q) for sx in range(q)] if shift_average else [(0, 0)]
    h, w = plane.shape
    ey, ex = (-(h + 2 * pad + q)) % q, (-(w + 2 * pad + q)) % q
    views = [np.pad(plane, ((pad + sy, pad + q - sy + ey), (pad + sx, pad + q - sx + ex)),
                    mode="reflect") for sy, sx in phases]
    chunk = max(1, min(len(views), MAX_PIXELS // (views[0].size * s * s)))
    total = np.zeros((h * s, w * s), dtype=np.float64)
    for start in range(0, len(views), chunk):
        group = phases[start:start + chunk]
        batch = torch.from_numpy(np.stack(views[start:start + chunk])[:, None]
                                 .astype(np.float32)).to(device)
        pred = forward(batch)[:, 0].float().cpu().numpy()
        for k, (sy, sx) in enumerate(group):
            y0, x0 = (pad + sy) * s, (pad + sx) * s
            total += pred[k, y0:y0 + h * s, x0:x0 + w * s]
    return total / len(phases)
