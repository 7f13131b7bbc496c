"""catalog/listing.py (`basefactory ls`) and catalog/server.py's wiring: what is listed
from a registry and an index, given in memory here (tests/integration lists real ones)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from basefactory.adapters.devpi_api import ReleaseFile
from basefactory.adapters.registry_api import Manifest
from basefactory.catalog.listing import list_images, list_wheels
from basefactory.catalog.server import make_catalog
from basefactory.catalog.snapshot import Reader
from basefactory.proofs import Kind, Proof, Subject
from tests.helpers import small_factory

PLATFORMS = '[platforms.p1]\nimage = "example.invalid/x:1"\n[platforms.p2]\nimage = "example.invalid/y:1"\n'


def manifest(digest: str, *sizes: int) -> Manifest:
    return Manifest(digest, "application/vnd.docker.distribution.manifest.v2+json",
                    {"config": {"digest": "sha256:c"}, "layers": [{"size": s} for s in sizes]})


class Registry:
    repos = {"factory/tts-deps": {"p1": "sha256:new", "p1-20261130-aaa": "sha256:new",
                                  "p1-20261101-bbb": "sha256:old", "p9": "sha256:x"},
             "factory-zstd/tts-deps": {"p1": "sha256:z"},
             "other/thing": {"p1": "sha256:o"}}

    def repositories(self) -> list[str]:
        return list(self.repos)

    def tags(self, repo: str) -> list[str]:
        return list(self.repos[repo])

    def digest(self, repo: str, tag: str) -> str | None:
        return self.repos[repo].get(tag)

    def manifest(self, repo: str, tag: str) -> Manifest | None:
        digest = self.digest(repo, tag)
        return manifest(digest, 10, 32) if digest else None


def test_images_are_listed_per_configured_platform_with_the_build_the_moving_tag_is(
        tmp_path: Path) -> None:
    factory = small_factory(tmp_path, platforms=PLATFORMS)
    rows = list_images(SimpleNamespace(factory=factory, registry=Registry()))  # type: ignore[arg-type]
    address = factory.config.registry.address
    # only the factory's namespace (not its zstd copies), only configured platforms (not p9)
    assert rows == [{"image": "tts-deps", "platform": "p1",
                     "tag": f"{address}/factory/tts-deps:p1", "immutable": "p1-20261130-aaa",
                     "builds": 2, "compressed_size": 42}]


class Devpi:
    files = {("factory/common", "tiny"): [ReleaseFile("tiny", "1.0", "tiny-1.0-py3-none-any.whl",
                                                      "u1", "s1")],
             ("factory/p1", "torch"): [ReleaseFile("torch", "2.13.0", "torch-2.13.0-cp311.whl",
                                                   "u2", "s2")],
             ("factory/p1", "ext"): [ReleaseFile("ext", "0.1", "ext-0.1-cp311-linux.whl", "u3",
                                                 "s3"),
                                     ReleaseFile("ext", "0.1", "ext-0.1.tar.gz", "u4", "s4")]}

    def projects(self, index: str) -> list[str]:
        return sorted({p for i, p in self.files if i == index})

    def release_files(self, index: str, project: str) -> list[ReleaseFile]:
        return self.files[(index, project)]


class Proofs:
    def wheel(self, f: ReleaseFile) -> list[Proof]:
        passed = f.filename.startswith("tiny")
        return [Proof.new(Kind.WHEEL_TEST, Subject(wheel=f.filename, wheel_sha256=f.sha256),
                          inputs="i", passed=passed, evidence={})]


def test_wheels_are_the_indexes_own_wheels_without_torch_each_with_its_test(
        tmp_path: Path) -> None:
    factory = small_factory(tmp_path)
    rows = list_wheels(SimpleNamespace(factory=factory, devpi=Devpi(),  # type: ignore[arg-type]
                                       proofs=Proofs()))
    assert rows == [
        {"index": "factory/common", "project": "tiny", "version": "1.0",
         "file": "tiny-1.0-py3-none-any.whl", "tested": True},
        {"index": "factory/p1", "project": "ext", "version": "0.1",
         "file": "ext-0.1-cp311-linux.whl", "tested": False},
    ]


def test_the_served_catalog_reads_the_factory_and_keeps_its_snapshot_in_the_state_folder(
        tmp_path: Path) -> None:
    factory = small_factory(tmp_path, extra="[catalog]\nrefresh_seconds = 7\n")
    catalog = make_catalog(factory)
    assert isinstance(catalog.reader, Reader) and catalog.reader.factory is factory
    assert catalog.cache_file == factory.state_dir / "catalog" / "snapshot.json"
    assert catalog.ttl == 7
