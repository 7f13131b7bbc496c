from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from basefactory.plumbing.faults import ENV


def bf(config: Path, *args: str, failpoint: str | None = None,
       env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    full.pop(ENV, None)
    if failpoint:
        full[ENV] = failpoint
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "basefactory", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, env=full)


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    return json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
