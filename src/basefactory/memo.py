"""A small on-disk memo for results that are costly to compute and keyed by their
inputs (e.g. which wheels of a wheelhouse a requirement needs): a no-op publish reads
them instead of opening 190 MB wheels again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from basefactory import digest

T = TypeVar("T")


def memo(folder: Path, key: Any, compute: Callable[[], T]) -> T:
    path = folder / f"{digest.of(key)[:32]}.json"
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        pass
    value = compute()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    tmp.replace(path)
    return value
