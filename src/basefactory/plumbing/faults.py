"""Failpoints: named places in the publish path where the reliability suite kills the
process with SIGKILL, exactly as `kill -9` would, to prove that the next run completes.

Inert unless BASEFACTORY_FAILPOINT names the point (a test sets it for one subprocess).
"""

from __future__ import annotations

import os
import signal
import sys

ENV = "BASEFACTORY_FAILPOINT"


def checkpoint(name: str) -> None:
    if os.environ.get(ENV) == name:
        print(f"basefactory: failpoint {name}: SIGKILL", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
