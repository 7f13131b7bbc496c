"""The embedded OCI registry: the CNCF distribution registry (Debian's docker-registry).

Every request needs the factory's credentials (the registry's htpasswd auth, bcrypt):
the distribution registry cannot tell a pull from a push, so reads need them too, and
downstream hosts `docker login` (README). `up` logs this host's Docker client in.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from basefactory.adapters import cmd
from basefactory.adapters.http import verify_for
from basefactory.adapters.registry_api import Registry
from basefactory.adapters.registry_auth import RegistryAuth
from basefactory.config.factory import Factory
from basefactory.daemons.credentials import registry_auth, registry_credentials
from basefactory.daemons.process import ManagedProcess, wait_until
from basefactory.daemons.status import ServiceStatus, service_status
from basefactory.plumbing import log
from basefactory.plumbing.errors import ConfigError, PublishRefused, ServiceError
from basefactory.refs import Labels, cache_repository

BINARIES = ("docker-registry", "registry")


def _binary() -> str:
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    raise ServiceError(
        "the distribution registry is not installed (looked for docker-registry, registry)",
        hint="run `make setup` (apt-get install docker-registry), or set [registry] url",
    )


def client(factory: Factory, *, timeout: float = 30.0) -> Registry:
    """The factory's registry, with its credentials (read when a challenge first asks
    for them: a credential helper is a process) and its TLS settings."""
    cfg = factory.config.registry
    return Registry(cfg.base_url, timeout=timeout, tls=cfg.tls,
                    auth=RegistryAuth(lambda: registry_credentials(factory),
                                      verify=verify_for(cfg.base_url, cfg.tls)))


# The distribution registry checks the bcrypt hash on every request, with no cache: at
# cost 10 that is ~90 ms a request here (a no-op publish makes dozens), at cost 4 ~1.5 ms.
# The cost factor slows the guessing of weak passwords; the factory's generated secret is
# 192 random bits, which no cost factor makes weaker or stronger. A password given through
# the environment is the operator's: it gets the same cost, said in the README.
BCRYPT_COST = 4


def _write_htpasswd(path: Path, user: str, password: str) -> bool:
    """The htpasswd line for (user, password), rewritten only when the password or the
    cost changed (a new salt would rewrite the file on every `up`). True if rewritten."""
    import bcrypt  # only `up` needs it

    try:
        name, _, hashed = path.read_text().strip().partition(":")
        if name == user and hashed.startswith(f"$2b${BCRYPT_COST:02d}$") \
                and bcrypt.checkpw(password.encode(), hashed.encode()):
            return False
    except (FileNotFoundError, ValueError):
        pass
    salt = bcrypt.gensalt(rounds=BCRYPT_COST)
    line = f"{user}:{bcrypt.hashpw(password.encode(), salt).decode()}\n"
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(line)
    os.replace(path.with_suffix(".tmp"), path)
    return True


def write_config(factory: Factory) -> bool:
    """The registry's configuration and htpasswd; True if the htpasswd was rewritten
    (the registry reads it at start only)."""
    cfg = factory.config.registry
    directory = factory.state_dir / "registry"
    directory.mkdir(parents=True, exist_ok=True)
    auth = registry_auth(factory)
    assert auth is not None  # an embedded registry always has its password
    rehashed = _write_htpasswd(directory / "htpasswd", *auth)
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": f"{cfg.host}:{cfg.port}"},
        "auth": {"htpasswd": {"realm": "basefactory", "path": str(directory / "htpasswd")}},
    }
    path = config_path(factory)
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is valid YAML
    return rehashed


def config_path(factory: Factory) -> Path:
    return factory.state_dir / "registry" / "config.yml"


def process(factory: Factory) -> ManagedProcess:
    try:
        binary = _binary()
    except ServiceError:
        binary = BINARIES[0]
    return ManagedProcess("registry", [binary, "serve", str(config_path(factory))],
                          factory.state_dir)


def ensure(factory: Factory) -> None:
    registry = client(factory)
    _binary()
    # before the ping: it also rewrites a changed password's (or an old cost's) hash
    rehashed = write_config(factory)
    proc = process(factory)
    if registry.ping() and registry.ping_status(anonymous=True) == 401 and not (
            rehashed and proc.pid() is not None):
        return
    if proc.pid() is not None:
        # ours, but started without auth (before it existed) or with another password
        # (htpasswd is read at start): restart it with the current configuration
        log.info("restarting the registry with the factory's credentials")
        proc.stop()
    elif registry.ping_status() is not None:
        raise ServiceError(
            f"a registry this factory did not start answers on"
            f" {factory.config.registry.base_url}, and not with this factory's credentials",
            hint="stop it (`basefactory down` in the factory that started it), or set"
                 " [registry] port (or url and embedded = false to use it)",
        )
    log.info(f"starting the registry on {factory.config.registry.base_url}")
    proc.start()
    wait_until(registry.ping, timeout=30, what="the registry", process=proc)


def garbage_collect(factory: Factory) -> None:
    """The registry's own garbage collection (blobs no manifest refers to), run with the
    embedded registry stopped: a push during it could lose a blob it just uploaded."""
    was_running = process(factory).stop()
    try:
        write_config(factory)
        cmd.run([_binary(), "garbage-collect", str(config_path(factory))], echo=False,
                hint="read the registry's message above; its data stays as it was")
    finally:
        if was_running:
            ensure(factory)


def stop(factory: Factory) -> bool:
    return process(factory).stop()


def status(factory: Factory) -> ServiceStatus:
    cfg = factory.config.registry
    return service_status("registry", embedded=cfg.embedded, address=cfg.base_url,
                          process=process(factory), client=client(factory, timeout=2.0),
                          detail=f"images under {cfg.address}/{cfg.namespace}/")


PROBE_REPOSITORY = "probe"  # under <namespace>-cache/: no catalog, fit or prune reads it


def check_external(factory: Factory) -> None:
    """An existing registry, checked before anything is built: it answers (TLS trusted),
    the factory's credentials may push under its namespaces, and a moving tag can move
    (ECR and Harbor can make tags immutable; every publish moves `<platform>`)."""
    # an empty OCI artifact: nothing any client would run
    empty, empty_type = b"{}", "application/vnd.oci.empty.v1+json"
    oci_manifest = "application/vnd.oci.image.manifest.v1+json"

    repo = cache_repository(factory, PROBE_REPOSITORY)
    tag = next(iter(factory.config.platforms))
    with client(factory) as registry:
        config = registry.push_blob(repo, empty)
        for n in (1, 2):
            body = json.dumps({
                "schemaVersion": 2, "mediaType": oci_manifest,
                "config": {"mediaType": empty_type, "digest": config, "size": len(empty)},
                "layers": [], "annotations": {Labels.PROBE: str(n)}},
                separators=(",", ":")).encode()
            try:
                registry.push_manifest(repo, tag, body, oci_manifest)
            except PublishRefused as exc:
                raise ConfigError(
                    f"{factory.config.registry.address}/{repo}:{tag} could not be moved:"
                    f" the registry keeps tags immutable ({exc.message})",
                    hint="every publish moves each image's moving tag (the platform's"
                         f" name, e.g. `FROM …/tts-deps:{tag}`): keep only the dated tags"
                         " (`<platform>-YYYYMMDD-<digest>`) immutable (Harbor: a rule on"
                         " tags `*-20*`; ECR: IMMUTABLE_WITH_EXCLUSION for the platform"
                         " names), or pin services to dated tags and publish with a"
                         " registry whose rule allows the moving ones") from None
