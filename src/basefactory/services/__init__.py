"""The factory's services: a Docker engine, devpi and an OCI registry.

`up` starts what is missing and is idempotent (a second `up` only checks health);
`down` stops only what `up` started (each has a pid file under the state folder);
`status` reports all three.
"""

from __future__ import annotations

from basefactory.config import Factory
from basefactory.plumbing import log
from basefactory.services import devpi_server as devpi
from basefactory.services import engine
from basefactory.services import registry_server as registry
from basefactory.services.status import ServiceStatus


def up(factory: Factory) -> list[ServiceStatus]:
    # here, not at the top: the index's layout reads its secrets from this package
    from basefactory.index.layout import ensure_layout

    factory.state_dir.mkdir(parents=True, exist_ok=True)
    engine.ensure(factory)
    if factory.config.index.embedded:
        devpi.ensure(factory)
    created = ensure_layout(factory)
    if created:
        log.detail(f"created on the index: {', '.join(created)}")
    if factory.config.index.embedded and factory.config.index.replica_port:
        devpi.ensure_replica(factory)
    if factory.config.registry.embedded:
        registry.ensure(factory)
    engine.login(factory)
    return status(factory)


def down(factory: Factory) -> list[str]:
    from basefactory.catalog import server as catalog

    stopped = []
    for name, stop in (("catalog", catalog.stop), ("registry", registry.stop),
                       ("devpi", devpi.stop), ("engine", engine.stop)):
        if stop(factory):
            stopped.append(name)
    return stopped


def status(factory: Factory) -> list[ServiceStatus]:
    return [engine.status(factory), devpi.status(factory), registry.status(factory)]
