"""What `up` starts, without starting it: devpi's command line and secret, the registry's
configuration, and how a service's state is read (daemons/devpi_server.py,
daemons/registry_server.py, daemons/status.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from basefactory.daemons import devpi_server, registry_server
from basefactory.daemons.status import service_status
from basefactory.plumbing.errors import ServiceError
from tests.helpers import small_factory


def test_devpi_runs_as_a_primary_on_its_port_with_a_stable_private_secret(
        tmp_path: Path) -> None:
    f = small_factory(tmp_path, "[index]\nport = 3999\n")
    argv = list(devpi_server.process(f).argv)
    assert argv[argv.index("--port") + 1] == "3999"
    assert argv[argv.index("--role") + 1] == "primary"
    # nobody but root and the factory's user may create users or indexes
    assert argv[argv.index("--restrict-modify") + 1] == "root,factory"
    assert argv[argv.index("--serverdir") + 1] == str(f.state_dir / "devpi")
    secret = Path(argv[argv.index("--secretfile") + 1])
    made = secret.read_bytes()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and made
    devpi_server.process(f)
    assert secret.read_bytes() == made  # made once: logins survive a restart
    assert "--configfile" not in argv
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "devpi-server.yml").write_text("devpi-server:\n  threads: 8\n")
    assert "--configfile" in devpi_server.process(f).argv


def test_the_registry_authenticates_every_request_and_rehashes_only_on_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASEFACTORY_REGISTRY_PASSWORD", raising=False)
    f = small_factory(tmp_path, "[registry]\nport = 5999\n")
    assert registry_server.write_config(f)  # first: the htpasswd is written
    config = json.loads(registry_server.config_path(f).read_text())
    assert config["http"]["addr"] == "127.0.0.1:5999"
    assert config["auth"]["htpasswd"]["path"] == str(f.state_dir / "registry" / "htpasswd")
    assert config["storage"]["delete"]["enabled"] is True  # prune deletes manifests
    htpasswd = f.state_dir / "registry" / "htpasswd"
    assert stat.S_IMODE(htpasswd.stat().st_mode) == 0o600
    assert not registry_server.write_config(f)  # same password: the same file
    monkeypatch.setenv("BASEFACTORY_REGISTRY_PASSWORD", "a-new-one")
    assert registry_server.write_config(f)  # a changed password is hashed again


class Probe:
    def __init__(self, up: bool, pid: int | None) -> None:
        self.up, self._pid, self.closed = up, pid, False

    def ping(self) -> bool:
        return self.up

    def close(self) -> None:
        self.closed = True

    def pid(self) -> int | None:
        return self._pid


@pytest.mark.parametrize(("embedded", "up", "pid", "state", "managed"), [
    (True, True, 42, "running", True),
    (True, False, None, "stopped", False),
    (True, True, None, "running", False),  # answering, but not started by `up`
    (False, True, 42, "external", False),  # an external service's pid is not ours
    (False, False, None, "stopped", False),
])
def test_a_service_state_comes_from_its_pid_file_and_one_ping(
        embedded: bool, up: bool, pid: int | None, state: str, managed: bool) -> None:
    probe = Probe(up, pid)
    found = service_status("devpi", embedded=embedded, address="http://x", process=probe,
                           client=probe, detail="d")
    assert (found.state, found.managed) == (state, managed) and probe.closed
    assert found.as_dict()["address"] == "http://x"


class Registry:
    """What the running registry answers: to a ping, and to an anonymous request."""

    def __init__(self, up: bool, anonymous: int | None) -> None:
        self.up, self.anonymous = up, anonymous

    def ping(self) -> bool:
        return self.up

    def ping_status(self, *, anonymous: bool = False) -> int | None:
        # with the factory's credentials it answers 200; without, what it was set to
        if not self.up:
            return None
        return self.anonymous if anonymous is True else 200


class Process:
    def __init__(self, pid: int | None, registry: Registry) -> None:
        self.pid_, self.registry = pid, registry
        self.calls: list[str] = []

    def pid(self) -> int | None:
        return self.pid_

    def stop(self) -> bool:
        self.calls.append("stop")
        self.registry.up = False
        return True

    def start(self) -> None:
        self.calls.append("start")
        self.registry.up, self.registry.anonymous = True, 401


def _stand_ins(monkeypatch: pytest.MonkeyPatch, factory: Any, registry: Registry,
               proc: Process, rehashed: bool) -> list[tuple[str, Any]]:
    waited: list[tuple[str, Any]] = []

    def of(value: Any) -> Any:
        def call(given: Any) -> Any:
            assert given is factory
            return value
        return call

    monkeypatch.setattr(registry_server, "client", of(registry))
    monkeypatch.setattr(registry_server, "_binary", lambda: "registry")
    monkeypatch.setattr(registry_server, "write_config", of(rehashed))
    monkeypatch.setattr(registry_server, "process", of(proc))
    def wait_until(ping: Any, *, timeout: float, what: str, process: Any) -> None:
        assert ping == registry.ping and timeout == 30  # the registry's own answer, 30 s
        waited.append((what, process))

    monkeypatch.setattr(registry_server, "wait_until", wait_until)
    return waited


@pytest.mark.parametrize(("up", "anonymous", "ours", "rehashed", "calls"), [
    (True, 401, True, False, []),  # ours, with auth, password unchanged: left alone
    (True, 200, True, False, ["stop", "start"]),  # ours, answering without credentials
    (True, 401, True, True, ["stop", "start"]),  # ours, but the password changed
    (False, None, False, False, ["start"]),  # nothing there
])
def test_up_keeps_only_a_registry_that_refuses_anonymous_clients_with_todays_password(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        up: bool, anonymous: int | None, ours: bool, rehashed: bool, calls: list[str]) -> None:
    registry = Registry(up, anonymous)
    proc = Process(1234 if ours else None, registry)
    factory = small_factory(tmp_path)
    waited = _stand_ins(monkeypatch, factory, registry, proc, rehashed)
    registry_server.ensure(factory)
    assert proc.calls == calls
    # a start waits for the registry it started, naming it if it dies
    assert waited == ([("the registry", proc)] if "start" in calls else [])
    said = [line.strip() for line in capsys.readouterr().out.splitlines()]
    restarted = "restarting the registry with the factory's credentials" in said
    assert restarted is ("stop" in calls)


def test_up_refuses_a_registry_it_did_not_start_that_lets_anyone_in(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry(True, 200)
    proc = Process(None, registry)
    factory = small_factory(tmp_path)
    _stand_ins(monkeypatch, factory, registry, proc, False)
    with pytest.raises(ServiceError, match="did not start answers") as caught:
        registry_server.ensure(factory)
    assert proc.calls == []
    assert caught.value.hint == ("stop it (`basefactory down` in the factory that started it),"
                                 " or set [registry] port (or url and embedded = false to use"
                                 " it)")
