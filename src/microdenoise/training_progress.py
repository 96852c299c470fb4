"""What a training run tells the user: its plan, its pace, its progress in a log.

:func:`progress_bar` gives the trained methods' loops a :class:`Progress`: a tqdm
bar on stderr in a terminal, and in every case

- the plan, one line when the run starts (epochs, steps, device, arithmetic);
- an estimate of the whole run's time from its first steps (after ~5 s, or 20
  steps), with what to change when it would take more than an hour (a GPU, fewer
  epochs or steps) — CARE's CSBDeep-length default is hours on a CPU, and nothing
  should wait for the first epoch to say so;
- without a terminal (batch jobs, log files), a plain line at most once a minute
  from the first minute on (step, percent, time left), not only after each epoch.
"""

from __future__ import annotations

import sys
import time
from typing import Any

__all__ = ["Progress", "format_seconds", "progress_bar"]

ESTIMATE_AFTER_S = 5.0  # first estimate once this much time ...
ESTIMATE_AFTER_STEPS = 20  # ... or this many steps have passed (and at least 3 steps)
LONG_RUN_S = 3600.0  # an estimate above this says what to change
LINE_EVERY_S = 60.0  # plain progress lines without a terminal


def format_seconds(seconds: float) -> str:
    """``"42 s"``, ``"12 min"``, ``"3.4 h"``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """A tqdm bar that also announces the plan, estimates the run, and logs its pace."""

    def __init__(self, total: int, desc: str, *, plan: str = "") -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="step", disable=None, file=sys.stderr,
                        dynamic_ncols=True)
        self.total, self.desc, self.done = total, desc, 0
        self.start = self.last_line = time.monotonic()
        self.estimated = False
        if plan:
            self.write(f"{desc}: {plan}")

    @property
    def disable(self) -> bool:
        """Whether the bar is off (stderr is no terminal)."""
        return bool(self.bar.disable)

    def update(self, n: int = 1) -> None:
        """``n`` more steps done."""
        self.bar.update(n)
        self.done += n
        now = time.monotonic()
        elapsed = now - self.start
        if not self.estimated and self.done >= 3 and (
                elapsed >= ESTIMATE_AFTER_S or self.done >= ESTIMATE_AFTER_STEPS):
            self.estimated = True
            self._estimate(elapsed)
        if self.disable and now - self.last_line >= LINE_EVERY_S and self.done < self.total:
            self.last_line = now
            left = elapsed / self.done * (self.total - self.done)
            self.write(f"{self.desc}: step {self.done}/{self.total} "
                       f"({100 * self.done / max(self.total, 1):.0f}%), about "
                       f"{format_seconds(left)} left")

    def _estimate(self, elapsed: float) -> None:
        per_step = elapsed / self.done
        whole = per_step * self.total
        line = (f"{self.desc}: about {format_seconds(whole)} for {self.total} steps "
                f"({per_step:.3g} s a step)")
        if whole > LONG_RUN_S:
            line += ("; to make it shorter: a GPU (--device cuda), fewer epochs "
                     "(--param epochs=N) or fewer steps per epoch (--param steps_per_epoch=N)")
        self.write(line)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """As tqdm's."""
        self.bar.set_postfix(*args, **kwargs)

    def write(self, text: str, file: Any = None) -> None:
        """A line on stderr that does not break the bar."""
        self.bar.write(text, file=file or sys.stderr)
        if self.disable:
            sys.stderr.flush()

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


def progress_bar(total: int, desc: str, *, plan: str = "") -> Progress:
    """A :class:`Progress` over ``total`` steps, announcing ``plan`` when given."""
    return Progress(total, desc, plan=plan)
