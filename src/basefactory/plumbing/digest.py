"""Content addressing: the digest of a step's inputs decides whether it must run again."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar


def of(*parts: Any) -> str:
    """sha256 over a canonical JSON rendering of the parts."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path, *, memo_dir: Path | None = None) -> str:
    """sha256 of a file; remembered per (path, size, mtime) for the process's life, and
    on disk under `memo_dir` (for large files read on every publish, like torch's wheel)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        if memo_dir is not None:
            _SHA_CACHE[key] = memo(memo_dir, ["sha256", *key], lambda: _hash(path))
        else:
            _SHA_CACHE[key] = _hash(path)
    return _SHA_CACHE[key]


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_sha256(root: Path, *, exclude: tuple[str, ...] = (".git",)) -> str:
    """A digest of a folder's file names, modes and contents (not its timestamps)."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if not any(x in p.parts for x in exclude)):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            h.update(f"L {rel} {path.readlink()}\n".encode())
        elif path.is_file():
            h.update(f"F {rel} {path.stat().st_mode & 0o111:o} {file_sha256(path)}\n".encode())
    return h.hexdigest()


T = TypeVar("T")


def memo(folder: Path, key: Any, compute: Callable[[], T]) -> T:
    """A small on-disk memo for results that are costly to compute and keyed by their
    inputs (e.g. which wheels of a wheelhouse a requirement needs): a no-op publish reads
    them instead of opening 190 MB wheels again."""
    path = folder / f"{of(key)[:32]}.json"
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
