"""The Docker engine: use a running one; start dockerd when none answers and we may."""

from __future__ import annotations

import os

from basefactory.adapters.docker import Docker, detect_client, which_dockerd
from basefactory.config.factory import Factory
from basefactory.daemons.credentials import registry_auth
from basefactory.daemons.process import ManagedProcess, wait_until
from basefactory.daemons.status import ServiceStatus
from basefactory.plumbing import log
from basefactory.plumbing.errors import ServiceError


def process(factory: Factory) -> ManagedProcess:
    return ManagedProcess("dockerd", [which_dockerd() or "dockerd"], factory.state_dir)


def docker(factory: Factory) -> Docker:
    return Docker(detect_client(factory.config.engine.docker),
                  index_ca=factory.config.index.build_ca)


def ensure(factory: Factory) -> Docker:
    client = docker(factory)
    if client.server_version() is not None:
        return client
    proc = process(factory)
    if not factory.config.engine.start:
        raise ServiceError(
            "no Docker engine answers, and [engine] start = false",
            hint="start Docker, or set start = true to let basefactory start dockerd",
        )
    if which_dockerd() is None:
        raise ServiceError("no Docker engine answers and dockerd is not installed",
                           hint="run `make setup` (installs docker.io as root), or start Docker")
    if os.geteuid() != 0:
        raise ServiceError("no Docker engine answers, and only root can start dockerd",
                           hint="start Docker (e.g. `sudo systemctl start docker`)")
    if proc.pid() is None:
        log.info("starting dockerd")
        proc.start()
    wait_until(lambda: client.server_version() is not None, timeout=90, what="dockerd",
               process=proc, interval=0.3)
    return client


def login(factory: Factory, client: Docker | None = None) -> None:
    """The Docker client logged in to the factory's registry (builds pull from it too).
    One client config serves every engine it talks to, [[builders]] included."""
    auth = registry_auth(factory)
    if auth is not None:
        (client or docker(factory)).login(factory.config.registry.address, *auth)


def stop(factory: Factory) -> bool:
    return process(factory).stop(timeout=30)


def status(factory: Factory) -> ServiceStatus:
    proc = process(factory)
    pid = proc.pid()
    try:
        client = docker(factory)
    except ServiceError as exc:
        return ServiceStatus("engine", "stopped", "", pid is not None, pid, str(exc))
    except Exception as exc:  # a missing client is a status, not a crash
        return ServiceStatus("engine", "stopped", "", pid is not None, pid, str(exc))
    version = client.server_version()
    state = "running" if version else "stopped"
    detail = f"docker {version}, builds with {client.client.builder}"
    return ServiceStatus("engine", state, client.client.path, pid is not None, pid,
                         detail if version else "")
