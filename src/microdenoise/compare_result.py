"""What :func:`microdenoise.compare` returns: one :class:`Row` per candidate, ranked, in a
:class:`CompareResult` with the recommendation, as Markdown or CSV."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CompareResult", "Row", "rank", "recommend"]


@dataclass(frozen=True)
class Row:
    """One candidate: a method with parameters, its estimated MSE and what it cost."""

    label: str
    method: str
    params: dict[str, Any]
    estimate: float = math.nan
    se: float = math.nan
    estimator: str = ""
    reliable: bool = False
    reason: str = ""
    seconds: float = 0.0
    error: str = ""
    residual_ratio: float = math.nan
    residual_ac1: float = math.nan
    blocks: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    def psnr(self, data_range: float) -> float:
        """The estimate as a PSNR in dB for ``data_range`` (NaN when not positive)."""
        return 10 * math.log10(data_range ** 2 / self.estimate) if self.estimate > 0 \
            else math.nan


@dataclass
class CompareResult:
    """Ranked rows (reliable estimates first, best first; then unreliable; then failures),
    the recommended row's label (None when no estimate can be trusted) and why."""

    rows: list[Row]
    recommended: str | None
    reason: str
    estimator: str
    notes: list[str]
    image: np.ndarray = field(repr=False)
    data_range: float = 1.0
    outputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def row(self, label: str) -> Row:
        """The row labelled ``label``."""
        return next(r for r in self.rows if r.label == label)

    def to_markdown(self) -> str:
        """The ranked table, then the notes and the recommendation, as Markdown."""
        head = (f"| rank | method | est. MSE | SE | est. PSNR (range {self.data_range:g}) | "
                "estimator | reliable | "
                "residual/noise | residual lag-1 | seconds | note |")
        lines = [head, "|" + "---|" * 11]
        for k, r in enumerate(self.rows, 1):
            note = r.error or r.reason
            lines.append(
                f"| {k} | {r.label} | {_num(r.estimate)} | {_num(r.se)} | "
                f"{_num(r.psnr(self.data_range), 2)} | {r.estimator} | "
                f"{'yes' if r.reliable else 'no'} | "
                f"{_num(r.residual_ratio, 2)} | {_num(r.residual_ac1, 2)} | {r.seconds:.2f} | "
                f"{note.replace('|', '/')} |")
        lines += [""] + [f"- {n}" for n in self.notes]
        lines += ["", f"Recommendation: {self.recommended or 'none'}: {self.reason}"]
        return "\n".join(lines)

    def to_csv(self) -> str:
        """One line per row: label, method, params, estimate, se, estimator, reliable,
        reason, seconds, error, residual ratio and lag-1 autocorrelation."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["rank", "label", "method", "params", "estimate", "se", "estimator",
                    "reliable", "reason", "seconds", "error", "residual_ratio", "residual_ac1",
                    "recommended"])
        for k, r in enumerate(self.rows, 1):
            params = ";".join(f"{a}={b}" for a, b in r.params.items())
            w.writerow([k, r.label, r.method, params, repr(r.estimate), repr(r.se),
                        r.estimator, r.reliable, r.reason, f"{r.seconds:.3f}", r.error,
                        repr(r.residual_ratio), repr(r.residual_ac1),
                        r.label == self.recommended])
        return buf.getvalue()


def _num(v: float, digits: int | None = None) -> str:
    if not math.isfinite(v):
        return "-"
    return f"{v:.{digits}f}" if digits is not None else f"{v:.4g}"


def rank(rows: list[Row]) -> list[Row]:
    """The rows in the order the table shows them.

    Parameters
    ----------
    rows : list of Row

    Returns
    -------
    list of Row
        Reliable estimates first (lowest MSE first), then unreliable ones, then
        failures and candidates not run.
    """
    def key(r: Row) -> tuple[int, float]:
        if r.error or not math.isfinite(r.estimate):
            return (2, 0.0)
        return (0 if r.reliable else 1, r.estimate)

    return sorted(rows, key=key)


def recommend(ranked: list[Row]) -> tuple[str | None, str]:
    """The recommendation from ranked rows.

    Parameters
    ----------
    ranked : list of Row
        As :func:`rank` orders them.

    Returns
    -------
    label, reason : str or None, str
        The best reliable row's label (None without one) and why, with its margin over
        the runner-up and the standard error of their paired (block by block)
        difference.
    """
    good = [r for r in ranked if r.reliable and not r.error and math.isfinite(r.estimate)]
    if not good:
        why = next((r.reason or r.error for r in ranked if r.reason or r.error), "no estimates")
        return None, f"no reliable estimate to recommend from ({why})"
    best = good[0]
    reason = (f"lowest estimated MSE {best.estimate:.4g} +- {best.se:.2g} ({best.estimator}) "
              f"of {len(good)} reliable candidates")
    if len(good) > 1:
        runner = good[1]
        if best.blocks.size == runner.blocks.size and best.blocks.size > 1:
            d = runner.blocks - best.blocks
            d_se = float(np.std(d, ddof=1) / math.sqrt(d.size))
            margin = runner.estimate - best.estimate
            sure = "clearly" if margin > 2 * d_se else "not clearly (within 2 SE)"
            reason += (f"; {sure} better than {runner.label} (by {margin:.3g} +- {d_se:.2g}, "
                       "paired)")
    return best.label, reason
