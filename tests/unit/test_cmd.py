"""adapters/cmd.py, the one way an external command runs, with real processes: what a
failure says, what a log keeps, secrets masked everywhere, a timeout that ends even a
silent hang, and a child never left running behind an error."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from basefactory.adapters import cmd
from basefactory.plumbing.errors import ToolError

PY = sys.executable


def test_output_and_exit_code_are_returned() -> None:
    result = cmd.run([PY, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                     check=False, echo=False)
    assert result.returncode == 3
    assert sorted(result.output.split()) == ["err", "out"]


def test_a_failure_names_the_command_its_tail_the_log_and_the_fix(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "step.log"
    script = "import sys\nfor i in range(60): print(f'line {i}')\nsys.exit(2)"
    with pytest.raises(ToolError) as caught:
        cmd.run([PY, "-c", script], log_file=log_file, hint="read the log", echo=False)
    message = str(caught.value)
    assert message.startswith(f"`{PY} -c ")
    assert "failed with exit code 2:" in message
    assert "    line 59" in message and "    line 35" in message and "line 34\n" not in message
    assert f"full log: {log_file}" in message and caught.value.hint == "read the log"
    # the log holds every line, and the command first
    logged = log_file.read_text().splitlines()
    assert logged[0].startswith(f"$ {PY} -c") and logged[-60:] == [f"line {i}" for i in range(60)]


def test_only_the_tail_stays_in_memory_when_logging(tmp_path: Path) -> None:
    result = cmd.run([PY, "-c", "for i in range(1000): print(i)"], log_file=tmp_path / "l",
                     echo=False)
    kept = result.output.split()
    assert kept[0] == "600" and kept[-1] == "999" and len(kept) == 400
    assert result.tail.split() == [str(i) for i in range(975, 1000)]


def test_secrets_are_masked_in_the_echo_the_log_and_the_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    echoed: list[str] = []
    monkeypatch.setattr(cmd.log, "detail", echoed.append)
    log_file = tmp_path / "l"
    with pytest.raises(ToolError) as caught:
        cmd.run([PY, "-c", "import sys; print('token s3cr3t'); sys.exit(1)", "s3cr3t"],
                log_file=log_file, secrets=["s3cr3t", ""])
    assert "s3cr3t" not in str(caught.value) and "token ***" in str(caught.value)
    assert "s3cr3t" not in log_file.read_text() and "***" in log_file.read_text()
    assert echoed and all("s3cr3t" not in line for line in echoed)
    assert cmd.display(["a", "pw=x1", "b c"], ["x1"]) == "a pw=*** 'b c'"


def test_a_missing_tool_says_what_to_install() -> None:
    with pytest.raises(ToolError) as caught:
        cmd.run(["no-such-tool-here"], hint="apt-get install it")
    assert str(caught.value).startswith("`no-such-tool-here` was not found")
    assert caught.value.hint == "apt-get install it"
    with pytest.raises(ToolError, match="was not found on PATH"):
        cmd.which("no-such-tool-here", hint="x")
    assert cmd.which("sh", hint="x").endswith("/sh")


def test_lines_stream_to_the_callback_and_stdin_reaches_the_command() -> None:
    seen: list[str] = []
    cmd.run([PY, "-c", "import sys; [print(l.upper(), end='') for l in sys.stdin]"],
            stdin="a\nb\n", on_line=seen.append, echo=False)
    assert seen == ["A", "B"]


def test_a_timeout_ends_a_command_that_hangs_without_a_word() -> None:
    started = time.monotonic()
    with pytest.raises(ToolError, match="did not finish within 1s"):
        cmd.run([PY, "-c", "import time; time.sleep(60)"], timeout=1, echo=False)
    assert time.monotonic() - started < 10
    # one that finishes in time is not touched by the timer
    assert cmd.run([PY, "-c", "print('ok')"], timeout=30, echo=False).output == "ok\n"


def test_an_error_in_the_callback_kills_the_command() -> None:
    pids: list[int] = []

    def boom(line: str) -> None:
        pids.append(int(line))
        raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError):
        cmd.run([PY, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"],
                on_line=boom, echo=False)
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
    assert set() == cmd.RUNNING
