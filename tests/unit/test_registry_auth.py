"""The embedded registry's htpasswd: a bcrypt cost cheap enough to check on every request,
an old (costly) entry rehashed, an unchanged one left alone."""

from __future__ import annotations

import time
from pathlib import Path

import bcrypt

from basefactory.daemons.registry_server import BCRYPT_COST, _write_htpasswd


def _hash(path: Path) -> str:
    return path.read_text().strip().partition(":")[2]


def test_the_entry_is_cheap_to_check_and_still_checks(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    assert _write_htpasswd(path, "factory", "s3cret")
    hashed = _hash(path)
    assert hashed.startswith(f"$2b${BCRYPT_COST:02d}$")
    assert bcrypt.checkpw(b"s3cret", hashed.encode())
    assert not bcrypt.checkpw(b"s3cret!", hashed.encode())
    started = time.perf_counter()
    for _ in range(20):
        bcrypt.checkpw(b"s3cret", hashed.encode())
    # what the registry pays per request: cost 10 took ~90 ms a check here
    assert (time.perf_counter() - started) / 20 < 0.02


def test_an_unchanged_entry_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    _write_htpasswd(path, "factory", "s3cret")
    before = path.read_text()
    assert not _write_htpasswd(path, "factory", "s3cret")
    assert path.read_text() == before
    assert _write_htpasswd(path, "factory", "other")  # a new password is rehashed
    assert bcrypt.checkpw(b"other", _hash(path).encode())


def test_an_old_costly_entry_is_rehashed(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    old = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=10)).decode()
    path.write_text(f"factory:{old}\n")
    assert _write_htpasswd(path, "factory", "s3cret")
    assert _hash(path).startswith(f"$2b${BCRYPT_COST:02d}$")
    assert (path.stat().st_mode & 0o777) == 0o600
