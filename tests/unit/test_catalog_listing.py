"""catalog/listing.py (`basefactory ls`, `images ls`, `wheels ls`): rows of what the
catalog's one reader (`snapshot.Reader`) finds. The reader runs for real here, over an
in-memory registry and index; tests/integration reads real ones. Also catalog/server.py's
wiring."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from basefactory.adapters.devpi_api import ReleaseFile
from basefactory.adapters.registry_api import Manifest
from basefactory.catalog import snapshot
from basefactory.catalog.listing import list_images, list_platforms, list_wheels
from basefactory.catalog.server import make_catalog
from basefactory.catalog.snapshot import Reader
from basefactory.proofs import Kind, Proof, Subject
from basefactory.refs import Labels
from tests.helpers import small_factory

PLATFORMS = '[platforms.p1]\nimage = "example.invalid/x:1"\n[platforms.p2]\nimage = "example.invalid/y:1"\n'


class Registry:
    # tts-deps: built (its labels name its tag); base: a platform's base, no such label
    repos = {"factory/tts-deps": {"p1": "sha256:new", "p1-20261130-aaa": "sha256:new",
                                  "p1-20261101-bbb": "sha256:old", "p9": "sha256:x"},
             "factory/base": {"p1": "sha256:b1", "p1-0123456789ab": "sha256:b1"},
             "factory-zstd/tts-deps": {"p1": "sha256:z"},
             "other/thing": {"p1": "sha256:o"}}
    configs = {"sha256:new": {Labels.OCI_VERSION: "p1-20261130-aaa",
                              Labels.OCI_CREATED: "2026-11-30T10:00:00+00:00"},
               "sha256:b1": {}}

    def repositories(self) -> list[str]:
        return list(self.repos)

    def tags(self, repo: str) -> list[str]:
        return list(self.repos[repo])

    def digest(self, repo: str, tag: str) -> str | None:
        return self.repos[repo].get(tag)

    def manifest(self, repo: str, tag: str) -> Manifest | None:
        digest = self.digest(repo, tag)
        if digest is None:
            return None
        return Manifest(digest, "application/vnd.docker.distribution.manifest.v2+json",
                        {"config": {"digest": f"config-of-{digest}"},
                         "layers": [{"size": 10}, {"size": 32}]})

    def blob_json(self, repo: str, digest: str) -> dict[str, Any]:
        return {"config": {"Labels": self.configs[digest.removeprefix("config-of-")]}}

    def close(self) -> None:
        pass


class Devpi:
    base_url = "http://idx:3141"
    files = {("factory/common", "tiny"): [ReleaseFile("tiny", "1.0", "tiny-1.0-py3-none-any.whl",
                                                      "u1", "s1")],
             ("factory/p1", "torch"): [ReleaseFile("torch", "2.13.0", "torch-2.13.0-cp311.whl",
                                                   "u2", "s2")],
             ("factory/p1", "ext"): [ReleaseFile("ext", "0.1", "ext-0.1-cp311-linux.whl", "u3",
                                                 "s3"),
                                     ReleaseFile("ext", "0.1", "ext-0.1.tar.gz", "u4", "s4")]}

    def index_wheels(self, index: str) -> None:
        return None  # no plugin: the reader reads file by file

    def index_config(self, index: str) -> dict[str, Any]:
        config: dict[str, Any] = {"projects": sorted({p for i, p in self.files if i == index})}
        if index == "factory/p1":
            config["custom_data"] = json.dumps({"fingerprint": {"torch": "2.13.0+cpu",
                                                                "cuda": None}})
        return config

    def release_files(self, index: str, project: str) -> list[ReleaseFile]:
        return self.files[(index, project)]

    def close(self) -> None:
        pass


class Proofs:
    def wheel(self, f: ReleaseFile) -> list[Proof]:
        return [Proof.new(Kind.WHEEL_TEST, Subject(wheel=f.filename, wheel_sha256=f.sha256),
                          inputs="i", passed=f.filename.startswith("tiny"), evidence={})]

    def image(self, labels: dict[str, str], **kw: Any) -> list[Proof]:
        return []


@pytest.fixture()
def reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Reader]:
    monkeypatch.setattr(snapshot.referrers, "find", lambda *a, **kw: None)
    with Reader(small_factory(tmp_path, platforms=PLATFORMS), workers=2) as found:
        found.registry, found.devpi, found.proofs = Registry(), Devpi(), Proofs()  # type: ignore[assignment]
        yield found


def test_images_are_listed_per_configured_platform_with_the_build_the_moving_tag_is(
        reader: Reader) -> None:
    address = reader.factory.config.registry.address
    # only the factory's namespace (not its zstd copies), only configured platforms (not p9);
    # a base names no tag in its labels: the tag with the moving tag's digest is the one
    assert list_images(reader) == [
        {"image": "base", "platform": "p1", "tag": f"{address}/factory/base:p1",
         "immutable": "p1-0123456789ab", "builds": 1, "compressed_size": 42},
        {"image": "tts-deps", "platform": "p1", "tag": f"{address}/factory/tts-deps:p1",
         "immutable": "p1-20261130-aaa", "builds": 2, "compressed_size": 42}]


def test_wheels_are_the_indexes_own_wheels_without_torch_each_with_its_test(
        reader: Reader) -> None:
    assert list_wheels(reader) == [
        {"index": "factory/p1", "project": "ext", "version": "0.1",
         "file": "ext-0.1-cp311-linux.whl", "tested": False},
        {"index": "factory/common", "project": "tiny", "version": "1.0",
         "file": "tiny-1.0-py3-none-any.whl", "tested": True},
    ]


def test_platforms_show_their_probed_torch_and_pip_url(reader: Reader) -> None:
    assert list_platforms(reader) == [
        {"platform": "p1", "torch": "2.13.0+cpu", "cuda": None,
         "index": "http://idx:3141/factory/p1/+simple/"},
        {"platform": "p2", "torch": None, "cuda": None,
         "index": "http://idx:3141/factory/p2/+simple/"}]


def test_the_served_catalog_reads_the_factory_and_keeps_its_snapshot_in_the_state_folder(
        tmp_path: Path) -> None:
    factory = small_factory(tmp_path, extra="[catalog]\nrefresh_seconds = 7\n")
    catalog = make_catalog(factory)
    assert isinstance(catalog.reader, Reader) and catalog.reader.factory is factory
    assert catalog.cache_file == factory.state_dir / "catalog" / "snapshot.json"
    assert catalog.ttl == 7
    catalog.reader.close()
