"""`[registry] compression = ["gzip", "zstd"]`: each published image also as a zstd copy
(<namespace>-zstd/<image>, same tags), made registry to registry, pulled and run
by containerd; Docker 20.10 still gets gzip. Killed between the pushes, a rerun finishes
the copy and both moving tags."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from basefactory.catalog import views
from basefactory.catalog.snapshot import Reader
from basefactory.config.factory import load_factory
from basefactory.images import retention, sbom
from basefactory.platforms.publish import PlatformResult
from basefactory.refs import repository, zstd_ref, zstd_repository
from basefactory.session import Session
from tests.helpers import PLATFORM, containerd_run
from tests.reliability.helpers import bf

IMAGE = "zstd-image"
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"


@pytest.fixture()
def zstd_config(session: Session, platform: PlatformResult) -> Iterator[Path]:
    """The test factory's own config with zstd copies on (same folder, so the same
    state, services, recipes and images), and a small image on the slim base."""
    text = session.factory.path.read_text()
    assert "[registry]\n" in text
    path = session.factory.path.with_name("factory-zstd.toml")
    path.write_text(text.replace("[registry]\n",
                                 '[registry]\ncompression = ["gzip", "zstd"]\n', 1))
    folder = session.factory.images_dir / IMAGE
    folder.mkdir()
    (folder / "image.toml").write_text(
        f'parent = "slim"\nsize_budget_mb = 3000\n[env]\nZSTD_CASE = "{uuid.uuid4().hex}"\n')
    # one C extension (markupsafe's speedups): the ABI audit refuses an image with none
    (folder / "requirements.in").write_text("six\nmarkupsafe\n")
    try:
        yield path
    finally:
        shutil.rmtree(folder)
        path.unlink()
        for repo in (repository(session.factory, IMAGE), zstd_repository(session.factory, IMAGE)):
            for digest in {session.registry.digest(repo, t) for t in session.registry.tags(repo)}:
                session.registry.delete(repo, digest or "")


def test_a_killed_publish_finishes_the_zstd_copy_and_containerd_runs_it(
        session: Session, zstd_config: Path) -> None:
    registry = session.registry
    gzip_repo = repository(session.factory, IMAGE)
    zrepo = zstd_repository(session.factory, IMAGE)
    assert load_factory(zstd_config).config.registry.zstd
    # killed after the gzip immutable push: no copy yet, and no moving tag moved
    crashed = bf(zstd_config, "publish", "--only", IMAGE, failpoint="image:after-immutable-push")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert registry.digest(gzip_repo, PLATFORM) is None
    (tag,) = [t for t in registry.tags(gzip_repo) if t.startswith(f"{PLATFORM}-")]
    assert registry.digest(zrepo, tag) is None
    # the rerun copies it, and is killed again before any moving tag moves
    crashed = bf(zstd_config, "publish", "--only", IMAGE, failpoint="image:after-zstd-copy")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert registry.digest(zrepo, tag) is not None
    assert registry.digest(gzip_repo, PLATFORM) is None and registry.digest(zrepo, PLATFORM) is None
    again = bf(zstd_config, "publish", "--only", IMAGE, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert [s["result"] for s in json.loads(again.stdout)["steps"] if s["name"] == IMAGE] == \
        ["current"]

    gzip = registry.manifest(gzip_repo, PLATFORM)
    zstd = registry.manifest(zrepo, PLATFORM)
    assert gzip is not None and zstd is not None
    assert gzip.digest == registry.digest(gzip_repo, tag)
    assert zstd.digest == registry.digest(zrepo, tag)  # the moving tag on the copy
    assert all("gzip" in layer["mediaType"] for layer in gzip.body["layers"])
    assert {layer["mediaType"] for layer in zstd.body["layers"]} == {ZSTD_LAYER}
    # the same image: one config (image ID, labels, proofs), the same uncompressed layers
    assert zstd.config_digest == gzip.config_digest
    config = registry.blob_json(zrepo, zstd.config_digest or "")
    diff_ids = []
    for layer in zstd.body["layers"]:
        blob = registry.blob(zrepo, layer["digest"], timeout=300)
        assert blob[:4] == b"\x28\xb5\x2f\xfd", "not a zstd frame"
        raw = subprocess.run(["zstd", "-dc"], input=blob, capture_output=True, check=True).stdout
        diff_ids.append(f"sha256:{hashlib.sha256(raw).hexdigest()}")
    assert diff_ids == config["rootfs"]["diff_ids"]
    assert sbom.fetch(registry, zrepo, zstd.digest) == sbom.fetch(registry, gzip_repo, gzip.digest)

    # the catalog offers the copy, read from the registry
    reader = Reader(load_factory(zstd_config))
    try:
        page = views.image(reader.read(), IMAGE)["platforms"][PLATFORM]
    finally:
        reader.close()
    assert page["from_zstd"] == f"FROM {zstd_ref(session.factory, IMAGE, PLATFORM)}"

    # containerd (installed with docker.io; Docker 23+ likewise) pulls and runs the copy
    ref = zstd_ref(session.factory, IMAGE, PLATFORM)
    ran = containerd_run(session.factory, ref,
                         ["python3", "-c", "import six; print(six.__version__)"])
    assert ran.strip()
    # and Docker 20.10, which reads gzip only, is refused the copy: it pulls the gzip tags
    docker = session.docker.client.path
    if (session.docker.server_version() or "").startswith("20."):
        # the image (same ID) leaves the engine first, or the pull has nothing to fetch
        subprocess.run([docker, "image", "rm", "--force", zstd.config_digest or ""],
                       capture_output=True)
        refused = subprocess.run([docker, "pull", ref], capture_output=True, text=True)
        assert refused.returncode != 0, "Docker 20.10 pulled a zstd image"
        # it does not know the media type and reads the zstd stream as a tar (the README
        # quotes this message)
        assert "invalid tar header" in refused.stderr or "zstd" in refused.stderr, \
            refused.stderr[-1000:]

    # a newer build, then prune: the older tag goes with its zstd copy, and
    # the copy's moving tag follows the newer build
    (session.factory.images_dir / IMAGE / "image.toml").write_text(
        'parent = "slim"\nsize_budget_mb = 3000\n[env]\nZSTD_CASE = "newer"\n')
    newer = bf(zstd_config, "publish", "--only", IMAGE, "--no-fits")
    assert newer.returncode == 0, newer.stderr[-3000:]
    (newest,) = [t for t in registry.tags(gzip_repo) if t.startswith(f"{PLATFORM}-") and t != tag]
    assert registry.digest(zrepo, PLATFORM) == registry.digest(zrepo, newest)
    # keep=0: only what the moving tag points at is kept (two builds of one minute may
    # carry the same `created`, and "the newest one" is then either)
    summary = retention.prune(load_factory(zstd_config), registry, keep=0, keep_days=0,
                              act=True, images=[IMAGE])
    assert [row["tag"] for row in summary["deleted"]] == [tag]
    assert summary["deleted_manifests"] == 2  # the gzip image and its zstd copy
    assert registry.digest(gzip_repo, tag) is None and registry.digest(zrepo, tag) is None
    assert registry.digest(zrepo, newest) is not None
