"""The catalog as a managed background process (`catalog start`, stopped by `catalog
stop` and `down`): its pid file, its health check. Imports no web framework, so that
`up`, `down` and `publish` do not pay for FastAPI."""

from __future__ import annotations

import sys

import httpx

from basefactory.config.factory import Factory
from basefactory.daemons.process import ManagedProcess, wait_until


def process(factory: Factory) -> ManagedProcess:
    cfg = factory.config.catalog
    return ManagedProcess("catalog", [sys.executable, "-m", "basefactory", "--config",
                                      str(factory.path), "catalog", "serve", "--host", cfg.host,
                                      "--port", str(cfg.port)], factory.state_dir)


def answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start(factory: Factory) -> str:
    url = factory.config.catalog.url
    if answers(url):
        return url
    proc = process(factory)
    if proc.pid() is None:
        proc.start()
    wait_until(lambda: answers(url), timeout=60, what="the catalog", process=proc)
    return url


def stop(factory: Factory) -> bool:
    return process(factory).stop()
