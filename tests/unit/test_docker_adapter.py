"""adapters/docker.py without an engine: which client is chosen (and how its answers are
remembered), and where a query goes (the engine's socket, or the client)."""

from __future__ import annotations

import json
import os
import re
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from basefactory.adapters import docker as adapter
from basefactory.adapters.docker import ClientInfo, Docker
from basefactory.plumbing.errors import ToolError


def fake_client(folder: Path, version: str, *, buildx: bool) -> tuple[Path, Path]:
    """A `docker` that answers --version and `buildx version`, and counts its runs."""
    calls = folder / "calls"
    script = folder / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'echo run >> "{calls}"\n'
        f'[ "$1" = "--version" ] && {{ echo "Docker version {version}, build abc"; exit 0; }}\n'
        f'[ "$1" = "buildx" ] && exit {0 if buildx else 1}\n'
        "exit 2\n")
    script.chmod(0o755)
    return script, calls


def runs(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    adapter.detect_client.cache_clear()
    yield tmp_path / "cache"
    adapter.detect_client.cache_clear()


def test_a_client_is_asked_once_and_again_when_its_binary_changes(
        tmp_path: Path, cache_home: Path) -> None:
    script, calls = fake_client(tmp_path, "20.10.24", buildx=False)
    assert adapter._cached_client_info(str(script)) == ClientInfo(str(script), "20.10.24", False)
    assert runs(calls) == 2  # --version, buildx version
    assert adapter._cached_client_info(str(script)) == ClientInfo(str(script), "20.10.24", False)
    assert runs(calls) == 2  # remembered
    # an upgrade in place: same path, another binary
    script.write_text(script.read_text().replace("20.10.24", "20.10.25") + "\n")
    os.utime(script, ns=(1, 1))
    upgraded = adapter._cached_client_info(str(script))
    assert upgraded is not None and upgraded.version == "20.10.25"
    assert runs(calls) == 4


def test_a_broken_cache_is_asked_around_and_rewritten(tmp_path: Path, cache_home: Path) -> None:
    script, calls = fake_client(tmp_path, "27.1.0", buildx=True)
    (cache_home / "basefactory").mkdir(parents=True)
    (cache_home / "basefactory" / "docker-clients.json").write_text("{not json")
    assert adapter._cached_client_info(str(script)) == ClientInfo(str(script), "27.1.0", True)
    assert json.loads((cache_home / "basefactory" / "docker-clients.json").read_text())


def test_a_23_client_without_buildx_is_passed_over_and_named(
        tmp_path: Path, cache_home: Path) -> None:
    script, _ = fake_client(tmp_path, "28.2.2", buildx=False)
    with pytest.raises(ToolError) as caught:
        adapter.detect_client(str(script))
    assert "28.2.2 (no buildx, and 23+ needs it for BuildKit)" in str(caught.value)
    older = tmp_path / "older"
    older.mkdir()
    assert adapter.detect_client(str(fake_client(older, "20.10.24", buildx=False)[0])
                                 ).builder == "DOCKER_BUILDKIT=1"


CLIENT = ClientInfo("/nonexistent/docker", "20.10.24", False)


@pytest.mark.parametrize(("host", "context", "expected"), [
    (None, None, "/var/run/docker.sock"),
    ("unix:///run/user/1000/docker.sock", None, "/run/user/1000/docker.sock"),
    ("tcp://10.0.0.2:2375", None, None),  # a remote engine: the client knows TLS and all
    ("ssh://builder", None, None),
    (None, "rootless", None),  # a context may point anywhere: the client resolves it
])
def test_queries_go_to_the_socket_only_where_the_client_would_go(
        host: str | None, context: str | None, expected: str | None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    if context:
        (tmp_path / "config.json").write_text(json.dumps({"currentContext": context}))
    assert Docker(CLIENT, host=host).api_socket == expected


class _Engine(BaseHTTPRequestHandler):
    images = {"/images/127.0.0.1:5000/factory/base:p1/json": {"Id": "sha256:ab", "Config": {
        "Labels": {"org.example": "x"}}}}

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        body: object
        if self.path == "/version":
            body, status = {"Version": "20.10.24+dfsg1"}, 200
        elif self.path in self.images:
            body, status = self.images[self.path], 200
        else:
            body, status = {"message": "No such image"}, 404
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine_socket(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "engine.sock")
    server = _UnixServer(path, _Engine)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield path
    server.shutdown()
    server.server_close()


def test_inspect_and_version_read_the_engine_api_on_its_socket(engine_socket: str) -> None:
    # the client path does not exist: an answer can only have come through the socket
    docker = Docker(CLIENT, host=f"unix://{engine_socket}")
    assert docker.server_version() == "20.10.24+dfsg1"
    assert docker.image_id("127.0.0.1:5000/factory/base:p1") == "sha256:ab"
    assert docker.image_labels("127.0.0.1:5000/factory/base:p1") == {"org.example": "x"}
    assert docker.image_id("127.0.0.1:5000/factory/base:gone") is None


def test_an_engine_that_does_not_answer_has_no_version(tmp_path: Path) -> None:
    docker = Docker(CLIENT, host=f"unix://{tmp_path / 'no-engine.sock'}")
    assert docker.server_version() is None


def flaky_client(folder: Path, failures: int, message: str) -> tuple[Docker, Path]:
    """A `docker` whose first `failures` pulls fail with `message`; it counts its pulls."""
    calls = folder / "pulls"
    script = folder / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{calls}"\n'
        f'[ "$(wc -l < "{calls}")" -le {failures} ] && {{ echo "{message}" >&2; exit 1; }}\n'
        "exit 0\n")
    script.chmod(0o755)
    return Docker(ClientInfo(str(script), "20.10.24", False)), calls


def test_a_pull_the_link_dropped_is_tried_again(tmp_path: Path) -> None:
    docker, calls = flaky_client(tmp_path, 2, "error pulling image configuration: unexpected EOF")
    docker.pull_required("127.0.0.1:5000/factory-cache/builder:p1-abc", hint="h", backoff_s=0)
    assert runs(calls) == 3
    # and not forever: the third failure is the error, with docker's message
    (tmp_path / "pulls").unlink()
    docker, calls = flaky_client(tmp_path, 3, "read: connection reset by peer")
    with pytest.raises(ToolError, match="connection reset by peer"):
        docker.pull_required("127.0.0.1:5000/x:1", hint="h", backoff_s=0)
    assert runs(calls) == 3


def test_a_pull_of_what_the_registry_lacks_is_not_tried_again(tmp_path: Path) -> None:
    docker, calls = flaky_client(
        tmp_path, 5, "Error response from daemon: manifest for 127.0.0.1:5000/x:1 not found:"
                     " manifest unknown: manifest unknown")
    with pytest.raises(ToolError, match="manifest unknown"):
        docker.pull_required("127.0.0.1:5000/x:1", hint="publish it first", backoff_s=0)
    assert runs(calls) == 1


def test_a_pull_says_false_only_where_the_registry_lacks_the_image(tmp_path: Path) -> None:
    """Callers build on False: a pull that could not ask (registry down, link dropped)
    is retried and then raised with docker's message, never read as "not there"."""
    missing = "Error response from daemon: manifest for 127.0.0.1:5000/x:1 not found:" \
              " manifest unknown: manifest unknown"
    docker, calls = flaky_client(tmp_path, 5, missing)
    assert docker.pull("127.0.0.1:5000/x:1", backoff_s=0) is False
    assert runs(calls) == 1
    (tmp_path / "pulls").unlink()
    docker, calls = flaky_client(tmp_path, 1, "unexpected EOF")
    assert docker.pull("127.0.0.1:5000/x:1", backoff_s=0) is True
    assert runs(calls) == 2
    (tmp_path / "pulls").unlink()
    refused = 'Error response from daemon: Get "http://127.0.0.1:5999/v2/": dial tcp' \
              " 127.0.0.1:5999: connect: connection refused"
    docker, calls = flaky_client(tmp_path, 5, refused)
    with pytest.raises(ToolError, match="connection refused") as caught:
        docker.pull("127.0.0.1:5999/x:1", backoff_s=0)
    assert "could not pull it" in (caught.value.hint or "")
    assert runs(calls) == 3


def test_an_https_index_with_its_own_ca_reaches_every_build_and_script_and_no_layer(
        tmp_path: Path) -> None:
    """Builds get the CA as the BuildKit secret the templates mount (so no layer of a
    published image holds it); in-container scripts get it in their folder as PIP_CERT."""
    from basefactory.plumbing import templates

    log = tmp_path / "argv"
    script = tmp_path / "docker"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{log}"\n'
                      'for a; do case "$prev" in --iidfile) echo sha256:ii > "$a";; esac;'
                      ' prev="$a"; done\n'
                      'for a; do case "$a" in PIP_CERT=*) echo "$a";; esac; done\n')
    script.chmod(0o755)
    ca = tmp_path / "company-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    docker = Docker(ClientInfo(str(script), "20.10.24", False), index_ca=ca)
    docker.build(tmp_path, dockerfile=tmp_path / "Dockerfile", tags=["t"],
                 build_args={"INDEX_URL": "https://devpi.example/x/+simple/"})
    assert f"id=index-ca,src={ca}" in log.read_text().splitlines()
    ran = docker.run_script("img", ["true"], files={"a.sh": "x"}, folder=tmp_path / "bf")
    assert (tmp_path / "bf" / "index-ca.pem").read_text() == ca.read_text()
    assert "PIP_CERT=/bf/index-ca.pem" in ran.output
    plain = Docker(ClientInfo(str(script), "20.10.24", False))
    log.unlink()
    plain.build(tmp_path, dockerfile=tmp_path / "Dockerfile", tags=["t"])
    assert "index-ca" not in log.read_text()
    # the templates mount it only where a CA is configured: the default renders as before
    for name, extra in (("platform.Dockerfile.j2", {
            "rootfs": "r", "python": "3.11", "apt": (), "torch": "torch==2", "torch_sha256": None,
            "packages": (), "cuda_toolkit": False, "env": {}}),
            ("builder.Dockerfile.j2", {"base": "b", "python_dev": "python3-dev"}),
            ("wheel.Dockerfile.j2", {"builder": "B", "apt": (), "env": {}, "pre_build": ("x",),
                                     "requires": ("y",), "no_build_isolation": False,
                                     "excludes": ()}),
            ("image.Dockerfile.j2", {"parent": "p", "apt": (), "env": {}, "has_lock": True,
                                     "has_wheels": True})):
        default = templates.render(name, **extra)
        with_ca = templates.render(name, **extra, index_ca=True)
        assert "index-ca" not in default, name
        statements = with_ca.replace("\\\n", " ").splitlines()
        runs_index = [line for line in statements if line.startswith("RUN ")
                      and re.search(r"\bpip (install|download|wheel)\b|uv pip| x$", line)]
        assert runs_index and all("id=index-ca" in line for line in runs_index), name
        assert ("PIP_CERT=/run/secrets/index-ca" in with_ca
                or "SSL_CERT_FILE=/run/secrets/index-ca" in with_ca), name


def test_a_login_is_not_repeated_whether_docker_kept_the_password_or_an_identity_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_home: Path) -> None:
    """`docker login` costs a round trip to the realm on every publish unless skipped; a
    realm that gives refresh tokens leaves Docker an identity token and no password to
    compare, so the login that made it is remembered (a digest of token and password)."""
    config = tmp_path / "docker-config"
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    log = tmp_path / "logins"
    script = tmp_path / "docker"
    # a `docker login` that stores what the realm gave: an identity token for this one
    script.write_text(f"""#!/bin/sh
read password
echo "$2 $4" >> {log}
mkdir -p {config}
if [ "$2" = "oauth.example:5000" ]; then entry='{{"auth":"'$(printf '%s:' "$4" | base64)'","identitytoken":"rt-'$password'"}}'
else entry='{{"auth":"'$(printf '%s:%s' "$4" "$password" | base64)'"}}'; fi
printf '{{"auths":{{"%s":%s}}}}' "$2" "$entry" > {config}/config.json
""")
    script.chmod(0o755)
    docker = Docker(ClientInfo(str(script), "20.10.24", False))
    for address in ("basic.example:5000", "oauth.example:5000"):
        docker.login(address, "ci", "pw1")
        docker.login(address, "ci", "pw1")
        assert log.read_text().splitlines().count(f"{address} ci") == 1, address
        docker.login(address, "ci", "pw2")  # a new password: logged in again
        assert log.read_text().splitlines().count(f"{address} ci") == 2, address
    assert "pw2" not in "".join(p.read_text() for p in (cache_home / "basefactory" / "logins").iterdir())
