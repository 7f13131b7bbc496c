"""The one way basefactory runs an external command.

Only the tool wrappers (docker.py, index/, git in wheels/source.py, uv in images/lock.py)
call this module. It echoes the command, checks the executable exists, can tee the
output into a log file, and turns a failure into one ToolError that names the command,
shows the last lines of its output and says what to do next.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from basefactory.plumbing import log
from basefactory.plumbing.errors import ToolError

TAIL_LINES = 25
# the commands running now, so that Ctrl-C in `publish` can stop them all
RUNNING: set[subprocess.Popen[str]] = set()


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    output: str  # stdout and stderr interleaved (or the tail of it when logged to a file)

    @property
    def tail(self) -> str:
        return "\n".join(self.output.rstrip().splitlines()[-TAIL_LINES:])


def which(tool: str, *, hint: str) -> str:
    """The absolute path of `tool`, or a ToolError saying how to install it."""
    found = shutil.which(tool)
    if found is None:
        raise ToolError(f"`{tool}` was not found on PATH", hint=hint)
    return found


def display(argv: Sequence[str], secrets: Sequence[str] = ()) -> str:
    text = shlex.join(argv)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    log_file: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
    check: bool = True,
    echo: bool = True,
    hint: str | None = None,
    secrets: Sequence[str] = (),
) -> Result:
    """Run `argv`; return its output, or raise ToolError when it fails and `check` is set.

    With `log_file` the full output goes to that file (and only its tail is kept in
    memory), so a 20-minute compile does not fill the heap. `secrets` are masked in the
    echo, the log and the error.
    """
    argv = [str(a) for a in argv]
    if shutil.which(argv[0]) is None:
        raise ToolError(f"`{argv[0]}` was not found", hint=hint or f"install {argv[0]}")
    shown = display(argv, secrets)
    if echo:
        log.detail(f"$ {shown}")
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    tail: deque[str] = deque(maxlen=400)
    log_handle = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_handle = log_file.open("a", encoding="utf-8")
        log_handle.write(f"$ {shown}\n")
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise ToolError(f"could not start `{shown}`: {exc}", hint=hint) from exc
    # a timer, not wait(timeout): a command that hangs without a word never ends the loop
    # that reads its output, so the timeout must kill it from the side
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire) if timeout is not None else None
    try:
        RUNNING.add(proc)
        if timer is not None:
            timer.daemon = True
            timer.start()
        if stdin is not None:
            assert proc.stdin is not None
            proc.stdin.write(stdin)
            proc.stdin.close()
        assert proc.stdout is not None
        for line in proc.stdout:
            masked = _mask(line, secrets)
            tail.append(masked)
            if log_handle is not None:
                log_handle.write(masked)
            if on_line is not None:
                on_line(masked.rstrip("\n"))
            log.output_line(masked.rstrip("\n"))
        returncode = proc.wait()
        if expired.is_set():
            raise ToolError(f"`{shown}` did not finish within {timeout:.0f}s", hint=hint)
    except ToolError:
        raise
    except BaseException:
        # Ctrl-C or an error in a callback: never leave the child running behind us.
        proc.kill()
        proc.wait()
        raise
    finally:
        if timer is not None:
            timer.cancel()
        RUNNING.discard(proc)
        if log_handle is not None:
            log_handle.close()
    result = Result(tuple(argv), returncode, "".join(tail))
    if check and returncode != 0:
        where = f"\n  full log: {log_file}" if log_file is not None else ""
        raise ToolError(
            f"`{shown}` failed with exit code {returncode}:\n{_indent(result.tail)}{where}",
            hint=hint,
        )
    return result


def stop_all() -> None:
    """Kill every command cmd.run is running (Ctrl-C in a multi-threaded publish)."""
    for proc in list(RUNNING):
        proc.kill()


def _mask(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
