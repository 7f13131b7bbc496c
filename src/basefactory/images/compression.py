"""The zstd copy of a published image (`[registry] compression = ["gzip", "zstd"]`).

The engine pushes gzip layers (the only ones Docker 20.10 pulls, and what the factory's
own checks run). For nodes whose engine reads zstd (containerd, Docker 23+) each image
is also copied, registry to registry, to <namespace>-zstd/<image> under the same tags:
each layer streamed through pigz and zstd (two layers at a time), the config blob byte
for byte the gzip image's (so the same image ID, labels and proofs), the SBOM beside it.
skopeo does the same copy but rewrites the config as it converts the manifest to OCI
(dropping Docker's fields, among them HEALTHCHECK: another image ID), so it is not used.
The copy is made after the gzip immutable tag is pushed and before any moving tag moves,
so that a moving tag of either kind never points at an image the other lacks; every step
finds what an earlier, killed run did.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from basefactory.adapters.codec import MEDIA_TYPES, transcode_gzip
from basefactory.adapters.registry_api import Manifest, Registry
from basefactory.images import sbom
from basefactory.plumbing import log
from basefactory.plumbing.errors import ServiceError
from basefactory.plumbing.faults import checkpoint
from basefactory.refs import Labels, repository, zstd_ref, zstd_repository
from basefactory.session import Session

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


def copy_image(registry: Registry, repo: str, reference: str, dest_repo: str, tag: str,
               *, to: str, jobs: int = 2) -> str:
    """Copy REPO@reference to DEST_REPO:tag with its layers re-encoded `to` ("zstd",
    "none"); the copy's manifest digest. The config blob is copied as is; the manifest
    goes last, so a copy killed halfway leaves blobs no tag refers to, nothing else."""
    source = registry.manifest(repo, reference)
    if source is None or source.config_digest is None:
        raise ServiceError(f"{repo}@{reference} is not in the registry: nothing to copy")
    config = source.body["config"]
    if not registry.has_blob(dest_repo, config["digest"]):
        registry.push_blob(dest_repo, registry.blob(repo, config["digest"]))

    def layer(descriptor: dict[str, Any]) -> dict[str, Any]:
        if "gzip" not in descriptor["mediaType"]:
            raise ServiceError(f"{repo}@{reference} has a layer of type"
                               f" {descriptor['mediaType']}: only gzip layers are re-encoded")
        digest, size = transcode_gzip(
            lambda write: registry.read_blob(repo, descriptor["digest"], write), to,
            lambda chunks: registry.upload_blob(dest_repo, chunks))
        return {"mediaType": MEDIA_TYPES[to], "digest": digest, "size": size}

    with ThreadPoolExecutor(jobs) as pool:
        layers = list(pool.map(layer, source.body["layers"]))
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config["digest"], "size": config["size"]},
        "layers": layers,
        "annotations": {Labels.COPY_OF: f"{repo}@{source.digest}"},
    }, separators=(",", ":")).encode()
    return registry.push_manifest(dest_repo, tag, body, OCI_MANIFEST)


def copy_immutable(session: Session, image: str, tag: str) -> Manifest | None:
    """The zstd copy of REGISTRY/<namespace>/<image>:<tag> (made once); its manifest, or
    None when the factory publishes gzip only."""
    factory = session.factory
    if not factory.config.registry.zstd:
        return None
    registry = session.registry
    repo, zrepo = repository(factory, image), zstd_repository(factory, image)
    source = registry.manifest(repo, tag)
    if source is None:
        raise ServiceError(f"{repo}:{tag} is not in the registry: nothing to copy to zstd")
    copied = registry.digest(zrepo, tag)
    if copied is None:
        with log.phase(f"{image}: zstd copy {zstd_ref(factory, image, tag)}"):
            copied = copy_image(registry, repo, source.digest, zrepo, tag, to="zstd")
        checkpoint("image:after-zstd-copy")
    made = registry.manifest(zrepo, copied)
    if made is None or made.config_digest != source.config_digest:
        # the copy must be the same image: its labels carry the proofs the gzip one earned
        raise ServiceError(f"{zrepo}:{tag} has another config than {repo}:{tag}"
                           f" ({made.config_digest if made else 'none'} vs"
                           f" {source.config_digest}): nothing moved",
                           hint=f"delete {zrepo}:{tag} and rerun")
    if sbom.fetch(registry, zrepo, copied) is None:
        bom = sbom.fetch(registry, repo, source.digest)
        if bom is not None:
            sbom.attach(registry, zrepo, copied, bom)
    return made


def move(session: Session, image: str, copy: Manifest | None, moving: str) -> None:
    """Point the zstd copy's moving tag at `copy` (what copy_immutable returned; None:
    gzip only), after the gzip moving tag moved."""
    if copy is None:
        return
    registry = session.registry
    zrepo = zstd_repository(session.factory, image)
    if registry.digest(zrepo, moving) != copy.digest:
        registry.push_manifest(zrepo, moving, copy.raw, copy.media_type)
