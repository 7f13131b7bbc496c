"""The factory's house: its daemons (a Docker engine, devpi, an OCI registry), the index
layout on devpi, and the catalog server, brought up and down together.

`up` starts what is missing and is idempotent (a second `up` only checks health);
`down` stops only what `up` (or `catalog serve --background`) started, each by its pid
file under the state folder; `status` reports the three daemons. Above `daemons/`,
`index/` and `catalog/`, so none of them needs to import another upward.
"""

from __future__ import annotations

from basefactory.catalog import process as catalog
from basefactory.config.factory import Factory
from basefactory.daemons import devpi_server as devpi
from basefactory.daemons import engine
from basefactory.daemons import registry_server as registry
from basefactory.daemons.status import ServiceStatus
from basefactory.index.layout import ensure_layout
from basefactory.plumbing import log


def up(factory: Factory) -> list[ServiceStatus]:
    """`basefactory up`: the services ready, an existing registry probed, their status."""
    ensure(factory, probe_registry=True)
    return status(factory)


def ensure(factory: Factory, *, probe_registry: bool = False) -> None:
    """The services ready, as every command that builds or publishes needs them. The probe
    of an existing registry (a push of a tag, twice) is `up`'s: a publish that meets an
    immutable moving tag says the same when it pushes."""
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
    elif probe_registry:
        registry.check_external(factory)
    engine.login(factory)


def down(factory: Factory) -> list[str]:
    stopped = []
    for name, stop in (("catalog", catalog.stop), ("registry", registry.stop),
                       ("devpi", devpi.stop), ("engine", engine.stop)):
        if stop(factory):
            stopped.append(name)
    return stopped


def status(factory: Factory) -> list[ServiceStatus]:
    return [engine.status(factory), devpi.status(factory), registry.status(factory)]
