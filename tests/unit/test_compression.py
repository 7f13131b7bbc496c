"""images/compression.py: the zstd copy of a published image, against an in-memory
registry (the real pigz and zstd do the re-encoding). The copy must be the same image
(config byte for byte), made once, with its SBOM, and its moving tag must follow only
once the copy exists. tests/integration copies real images and runs one in containerd."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from basefactory.adapters.codec import MEDIA_TYPES
from basefactory.adapters.registry_api import Manifest
from basefactory.images import compression
from basefactory.images.compression import OCI_MANIFEST, copy_image, copy_immutable, move
from basefactory.plumbing.errors import ServiceError
from basefactory.refs import Labels
from tests.helpers import small_factory

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
GZIP_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Registry:
    """Blobs by digest, manifests by repository and tag or digest."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.pushed: list[tuple[str, str]] = []

    def push_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        self.pushed.append((repo, ref))
        self.manifests[(repo, ref)] = self.manifests[(repo, sha(body))] = (body, media_type)
        return sha(body)

    def manifest(self, repo: str, ref: str) -> Manifest | None:
        found = self.manifests.get((repo, ref))
        return Manifest(sha(found[0]), found[1], json.loads(found[0]), found[0]) if found else None

    def digest(self, repo: str, ref: str) -> str | None:
        found = self.manifests.get((repo, ref))
        return sha(found[0]) if found else None

    def has_blob(self, repo: str, digest: str) -> bool:
        return digest in self.blobs

    def push_blob(self, repo: str, data: bytes) -> str:
        self.blobs[sha(data)] = data
        return sha(data)

    def blob(self, repo: str, digest: str) -> bytes:
        return self.blobs[digest]

    def read_blob(self, repo: str, digest: str, sink: Callable[[bytes], object]) -> None:
        sink(self.blobs[digest])

    def upload_blob(self, repo: str, chunks: Iterable[bytes]) -> tuple[str, int]:
        data = b"".join(chunks)
        self.blobs[sha(data)] = data
        return sha(data), len(data)


def layer_tar(name: str, text: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def publish(registry: Registry, repo: str, tag: str, *, media: str = GZIP_LAYER) -> bytes:
    """A gzip image as docker pushes one; the config's bytes."""
    config = json.dumps({"config": {"Labels": {Labels.IMAGE: "tts-deps"}}}).encode()
    registry.push_blob(repo, config)
    layers = []
    for i in range(3):
        blob = gzip.compress(layer_tar(f"f{i}", f"layer {i} " * 1000))
        registry.push_blob(repo, blob)
        layers.append({"mediaType": media, "digest": sha(blob), "size": len(blob)})
    body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_V2,
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                  "digest": sha(config), "size": len(config)},
                       "layers": layers}).encode()
    registry.push_manifest(repo, tag, body, DOCKER_V2)
    return config


def test_a_copy_has_zstd_layers_of_the_same_tars_and_the_same_config(tmp_path: Path) -> None:
    registry = Registry()
    config = publish(registry, "factory/tts-deps", "p1-20261201-abc")
    source = registry.manifest("factory/tts-deps", "p1-20261201-abc")
    assert source is not None
    digest = copy_image(registry, "factory/tts-deps", source.digest,  # type: ignore[arg-type]
                        "factory-zstd/tts-deps", "p1-20261201-abc", to="zstd")
    copy = registry.manifest("factory-zstd/tts-deps", digest)
    assert copy is not None and copy.media_type == OCI_MANIFEST
    assert copy.config_digest == sha(config)  # the same image ID, labels and proofs
    assert copy.body["annotations"] == {Labels.COPY_OF: f"factory/tts-deps@{source.digest}"}
    for i, (old, new) in enumerate(zip(source.body["layers"], copy.body["layers"], strict=True)):
        assert new["mediaType"] == MEDIA_TYPES["zstd"]
        data = registry.blobs[new["digest"]]
        assert new["size"] == len(data) and data[:4] == b"\x28\xb5\x2f\xfd"  # zstd's magic
        tar = subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
        assert tar == gzip.decompress(registry.blobs[old["digest"]]) == layer_tar(
            f"f{i}", f"layer {i} " * 1000)


def test_only_gzip_layers_are_copied_and_a_missing_image_is_named() -> None:
    registry = Registry()
    publish(registry, "factory/x", "t", media="application/vnd.oci.image.layer.v1.tar+zstd")
    with pytest.raises(ServiceError, match="only gzip layers are re-encoded"):
        copy_image(registry, "factory/x", "t", "factory-zstd/x", "t", to="zstd")  # type: ignore[arg-type]
    with pytest.raises(ServiceError, match="factory/y@t is not in the registry"):
        copy_image(registry, "factory/y", "t", "factory-zstd/y", "t", to="zstd")  # type: ignore[arg-type]


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    boms: dict[tuple[str, str], str] = {}
    monkeypatch.setattr(compression.sbom, "fetch", lambda r, repo, ref: boms.get((repo, ref)))
    monkeypatch.setattr(compression.sbom, "attach",
                        lambda r, repo, ref, text: boms.__setitem__((repo, ref), text))
    factory = small_factory(tmp_path, extra='[registry]\ncompression = ["gzip", "zstd"]\n')
    registry = Registry()
    return SimpleNamespace(session=SimpleNamespace(factory=factory, registry=registry),
                           registry=registry, boms=boms)


def test_the_copy_is_made_once_with_the_sbom_and_its_moving_tag_follows(world: Any) -> None:
    registry = world.registry
    publish(registry, "factory/tts-deps", "p1-20261201-abc")
    source_digest = registry.digest("factory/tts-deps", "p1-20261201-abc")
    world.boms[("factory/tts-deps", source_digest)] = "{bom}"
    made = copy_immutable(world.session, "tts-deps", "p1-20261201-abc")
    assert made is not None
    assert world.boms[("factory-zstd/tts-deps", made.digest)] == "{bom}"
    pushes = len(registry.pushed)
    assert copy_immutable(world.session, "tts-deps", "p1-20261201-abc") == made  # a rerun
    assert len(registry.pushed) == pushes
    move(world.session, "tts-deps", made, "p1")
    assert registry.digest("factory-zstd/tts-deps", "p1") == made.digest
    move(world.session, "tts-deps", made, "p1")  # already there: nothing pushed
    assert len(registry.pushed) == pushes + 1
    move(world.session, "tts-deps", None, "p1")  # gzip only: nothing to move


def test_a_copy_with_another_config_stops_before_any_tag_moves(world: Any) -> None:
    registry = world.registry
    publish(registry, "factory/tts-deps", "t1")
    # a copy under the tag that is not this image (another build, a hand-made copy)
    other = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"digest": "sha256:other", "size": 1}, "layers": []}).encode()
    registry.push_manifest("factory-zstd/tts-deps", "t1", other, OCI_MANIFEST)
    with pytest.raises(ServiceError, match="has another config than factory/tts-deps:t1"):
        copy_immutable(world.session, "tts-deps", "t1")


def test_a_gzip_only_factory_makes_no_copy(tmp_path: Path) -> None:
    session = SimpleNamespace(factory=small_factory(tmp_path), registry=Registry())
    assert copy_immutable(session, "tts-deps", "t1") is None  # type: ignore[arg-type]
