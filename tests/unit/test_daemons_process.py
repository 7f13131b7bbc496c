"""daemons/process.py and plumbing/pids.py with real processes: a pid file that names its
executable, so that `down` never signals a process that reused the pid; a stop that
escalates; a health wait that reports the service's own log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from basefactory.daemons.process import ManagedProcess, wait_until
from basefactory.plumbing.errors import ServiceError, ToolError
from basefactory.plumbing.pids import alive, zombie

SLEEP = "/bin/sleep"


def test_start_records_the_pid_and_stop_ends_it(tmp_path: Path) -> None:
    proc = ManagedProcess("sleeper", [SLEEP, "60"], tmp_path)
    pid = proc.start()
    try:
        assert proc.pid() == pid and alive(pid)
        assert json.loads(proc.pidfile.read_text())["exe"] == SLEEP
    finally:
        assert proc.stop(timeout=5)
    assert not alive(pid) and proc.pid() is None and not proc.pidfile.exists()
    assert not proc.stop()  # a second stop: nothing to stop


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    """The pid file says sleep; the pid now belongs to another program: never signal it."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        proc = ManagedProcess("sleeper", [SLEEP, "60"], tmp_path)
        proc.pidfile.parent.mkdir(parents=True)
        proc.pidfile.write_text(json.dumps({"pid": other.pid, "exe": SLEEP}))
        assert proc.pid() is None
        assert not proc.stop()
        assert other.poll() is None  # still running
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("content", ["", "{", json.dumps({"pid": "x", "exe": SLEEP}),
                                     json.dumps({"exe": SLEEP})])
def test_a_broken_pid_file_means_not_running(tmp_path: Path, content: str) -> None:
    proc = ManagedProcess("sleeper", [SLEEP, "60"], tmp_path)
    proc.pidfile.parent.mkdir(parents=True)
    proc.pidfile.write_text(content)
    assert proc.pid() is None


def test_stop_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "stubborn.sh"
    script.write_text("#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.1; done\n")
    script.chmod(0o755)
    proc = ManagedProcess("stubborn", [str(script)], tmp_path)
    pid = proc.start()
    started = time.monotonic()
    assert proc.stop(timeout=0.5)
    assert not alive(pid) and time.monotonic() - started < 5


def test_a_program_that_cannot_start_names_itself(tmp_path: Path) -> None:
    proc = ManagedProcess("ghost", [str(tmp_path / "no-such-program")], tmp_path)
    with pytest.raises(ToolError, match="could not start ghost"):
        proc.start()


def test_wait_until_reports_an_early_exit_with_the_log_tail(tmp_path: Path) -> None:
    script = tmp_path / "crash.sh"
    script.write_text("#!/bin/sh\necho 'port 3141 already in use'\nexit 3\n")
    script.chmod(0o755)
    proc = ManagedProcess("crasher", [str(script)], tmp_path)
    proc.start()
    with pytest.raises(ServiceError) as caught:
        wait_until(lambda: False, timeout=10, what="devpi", process=proc, interval=0.05)
    assert "devpi exited while starting" in str(caught.value)
    assert "port 3141 already in use" in str(caught.value)


def test_wait_until_times_out_and_returns_when_ready(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="the registry did not become ready within 0s"):
        wait_until(lambda: False, timeout=0.2, what="the registry", interval=0.05)
    calls = iter([False, False, True])
    wait_until(lambda: next(calls), timeout=5, what="x", interval=0.01)


def test_a_zombie_is_not_alive() -> None:
    child = subprocess.Popen([SLEEP, "60"])
    os.kill(child.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while not zombie(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        assert zombie(child.pid) and not alive(child.pid)
    finally:
        child.wait()
    assert not alive(child.pid)  # reaped: gone
