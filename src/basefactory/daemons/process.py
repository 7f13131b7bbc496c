"""Background services basefactory starts and later stops: a pid file, a log, a health wait.

A pid file records the pid and the executable, so that `down` never signals an unrelated
process that happens to reuse the pid after a reboot or crash.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from basefactory.plumbing.errors import ServiceError, ToolError
from basefactory.plumbing.pids import alive, zombie


@dataclass(frozen=True)
class ManagedProcess:
    name: str
    argv: Sequence[str]
    state_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "run" / f"{self.name}.pid"

    @property
    def logfile(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the process this pid file describes, if it is still that process."""
        try:
            record = json.loads(self.pidfile.read_text())
            pid = int(record["pid"])
            exe = str(record["exe"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if not any(os.path.basename(part.decode(errors="replace")) == os.path.basename(exe)
                   for part in cmdline[:2]):
            return None
        if zombie(pid):
            return None
        return pid

    def start(self) -> int:
        exe = self.argv[0]
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.env)
        with self.logfile.open("ab") as out:
            try:
                proc = subprocess.Popen(
                    list(self.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # survives the CLI, immune to its Ctrl-C
                    close_fds=True,
                )
            except OSError as exc:
                raise ToolError(f"could not start {self.name} (`{exe}`): {exc}") from exc
        tmp = self.pidfile.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": proc.pid, "exe": exe, "started": time.time()}))
        tmp.replace(self.pidfile)
        # Until the child has exec'd, /proc shows our own command line: wait for the exec
        # so that pid() (which checks the executable) does not report it dead.
        deadline = time.monotonic() + 5
        while proc.poll() is None and self.pid() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return proc.pid

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop the process if it runs; True if it was running."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
            while alive(pid):
                time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def wait_until(
    probe: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    process: ManagedProcess | None = None,
    interval: float = 0.1,
) -> None:
    """Poll `probe` until it is true; fail with the service's log tail when it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        if process is not None and process.pid() is None:
            raise ServiceError(
                f"{what} exited while starting; last lines of {process.logfile}:\n"
                f"{process.log_tail()}",
                hint="fix what the log says, then run `basefactory up` again",
            )
        time.sleep(interval)
    tail = f"; last lines of {process.logfile}:\n{process.log_tail()}" if process else ""
    raise ServiceError(f"{what} did not become ready within {timeout:.0f}s{tail}")
