"""Executables that basefactory depends on as Python packages (devpi, uv): take the ones
installed beside this interpreter, so a venv's basefactory never runs a stranger's copy."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def beside_python(name: str) -> str:
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name) or name
