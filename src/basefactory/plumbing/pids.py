"""Whether a process of this host is still there: for the services `up` started and for
the owners of the containers a run starts."""

from __future__ import annotations

import os
from pathlib import Path


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a killed child nobody reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not zombie(pid)


def zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # the state letter follows the parenthesised command name
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
