"""The engine-to-registry push (images/upload.py) over a stand-in engine and registry:
what `docker save` streams is checked to be the image that was inspected before any
manifest is written. The real engine and registry run it in tests/integration."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import tempfile
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
    """An image of two layers, saved in the legacy `docker save` layout or the OCI one;
    `saved_config` is the config the stream carries (another image's, to break the
    guard). What it was asked for is recorded."""

    def __init__(self, saved_config: bytes | None = None, *, oci: bool = False) -> None:
        self.layers = [_tar({"etc/base": b"base\n"}), _tar({"etc/hello": b"hello\n" * 1000})]
        self.diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in self.layers]
        self.config = json.dumps({"rootfs": {"type": "layers",
                                             "diff_ids": self.diff_ids}}).encode()
        self.image_id = "sha256:" + hashlib.sha256(self.config).hexdigest()
        self.saved_config = self.config if saved_config is None else saved_config
        self.oci = oci
        self.asked: list[str] = []

    def image_inspect(self, ref: str) -> dict[str, Any]:
        self.asked.append(f"inspect {ref}")
        return {"Id": self.image_id, "RootFS": {"Layers": self.diff_ids}}

    @contextmanager
    def save(self, ref: str) -> Iterator[io.BytesIO]:
        self.asked.append(f"save {ref}")
        hexid = self.image_id.removeprefix("sha256:")
        if self.oci:
            files = {f"blobs/sha256/{hexid}": self.saved_config, "index.json": b"{}"}
            files.update({f"blobs/sha256/{d.removeprefix('sha256:')}": x
                          for d, x in zip(self.diff_ids, self.layers, strict=True)})
        else:
            files = {f"{hexid}.json": self.saved_config, "manifest.json": b"[]"}
            files.update({f"{str(n) * 64}/layer.tar": x for n, x in enumerate(self.layers)})
        yield io.BytesIO(_tar(files))


class Registry:
    """Blobs by digest; the first layer is one the registry has (mountable)."""

    def __init__(self, mountable: str = "") -> None:
        self.blobs: dict[str, bytes] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.mountable = mountable

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        self.calls.append(("mount", repository, digest, source))
        return digest == self.mountable

    def upload_blob(self, repository: str, chunks: Iterable[bytes]) -> tuple[str, int]:
        data = b"".join(chunks)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        self.calls.append(("upload", repository, digest))
        return digest, len(data)

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.blobs[digest] = data
        self.calls.append(("blob", repository, digest))
        return digest

    def push_manifest(self, repository: str, reference: str, body: bytes, media_type: str
                      ) -> str:
        self.manifest = json.loads(body)
        self.calls.append(("manifest", repository, reference, media_type))
        return "sha256:" + hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("oci", [False, True], ids=["docker-save", "oci-layout"])
def test_a_push_mounts_what_the_registry_has_and_sends_the_rest_gzipped(
        tmp_path: Path, oci: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # the save is unpacked under the factory's scratch folder (made with its parents),
    # never the system's temporary folder, which may be small
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "not-the-scratch"))
    engine = Engine(oci=oci)
    base = upload.Layer("sha256:" + "b" * 64, 321, upload.DOCKER_GZIP_LAYER)
    registry = Registry(mountable=base.digest)
    done: list[str] = []
    pushed = upload.push(engine, registry, "local:1", "factory/x", "t",  # type: ignore[arg-type]
                         reuse={engine.diff_ids[0]: ("factory/base", base)},
                         scratch=tmp_path / "state" / "scratch", on_layer=done.append)
    assert engine.asked == ["inspect local:1", "save local:1"]
    [sent] = [c[2] for c in registry.calls if c[0] == "upload"]
    assert gzip.decompress(registry.blobs[sent]) == engine.layers[1]
    assert done == [engine.diff_ids[1]]  # told once the new layer is in the registry
    assert registry.calls == [
        ("mount", "factory/x", base.digest, "factory/base"),
        ("upload", "factory/x", sent),
        ("blob", "factory/x", engine.image_id),
        ("manifest", "factory/x", "t", upload.DOCKER_MANIFEST)]
    assert registry.manifest["config"]["digest"] == engine.image_id
    assert registry.manifest["layers"] == [
        base.descriptor(),
        {"mediaType": upload.DOCKER_GZIP_LAYER, "size": len(registry.blobs[sent]),
         "digest": sent}]
    assert pushed == upload.Pushed(
        "sha256:" + hashlib.sha256(json.dumps(registry.manifest, indent=3).encode()
                                   ).hexdigest(), 1, len(registry.blobs[sent]), 1)
    assert list((tmp_path / "state" / "scratch").iterdir()) == []  # nothing left of the save


def test_a_layer_the_registry_cannot_mount_is_sent(tmp_path: Path) -> None:
    engine, registry = Engine(), Registry(mountable="")
    base = upload.Layer("sha256:" + "b" * 64, 321, upload.DOCKER_GZIP_LAYER)
    pushed = upload.push(engine, registry, "local:1", "factory/x", "t",  # type: ignore[arg-type]
                         reuse={engine.diff_ids[0]: ("factory/base", base)}, scratch=tmp_path)
    assert (pushed.sent, pushed.mounted) == (2, 0)
    assert [len(layer["digest"]) for layer in registry.manifest["layers"]] == [71, 71]


def test_a_save_that_streams_another_images_config_pushes_no_manifest(tmp_path: Path) -> None:
    """The engine's image moved between inspect and save (another build took the tag):
    the stream is not the image that was inspected, so no manifest names it."""
    engine, registry = Engine(saved_config=b'{"rootfs": "of another build"}'), Registry()
    with pytest.raises(BuildError, match="gave no config of image") as caught:
        upload.push(engine, registry, "local:1", "factory/x", "t",  # type: ignore[arg-type]
                    reuse={}, scratch=tmp_path)
    assert not any(c[0] in ("manifest", "blob") for c in registry.calls)
    assert caught.value.hint == ("a Docker engine whose save format basefactory does not"
                                 " know: please report its version")
