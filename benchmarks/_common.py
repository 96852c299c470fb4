"""What every benchmark script shares: the provenance line's commit."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """Short hash of the repository's HEAD ("" outside a git checkout)."""
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=ROOT, check=False).stdout.strip()


def write_table(text: str, out: str | Path | None) -> str:
    """``text`` written to ``out`` (with a final newline) when one is given; returned."""
    if out:
        Path(out).write_text(text + "\n")
    return text


def finish_table(lines: list[str], folder: Path, out: str | Path | None) -> str:
    """``lines`` plus the folder's hand-written ``notes.md`` (if any), written to ``out``."""
    notes = folder / "notes.md"
    if notes.exists():
        lines = [*lines, "", notes.read_text().strip()]
    return write_table("\n".join(lines), out)


def dispatch(args: Any, run: Callable[[Any], None], table: Callable[[Any], str]) -> None:
    """The ``run``/``table`` subcommands every benchmark script has."""
    if args.cmd == "run":
        run(args)
    else:
        print(table(args))
