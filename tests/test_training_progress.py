"""A training run's plan, its time estimate and its progress lines in a log."""

from __future__ import annotations

import pytest

from microdenoise import training_progress
from microdenoise.training_progress import Progress, format_seconds


def test_plan_estimate_and_long_run_advice(monkeypatch, capsys) -> None:
    clock = iter([0.0, 1.0, 2.0, 3.0])  # start, then one clock reading per step
    monkeypatch.setattr(training_progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(training_progress, "ESTIMATE_AFTER_STEPS", 3)
    bar = Progress(40_000, "training care", plan="100 epochs x 400 steps")
    for _ in range(3):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "training care: 100 epochs x 400 steps"
    assert err[1].startswith("training care: about 11.1 h for 40000 steps (1 s a step)")
    assert "a GPU (--device cuda)" in err[1] and "--param epochs=N" in err[1]


def test_short_runs_get_the_estimate_without_advice(monkeypatch, capsys) -> None:
    clock = iter([0.0] + [0.01 * k for k in range(1, 30)])
    monkeypatch.setattr(training_progress.time, "monotonic", lambda: next(clock))
    bar = Progress(100, "training n2v")
    for _ in range(20):
        bar.update(1)
    err = capsys.readouterr().err
    assert "training n2v: about 1 s for 100 steps" in err and "GPU" not in err


def test_without_a_terminal_a_line_a_minute(monkeypatch, capsys) -> None:
    clock = iter([0.0, 30.0, 61.0, 90.0, 125.0])
    monkeypatch.setattr(training_progress.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(training_progress, "ESTIMATE_AFTER_STEPS", 10**9)
    monkeypatch.setattr(training_progress, "ESTIMATE_AFTER_S", 10**9)
    bar = Progress(10, "training n2v")
    assert bar.disable  # pytest's stderr is no terminal
    for _ in range(4):
        bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["training n2v: step 2/10 (20%), about 4 min left",
                     "training n2v: step 4/10 (40%), about 3 min left"]


@pytest.mark.parametrize("seconds, text", [(42, "42 s"), (720, "12 min"), (12240, "3.4 h")])
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text
