"""Artifacts that refer to an image (its SBOM), stored the OCI 1.1 way.

The OCI 1.1 referrers model: the registry's referrers API where it has one (Harbor 2.8+,
zot, distribution 3), else the distribution spec's fallback for registries without it
(the embedded distribution registry 2.8 is one): an artifact is a
manifest with an `artifactType` whose `subject` is the image's manifest, and the tag
`sha256-<image digest>` holds an image index listing the image's referrers, which is what
`oras discover` and cosign read on such registries. Kept apart from the SBOM writer so the
catalog, which only reads these, does not import cyclonedx and its schema validators.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from basefactory.adapters.registry_api import Registry
from basefactory.plumbing.errors import BuildError
from basefactory.refs import Labels

SBOM_TYPE = "application/vnd.cyclonedx+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"


def tag(digest: str) -> str:
    """The distribution spec's fallback tag for the referrers of `digest`."""
    return digest.replace(":", "-")


def attach(registry: Registry, repository: str, subject_digest: str, data: bytes, *,
           artifact_type: str, title: str) -> str:
    """Push `data` as an artifact referring to the image, and list it under the referrers
    tag (replacing an earlier artifact of the same type). Its manifest digest."""
    subject = registry.descriptor(repository, subject_digest)
    if subject is None:
        raise BuildError(f"{repository}@{subject_digest} is not in the registry; its"
                         f" {title} has nothing to refer to")
    registry.push_blob(repository, EMPTY)
    layer = registry.push_blob(repository, data)
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_TYPE, "digest": _sha(EMPTY), "size": len(EMPTY)},
        "layers": [{"mediaType": artifact_type, "digest": layer, "size": len(data),
                    "annotations": {Labels.OCI_TITLE: title}}],
        "subject": subject,
        "annotations": {Labels.OCI_CREATED:
                        datetime.now(UTC).isoformat(timespec="seconds")},
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    digest = registry.push_manifest(repository, _sha(body), body, OCI_MANIFEST)
    if registry.referrers(repository, subject_digest) is not None:
        return digest  # the registry's referrers API lists it: no fallback tag to keep
    others = [m for m in _referrers(registry, repository, subject_digest)
              if m.get("artifactType") != artifact_type]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        *others, {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body),
                  "artifactType": artifact_type, "annotations": manifest["annotations"]}]}
    listing = json.dumps(index, separators=(",", ":")).encode()
    registry.push_manifest(repository, tag(subject_digest), listing, OCI_INDEX)
    return digest


def _referrers(registry: Registry, repository: str, digest: str) -> list[dict[str, Any]]:
    """The image's referrers, newest first: from the registry's referrers API where it has
    one (which keeps every artifact ever attached), else the fallback tag's listing."""
    listed = registry.referrers(repository, digest)
    if listed is None:
        found = registry.manifest(repository, tag(digest))
        listed = list(found.body.get("manifests") or []) if found is not None else []
    return sorted(listed, reverse=True,
                  key=lambda m: (m.get("annotations") or {}).get(Labels.OCI_CREATED, ""))


def fetch(registry: Registry, repository: str, reference: str, *,
          artifact_type: str) -> bytes | None:
    """The artifact of that type referring to REPOSITORY:REFERENCE (a tag or a digest);
    None when none is stored."""
    digest = reference if reference.startswith("sha256:") else \
        registry.digest(repository, reference)
    if digest is None:
        return None
    found = find(registry, repository, digest, artifact_type=artifact_type)
    artifact = registry.manifest(repository, found) if found is not None else None
    if artifact is not None and artifact.body.get("layers"):
        return registry.blob(repository, artifact.body["layers"][0]["digest"])
    return None


def find(registry: Registry, repository: str, digest: str, *, artifact_type: str) -> str | None:
    """The manifest digest of the artifact of that type referring to the image `digest`."""
    return next((m["digest"] for m in _referrers(registry, repository, digest)
                 if m.get("artifactType") == artifact_type), None)


def detach(registry: Registry, repository: str, subject_digest: str) -> int:
    """Delete the referrers of an image that is being deleted (its SBOM, then the listing),
    so garbage collection can take their blobs. How many manifests went."""
    gone = 0
    for entry in _referrers(registry, repository, subject_digest):
        gone += registry.delete(repository, entry["digest"])
    listing = registry.digest(repository, tag(subject_digest))
    if listing is not None:
        gone += registry.delete(repository, listing)
    return gone


def _sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"
