"""Retention: which immutable tags `basefactory prune` deletes, and what `df` reports.

Kept, per image and platform: the moving tag (and so the immutable tag it points at),
the newest `keep` immutable tags, and every tag younger than `keep_days`. Deleted: the
other immutable tags, by manifest digest (a digest a kept tag shares is never deleted).
Platform bases and slim images (`<platform>-<digest>` tags, no date) are never pruned:
images are built on them. Wheels are never deleted: indexes are not volatile.

A whole-factory prune (no image named) also reviews the builders engines share
(`<namespace>-cache/builder:<platform>-<inputs12>`, one more each time a base or the
builder recipe changes) the same way: per platform, the newest `keep` and those younger
than `keep_days` stay. An engine whose builder was deleted builds it again (or pulls the
newer one), so nothing a build needs is lost. Tags of platforms no longer configured are
left alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from basefactory.adapters.registry_api import DeleteRefused, Registry
from basefactory.config.factory import Factory
from basefactory.daemons import registry_server
from basefactory.images import referrers
from basefactory.images.definition import repositories
from basefactory.refs import (
    cache_repository,
    common_index,
    parse_immutable_tag,
    platform_index,
    platform_of_builder_tag,
    zstd_repository,
)

UNDATED_REPOS = ("base", "slim")


@dataclass(frozen=True)
class TagRow:
    repository: str
    tag: str
    platform: str
    digest: str
    created: str  # the image config's `created`, ISO 8601
    size: int  # compressed bytes of its layers
    keep: bool
    why: str


@dataclass
class Pruning:
    rows: list[TagRow] = field(default_factory=list)

    @property
    def doomed(self) -> list[TagRow]:
        return [r for r in self.rows if not r.keep]

    def as_dict(self) -> dict[str, Any]:
        return {"kept": [asdict(r) for r in self.rows if r.keep],
                "deleted": [asdict(r) for r in self.doomed]}


def _created(registry: Registry, repo: str, digest: str) -> tuple[str, int]:
    manifest = registry.manifest(repo, digest)
    if manifest is None or manifest.config_digest is None:
        return "", 0
    config = registry.blob_json(repo, manifest.config_digest)
    return str(config.get("created") or ""), manifest.size


def review(factory: Factory, registry: Registry, *, keep: int, keep_days: float,
         images: list[str] | None = None, now: datetime | None = None) -> Pruning:
    """What prune would keep and delete (of `images`, default all), with the reason for
    each tag."""
    now = now or datetime.now(UTC)
    cutoff = now - timedelta(days=keep_days)
    namespace = f"{factory.config.registry.namespace}/"
    platforms = set(factory.config.platforms)
    result = Pruning()
    for repo in repositories(factory, registry):
        name = repo[len(namespace):]
        if not repo.startswith(namespace) or name in UNDATED_REPOS or \
                (images is not None and name not in images):
            continue
        tags = registry.tags(repo)
        moving = {t: registry.digest(repo, t) for t in tags if t in platforms}
        result.rows += _review_repo(registry, repo, tags, _platform_of_immutable_tag,
                                    platforms, moving, keep=keep, keep_days=keep_days,
                                    cutoff=cutoff)
    if images is None:
        # the shared builders: decided per platform like an image's immutable tags (they
        # have no moving tag)
        repo = cache_repository(factory, "builder")
        result.rows += _review_repo(registry, repo, registry.tags(repo),
                                    platform_of_builder_tag, platforms, {}, keep=keep,
                                    keep_days=keep_days, cutoff=cutoff)
    return result


def _platform_of_immutable_tag(tag: str) -> str | None:
    parsed = parse_immutable_tag(tag)
    return parsed.platform if parsed is not None else None


def _review_repo(registry: Registry, repo: str, tags: list[str],
                 platform_of: Callable[[str], str | None], platforms: set[str],
                 moving: dict[str, str | None], *, keep: int, keep_days: float,
                 cutoff: datetime) -> list[TagRow]:
    """Each tag of `repo` that `platform_of` places on a configured platform, decided
    per platform against that platform's moving tag (if any)."""
    by_platform: dict[str, list[tuple[str, str, str, int]]] = {}
    for tag in tags:
        platform = platform_of(tag)
        if platform is None or platform not in platforms:
            continue
        digest = registry.digest(repo, tag) or ""
        created, size = _created(registry, repo, digest)
        by_platform.setdefault(platform, []).append((tag, digest, created, size))
    return [row for platform, rows in by_platform.items()
            for row in decide(repo, platform, rows, moving.get(platform), keep=keep,
                              keep_days=keep_days, cutoff=cutoff)]


def decide(repo: str, platform: str, rows: list[tuple[str, str, str, int]],
           moving: str | None, *, keep: int, keep_days: float, cutoff: datetime
           ) -> list[TagRow]:
    """Keep or delete each immutable tag (tag, digest, created, size) of one image on one
    platform, newest first, with the reason."""
    rows = sorted(rows, key=lambda r: (r[2], r[0]), reverse=True)  # newest first
    kept_digests = {moving}
    decided = []
    for n, (tag, digest, created, size) in enumerate(rows):
        if digest == moving:
            why = f"the moving tag {platform} points at it"
        elif n < keep:
            why = f"one of the newest {keep}"
        elif created and _parse(created) >= cutoff:
            why = f"younger than {keep_days:g} days"
        else:
            why = ""
        if why:
            kept_digests.add(digest)
        decided.append((tag, digest, created, size, why))
    found = []
    for tag, digest, created, size, why in decided:
        if not why and digest in kept_digests:
            why = "shares its digest with a kept tag"
        found.append(TagRow(repo, tag, platform, digest, created, size, keep=bool(why),
                            why=why or "older than what is kept"))
    return found


def _parse(created: str) -> datetime:
    # Go writes nanoseconds (2026-11-24T10:00:00.123456789Z); Python takes microseconds
    text = re.sub(r"(\.\d{6})\d+", r"\1", created.replace("Z", "+00:00"))
    return datetime.fromisoformat(text)


def delete(registry: Registry, doomed: list[TagRow]) -> int:
    """Delete each doomed tag's manifest (once per digest); how many were deleted."""
    done: set[tuple[str, str]] = set()
    for row in doomed:
        if (row.repository, row.digest) in done:
            continue
        try:
            # its SBOM and the referrers listing go first: they would keep blobs alive
            referrers.detach(registry, row.repository, row.digest)
            if registry.delete(row.repository, row.digest):
                done.add((row.repository, row.digest))
        except DeleteRefused as exc:
            left = [f"{r.repository}:{r.tag}" for r in doomed
                    if (r.repository, r.digest) not in done]
            raise DeleteRefused(
                f"{exc.message}; {len(done)} deleted, {len(left)} left that prune would"
                f" delete: {', '.join(left)}", hint=exc.hint) from None
    return len(done)


def zstd_copies(factory: Factory, registry: Registry, rows: list[TagRow]) -> list[TagRow]:
    """The zstd copies (<namespace>-zstd/<image>, same tags) of `rows` that exist: a tag
    pruned goes with its copy, whether the factory still makes copies or not."""
    namespace = factory.config.registry.namespace
    copies = []
    for row in rows:
        if not row.repository.startswith(f"{namespace}/"):
            continue  # a shared builder: never copied
        image = row.repository.removeprefix(f"{namespace}/")
        repo = zstd_repository(factory, image)
        digest = registry.digest(repo, row.tag)
        if digest is not None:
            copies.append(TagRow(repo, row.tag, row.platform, digest, row.created, 0,
                                 keep=False, why=f"the zstd copy of {row.repository}:{row.tag}"))
    return copies


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def usage(factory: Factory, registry: Registry) -> dict[str, Any]:
    """Space per image and platform in the registry (each layer counted once per row),
    per index on the embedded devpi's disk, and the services' folders on disk."""
    namespace = f"{factory.config.registry.namespace}/"
    platforms = sorted(factory.config.platforms, key=len, reverse=True)  # longest prefix first
    images: list[dict[str, Any]] = []
    for repo in repositories(factory, registry):
        if not repo.startswith(namespace):
            continue
        layers: dict[str, dict[str, int]] = {}
        tags: dict[str, int] = {}
        for tag in registry.tags(repo):
            platform = next((p for p in platforms if tag == p or tag.startswith(f"{p}-")), None)
            if platform is None:
                continue
            manifest = registry.manifest(repo, tag)
            if manifest is None:
                continue
            tags[platform] = tags.get(platform, 0) + 1
            for layer in manifest.body.get("layers") or []:
                layers.setdefault(platform, {})[layer["digest"]] = int(layer.get("size", 0))
        for platform, found in sorted(layers.items()):
            images.append({"image": repo[len(namespace):], "platform": platform,
                           "tags": tags[platform], "bytes": sum(found.values())})
    indexes = []
    files = factory.state_dir / "devpi" / "+files"
    if factory.config.index.embedded:
        names = [common_index(factory), factory.config.index.mirror,
                 *(platform_index(factory, p) for p in factory.config.platforms)]
        for index in names:
            folder = files / index
            indexes.append({"index": index,
                            "bytes": folder_size(folder) if folder.is_dir() else 0})
    disk = {name: folder_size(factory.state_dir / name)
            for name in ("registry", "devpi") if (factory.state_dir / name).is_dir()}
    return {"images": images, "indexes": indexes, "disk": disk}


def prune(factory: Factory, registry: Registry, *, keep: int, keep_days: float, act: bool,
          images: list[str] | None = None) -> dict[str, Any]:
    """The plan; with `act`, its deletions and the registry's garbage collection, and
    the bytes the registry's folder shrank by (the embedded registry only)."""

    decided = review(factory, registry, keep=keep, keep_days=keep_days, images=images)
    summary: dict[str, Any] = {**decided.as_dict(), "acted": act, "deleted_manifests": 0,
                               "bytes_freed": None}
    if not act or not decided.doomed:
        return summary
    embedded = factory.config.registry.embedded
    folder = factory.state_dir / "registry" / "data"
    before = folder_size(folder) if embedded else 0
    summary["deleted_manifests"] = delete(registry,
                                          decided.doomed + zstd_copies(factory, registry,
                                                                       decided.doomed))
    if embedded:
        registry_server.garbage_collect(factory)
        summary["bytes_freed"] = before - folder_size(folder)
    return summary
