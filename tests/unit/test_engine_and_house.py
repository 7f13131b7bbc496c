"""daemons/engine.py (use a running Docker engine, or start dockerd only where allowed) and
house.py (`up`, `down`: the daemons in their order). The engine and the daemons are
stand-ins that record what was asked of them; tests/integration starts the real ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from basefactory import house
from basefactory.config.factory import Factory
from basefactory.daemons import engine
from basefactory.daemons.status import ServiceStatus
from basefactory.plumbing.errors import ServiceError
from tests.helpers import small_factory


class Client:
    def __init__(self, answers: list[str | None]) -> None:
        self.answers = answers  # what server_version returns, one per call (the last repeats)
        self.logins: list[tuple[str, ...]] = []
        self.client = type("C", (), {"builder": "buildx", "path": "/usr/bin/docker"})()

    def server_version(self) -> str | None:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def login(self, *args: str) -> None:
        self.logins.append(args)


class Dockerd:
    def __init__(self) -> None:
        self.started = False

    def pid(self) -> int | None:
        return 4242 if self.started else None

    def start(self) -> None:
        self.started = True

    def stop(self, timeout: float) -> bool:
        return self.started


def engine_with(monkeypatch: pytest.MonkeyPatch, client: Client, *, dockerd: str | None,
                root: bool) -> Dockerd:
    proc = Dockerd()
    monkeypatch.setattr(engine, "docker", lambda factory: client)
    monkeypatch.setattr(engine, "process", lambda factory: proc)
    monkeypatch.setattr(engine, "which_dockerd", lambda: dockerd)
    monkeypatch.setattr(engine.os, "geteuid", lambda: 0 if root else 1000)
    return proc


def test_a_running_engine_is_used_and_nothing_is_started(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client(["20.10.24"])
    proc = engine_with(monkeypatch, client, dockerd=None, root=False)
    assert engine.ensure(small_factory(tmp_path)) is client
    assert not proc.started


def test_dockerd_is_started_as_root_and_waited_for(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client([None, None, "20.10.24"])
    proc = engine_with(monkeypatch, client, dockerd="/usr/sbin/dockerd", root=True)
    assert engine.ensure(small_factory(tmp_path)) is client
    assert proc.started


@pytest.mark.parametrize(("start", "dockerd", "root", "message"), [
    ("false", "/usr/sbin/dockerd", True, "\\[engine\\] start = false"),
    ("true", None, True, "dockerd is not installed"),
    ("true", "/usr/sbin/dockerd", False, "only root can start dockerd"),
])
def test_no_engine_and_no_way_to_start_one_says_what_to_do(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: str, dockerd: str | None,
        root: bool, message: str) -> None:
    proc = engine_with(monkeypatch, Client([None]), dockerd=dockerd, root=root)
    factory = small_factory(tmp_path, extra=f"[engine]\nstart = {start}\n")
    with pytest.raises(ServiceError, match=message) as caught:
        engine.ensure(factory)
    assert caught.value.hint and not proc.started


def test_login_only_where_the_registry_has_credentials(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    factory = small_factory(tmp_path)
    client = Client(["20.10.24"])
    monkeypatch.setattr(engine, "registry_auth", lambda f: None)
    engine.login(factory, client)  # type: ignore[arg-type]
    assert client.logins == []
    monkeypatch.setattr(engine, "registry_auth", lambda f: ("factory", "pw"))
    engine.login(factory, client)  # type: ignore[arg-type]
    assert client.logins == [(factory.config.registry.address, "factory", "pw")]


def test_status_names_the_engine_and_how_it_builds(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    factory = small_factory(tmp_path)
    engine_with(monkeypatch, Client(["20.10.24"]), dockerd=None, root=False)
    up = engine.status(factory)
    assert (up.state, up.detail, up.managed) == ("running", "docker 20.10.24, builds with buildx",
                                                 False)
    engine_with(monkeypatch, Client([None]), dockerd=None, root=False)
    assert engine.status(factory).state == "stopped"

    def no_client(f: Factory) -> Any:
        raise ServiceError("no docker client")

    monkeypatch.setattr(engine, "docker", no_client)
    assert engine.status(factory).detail == "no docker client"


@pytest.fixture()
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    def record(name: str, result: Any = None) -> Any:
        def call(*args: Any, **kw: Any) -> Any:
            seen.append(name)
            return result
        return call

    monkeypatch.setattr(house.engine, "ensure", record("engine"))
    monkeypatch.setattr(house.engine, "login", record("login"))
    monkeypatch.setattr(house.devpi, "ensure", record("devpi"))
    monkeypatch.setattr(house.devpi, "ensure_replica", record("replica"))
    monkeypatch.setattr(house, "ensure_layout", record("layout", ["factory/p1"]))
    monkeypatch.setattr(house.registry, "ensure", record("registry"))
    monkeypatch.setattr(house.registry, "check_external", record("registry-check"))
    for module, name in ((house.engine, "engine"), (house.devpi, "devpi"),
                         (house.registry, "registry")):
        monkeypatch.setattr(module, "status", record(
            f"status-{name}", ServiceStatus(name, "running", "", True, 1)))
    for module, name, stopped in ((house.catalog, "catalog", False), (house.registry, "registry", True),
                                  (house.devpi, "devpi", True), (house.engine, "engine", False)):
        monkeypatch.setattr(module, "stop", record(f"stop-{name}", stopped))
    return seen


def test_up_starts_the_engine_then_devpi_its_layout_the_registry_and_logs_in(
        tmp_path: Path, calls: list[str]) -> None:
    found = house.up(small_factory(tmp_path))
    assert calls == ["engine", "devpi", "layout", "registry", "login",
                     "status-engine", "status-devpi", "status-registry"]
    assert [s.name for s in found] == ["engine", "devpi", "registry"]


def test_up_with_external_services_and_a_replica(tmp_path: Path, calls: list[str]) -> None:
    house.up(small_factory(tmp_path, extra="[index]\nreplica_port = 3142\n"))
    assert calls[:5] == ["engine", "devpi", "layout", "replica", "registry"]
    calls.clear()
    house.up(small_factory(tmp_path, extra='[index]\nembedded = false\nurl = "http://devpi:3141"\n'
                           '[registry]\nembedded = false\nurl = "http://reg:5000"\n'))
    # an existing registry is checked (credentials, TLS, a moving tag that can move) by
    # `up`; a publish's own start leaves the probe (two pushes) to `up`
    assert calls[:4] == ["engine", "layout", "registry-check", "login"]
    calls.clear()
    house.ensure(small_factory(tmp_path, extra='[index]\nembedded = false\nurl = "http://devpi:3141"\n'
                               '[registry]\nembedded = false\nurl = "http://reg:5000"\n'))
    assert calls == ["engine", "layout", "login"]


def test_down_stops_the_catalog_first_the_engine_last_and_says_what_it_stopped(
        tmp_path: Path, calls: list[str]) -> None:
    assert house.down(small_factory(tmp_path)) == ["registry", "devpi"]
    assert calls == ["stop-catalog", "stop-registry", "stop-devpi", "stop-engine"]
