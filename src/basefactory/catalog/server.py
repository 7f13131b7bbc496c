"""Run the catalog in the foreground (`catalog serve`): the snapshot reader and the
FastAPI app under uvicorn. `process.py` starts and stops it in the background."""

from __future__ import annotations

from basefactory.catalog.app import create_app
from basefactory.catalog.snapshot import Reader
from basefactory.catalog.state import Catalog
from basefactory.config.factory import Factory
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
