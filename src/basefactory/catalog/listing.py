"""What `basefactory ls` (and `images ls`, `wheels ls`) prints: rows of what the catalog's
reader (`snapshot.Reader`, the one reader of the registry and the index) finds, so that
the command line and the web page never disagree about what is published or tested."""

from __future__ import annotations

from typing import Any

from basefactory.adapters.devpi_api import simple_url
from basefactory.catalog.snapshot import Reader
from basefactory.proofs import Kind
from basefactory.proofs.read import proven
from basefactory.refs import platform_index


def list_platforms(reader: Reader) -> list[dict[str, Any]]:
    index = reader.devpi.base_url
    return [{"platform": name, "torch": fp.get("torch"), "cuda": fp.get("cuda"),
             "index": simple_url(index, platform_index(reader.factory, name))}
            for name, fp in reader.platforms().items()]


def list_images(reader: Reader) -> list[dict[str, Any]]:
    return [{"image": cell.image, "platform": cell.platform, "tag": cell.ref,
             "immutable": cell.current, "builds": len(cell.tags),
             "compressed_size": cell.size}
            for cells in reader.images().values() for cell in cells.values()]


def list_wheels(reader: Reader) -> list[dict[str, Any]]:
    return [{"index": w.index, "project": w.project, "version": w.version, "file": w.filename,
             "tested": proven(w.proofs, Kind.WHEEL_TEST)}
            for w in reader.wheels()]
