"""Security: uploads and registry access need credentials, the catalog is read-only, no secret lands in any
layer, label, log or catalog reply, services listen on loopback, and a public package
cannot shadow a private one."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from basefactory.catalog.app import create_app
from basefactory.catalog.server import make_catalog
from basefactory.daemons.credentials import index_password, registry_auth, root_password
from basefactory.images.plan import ImageResult
from basefactory.images.publish import build_all as build_images
from basefactory.platforms.publish import PlatformResult
from basefactory.plumbing import templates
from basefactory.refs import common_index, platform_index, repository
from basefactory.session import Session
from tests.helpers import PLATFORM
from tests.integration.test_foundation import make_wheel


def _secrets(session: Session) -> list[bytes]:
    """The index's passwords, devpi-server's own signing secret and the registry's password."""
    server_secret = (session.factory.state_dir / "secrets" / "devpi-server-secret").read_bytes().strip()
    assert len(server_secret) >= 16
    registry = registry_auth(session.factory)
    assert registry is not None
    return [index_password(session.factory).encode(), root_password(session.factory).encode(),
            server_secret, registry[1].encode()]


def _contains(data: bytes, secrets: list[bytes]) -> bool:
    return any(s in data for s in secrets)


def _scan(session: Session, secrets: list[bytes]) -> tuple[list[str], int]:
    """Where the secrets occur: registry blobs (configs raw, layers decompressed), logs
    and catalog replies; and how many blobs were scanned."""
    found: list[str] = []
    blobs = session.factory.state_dir / "registry" / "data"
    scanned = 0
    for blob in blobs.rglob("data"):
        raw = blob.read_bytes()
        scanned += 1
        if _contains(raw, secrets):
            found.append(str(blob))
            continue
        if raw[:2] == b"\x1f\x8b":  # a gzipped layer: search its content
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            tail = b""
            with blob.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    data = tail + decompressor.decompress(chunk)
                    if _contains(data, secrets):
                        found.append(str(blob))
                        break
                    tail = data[-256:]
    for log in session.factory.logs_dir.rglob("*"):
        if log.is_file() and _contains(log.read_bytes(), secrets):
            found.append(str(log))
    catalog = make_catalog(session.factory)
    catalog.refresh()
    client = TestClient(create_app(catalog))
    for url in ("/", "/api/platforms", "/api/images", "/api/wheels", f"/platforms/{PLATFORM}",
                "/api/combos?image=tts-deps", "/images/tts-deps", "/api/images/cuda-deps",
                "/api/images/canary", "/images/canary"):
        if _contains(client.get(url).content, secrets):
            found.append(url)
    catalog.reader.close()
    return found, scanned


def test_no_secret_in_any_layer_label_log_or_catalog_reply(
        session: Session, published: dict[str, ImageResult], tally: Counter[str]) -> None:
    found, scanned = _scan(session, _secrets(session))
    assert scanned > 20  # every layer and config of every pushed image
    tally["secrets_found"] += len(found)
    assert found == []


def test_the_scan_finds_a_canary_planted_in_a_build_input(
        session: Session, published: dict[str, ImageResult], tally: Counter[str]) -> None:
    """The scan above has never found anything: prove it can. A canary token goes into an
    image's [env] (a build input, as a careless password would: the image's config) and,
    through its Dockerfile template, into a file of a layer (gzipped); both are found,
    and so is the build log that echoed it."""
    canary = f"bf-canary-{secrets.token_hex(12)}"
    folder = session.factory.images_dir / "canary"
    folder.mkdir()
    (folder / "image.toml").write_text(
        f'parent = "platform"\nsize_budget_mb = 5000\n[env]\nBF_LEAKED_TOKEN = "{canary}"\n')
    (folder / "requirements.in").write_text("six\n")
    default = (Path(templates.__file__).parents[1] / "templates" / "image.Dockerfile.j2").read_text()
    (folder / "Dockerfile.j2").write_text(
        default + '\nRUN printf "%s\\n" "$BF_LEAKED_TOKEN" > /etc/bf-canary\n')
    try:
        build_images(session, ["canary"])
        found, _ = _scan(session, [canary.encode()])
    finally:
        shutil.rmtree(folder)
    in_blobs = [f for f in found if "/registry/" in f]
    assert len(in_blobs) >= 2, found  # the config (its ENV) and the layer with the file
    assert any(f.endswith(".log") for f in found), found
    tally["canary_secrets_found"] += len(found)


def test_the_catalog_is_read_only(session: Session, published: dict[str, ImageResult]) -> None:
    catalog = make_catalog(session.factory)
    catalog.refresh()
    app = create_app(catalog)
    client = TestClient(app)
    paths = {re.sub(r"\{[^}]+\}", "x", route.path) for route in app.routes  # type: ignore[attr-defined]
             if hasattr(route, "methods")}
    assert len(paths) >= 10
    for path in paths:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert client.request(method, path).status_code == 405, (method, path)
    catalog.reader.close()


def test_uploads_need_the_factory_users_credentials(session: Session, tmp_path: Path) -> None:
    from basefactory.adapters.devpi_api import DevpiClient
    from basefactory.plumbing.errors import ServiceError

    wheel = make_wheel(tmp_path, "bf-intruder", "1.0")
    with DevpiClient(session.factory.config.index.base_url) as anonymous:
        for index in (common_index(session.factory), platform_index(session.factory, PLATFORM)):
            try:
                anonymous.upload(index, wheel, name="bf-intruder", version="1.0")
                raise AssertionError("an anonymous upload was accepted")
            except ServiceError as exc:
                assert "refused the upload" in str(exc)
    config = session.devpi.index_config(platform_index(session.factory, PLATFORM))
    assert config is not None and config["acl_upload"] == ["factory"]
    assert config["acl_toxresult_upload"] == ["factory"]


def test_registry_writes_and_reads_need_the_factorys_credentials(
        session: Session, published: dict[str, ImageResult], tmp_path: Path) -> None:
    """Anonymous (and wrong-password) requests are refused, by the v2 API and by `docker
    push` from a client that never logged in; the moving tag does not move. The factory's
    own pushes (every image of the session) went through with its credentials."""
    reg = session.factory.config.registry
    repo = repository(session.factory, "cuda-deps")
    before = session.registry.digest(repo, PLATFORM)
    assert before is not None  # the factory's authenticated push landed
    auth = registry_auth(session.factory)
    assert auth is not None
    for who in (None, (auth[0], "not-the-password")):
        with httpx.Client(base_url=reg.base_url, auth=who, timeout=10) as anon:
            assert anon.get("/v2/_catalog").status_code == 401
            assert anon.post(f"/v2/{repo}/blobs/uploads/").status_code == 401
            manifest = session.registry.manifest(repo, PLATFORM)
            assert manifest is not None
            put = anon.put(f"/v2/{repo}/manifests/{PLATFORM}", content=json.dumps(manifest.body),
                           headers={"Content-Type": manifest.media_type})
            assert put.status_code == 401
    intruder = f"{reg.address}/{reg.namespace}/cuda-deps:{PLATFORM}"
    pushed = subprocess.run([session.docker.client.path, "push", intruder], capture_output=True,
                            text=True, env={**os.environ, "DOCKER_CONFIG": str(tmp_path)})
    assert pushed.returncode != 0
    assert "no basic auth credentials" in pushed.stderr + pushed.stdout, pushed.stderr
    assert session.registry.digest(repo, PLATFORM) == before


def test_services_listen_on_loopback_only(session: Session) -> None:
    listening = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
    for port in (session.factory.config.index.port, session.factory.config.registry.port):
        lines = [line for line in listening.splitlines() if re.search(rf":{port}\s", line)]
        assert lines, f"nothing listens on {port}"
        for line in lines:
            local = line.split()[3]
            assert local.startswith(("127.0.0.1:", "[::1]:", "[::ffff:127.0.0.1]:")), line


def test_a_public_package_cannot_shadow_a_private_one(session: Session, platform: PlatformResult,
                                                      tmp_path: Path) -> None:
    """`six` exists on PyPI (1.17+). Once the factory publishes its own `six`, the
    factory's indexes offer only that one: pip inside the base gets the private 0.0.1."""
    index = common_index(session.factory)
    wheel = make_wheel(tmp_path, "six", "0.0.1", "PRIVATE = True\n")
    if not session.devpi.release_files(index, "six"):
        session.devpi.upload(index, wheel, name="six", version="0.0.1")
    mirror = session.devpi.simple_url(session.factory.config.index.mirror)
    assert "six-1.17" in subprocess.run(["curl", "-s", f"{mirror}six/"], capture_output=True,
                                        text=True).stdout  # the public one is there
    out = session.docker.run(platform.base.ref, [
        "sh", "-c", f"pip download -q --no-deps -d /tmp/d --index-url "
        f"{session.devpi.simple_url(platform_index(session.factory, PLATFORM))} six && ls /tmp/d"],
        echo=False)
    assert "six-0.0.1-py3-none-any.whl" in out.output, out.output
