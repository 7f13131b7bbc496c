"""The one retry rule for reads of the index's mirror: real pip, uv and httpx failures
against a port nobody listens on are recognised as "the index did not answer"; a
resolution failure is not; retries stop at the first answer and end in one clear error."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest

from basefactory.adapters.tools import beside_python
from basefactory.plumbing import network
from basefactory.plumbing.errors import ServiceError, ToolError


@pytest.fixture
def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/simple/"


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(network, "PAUSE_S", 0.0)


def test_real_pip_uv_and_httpx_failures_read_as_unreachable(dead_url: str, tmp_path) -> None:
    pip = subprocess.run([sys.executable, "-m", "pip", "--isolated", "download", "--no-deps", "-d",
                          str(tmp_path), "--index-url", dead_url, "--retries", "1",
                          "--timeout", "2", "six"], capture_output=True, text=True,
                         env={"PIP_CONFIG_FILE": "/dev/null", "PATH": "/usr/bin"})
    assert pip.returncode != 0 and network.unreachable(pip.stdout + pip.stderr), pip.stderr
    req = tmp_path / "r.in"
    req.write_text("six\n")
    uv = subprocess.run([beside_python("uv"), "pip", "compile", str(req), "--index-url", dead_url,
                         "--no-cache"], capture_output=True, text=True,
                        env={"UV_NO_CONFIG": "1", "UV_HTTP_RETRIES": "0", "PATH": "/usr/bin"})
    assert uv.returncode != 0 and network.unreachable(uv.stderr), uv.stderr
    with pytest.raises(httpx.HTTPError) as caught:
        httpx.get(dead_url, timeout=2)
    assert network.unreachable(f"{type(caught.value).__name__} {caught.value}")


def test_a_resolution_failure_is_not_unreachable() -> None:
    assert not network.unreachable("ERROR: No matching distribution found for nosuchpkg")
    assert not network.unreachable("Because nosuchpkg was not found in the package registry")


def test_retries_until_answered_and_not_after_a_real_failure() -> None:
    outputs = iter(["ReadTimeoutError: timed out", "Connection refused", "ok"])
    calls = []

    def attempt() -> str:
        calls.append(1)
        return next(outputs)

    unanswered = lambda out: out if network.unreachable(out) else None  # noqa: E731
    assert network.retrying(attempt, what="x", index="i", unanswered=unanswered) == "ok"
    assert len(calls) == 3
    calls.clear()
    assert network.retrying(lambda: "No matching distribution", what="x", index="i",
                            unanswered=unanswered) == "No matching distribution"


def test_the_last_timeout_is_one_error_naming_the_step_and_index() -> None:
    def attempt() -> str:
        raise ToolError("pip: Max retries exceeded with url: /simple/six/")

    with pytest.raises(ServiceError) as caught:
        network.raising(attempt, what="the test of six", index="http://idx/", errors=(ToolError,),
                        message=str)
    assert "the test of six" in str(caught.value) and "http://idx/" in str(caught.value)
    assert "3 tries" in str(caught.value)

    def other() -> str:
        raise ToolError("compiler error: x.c:1: expected ';'")

    with pytest.raises(ToolError):  # not the index's fault: raised at once, unchanged
        network.raising(other, what="b", index="i", errors=(ToolError,), message=str)
