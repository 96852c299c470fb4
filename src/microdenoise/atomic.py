"""Atomic writes: a temporary name beside the output, renamed when complete.

:func:`atomic_file` gives every output (image files, model files) a temporary
name that records its writer (``.<name>.<host>-<pid>-<random>.part``), removed on
any failure; :func:`remove_stale_partials` removes the ones a killed run (``kill
-9``, a node lost) left behind, and only those.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

__all__ = ["atomic_file", "check_writable", "remove_stale_partials"]

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:32] or "host"
_STARTED = time.time()  # partial files older than this process may be stale
# atomic_file's temporary names: .<name>.<host>-<pid>-<8 hex>.part; older versions wrote
# .<name>.<8 hex>.part (no owner recorded).
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]{1,32})-(?P<pid>[0-9]{1,10})-"
                      r"[0-9a-f]{8}\.part$")
_OLD_PARTIAL = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.part$")


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary name beside ``path``; rename it to ``path`` when the block succeeds.

    The folder is created first. On any failure the temporary file is removed, so no
    partial output is ever left, and OS errors (disk full, no permission) become
    :class:`InputError`. The temporary name, ``.<name>.<host>-<pid>-<random>.part``,
    records its writer, so :func:`remove_stale_partials` can tell one left by a killed
    run from one still being written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder {path.parent} ({exc.strerror}); "
                         "choose another output location") from exc
    tmp = path.with_name(f".{path.name}.{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}.part")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"could not write {path} ({exc.strerror or exc}); check that the "
                         "folder is writable and has free space") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


def _open_anywhere(path: Path) -> bool | None:
    """Whether a process on this machine holds ``path`` open (None: cannot tell)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    target = str(path.resolve())
    for fd_dir in proc.glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for fd in fd_dir.iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        return True
    return False


def remove_stale_partials(folder: str | Path) -> list[tuple[Path, int]]:
    """Remove partial outputs that killed runs left in ``folder``; return them with sizes.

    Conservative: only regular files named as :func:`atomic_file` names its
    temporary files, last modified before this process started, and either
    written by a process of this machine that no longer runs, or (names of older
    versions, which record no writer) held open by no process here.
    """
    removed: list[tuple[Path, int]] = []
    try:
        entries = sorted(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _PARTIAL.match(entry.name)
        old = None if match else _OLD_PARTIAL.match(entry.name)
        if match is None and old is None:
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not entry.is_file() or entry.is_symlink() or info.st_mtime >= _STARTED:
            continue
        if match is not None:
            if match["host"] != _HOST or _alive(int(match["pid"])):
                continue
        elif _open_anywhere(entry) is not False:
            continue
        with contextlib.suppress(OSError):
            entry.unlink()
            removed.append((entry, info.st_size))
    return removed


def check_writable(folder: str | Path, *, what: str = "the output folder") -> Path:
    """Create ``folder`` and prove it writable (a temporary file made and removed), so
    that no work starts whose result cannot be written; an :class:`InputError` otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".microdenoise-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"cannot write to {what} {str(folder)!r} ({exc.strerror or exc}); "
                         "choose a writable folder") from None
    return folder
