"""images/retention.py's decision, without a registry: which immutable tags of one image
on one platform prune keeps, and why; and what a review reads from an in-memory registry
(the shared builders included)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from basefactory.adapters.registry_api import Manifest
from basefactory.images.retention import Pruning, TagRow, _parse, decide, review, zstd_copies
from tests.helpers import small_factory

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def day(n: int) -> str:
    """A Go-style `created` n days before NOW (nanoseconds, Z)."""
    return (NOW - timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")


def rows(*spec: tuple[str, str, int]) -> list[tuple[str, str, str, int]]:
    return [(tag, digest, day(age), 100) for tag, digest, age in spec]


def verdicts(found: list[TagRow]) -> dict[str, str]:
    return {r.tag: r.why for r in found}


def test_moving_newest_young_and_shared_digests_are_kept_the_rest_deleted() -> None:
    found = decide("factory/tts-deps", "p1", rows(
        ("p1-20261130-a", "sha256:a", 1),
        ("p1-20261120-b", "sha256:b", 11),
        ("p1-20261110-c", "sha256:c", 21),  # the moving tag points here (a rollback)
        ("p1-20261101-d", "sha256:d", 30),
        ("p1-20261001-e", "sha256:b", 61),  # same digest as a kept tag
        ("p1-20260901-f", "sha256:f", 91),
    ), "sha256:c", keep=2, keep_days=14, cutoff=NOW - timedelta(days=14))
    assert verdicts(found) == {
        "p1-20261130-a": "one of the newest 2",
        "p1-20261120-b": "one of the newest 2",
        "p1-20261110-c": "the moving tag p1 points at it",
        "p1-20261101-d": "older than what is kept",
        "p1-20261001-e": "shares its digest with a kept tag",
        "p1-20260901-f": "older than what is kept",
    }
    pruning = Pruning(found)
    assert [r.tag for r in pruning.doomed] == ["p1-20261101-d", "p1-20260901-f"]
    assert {r["tag"] for r in pruning.as_dict()["kept"]} == {
        "p1-20261130-a", "p1-20261120-b", "p1-20261110-c", "p1-20261001-e"}


def test_tags_younger_than_keep_days_are_kept_beyond_the_newest_n() -> None:
    found = decide("factory/x", "p1", rows(("p1-3", "sha256:3", 1), ("p1-2", "sha256:2", 5),
                                           ("p1-1", "sha256:1", 40)),
                   None, keep=1, keep_days=7, cutoff=NOW - timedelta(days=7))
    assert verdicts(found) == {"p1-3": "one of the newest 1", "p1-2": "younger than 7 days",
                               "p1-1": "older than what is kept"}


def test_order_is_by_created_not_by_the_order_the_registry_lists() -> None:
    listed = rows(("p1-old", "sha256:o", 50), ("p1-new", "sha256:n", 2))
    found = decide("factory/x", "p1", listed, None, keep=1, keep_days=0, cutoff=NOW)
    assert verdicts(found) == {"p1-new": "one of the newest 1",
                               "p1-old": "older than what is kept"}


def test_keep_zero_and_no_moving_tag_deletes_everything_old() -> None:
    found = decide("factory/x", "p1", rows(("p1-a", "sha256:a", 3)), None, keep=0,
                   keep_days=1, cutoff=NOW - timedelta(days=1))
    assert [r.keep for r in found] == [False]


def test_a_tag_without_created_is_not_young() -> None:
    found = decide("factory/x", "p1", [("p1-a", "sha256:a", "", 0)], None, keep=0,
                   keep_days=30, cutoff=NOW - timedelta(days=30))
    assert not found[0].keep


def test_go_timestamps_with_nanoseconds_parse() -> None:
    assert _parse("2026-11-24T10:00:00.123456789Z") == datetime(
        2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)
    assert _parse("2026-11-24T10:00:00Z") == datetime(2026, 11, 24, 10, tzinfo=UTC)


class Registry:
    """What review reads: repositories, tags, digests, manifests and configs."""

    def __init__(self, tags: dict[str, dict[str, tuple[str, int]]]) -> None:
        self.repos = tags  # repo -> tag -> (digest, age in days)

    def repositories(self) -> list[str]:
        return list(self.repos)

    def tags(self, repo: str) -> list[str]:
        return sorted(self.repos.get(repo, {}))

    def digest(self, repo: str, tag: str) -> str | None:
        found = self.repos.get(repo, {}).get(tag)
        return found[0] if found else None

    def manifest(self, repo: str, digest: str) -> Manifest | None:
        return Manifest(digest, "application/vnd.docker.distribution.manifest.v2+json",
                        {"config": {"digest": f"config-{digest}"}, "layers": [{"size": 7}]})

    def blob_json(self, repo: str, config: str) -> dict[str, Any]:
        digest = config.removeprefix("config-")
        age = next(a for tags in self.repos.values() for d, a in tags.values() if d == digest)
        return {"created": day(age)}


def test_a_whole_prune_also_thins_the_shared_builders_per_platform(tmp_path: Path) -> None:
    factory = small_factory(tmp_path, platforms='[platforms.p1]\nimage = "x:1"\n'
                            '[platforms."p1-cpu"]\nimage = "y:1"\n')
    registry = Registry({
        "factory/api": {"p1": ("sha256:i2", 1), "p1-20261130-aaaaaaaaaaaa": ("sha256:i2", 1),
                        "p1-20261001-bbbbbbbbbbbb": ("sha256:i1", 61)},
        "factory-cache/builder": {
            "p1-aaaaaaaaaaaa": ("sha256:b3", 2), "p1-bbbbbbbbbbbb": ("sha256:b2", 20),
            "p1-cccccccccccc": ("sha256:b1", 40),
            "p1-cpu-dddddddddddd": ("sha256:c1", 30),  # another platform, whose name p1 prefixes
            "gone-eeeeeeeeeeee": ("sha256:g1", 90),  # a platform no longer configured
            "latest": ("sha256:l", 90)},
    })
    found = review(factory, registry, keep=1, keep_days=7, now=NOW)  # type: ignore[arg-type]
    builders = {r.tag: r.why for r in found.rows if r.repository == "factory-cache/builder"}
    assert builders == {"p1-aaaaaaaaaaaa": "one of the newest 1",
                        "p1-bbbbbbbbbbbb": "older than what is kept",
                        "p1-cccccccccccc": "older than what is kept",
                        "p1-cpu-dddddddddddd": "one of the newest 1"}
    assert {r.tag for r in found.doomed} == {"p1-20261001-bbbbbbbbbbbb", "p1-bbbbbbbbbbbb",
                                             "p1-cccccccccccc"}
    # a builder has no zstd copy to go with it
    assert zstd_copies(factory, registry, found.doomed) == []  # type: ignore[arg-type]
    # naming images prunes those images only
    named = review(factory, registry, keep=1, keep_days=7, images=["api"], now=NOW)  # type: ignore[arg-type]
    assert {r.repository for r in named.rows} == {"factory/api"}


def test_a_registry_that_refuses_deletes_is_told_with_what_prune_would_have_deleted() -> None:
    from basefactory.adapters.registry_api import DeleteRefused
    from basefactory.images.retention import delete

    class Refusing:
        def __init__(self) -> None:
            self.deleted: list[str] = []

        def manifest(self, repo: str, ref: str) -> None:
            return None  # no referrers listing

        def referrers(self, repo: str, digest: str) -> None:
            return None

        def digest(self, repo: str, ref: str) -> None:
            return None

        def delete(self, repo: str, digest: str) -> bool:
            if digest == "sha256:b":
                raise DeleteRefused("registry https://r refuses deletes", hint="enable them")
            self.deleted.append(digest)
            return True

    doomed = [TagRow("factory/api", t, "p1", d, day(60), 1, keep=False, why="old")
              for t, d in (("p1-20261001-aaaaaaaaaaaa", "sha256:a"),
                           ("p1-20261002-bbbbbbbbbbbb", "sha256:b"),
                           ("p1-20261003-cccccccccccc", "sha256:c"))]
    registry = Refusing()
    with pytest.raises(DeleteRefused) as caught:
        delete(registry, doomed)  # type: ignore[arg-type]
    assert registry.deleted == ["sha256:a"]
    assert caught.value.message == (
        "registry https://r refuses deletes; 1 deleted, 2 left that prune would delete:"
        " factory/api:p1-20261002-bbbbbbbbbbbb, factory/api:p1-20261003-cccccccccccc")
    assert caught.value.hint == "enable them"
