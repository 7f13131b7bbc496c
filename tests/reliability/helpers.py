from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from basefactory.plumbing.faults import ENV


def _env(failpoint: str | None, env: dict[str, str] | None) -> dict[str, str]:
    full = dict(os.environ)
    full.pop(ENV, None)
    if failpoint:
        full[ENV] = failpoint
    full.update(env or {})
    return full


def bf(config: Path, *args: str, failpoint: str | None = None,
       env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "basefactory", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=_env(failpoint, env))


def bf_popen(config: Path, *args: str) -> subprocess.Popen[bytes]:
    """The CLI in a process group of its own (so that it can be killed with its children),
    its output discarded."""
    return subprocess.Popen([sys.executable, "-m", "basefactory", "--config", str(config), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(None, None), start_new_session=True)


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
