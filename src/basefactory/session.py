"""What every pipeline step needs: the factory, the engine, the index and the registry.

Made once per command; clients connect lazily, so a command that only reads the index
never detects Docker.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from basefactory.adapters.devpi_api import DevpiClient
from basefactory.adapters.docker import Docker, detect_client
from basefactory.adapters.registry_api import Registry
from basefactory.config.factory import Factory
from basefactory.daemons import engine, registry_server
from basefactory.index import layout
from basefactory.proofs.read import ProofReader


@dataclass
class Session:
    factory: Factory
    _closers: list[object] = field(default_factory=list)

    @functools.cached_property
    def docker(self) -> Docker:
        docker = Docker(detect_client(self.factory.config.engine.docker),
                        index_ca=self.factory.config.index.build_ca)
        docker.require_engine()
        engine.login(self.factory, docker)
        docker.reap_orphans()
        return docker

    @functools.cached_property
    def devpi(self) -> DevpiClient:
        """The index, logged in as the factory user (uploads need it)."""
        client = layout.client(self.factory, login=True)
        self._closers.append(client)
        return client

    @functools.cached_property
    def proofs(self) -> ProofReader:
        return ProofReader(self.devpi)

    @functools.cached_property
    def registry(self) -> Registry:
        client = registry_server.client(self.factory)
        self._closers.append(client)
        return client

    def builders(self) -> list[Docker]:
        """The local engine, then each [[builders]] engine of factory.toml."""
        found = [self.docker]
        for builder in self.factory.config.builders:
            docker = Docker(self.docker.client, host=builder.docker_host, name=builder.name,
                            index_ca=self.factory.config.index.build_ca)
            docker.require_engine()
            found.append(docker)
        return found

    def on(self, docker: Docker) -> Session:
        """This session with its steps run on another engine (same index and registry)."""
        other = Session(self.factory)
        other.__dict__.update(docker=docker, devpi=self.devpi, registry=self.registry,
                              proofs=self.proofs)
        return other

    def close(self) -> None:
        for client in self._closers:
            client.close()  # type: ignore[attr-defined]

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
