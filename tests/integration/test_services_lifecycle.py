"""`basefactory up` / `status` / `down` through the real CLI, on a factory of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import docker_answers, port, require, write_factory


def bf(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "basefactory", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=600)


def test_up_is_idempotent_and_down_stops_only_what_up_started(tmp_path: Path) -> None:
    require(docker_answers(), "no Docker engine answers")
    config = write_factory(tmp_path, index_port=port(3143), registry_port=port(5002))

    first = bf(config, "up")
    assert first.returncode == 0, first.stderr
    assert "starting devpi-server" in first.stdout and "starting the registry" in first.stdout

    status = bf(config, "status", "--json")
    assert status.returncode == 0, status.stderr
    by_name = {s["name"]: s for s in json.loads(status.stdout)}
    assert by_name["devpi"]["state"] == "running" and by_name["devpi"]["managed"]
    assert by_name["registry"]["state"] == "running" and by_name["registry"]["managed"]
    assert by_name["engine"]["state"] == "running"
    pids = {by_name["devpi"]["pid"], by_name["registry"]["pid"]}

    second = bf(config, "up", "--json")
    assert second.returncode == 0, second.stderr
    assert "starting" not in second.stderr  # nothing started the second time
    assert {s["pid"] for s in json.loads(second.stdout) if s["name"] != "engine"} == pids

    # the password is in a 0600 secret file and never printed
    secret = tmp_path / ".factory" / "secrets" / "index-password"
    assert secret.stat().st_mode & 0o777 == 0o600
    password = secret.read_text().strip()
    assert password not in first.stdout + first.stderr + status.stdout + second.stdout

    down = bf(config, "down", "--json")
    assert down.returncode == 0, down.stderr
    assert set(json.loads(down.stdout)["stopped"]) == {"devpi", "registry"}
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    after = {s["name"]: s for s in json.loads(bf(config, "status", "--json").stdout)}
    assert after["devpi"]["state"] == "stopped" and after["registry"]["state"] == "stopped"
    assert after["engine"]["state"] == "running"  # not ours: left alone
    assert bf(config, "down", "--json").stdout.count("stopped") == 1  # nothing left to stop


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_broken_config_is_one_line_naming_the_field(tmp_path: Path) -> None:
    config = write_factory(tmp_path, index_port=1, registry_port=2)
    config.write_text(config.read_text().replace("port = 1", "port = 'one'"))
    result = bf(config, "up")
    assert result.returncode == 2
    assert "index.port" in result.stderr.splitlines()[0]
    assert "Traceback" not in result.stderr
    assert os.environ.get("BASEFACTORY_INDEX_PASSWORD", "") not in ("one",)
