"""What `up` starts, without starting it: devpi's command line and secret, the registry's
configuration, and how a service's state is read (daemons/devpi_server.py,
daemons/registry_server.py, daemons/status.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from basefactory.daemons import devpi_server, registry_server
from basefactory.daemons.status import service_status
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
