"""OpenMP's wait policy is set on import, before torch loads (microdenoise.threads)."""

from __future__ import annotations

import os
import subprocess
import sys


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return subprocess.run([sys.executable, *code.split("\0")], env={**base, **env},
                          capture_output=True, text=True, check=True)


def test_import_sets_a_passive_wait_policy_unless_one_is_given() -> None:
    code = "-c\0import os, microdenoise; print(os.environ['OMP_WAIT_POLICY'])"
    assert _run(code).stdout.strip() == "PASSIVE"
    assert _run(code, OMP_WAIT_POLICY="ACTIVE").stdout.strip() == "ACTIVE"


def test_the_policy_is_set_before_torch_is_imported() -> None:
    # -X importtime lists each module when its import finishes: threads (which
    # imports only os) must finish before torch's import has begun.
    lines = _run("-X\0importtime\0-c\0import microdenoise").stderr.splitlines()
    names = [line.rsplit("|", 1)[-1].strip() for line in lines if "|" in line]
    assert names.index("microdenoise.threads") < names.index("torch")
