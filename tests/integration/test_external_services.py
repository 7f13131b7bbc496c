"""Publishing into the registry and index a team already runs: the distribution registry
with `auth: token` over TLS (a token server implementing Docker's specification, a CA made
for the test), nginx terminating TLS in front of a devpi that has its own admin, and nginx
rate-limiting the registry with 429s. All real programs (tests/external_services.py); the
factory reaches them only as factory.toml says, as a user's would.

The publish here goes into the token registry and reads its wheels from the session's
index (already holding the session's tested wheels, so nothing is compiled again); the
TLS devpi is exercised for what the factory does there itself (its layout, uploads,
rights, reads)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from basefactory.adapters import http
from basefactory.adapters.devpi_api import DevpiClient
from basefactory.adapters.registry_api import Registry
from basefactory.adapters.registry_auth import Credentials, RegistryAuth
from basefactory.config.factory import Factory, load_factory
from basefactory.daemons.credentials import index_password
from basefactory.images.plan import ImageResult
from basefactory.plumbing.errors import ConfigError, PublishRefused, ServiceError
from basefactory.session import Session
from tests.external_services import (
    Pem,
    Service,
    TokenServer,
    User,
    admin_devpi,
    issue,
    make_ca,
    nginx,
    token_registry,
    trust_in_engine,
)
from tests.helpers import PLATFORM, write_factory
from tests.integration.test_foundation import make_wheel

BF = str(Path(sys.executable).with_name("basefactory"))
REGISTRY_PASSWORD = "factory-token-pw"
ADMIN_PASSWORD = "devpi-admin-pw"


@dataclass
class External:
    ca: Pem
    tokens: TokenServer
    registry: str  # host:port of the token registry (TLS)
    limited: str  # https URL of nginx rate-limiting the registry
    devpi: str  # https URL of nginx in front of the admin's devpi
    folder: Path
    engine_trust: list[Path]
    services: list[Service]
    session_devpi: str = ""  # https URL of nginx in front of the session's devpi


@pytest.fixture(scope="module")
def external(tmp_path_factory: pytest.TempPathFactory) -> Iterator[External]:
    for program in ("nginx", "docker-registry"):
        assert shutil.which(program), f"missing component: {program} (make setup installs it)"
    folder = tmp_path_factory.mktemp("external")
    ca = make_ca(folder / "ca")
    signer = issue(ca, folder / "ca", "token-signer", rsa=True)
    tokens = TokenServer(signer, {
        "factory": User(REGISTRY_PASSWORD, {"factory": {"*"}}),
        # a read-only robot, as a team hands CI runners: no catalog, no push, no delete
        "reader": User("reader-pw", {"factory": {"pull"}}, catalog=False),
    }).start()
    services: list[Service] = []
    try:
        registry, address = token_registry(folder / "registry", ca, tokens)
        services.append(registry)
        limited, limited_url = nginx(folder / "nginx-limited", ca, "limited",
                                     f"https://{address}", rate_limit=True)
        services.append(limited)
        devpi, devpi_plain = admin_devpi(folder / "devpi", ADMIN_PASSWORD)
        services.append(devpi)
        front, devpi_url = nginx(folder / "nginx-devpi", ca, "devpi", devpi_plain,
                                 outside_header=True)
        services.append(front)
        trust = [trust_in_engine(address, ca)]
        yield External(ca, tokens, address, limited_url, devpi_url, folder, trust, services)
    finally:
        # the tags this module's publishes left on the engine (their layers are the
        # session's, which the session removes)
        refs = subprocess.run(["/usr/bin/docker", "images", "--format",
                               "{{.Repository}}:{{.Tag}}"], capture_output=True,
                              text=True).stdout.split()
        mine = [r for r in refs if r.startswith(f"{locals().get('address', '-')}/")]
        if mine:
            subprocess.run(["/usr/bin/docker", "image", "rm", "--force", *mine],
                           capture_output=True)
        for service in reversed(services):
            service.stop()
        tokens.stop()
        for path in locals().get("trust", []):
            shutil.rmtree(path, ignore_errors=True)


def external_factory(root: Path, services: str) -> Factory:
    """The test factory's platforms, recipes and images, with `services` ([index] and
    [registry] tables) in place of its embedded ones."""
    path = write_factory(root, index_port=1, registry_port=1)
    body = path.read_text()
    path.write_text('state_dir = ".factory"\n' + textwrap.dedent(services)
                    + body[body.index("[wheels]"):])
    return load_factory(path)


def tier_factory(root: Path, external: External, session_factory: Factory, *,
                 user: str = "factory", extra: str = "", registry_ca: bool = True) -> Factory:
    """A factory publishing into the token registry, its wheels from the session's index
    behind nginx's TLS (an existing devpi and registry to this factory: it runs neither)."""
    ca = f'ca_bundle = "{external.ca.cert}"'
    return external_factory(root, f"""
        [index]
        embedded = false
        url = "{external.session_devpi}"
        {ca}
        user = "{session_factory.config.index.user}"
        password_env = "TIER_INDEX_PASSWORD"
        [registry]
        embedded = false
        url = "https://{external.registry}"
        {ca if registry_ca else ""}
        user = "{user}"
        password_env = "TIER_REGISTRY_PASSWORD"
        compression = ["gzip", "zstd"]
        """ + textwrap.dedent(extra))


def cli(factory: Factory, *args: str, password: str = REGISTRY_PASSWORD,
        docker_config: Path | None = None, timeout: float = 1500) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BASEFACTORY_CONFIG": str(factory.path),
           "TIER_REGISTRY_PASSWORD": password, "TIER_INDEX_PASSWORD": factory_index_password,
           "DOCKER_CONFIG": str(docker_config or factory.root / "docker-config")}
    return subprocess.run([BF, *args], capture_output=True, text=True, env=env, timeout=timeout)


factory_index_password = ""


@pytest.fixture(scope="module")
def tier(external: External, session: Session, published: dict[str, ImageResult],
         tmp_path_factory: pytest.TempPathFactory) -> Factory:
    global factory_index_password
    factory_index_password = index_password(session.factory)
    # the session's devpi behind TLS, as a site runs its index: every pip, uv and host
    # read of the publish goes through it (and must trust the test's CA)
    front, external.session_devpi = nginx(external.folder / "nginx-session-devpi", external.ca,
                                          "session-devpi", session.factory.config.index.base_url,
                                          outside_header=True)
    external.services.append(front)
    return tier_factory(tmp_path_factory.mktemp("tier"), external, session.factory)


@pytest.fixture(scope="module")
def tier_published(tier: Factory, external: External) -> subprocess.CompletedProcess[str]:
    """`up` then `publish` of the demo platform's lean tier and one recipe wheel (its
    fits included) into the token registry, as a user runs them."""
    up = cli(tier, "up")
    assert up.returncode == 0, up.stderr[-3000:]
    external.tokens.issued.clear()
    done = cli(tier, "publish", "--platform", PLATFORM, "--only", "api-lean",
               "--only", "torchsort")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def registry_client(external: External, user: str = "factory",
                    password: str = REGISTRY_PASSWORD, url: str | None = None) -> Registry:
    tls = http.Tls(ca_bundle=external.ca.cert)
    base = url or f"https://{external.registry}"
    return Registry(base, tls=tls, auth=RegistryAuth(
        lambda: Credentials(user, password, "the test"), verify=http.verify_for(base, tls)))


def test_a_publish_lands_in_a_token_registry_over_tls_with_its_sboms_copies_and_fits(
        tier: Factory, tier_published: subprocess.CompletedProcess[str],
        external: External) -> None:
    with registry_client(external) as registry:
        for repo in ("factory/base", "factory/slim", "factory/api-lean", "factory-zstd/api-lean"):
            assert PLATFORM in registry.tags(repo), repo
        lean = registry.manifest("factory/api-lean", PLATFORM)
        copy = registry.manifest("factory-zstd/api-lean", PLATFORM)
        assert lean is not None and copy is not None
        assert lean.config_digest == copy.config_digest  # the same image, zstd layers
        assert all(layer["mediaType"].endswith("zstd") for layer in copy.body["layers"])
    # every token the publish used was asked for by the factory's user, for its own
    # repositories only, with the least each call needed
    scopes = {scope for _, scope in external.tokens.issued}
    assert {user for user, _ in external.tokens.issued} == {"factory"}
    assert all(s.split(":")[1].startswith(("factory/", "factory-zstd/", "factory-cache/"))
               for s in scopes if s.startswith("repository:")), scopes
    assert "repository:factory/api-lean:pull,push" in scopes
    # the catalog's own full reference reads the SBOM stored beside the image
    full = f"{external.registry}/factory/api-lean:{PLATFORM}"
    sbom = cli(tier, "images", "sbom", full)
    assert sbom.returncode == 0, sbom.stderr
    assert json.loads(sbom.stdout)["bomFormat"] == "CycloneDX"
    # the fit records of api-lean on this registry's digest, read back by the catalog
    listed = cli(tier, "images", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {(r["image"], r["platform"]): r for r in json.loads(listed.stdout)}
    assert rows[("api-lean", PLATFORM)]["tag"] == full, rows


def test_a_no_op_publish_asks_the_realm_once_per_scope(
        tier: Factory, tier_published: subprocess.CompletedProcess[str],
        external: External) -> None:
    external.tokens.issued.clear()
    again = cli(tier, "publish", "--platform", PLATFORM, "--only", "api-lean",
                "--only", "torchsort", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    issued = [scope for _, scope in external.tokens.issued]
    assert issued, "a publish that read the registry asked for no token"
    assert len(issued) == len(set(issued)), sorted(issued)  # cached: never the same scope twice


def test_a_downstream_build_pulls_from_the_token_registry_with_dockers_own_login(
        tier: Factory, tier_published: subprocess.CompletedProcess[str],
        external: External, tmp_path: Path) -> None:
    config = tmp_path / "docker"
    ref = f"{external.registry}/factory/api-lean:{PLATFORM}"
    docker = ["/usr/bin/docker"]
    # the classic builder pulls FROM through the engine, as `docker pull` does: Docker
    # 20.10's BuildKit speaks plain HTTP to registries on 127.0.0.0/8 (insecure by default),
    # which this TLS registry answers 400; a site's registry is not on loopback
    env = {**os.environ, "DOCKER_CONFIG": str(config), "DOCKER_BUILDKIT": "0"}
    login = subprocess.run([*docker, "login", external.registry, "-u", "factory",
                            "--password-stdin"], input=REGISTRY_PASSWORD, env=env,
                           capture_output=True, text=True)
    assert login.returncode == 0, login.stderr
    # the realm gave `docker login` a refresh token: the factory, with no password of its
    # own, reads it from Docker's config and trades it for access tokens (OAuth2)
    stored = json.loads((config / "config.json").read_text())["auths"][external.registry]
    assert stored.get("identitytoken")
    external.tokens.issued.clear()
    listed = cli(tier, "images", "ls", "--json", password="", docker_config=config)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert any(r["image"] == "api-lean" for r in json.loads(listed.stdout))
    assert {user for user, _ in external.tokens.issued} == {"factory"}
    subprocess.run([*docker, "image", "rm", ref], env=env, capture_output=True)
    (tmp_path / "Dockerfile").write_text(f"FROM {ref}\nRUN python3 -c 'import fastapi'\n")
    tag = "basefactory-test/downstream-token:1"
    built = subprocess.run([*docker, "build", "-t", tag, str(tmp_path)], env=env,
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    ran = subprocess.run([*docker, "run", "--rm", tag, "python3", "-c",
                          "import fastapi; print(fastapi.__name__)"], env=env,
                         capture_output=True, text=True)
    assert ran.stdout.strip() == "fastapi", ran.stderr
    # without a login the registry refuses the pull: the login above did the work
    subprocess.run([*docker, "image", "rm", ref, tag], env=env, capture_output=True)
    anonymous = subprocess.run([*docker, "pull", ref], capture_output=True, text=True,
                               env={**env, "DOCKER_CONFIG": str(tmp_path / "nobody")})
    assert anonymous.returncode != 0


def test_audit_and_prune_work_on_the_token_registry(
        tier: Factory, tier_published: subprocess.CompletedProcess[str],
        external: External) -> None:
    full = f"{external.registry}/factory/api-lean:{PLATFORM}"
    audit = cli(tier, "images", "audit", full, "--json")
    assert audit.returncode == 0, audit.stderr[-3000:]
    assert json.loads(audit.stdout)[0]["passed"] is True
    prune = cli(tier, "prune", "--json")
    assert prune.returncode == 0, prune.stderr[-3000:]
    kept = json.loads(prune.stdout)["kept"]
    assert any(r["repository"] == "factory/api-lean" for r in kept), kept


def test_a_read_only_robot_lists_without_a_catalog_and_prune_says_deletes_are_refused(
        tier: Factory, tier_published: subprocess.CompletedProcess[str],
        external: External, tmp_path: Path, session: Session) -> None:
    robot = tier_factory(tmp_path / "robot", external, session.factory, user="reader",
                         extra='[retention]\nkeep = 1\nkeep_days = 0\n')
    listed = cli(robot, "images", "ls", "--json", password="reader-pw")
    assert listed.returncode == 0, listed.stderr[-2000:]  # no _catalog: from the definitions
    assert any(r["image"] == "api-lean" for r in json.loads(listed.stdout))
    with registry_client(external, "reader", "reader-pw") as registry:
        digest = registry.digest("factory/api-lean", PLATFORM)
        assert digest is not None
        with pytest.raises(ServiceError, match="refuses deletes"):
            registry.delete("factory/api-lean", digest)
        with pytest.raises(ServiceError, match=r"refused user `reader` \(from the test\)"):
            registry.push_blob("factory/api-lean", b"not allowed")


def test_a_wrong_password_names_the_realm_and_where_it_came_from(
        tier: Factory, tier_published: subprocess.CompletedProcess[str],
        external: External) -> None:
    refused = cli(tier, "images", "ls", password="wrong")
    assert refused.returncode == ServiceError.exit_code, refused.stderr
    assert f"token server {external.tokens.url} refused user `factory`" \
           " (from $TIER_REGISTRY_PASSWORD)" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_token_that_expires_mid_run_is_renewed(
        tier: Factory, tier_published: subprocess.CompletedProcess[str],
        external: External) -> None:
    with registry_client(external) as registry:
        assert PLATFORM in registry.tags("factory/api-lean")
        external.tokens.expire_next = 1  # the registry now refuses what the realm issues
        registry.auth._tokens.clear()  # type: ignore[union-attr]  # as after expiry
        assert PLATFORM in registry.tags("factory/api-lean")
        assert external.tokens.expire_next == 0
        external.tokens.expire_next = 5  # a realm that only issues expired tokens
        registry.auth._tokens.clear()  # type: ignore[union-attr]
        with pytest.raises(ServiceError, match="invalid_token"):
            registry.tags("factory/slim")
        external.tokens.expire_next = 0
    # and in a whole publish: the first token it gets has expired by the time the
    # registry reads it (the realm's clock ahead, a slow link); renewed, and the publish
    # ends as if nothing happened
    external.tokens.expire_next = 1
    external.tokens.issued.clear()
    again = cli(tier, "publish", "--platform", PLATFORM, "--only", "api-lean", "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert external.tokens.expire_next == 0
    scopes = [scope for _, scope in external.tokens.issued]
    assert len(scopes) > len(set(scopes))  # the refused ones were asked for again


def test_a_429_is_waited_out(tier_published: subprocess.CompletedProcess[str],
                             external: External) -> None:
    with registry_client(external, url=external.limited) as registry:
        for _ in range(15):
            assert PLATFORM in registry.tags("factory/api-lean")
        assert registry.retries.waited_s >= 1.0  # nginx did say 429, and it was waited out


def test_a_registry_that_asks_for_a_client_certificate_gets_the_configured_one(
        external: External, tmp_path: Path) -> None:
    front, url = nginx(tmp_path / "mtls", external.ca, "mtls", f"https://{external.registry}",
                       client_certs=True)
    try:
        mine = issue(external.ca, tmp_path, "factory-client")
        tls = http.Tls(ca_bundle=external.ca.cert, client_cert=mine.cert, client_key=mine.key)
        with Registry(url, tls=tls, auth=RegistryAuth(
                lambda: Credentials("factory", REGISTRY_PASSWORD, "the test"),
                verify=http.verify_for(url, tls))) as registry:
            assert registry.ping()
        with registry_client(external, url=url) as without, \
                pytest.raises(ServiceError, match="400|certificate"):
            without.tags("factory/api-lean")
    finally:
        front.stop()


def test_an_untrusted_certificate_names_the_ca_setting(tier: Factory, external: External,
                                                     tmp_path: Path, session: Session) -> None:
    untrusted = tier_factory(tmp_path / "untrusted", external, session.factory,
                             registry_ca=False)
    refused = cli(untrusted, "images", "ls")
    assert refused.returncode == ServiceError.exit_code
    assert "TLS certificate is not trusted by the system's CA store" in refused.stderr
    assert "set factory.toml [registry] ca_bundle" in refused.stderr


# --- an existing devpi behind TLS, run by its own admin -----------------------------------

def devpi_factory(root: Path, external: External, *, user: str, admin: bool) -> Factory:
    return external_factory(root, f"""
        [index]
        embedded = false
        url = "{external.devpi}"
        ca_bundle = "{external.ca.cert}"
        user = "{user}"
        password_env = "TIER_INDEX_PASSWORD"
        {'admin_password_env = "TIER_DEVPI_ADMIN"' if admin else ''}
        """)


def test_an_existing_devpi_over_tls_gets_its_layout_from_its_admin(
        external: External, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from basefactory.index.layout import client, ensure_layout, layout_current

    monkeypatch.setenv("TIER_INDEX_PASSWORD", "team-pw")
    plain = devpi_factory(tmp_path / "a", external, user="team", admin=False)
    # no admin password: nothing is made, and the admin is told exactly what to make
    with pytest.raises(ConfigError) as missing:
        ensure_layout(plain)
    assert "has no user `team`" in missing.value.message
    assert "devpi index -c team/common bases=root/pypi" in (missing.value.hint or "")
    assert (f"devpi index -c team/{PLATFORM} bases=team/{PLATFORM}-base,team/common"
            in (missing.value.hint or ""))
    assert f"devpi index -c team/{PLATFORM}-base bases= volatile=True" in (missing.value.hint or "")
    # with the admin's password the factory makes them, over TLS through nginx
    monkeypatch.setenv("TIER_DEVPI_ADMIN", ADMIN_PASSWORD)
    made = ensure_layout(devpi_factory(tmp_path / "b", external, user="team", admin=True))
    assert "user team" in made and f"team/{PLATFORM}" in made and f"team/{PLATFORM}-base" in made
    assert layout_current(plain)
    # devpi runs with --restrict-modify root: the team user may not change its indexes'
    # settings, and the factory says what it needs instead of failing on a 403
    with client(plain, login=True) as devpi:
        with pytest.raises(ServiceError, match="--restrict-modify listing `team`"):
            devpi.set_custom_data(f"team/{PLATFORM}", {"fingerprint": {}})
        # it uploads (its indexes' acl_upload), and the file is served over TLS
        wheel = make_wheel(tmp_path, "bf-tls", "1.0", "X = 1\n")
        assert devpi.upload(f"team/{PLATFORM}", wheel, name="bf-tls", version="1.0") == "uploaded"
        simple = httpx.get(devpi.simple_url(f"team/{PLATFORM}") + "bf-tls/",
                           verify=str(external.ca.cert))
        assert wheel.name in simple.text and simple.url.scheme == "https"
        href = re.search(r'href="([^"]+)"', simple.text)
        assert href is not None
        file_url = simple.url.join(href.group(1))
        assert str(file_url).startswith(f"{external.devpi}/team/{PLATFORM}/+f/")
        got = httpx.get(file_url, verify=str(external.ca.cert))
        assert got.status_code == 200 and got.content == wheel.read_bytes()


def test_a_user_without_upload_rights_and_anonymous_user_creation_are_refused(
        external: External, tmp_path: Path) -> None:
    tls = http.Tls(ca_bundle=external.ca.cert)
    with DevpiClient(external.devpi, tls=tls) as admin:
        admin.login("root", ADMIN_PASSWORD)
        if not admin.user_exists("outsider"):
            admin.create_user("outsider", "outsider-pw")
        admin.ensure_index("root/guarded", bases=[], volatile=False, acl_upload=["root"])
    wheel = make_wheel(tmp_path, "bf-guarded", "1.0", "Y = 1\n")
    with DevpiClient(external.devpi, tls=tls, credentials=("outsider", "outsider-pw")) as other, \
            pytest.raises((ServiceError, PublishRefused), match="refused|403|401"):
        other.upload("root/guarded", wheel, name="bf-guarded", version="1.0")
    anonymous = httpx.put(f"{external.devpi}/eve", json={"password": "x"},
                          verify=str(external.ca.cert))
    assert anonymous.status_code in (401, 403)


def test_anonymous_user_creation_is_refused_on_the_embedded_devpi(session: Session) -> None:
    url = session.factory.config.index.base_url
    anonymous = httpx.put(f"{url}/eve", json={"password": "x"},
                          headers={"Accept": "application/json"})
    assert anonymous.status_code == 403, anonymous.text
    assert httpx.get(f"{url}/eve", headers={"Accept": "application/json"}).status_code == 404
