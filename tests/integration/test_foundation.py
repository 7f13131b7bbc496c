"""The foundation with real components: engine, devpi, registry, a bootstrapped base."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from basefactory.adapters.devpi_api import DevpiClient
from basefactory.adapters.docker import OWNER_LABEL
from basefactory.platforms.publish import PlatformResult
from basefactory.plumbing.digest import file_sha256
from basefactory.plumbing.errors import PublishRefused, ServiceError
from basefactory.refs import base_pins_index, common_index, image_ref, platform_index, repository
from basefactory.session import Session
from tests.helpers import PLATFORM, write_pyproject


def make_wheel(tmp: Path, name: str, version: str, body: str = "") -> Path:
    project = tmp / f"{name}-{version}-{hashlib.sha256(body.encode()).hexdigest()[:8]}"
    (project / "src" / name.replace("-", "_")).mkdir(parents=True)
    (project / "src" / name.replace("-", "_") / "__init__.py").write_text(body)
    write_pyproject(project, name, version)
    out = project / "dist"
    # `build` with the test's own interpreter; no isolation: setuptools is already here
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir",
                    str(out), str(project)], check=True, capture_output=True)
    return next(out.glob("*.whl"))


def test_up_creates_the_index_layout(session: Session) -> None:
    factory = session.factory
    common = session.devpi.index_config(common_index(factory))
    plat = session.devpi.index_config(platform_index(factory, PLATFORM))
    assert common is not None and plat is not None
    assert common["bases"] == ["root/pypi"]
    # what the platform's base pins first (devpi then hides the mirror's other releases of
    # those names), then the common index
    pins = session.devpi.index_config(base_pins_index(factory, PLATFORM))
    assert plat["bases"] == [base_pins_index(factory, PLATFORM), common_index(factory)]
    assert plat["volatile"] is False and plat["acl_upload"] == ["factory"]
    assert pins is not None and pins["bases"] == [] and pins["volatile"] is True
    assert pins["acl_upload"] == ["factory"]


def test_upload_download_and_refusals(session: Session, platform: PlatformResult,
                                      tmp_path: Path) -> None:
    factory = session.factory
    index = platform_index(factory, PLATFORM)
    wheel = make_wheel(tmp_path, "bf-hello", "1.0", "GREETING = 'hello'\n")
    assert session.devpi.upload(index, wheel, name="bf-hello", version="1.0") == "uploaded"
    # the same bytes again: accepted as already there (a rerun after a crash completes)
    assert session.devpi.upload(index, wheel, name="bf-hello", version="1.0") == "identical"
    # other bytes under the published name: refused, never overwritten
    other = make_wheel(tmp_path, "bf-hello", "1.0", "GREETING = 'changed'\n")
    assert other.name == wheel.name
    with pytest.raises(PublishRefused, match="never\\s+overwritten"):
        session.devpi.upload(index, other, name="bf-hello", version="1.0")
    # without credentials: refused
    with DevpiClient(factory.config.index.base_url) as anonymous, \
            pytest.raises(ServiceError, match="refused the upload"):
        anonymous.upload(index, make_wheel(tmp_path, "bf-anon", "1.0"), name="bf-anon",
                         version="1.0")
    assert session.devpi.release_files(index, "bf-anon") == []

    # from inside the bootstrapped base, over --network host, pip gets the same file back
    simple = session.devpi.simple_url(index)
    out = tmp_path / "download"
    out.mkdir()
    session.docker.run(platform.base.ref, [
        "pip", "download", "--no-deps", "--index-url", simple, "-d", "/out", "bf-hello==1.0"],
        volumes=[(out, "/out", "rw")])
    fetched = out / wheel.name
    assert fetched.exists()
    assert file_sha256(fetched) == file_sha256(wheel)


def test_platform_base_has_its_torch(platform: PlatformResult) -> None:
    fp = platform.fingerprint
    assert fp.torch == "2.13.0+cpu" and fp.cuda is None
    assert fp.python_tag == "cp311" and fp.local_label == "pt213cpu"
    assert fp.distributions["torch"] == "2.13.0+cpu"
    assert fp.base_digest == platform.base.image_id


def test_engine_queries_through_its_socket_answer_as_the_client_does(
        session: Session, platform: PlatformResult) -> None:
    """Inspects and the version go to the engine's socket (~1 ms, not a ~25 ms client
    process): the answers must be the client's own, and a missing image None."""
    docker = session.docker
    assert docker.api_socket is not None  # this engine is on its default socket
    cli = subprocess.run([docker.client.path, "image", "inspect", platform.base.ref],
                         check=True, capture_output=True, text=True).stdout
    assert docker.image_inspect(platform.base.ref) == json.loads(cli)[0]
    assert docker.image_id(platform.base.ref) == platform.base.image_id
    assert docker.image_id(f"{platform.base.ref}-not-there") is None
    version = subprocess.run([docker.client.path, "version", "--format",
                              "{{.Server.Version}}"], check=True, capture_output=True,
                             text=True).stdout.strip()
    assert docker.server_version() == version


def test_push_and_read_tag_through_the_wrapper(session: Session, platform: PlatformResult) -> None:
    ref = image_ref(session.factory, "foundation-check", "t1")
    session.docker.tag(platform.base.ref, ref)
    session.docker.push(ref)
    repo = repository(session.factory, "foundation-check")
    assert "t1" in session.registry.tags(repo)
    assert repo in session.registry.repositories()
    labels = session.registry.labels(repo, "t1")
    assert labels["org.basefactory.platform"] == PLATFORM
    assert session.registry.digest(repo, "t1", ).startswith("sha256:")  # type: ignore[union-attr]


def test_containers_a_killed_run_left_are_reaped_and_live_ones_kept(
        session: Session, platform: PlatformResult) -> None:
    """`docker run --rm` removes a container when it ends, not when its client is killed:
    a publish killed during a fit left its container running (and its audit spinning).
    The next session on this host removes containers whose owner process is gone."""
    docker = session.docker
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no process has any more
    host = socket.gethostname()
    started = {}
    for who in (f"{host}:{dead.pid}", f"{host}:{os.getpid()}", f"elsewhere:{dead.pid}"):
        started[who] = subprocess.run(
            [docker.client.path, "run", "-d", "--rm", "--label", f"{OWNER_LABEL}={who}",
             platform.base.ref, "sleep", "300"], check=True, capture_output=True,
            text=True).stdout.strip()
    try:
        reaped = docker.reap_orphans()
        running = subprocess.run([docker.client.path, "ps", "-q", "--no-trunc"],
                                 capture_output=True, text=True).stdout.split()
        orphan = started[f"{host}:{dead.pid}"]
        assert [c for c in reaped if orphan.startswith(c)] and orphan not in running
        # a live process's container, and another host's, are not this run's to remove
        assert started[f"{host}:{os.getpid()}"] in running
        assert started[f"elsewhere:{dead.pid}"] in running
    finally:
        subprocess.run([docker.client.path, "rm", "-f", *started.values()], capture_output=True)
