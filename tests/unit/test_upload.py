"""The engine-to-registry push (images/upload.py) over a stand-in engine and registry:
what `docker save` streams is checked to be the image that was inspected before any
manifest is written. The real engine and registry run it in tests/integration."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from basefactory.images import upload
from basefactory.plumbing.errors import BuildError


def _tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Engine:
    """An image of one layer, saved in the legacy `docker save` layout; `saved_config`
    is the config the stream carries (another image's, to break the guard)."""

    def __init__(self, saved_config: bytes | None = None) -> None:
        self.layer = _tar({"etc/hello": b"hello\n"})
        diff_id = "sha256:" + hashlib.sha256(self.layer).hexdigest()
        self.config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
        self.image_id = "sha256:" + hashlib.sha256(self.config).hexdigest()
        self.diff_id = diff_id
        self.saved_config = self.config if saved_config is None else saved_config

    def image_inspect(self, ref: str) -> dict[str, Any]:
        return {"Id": self.image_id, "RootFS": {"Layers": [self.diff_id]}}

    @contextmanager
    def save(self, ref: str) -> Iterator[io.BytesIO]:
        yield io.BytesIO(_tar({
            f"{self.image_id.removeprefix('sha256:')}.json": self.saved_config,
            f"{'a' * 64}/layer.tar": self.layer,
            "manifest.json": b"[]"}))


class Registry:
    def __init__(self) -> None:
        self.blobs: dict[str, int] = {}
        self.manifests: list[tuple[str, str]] = []

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        return False

    def upload_blob(self, repository: str, chunks: Iterable[bytes]) -> tuple[str, int]:
        data = b"".join(chunks)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = len(data)
        return digest, len(data)

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = len(data)
        return digest

    def push_manifest(self, repository: str, reference: str, body: bytes, media_type: str
                      ) -> str:
        self.manifests.append((repository, reference))
        return "sha256:" + hashlib.sha256(body).hexdigest()


def test_the_saved_image_is_pushed_with_its_config_and_gzip_layer(tmp_path: Path) -> None:
    engine, registry = Engine(), Registry()
    pushed = upload.push(engine, registry, "local:1", "factory/x", "t",  # type: ignore[arg-type]
                         reuse={}, scratch=tmp_path)
    assert pushed.sent == 1 and pushed.mounted == 0
    assert registry.manifests == [("factory/x", "t")]
    assert engine.image_id in registry.blobs  # the config, by the image's own id


def test_a_save_that_streams_another_images_config_pushes_no_manifest(tmp_path: Path) -> None:
    """The engine's image moved between inspect and save (another build took the tag):
    the stream is not the image that was inspected, so no manifest names it."""
    engine, registry = Engine(saved_config=b'{"rootfs": "of another build"}'), Registry()
    with pytest.raises(BuildError, match="gave no config of image"):
        upload.push(engine, registry, "local:1", "factory/x", "t",  # type: ignore[arg-type]
                    reuse={}, scratch=tmp_path)
    assert registry.manifests == []
