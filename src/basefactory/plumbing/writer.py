"""One writer per factory: publish, and every build command, hold an exclusive lock.

The lock is an flock(2) on `<state>/publish.lock`, so the kernel releases it when its
holder dies, even by `kill -9`: a lock is never stale, only held. The file also records
the holder's pid, command and start time, for the message a second run prints.

`basefactory run STEP_ID` (one step of the DAG, as Dask workers and CI jobs run them)
holds the factory lock shared and the step's own lock exclusively: steps of one publish
run side by side on workers that share the state folder, never beside a whole publish
or build command, and never twice at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from basefactory.plumbing import log
from basefactory.plumbing.errors import WriterBusy


@contextmanager
def one_writer(state_dir: Path, command: str, *, wait: float = 0.0,
                 shared: bool = False) -> Iterator[None]:
    with _flock(state_dir / "publish.lock", command, wait=wait, shared=shared):
        yield


@contextmanager
def step_writer(state_dir: Path, step_id: str, *, wait: float = 0.0) -> Iterator[None]:
    """The factory lock shared, and `step_id`'s exclusively."""
    with one_writer(state_dir, f"run {step_id}", wait=wait, shared=True), \
            _flock(state_dir / "steps" / f"{step_id.replace(':', '_')}.lock",
                   f"run {step_id}", wait=wait, shared=False):
        yield


@contextmanager
def _flock(path: Path, command: str, *, wait: float, shared: bool) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        announced = False
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if time.monotonic() >= deadline:
                    raise WriterBusy(
                        f"another basefactory run holds {path}: {holder}",
                        hint="wait for it to finish (or pass --wait SECONDS); if its process"
                        " is gone the lock is free already",
                    ) from None
                if not announced:
                    log.info(f"waiting for {holder}")
                    announced = True
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({
            "pid": os.getpid(), "command": command, "argv": sys.argv,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _holder(fd: int) -> str:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"`{data.get('command')}` (pid {data.get('pid')}, since {data.get('started')})"
    except (OSError, ValueError):
        return "an unknown process"
