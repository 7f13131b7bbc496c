"""Beyond one engine and one index process: a second Docker engine (its own socket and
data-root) that publish spreads steps over, and a devpi read replica that pip and the
catalog read from. All real processes on this machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from basefactory.catalog.snapshot import Reader
from basefactory.config.factory import load_factory
from basefactory.daemons import devpi_server as devpi_service
from basefactory.images.plan import ImageResult
from basefactory.platforms.publish import PlatformResult
from basefactory.proofs import Kind
from basefactory.proofs.read import proven
from basefactory.refs import platform_index
from basefactory.session import Session
from tests.helpers import PLATFORM, port, require
from tests.integration.test_wheels import make_c_project
from tests.reliability.helpers import bf


@pytest.fixture(scope="module")
def second_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    require(os.geteuid() == 0 and os.access(dockerd, os.X_OK), "a second dockerd needs root")
    # a short path: unix socket paths are limited to 108 bytes
    root = Path(f"/tmp/bf-engine-{os.getpid()}")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    sock = f"unix://{root}/docker.sock"
    log = (root / "dockerd.log").open("wb")  # noqa: SIM115 (open for the daemon's life)
    proc = subprocess.Popen(
        [dockerd, "--host", sock, "--data-root", str(root / "data"), "--exec-root",
         str(root / "exec"), "--pidfile", str(root / "docker.pid"), "--bridge", "none",
         "--iptables=false", "--ip-masq=false", "--ip-forward=false"],
        stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    env = {**os.environ, "DOCKER_HOST": sock}
    deadline = time.monotonic() + 90
    while subprocess.run(["/usr/bin/docker", "version"], env=env, capture_output=True).returncode:
        assert proc.poll() is None and time.monotonic() < deadline, (root / "dockerd.log").read_text()[-2000:]
        time.sleep(0.5)
    yield sock
    proc.terminate()
    proc.wait(60)
    log.close()
    subprocess.run(["umount", "-R", str(root)], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def test_publish_spreads_steps_over_two_engines(session: Session, platform: PlatformResult,
                                                second_engine: str, tmp_path: Path) -> None:
    config = session.factory.path.read_text()
    session.factory.path.write_text(
        config + f'\n[[builders]]\nname = "second"\ndocker_host = "{second_engine}"\n')
    recipes = []
    try:
        for n in (1, 2):
            make_c_project(tmp_path / f"src{n}")
            (tmp_path / f"src{n}" / "fastadd" / "n.txt").write_text(str(n))
            (tmp_path / f"src{n}" / "pyproject.toml").write_text(
                (tmp_path / f"src{n}" / "pyproject.toml").read_text().replace(
                    'name = "fastadd"', f'name = "spread{n}"'))
            (session.factory.recipes_dir / f"spread{n}.toml").write_text(
                f'project = "spread{n}"\n[source]\npath = "{tmp_path / f"src{n}"}"\n'
                "[test]\ncommand = \"python -c 'import fastadd; assert fastadd.add(2, 2) == 4'\"\n")
            recipes += ["--only", f"spread{n}"]
        result = bf(session.factory.path, "publish", "--jobs", "2", "--json", *recipes)
        assert result.returncode == 0, result.stderr[-3000:]
        steps = {s["name"]: s for s in json.loads(result.stdout)["steps"] if s["kind"] == "wheel"}
        assert {s["builder"] for s in steps.values()} == {"local", "second"}
        assert all(s["result"] == "built" for s in steps.values())
        for n in (1, 2):
            files = session.devpi.release_files(platform_index(session.factory, PLATFORM),
                                                f"spread{n}")
            assert files and files[0].toxresults
    finally:
        session.factory.path.write_text(config)
        for n in (1, 2):
            (session.factory.recipes_dir / f"spread{n}.toml").unlink(missing_ok=True)


def test_pip_and_the_catalog_read_from_a_devpi_replica(session: Session,
                                                       published: dict[str, ImageResult]) -> None:
    replica = port(3149)
    text = session.factory.path.read_text().replace(
        f"[index]\nport = {session.factory.config.index.port}",
        f"[index]\nport = {session.factory.config.index.port}\nreplica_port = {replica}")
    copy = session.factory.path.with_name("factory-replica.toml")
    copy.write_text(text + "\n[catalog]\nread_replica = true\n")
    factory = load_factory(copy)
    url = devpi_service.ensure_replica(factory)
    try:
        simple = f"{url}/{platform_index(factory, PLATFORM)}/+simple/torchsort/"
        deadline = time.monotonic() + 180
        while "torchsort-0.1.10+pt213cpu" not in httpx.get(simple, timeout=30).text:
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(1)
        out = session.docker.run(platform_base(session), [
            "sh", "-c", f"pip download -q --no-deps -d /tmp/d --index-url "
            f"{url}/{platform_index(factory, PLATFORM)}/+simple/ torchsort && ls /tmp/d"],
            echo=False)
        assert "torchsort-0.1.10+pt213cpu" in out.output
        reader = Reader(factory)
        try:
            snapshot = reader.read()
            assert snapshot.index == url
            assert any(w.project == "torchsort" and proven(w.proofs, Kind.WHEEL_TEST)
                       for w in snapshot.wheels)
        finally:
            reader.close()
    finally:
        devpi_service.replica_process(factory).stop()


def platform_base(session: Session) -> str:
    from basefactory.refs import base_ref

    return base_ref(session.factory, PLATFORM)
