"""adapters/docker_config.py and daemons/credentials.registry_credentials: the registry's
credentials as Docker reads them (credHelpers, credsStore, auths, identitytoken), with real
`docker-credential-*` programs (shell scripts on PATH answering as Docker's helpers do),
and the order: factory.toml's environment variable, the embedded secret, Docker's config."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from basefactory.adapters import docker_config
from basefactory.config.factory import load_factory
from basefactory.daemons.credentials import registry_auth, registry_credentials
from basefactory.plumbing.errors import ServiceError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "docker"
    folder.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def write_config(home: Path, config: dict[str, object]) -> None:
    (home / "docker" / "config.json").write_text(json.dumps(config))


def helper(home: Path, name: str, *, user: str = "AWS", secret: str = "from-helper",
           known: str = "registry.example:5000") -> Path:
    """A credential helper as Docker runs it: `get`, the server on stdin, JSON out."""
    log = home / f"{name}.log"
    script = home / "bin" / f"docker-credential-{name}"
    script.write_text(f"""#!/bin/sh
read server
echo "$1 $server" >> {log}
if [ "$server" = "{known}" ]; then
  printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}' "$server"
else
  echo "credentials not found in native keychain"; exit 1
fi
""")
    script.chmod(0o755)
    return log


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auths_are_read_whatever_way_docker_wrote_the_key(home: Path) -> None:
    write_config(home, {"auths": {"https://registry.example:5000/v1/": {"auth": b64("ci:pw:with:colons")},
                                  "other.example": {"auth": b64("x:y")}}})
    found = docker_config.lookup("registry.example:5000")
    assert found is not None
    assert (found.user, found.secret) == ("ci", "pw:with:colons")
    assert found.source.endswith("config.json auths")
    assert docker_config.lookup("nowhere.example") is None


def test_a_cred_helper_for_the_host_comes_first_and_gets_the_server_on_stdin(home: Path) -> None:
    log = helper(home, "ecr-login")
    write_config(home, {"credHelpers": {"registry.example:5000": "ecr-login"},
                        "auths": {"registry.example:5000": {"auth": b64("stale:old")}}})
    found = docker_config.lookup("registry.example:5000")
    assert found is not None
    assert (found.user, found.secret, found.source) == ("AWS", "from-helper",
                                                        "docker-credential-ecr-login")
    assert log.read_text() == "get registry.example:5000\n"


def test_a_creds_store_is_asked_and_auths_used_where_it_knows_nothing(home: Path) -> None:
    helper(home, "pass", known="registry.example:5000")
    write_config(home, {"credsStore": "pass", "auths": {"other.example": {"auth": b64("o:p")}}})
    found = docker_config.lookup("registry.example:5000")
    assert found is not None and found.source == "docker-credential-pass"
    other = docker_config.lookup("other.example")
    assert other is not None and (other.user, other.secret) == ("o", "p")


def test_an_identity_token_is_a_refresh_token(home: Path) -> None:
    write_config(home, {"auths": {"registry.example:5000": {"identitytoken": "refresh-me"}}})
    found = docker_config.lookup("registry.example:5000")
    assert found is not None and (found.user, found.secret) == ("<token>", "refresh-me")


def test_broken_helpers_and_files_are_named(home: Path) -> None:
    write_config(home, {"credHelpers": {"registry.example:5000": "gone"}})
    with pytest.raises(ServiceError) as missing:
        docker_config.lookup("registry.example:5000")
    assert "`docker-credential-gone` is not on PATH" in missing.value.message
    failing = home / "bin" / "docker-credential-broken"
    failing.write_text("#!/bin/sh\necho 'SECRET-ON-STDOUT'\necho 'keychain locked' >&2\nexit 1\n")
    failing.chmod(0o755)
    write_config(home, {"credHelpers": {"registry.example:5000": "broken"}})
    with pytest.raises(ServiceError) as broken:
        docker_config.lookup("registry.example:5000")
    assert "keychain locked" in broken.value.message
    assert "SECRET-ON-STDOUT" not in str(broken.value)
    (home / "docker" / "config.json").write_text("{not json")
    with pytest.raises(ServiceError) as unreadable:
        docker_config.lookup("registry.example:5000")
    assert "cannot be read" in unreadable.value.message


EXTERNAL = """state_dir = "state"
[index]
embedded = false
url = "https://devpi.example"
[registry]
embedded = false
url = "https://registry.example:5000"
user = "robot$factory"
[platforms.p1.bootstrap]
torch = "torch==2.13.0+cpu"
"""


def test_the_environment_comes_before_dockers_config_and_only_it_is_logged_in(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = home / "factory.toml"
    path.write_text(EXTERNAL)
    factory = load_factory(path)
    monkeypatch.delenv("BASEFACTORY_REGISTRY_PASSWORD", raising=False)
    write_config(home, {"auths": {"registry.example:5000": {"auth": b64("docker-user:pw")}}})
    found = registry_credentials(factory)
    assert found is not None and found.user == "docker-user"
    assert registry_auth(factory) is None  # the Docker client has them: no `docker login`
    monkeypatch.setenv("BASEFACTORY_REGISTRY_PASSWORD", "from-env")
    found = registry_credentials(factory)
    assert found is not None
    assert (found.user, found.secret, found.source) == ("robot$factory", "from-env",
                                                        "$BASEFACTORY_REGISTRY_PASSWORD")
    assert registry_auth(factory) == ("robot$factory", "from-env")
