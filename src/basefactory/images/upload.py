"""Push a built image from the engine to the registry with its new layers compressed on
every core: dockerd's push gzips each layer on one thread (a 1.4 GB layer: 48 s here,
stt-deps's push 106 s), pigz on all of them.

    docker save (a stream) -> each layer.tar to a scratch file, hashed on the way
      -> a layer the registry holds (the parent's, the previous build's): mounted by
         its digest, its scratch file dropped
      -> a new layer: pigz -> the registry's chunked upload, while the save goes on
    -> the config (the engine's own bytes: same image ID, labels, proofs) -> the manifest

A layer is identified by its diff_id (the sha256 of its tar), which the image config
lists; the registry layers it can reuse come from the manifests and configs of images
already pushed (`known_layers`). Nothing is visible under a tag before the manifest's PUT;
a killed push leaves unreferenced blobs, which the registry's garbage collection removes.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from basefactory.adapters.codec import compress_gzip
from basefactory.adapters.docker import Docker
from basefactory.adapters.registry_api import Registry
from basefactory.plumbing.errors import BuildError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_GZIP_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
GZIP_LAYERS = (DOCKER_GZIP_LAYER, "application/vnd.oci.image.layer.v1.tar+gzip")
CHUNK = 8 << 20
# a layer's identity in `docker save`'s two layouts: Docker < 25 (<v1 id>/layer.tar, the
# folders in name order) and the OCI layout of Docker 25+ (blobs/sha256/<digest>)
LEGACY_LAYER = re.compile(r"^[0-9a-f]{64}/layer\.tar$")
OCI_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")


@dataclass(frozen=True)
class Layer:
    digest: str  # of the compressed blob in the registry
    size: int
    media_type: str

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "size": self.size, "digest": self.digest}


def known_layers(registry: Registry, images: Iterable[tuple[str, str]]) -> dict[str, tuple[str, Layer]]:
    """diff_id -> (repository, gzip layer) of the images (repository, reference) the
    registry holds: what a push can mount instead of compressing and sending again."""
    found: dict[str, tuple[str, Layer]] = {}
    for repo, reference in images:
        manifest = registry.manifest(repo, reference)
        if manifest is None or manifest.config_digest is None:
            continue
        diff_ids = (registry.blob_json(repo, manifest.config_digest).get("rootfs") or {}
                    ).get("diff_ids") or []
        layers = manifest.body.get("layers") or []
        if len(diff_ids) != len(layers):
            continue
        for diff_id, layer in zip(diff_ids, layers, strict=True):
            if layer.get("mediaType") in GZIP_LAYERS:
                # the same gzip bytes under Docker's name for them: the manifest this push
                # writes is Docker v2, and a parent pushed as OCI (a pulled NGC base, an
                # OCI-layout engine) must not put an OCI type into it
                found.setdefault(diff_id, (repo, Layer(layer["digest"], int(layer["size"]),
                                                       DOCKER_GZIP_LAYER)))
    return found


def manifest(config: bytes, diff_ids: list[str], layers: dict[str, Layer]) -> bytes:
    """The image's Docker v2 manifest: its config and, in the config's order, the layer
    that carries each diff_id (a diff_id listed twice has its one blob twice)."""
    missing = [d for d in diff_ids if d not in layers]
    if missing:
        raise BuildError(f"no pushed layer for {', '.join(missing)}",
                         hint="a bug in basefactory's push: please report it")
    body = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config),
                       "digest": f"sha256:{hashlib.sha256(config).hexdigest()}"},
            "layers": [layers[d].descriptor() for d in diff_ids]}
    return json.dumps(body, indent=3).encode()


@dataclass(frozen=True)
class Pushed:
    digest: str  # the manifest's
    sent: int  # new layers, compressed and uploaded
    sent_bytes: int  # their gzip bytes
    mounted: int  # layers the registry had, mounted by digest

    def summary(self) -> str:
        return (f"{self.sent} new layer(s), {self.sent_bytes / 1e6:.1f} MB gzip, sent;"
                f" {self.mounted} mounted from images the registry holds")


def push(docker: Docker, registry: Registry, local: str, repository: str, tag: str, *,
         reuse: dict[str, tuple[str, Layer]], scratch: Path,
         on_layer: Callable[[str], None] = lambda diff_id: None) -> Pushed:
    """Push the engine's image `local` as `repository:tag`. `on_layer(diff_id)` runs
    after each new layer is in the registry."""
    inspected = docker.image_inspect(local)
    image_id = str(inspected["Id"])
    diff_ids: list[str] = list((inspected.get("RootFS") or {}).get("Layers") or [])
    layers: dict[str, Layer] = {}
    for diff_id in dict.fromkeys(diff_ids):
        known = reuse.get(diff_id)
        if known is not None and registry.mount_blob(repository, known[1].digest, known[0]):
            layers[diff_id] = known[1]
    mounted = len(layers)
    scratch.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="push-", dir=scratch))
    config: bytes | None = None
    try:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="layer") as pool:
            uploads: list[Future[tuple[str, Layer]]] = []

            def upload(path: Path, diff_id: str) -> tuple[str, Layer]:
                def fill(write: Callable[[bytes], object]) -> None:
                    with path.open("rb") as fh:
                        for data in iter(lambda: fh.read(CHUNK), b""):
                            write(data)

                digest, size = compress_gzip(fill, lambda chunks: registry.upload_blob(
                    repository, chunks))
                path.unlink()
                on_layer(diff_id)
                return diff_id, Layer(digest, size, GZIP_LAYERS[0])

            with docker.save(local) as stream:
                for member, fh in _members(stream):
                    name = member.name
                    blob = OCI_BLOB.match(name)
                    if name == f"{image_id.removeprefix('sha256:')}.json" or (
                            blob and f"sha256:{blob.group(1)}" == image_id):
                        config = fh.read()
                        continue
                    if not (LEGACY_LAYER.match(name) or blob):
                        continue
                    path = work / f"{len(uploads)}-{name.replace('/', '_')}"
                    diff_id = _copy_hashed(fh, path)
                    if diff_id not in diff_ids or diff_id in layers:
                        path.unlink()  # the registry has it (or it is not a layer)
                        continue
                    uploads.append(pool.submit(upload, path, diff_id))
            sent = dict(f.result() for f in uploads)
            layers.update(sent)
        if config is None or f"sha256:{hashlib.sha256(config).hexdigest()}" != image_id:
            raise BuildError(f"`docker save {local}` gave no config of image {image_id}",
                             hint="a Docker engine whose save format basefactory does not"
                             " know: please report its version")
        registry.push_blob(repository, config)
        body = manifest(config, diff_ids, layers)
        digest = registry.push_manifest(repository, tag, body, DOCKER_MANIFEST)
        return Pushed(digest, len(sent), sum(layer.size for layer in sent.values()), mounted)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _members(stream: IO[bytes]) -> Iterable[tuple[tarfile.TarInfo, IO[bytes]]]:
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if member.isfile():
                fh = tar.extractfile(member)
                if fh is not None:
                    yield member, fh


def _copy_hashed(fh: IO[bytes], path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("wb") as out:
        for data in iter(lambda: fh.read(CHUNK), b""):
            sha.update(data)
            out.write(data)
    return f"sha256:{sha.hexdigest()}"
