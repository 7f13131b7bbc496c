"""What `basefactory ls` prints: the images and wheels published, read from the registry
and the index (the catalog's snapshot reads the same sources for the web page)."""

from __future__ import annotations

from typing import Any

from basefactory.proofs import Kind
from basefactory.proofs.read import proven
from basefactory.refs import common_index, platform_index
from basefactory.session import Session


def list_images(session: Session) -> list[dict[str, Any]]:
    factory = session.factory
    prefix = f"{factory.config.registry.namespace}/"
    rows = []
    for repo in session.registry.repositories():
        if not repo.startswith(prefix):
            continue
        name = repo.removeprefix(prefix)
        tags = session.registry.tags(repo)
        for platform in factory.config.platforms:
            if platform not in tags:
                continue
            immutable = [t for t in tags if t.startswith(f"{platform}-")]
            manifest = session.registry.manifest(repo, platform)
            current = next((t for t in immutable if manifest is not None and
                            session.registry.digest(repo, t) == manifest.digest), None)
            rows.append({"image": name, "platform": platform,
                         "tag": f"{factory.config.registry.address}/{repo}:{platform}",
                         "immutable": current, "builds": len(immutable),
                         "compressed_size": manifest.size if manifest else None})
    return rows


def list_wheels(session: Session) -> list[dict[str, Any]]:
    factory, devpi = session.factory, session.devpi
    rows: list[dict[str, Any]] = []
    indexes = [common_index(factory)] + [platform_index(factory, p)
                                         for p in factory.config.platforms]
    for index in indexes:
        for project in devpi.projects(index):
            for f in devpi.release_files(index, project):
                if f.filename.endswith(".whl") and not f.filename.startswith("torch-"):
                    rows.append({"index": index, "project": f.project, "version": f.version,
                                 "file": f.filename,
                                 "tested": proven(session.proofs.wheel(f), Kind.WHEEL_TEST)})
    return rows
