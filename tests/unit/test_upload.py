"""images/upload.py's pure parts: the manifest it writes and the layers it may mount.
The push itself (docker save, pigz, the registry) runs in tests/integration/test_images.py
and in every image publish of the suite."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from basefactory.adapters.registry_api import Manifest
from basefactory.images.upload import DOCKER_MANIFEST, GZIP_LAYERS, Layer, known_layers, manifest
from basefactory.plumbing.errors import BuildError

CONFIG = b'{"rootfs": {"type": "layers", "diff_ids": ["sha256:a", "sha256:b", "sha256:a"]}}'


def test_the_manifest_lists_each_layer_in_the_configs_order_and_the_config_by_digest() -> None:
    layers = {"sha256:a": Layer("sha256:ga", 10, GZIP_LAYERS[0]),
              "sha256:b": Layer("sha256:gb", 20, GZIP_LAYERS[1])}
    body = json.loads(manifest(CONFIG, ["sha256:a", "sha256:b", "sha256:a"], layers))
    assert body["mediaType"] == DOCKER_MANIFEST and body["schemaVersion"] == 2
    assert body["config"]["digest"] == f"sha256:{hashlib.sha256(CONFIG).hexdigest()}"
    assert body["config"]["size"] == len(CONFIG)
    # a diff_id listed twice (two identical layers) has its one blob twice
    assert [(x["digest"], x["size"]) for x in body["layers"]] == [
        ("sha256:ga", 10), ("sha256:gb", 20), ("sha256:ga", 10)]


def test_a_layer_that_was_neither_sent_nor_mounted_is_a_bug_not_a_manifest() -> None:
    with pytest.raises(BuildError, match="no pushed layer for sha256:b"):
        manifest(CONFIG, ["sha256:a", "sha256:b"], {"sha256:a": Layer("sha256:ga", 1, "x")})


class Registry:
    """What known_layers reads: manifests and configs, as the registry answers them."""

    def __init__(self, images: dict[tuple[str, str], tuple[dict[str, Any], list[str]]]) -> None:
        self.images = images

    def manifest(self, repo: str, ref: str) -> Manifest | None:
        found = self.images.get((repo, ref))
        return None if found is None else Manifest("sha256:m", DOCKER_MANIFEST, found[0])

    def blob_json(self, repo: str, digest: str) -> dict[str, Any]:
        return {"rootfs": {"diff_ids": next(d for (r, _), (_, d) in self.images.items()
                                            if r == repo)}}


def gz(digest: str, media: str = GZIP_LAYERS[0]) -> dict[str, Any]:
    return {"mediaType": media, "digest": digest, "size": 5}


def test_known_layers_map_diff_ids_to_gzip_blobs_first_image_first() -> None:
    registry = Registry({
        ("factory/cuda-deps", "p1-t"): ({"config": {"digest": "sha256:c1"}, "layers": [
            gz("sha256:g1"), gz("sha256:g2")]}, ["sha256:d1", "sha256:d2"]),
        ("factory/tts-deps", "p1"): ({"config": {"digest": "sha256:c2"}, "layers": [
            gz("sha256:other-g1"), gz("sha256:z3", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ]}, ["sha256:d1", "sha256:d3"]),
    })
    found = known_layers(registry, [("factory/cuda-deps", "p1-t"), ("factory/tts-deps", "p1"),
                                    ("factory/gone", "p1")])  # type: ignore[arg-type]
    assert found == {"sha256:d1": ("factory/cuda-deps", Layer("sha256:g1", 5, GZIP_LAYERS[0])),
                     "sha256:d2": ("factory/cuda-deps", Layer("sha256:g2", 5, GZIP_LAYERS[0]))}
    # a zstd layer is never mounted into a gzip image


def test_a_parents_oci_gzip_layer_is_mounted_under_dockers_type() -> None:
    """The push writes a Docker v2 manifest: a parent whose manifest is OCI (a pulled NGC
    base) lends its gzip blobs, but not its OCI media type."""
    registry = Registry({("factory/base", "p1"): ({"config": {"digest": "sha256:c"}, "layers": [
        gz("sha256:g1", "application/vnd.oci.image.layer.v1.tar+gzip")]}, ["sha256:d1"])})
    found = known_layers(registry, [("factory/base", "p1")])  # type: ignore[arg-type]
    assert found == {"sha256:d1": ("factory/base", Layer("sha256:g1", 5, GZIP_LAYERS[0]))}
    body = json.loads(manifest(b"{}", ["sha256:d1"], {d: layer for d, (_, layer) in found.items()}))
    assert body["mediaType"] == DOCKER_MANIFEST
    assert body["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"


def test_a_manifest_whose_layers_do_not_match_its_config_is_not_trusted() -> None:
    registry = Registry({("factory/x", "p1"): ({"config": {"digest": "sha256:c"}, "layers": [
        gz("sha256:g1")]}, ["sha256:d1", "sha256:d2"])})
    assert known_layers(registry, [("factory/x", "p1")]) == {}  # type: ignore[arg-type]
