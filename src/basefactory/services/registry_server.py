"""The embedded OCI registry: the CNCF distribution registry (Debian's docker-registry)."""

from __future__ import annotations

import json
import shutil

from basefactory.adapters.registry_api import Registry
from basefactory.config import Factory
from basefactory.plumbing import log
from basefactory.plumbing.errors import ServiceError
from basefactory.services.process import ManagedProcess, wait_until
from basefactory.services.status import ServiceStatus, service_status

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


def write_config(factory: Factory) -> str:
    cfg = factory.config.registry
    directory = factory.state_dir / "registry"
    config = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(directory / "data")},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {"addr": f"{cfg.host}:{cfg.port}"},
    }
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yml"
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is valid YAML
    return str(path)


def process(factory: Factory) -> ManagedProcess:
    try:
        binary = _binary()
    except ServiceError:
        binary = BINARIES[0]
    return ManagedProcess("registry", [binary, "serve", str(factory.state_dir / "registry" /
                                                              "config.yml")], factory.state_dir)


def ensure(factory: Factory) -> None:
    client = Registry(factory.config.registry.base_url)
    if client.ping():
        return
    _binary()
    write_config(factory)
    proc = process(factory)
    if proc.pid() is None:
        log.info(f"starting the registry on {factory.config.registry.base_url}")
        proc.start()
    wait_until(client.ping, timeout=30, what="the registry", process=proc)


def stop(factory: Factory) -> bool:
    return process(factory).stop()


def status(factory: Factory) -> ServiceStatus:
    cfg = factory.config.registry
    return service_status("registry", embedded=cfg.embedded, address=cfg.base_url,
                          process=process(factory), client=Registry(cfg.base_url),
                          detail=f"images under {cfg.address}/{cfg.namespace}/")
