"""What every benchmark script shares: the provenance line's commit."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
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


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (sd / sqrt(n); infinite for fewer than two values)."""
    mean = statistics.mean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else math.inf
    return mean, se


def decided(diff: float, se: float) -> int:
    """The project's rule for a verdict: +1 when ``diff`` exceeds its standard error,
    -1 when it falls below ``-se``, 0 (parity, not decided) between."""
    return 1 if diff > se else -1 if diff < -se else 0


def finish_table(lines: list[str], folder: Path, out: str | Path | None) -> str:
    """``lines`` plus the folder's hand-written ``notes.md`` (if any), written to ``out``."""
    notes = folder / "notes.md"
    if notes.exists():
        lines = [*lines, "", notes.read_text().strip()]
    return write_table("\n".join(lines), out)


def run_worker(py: str, script: str, side: str, job: dict[str, Any],
               env: dict[str, str]) -> dict[str, Any]:
    """Run ``py script worker side JSON`` in a fresh process and return the dict its last
    ``RESULT {...}`` line holds; exit with the worker's stderr if it failed."""
    proc = subprocess.run([py, script, "worker", side, json.dumps(job)], env=env,
                          capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{side} worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    return result


def dispatch(args: Any, run: Callable[[Any], None], table: Callable[[Any], str]) -> None:
    """The ``run``/``table`` subcommands every benchmark script has."""
    if args.cmd == "run":
        run(args)
    else:
        print(table(args))


# The body of a placeholder module for a package that a tool imports but never calls
# (torchvision beside torch 2.13, which has no CPU torchvision build here): every
# attribute is a function that raises if called.
STUB_BODY = '''

def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def _missing(*args, **kwargs):
        raise RuntimeError(f"torchvision stub: {__name__}.{name} is not available")

    _missing.__name__ = name
    return _missing
'''


def stub_module(doc: str) -> str:
    """Source of a placeholder module with docstring ``doc`` (see ``STUB_BODY``)."""
    return f'"""{doc}"""\n' + STUB_BODY


def venv_python(venv: str | Path) -> Path:
    """The Python of the virtualenv ``venv``, made (with this interpreter) when absent."""
    py = Path(venv) / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return py


def site_packages(py: Path) -> Path:
    """The ``purelib`` folder of the interpreter ``py`` (where a stub package goes)."""
    out = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())
