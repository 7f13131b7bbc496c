"""Run the catalog: in the foreground (`catalog serve`) or as a managed background process
(`catalog start`, stopped by `catalog stop` and `down`)."""

from __future__ import annotations

import sys

import httpx

from basefactory.catalog.app import create_app
from basefactory.catalog.snapshot import Reader
from basefactory.catalog.state import Catalog
from basefactory.config.factory import Factory
from basefactory.daemons.process import ManagedProcess, wait_until
from basefactory.plumbing import log


def make_catalog(factory: Factory) -> Catalog:
    return Catalog(Reader(factory), cache_file=factory.state_dir / "catalog" / "snapshot.json",
                   ttl=factory.config.catalog.refresh_seconds)


def serve(factory: Factory, host: str, port: int) -> None:
    import uvicorn

    catalog = make_catalog(factory)
    catalog.start()
    log.info(f"catalog on http://{host}:{port}/ (JSON API under /api, OpenAPI at /docs)")
    try:
        uvicorn.run(create_app(catalog), host=host, port=port, log_level="warning",
                    access_log=False)
    finally:
        catalog.stop()


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
