"""`basefactory prune`, `df` and `images diff` against the real registry and engine:
three builds of an image (the last adds a package: the diff shows it, in the terminal and
the catalog), pruned to the newest with the SBOMs of the deleted builds; the moving tag
still pulls, the registry's folder shrinks,
a second prune deletes nothing, and a pull of a deleted tag fails."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from basefactory.catalog.app import create_app
from basefactory.catalog.server import make_catalog
from basefactory.images.plan import ImageResult
from basefactory.images.publish import build_all as build_images
from basefactory.images.referrers import tag as referrers_tag
from basefactory.images.retention import folder_size
from basefactory.plumbing import templates
from basefactory.refs import image_ref, repository
from basefactory.session import Session
from tests.helpers import PLATFORM


def _cli(session: Session, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "basefactory", "--config",
                           str(session.factory.path), *args], capture_output=True, text=True,
                          timeout=600)


def test_prune_keeps_the_newest_and_frees_the_rest(session: Session,
                                                   published: dict[str, ImageResult]) -> None:
    folder = session.factory.images_dir / "prune-me"
    folder.mkdir()
    (folder / "requirements.in").write_text("six\n")
    default = (Path(templates.__file__).parents[1] / "templates" / "image.Dockerfile.j2").read_text()
    # each build adds 3 MB of its own (random bytes: no layer is shared between builds)
    (folder / "Dockerfile.j2").write_text(
        default + "\nRUN head -c 3000000 /dev/urandom > /opt/build-$PRUNE_CASE\n")
    tags = []
    try:
        for n in range(3):
            (folder / "image.toml").write_text(
                f'parent = "platform"\nsize_budget_mb = 5000\n[env]\nPRUNE_CASE = "{n}"\n')
            if n == 2:  # the last build adds a package: `images diff` must show it
                (folder / "requirements.in").write_text("six\nidna\n")
            [result] = build_images(session, ["prune-me"])
            tags.append(result.tag)
    finally:
        shutil.rmtree(folder)  # the definition and the lock folder the builds wrote
    repo = repository(session.factory, "prune-me")
    immutable = [t for t in session.registry.tags(repo) if t.startswith(f"{PLATFORM}-")]
    assert len(immutable) == 3, immutable

    diff = _cli(session, "images", "diff", "prune-me", tags[1], tags[2], "--json")
    assert diff.returncode == 0, diff.stderr
    changes = json.loads(diff.stdout)
    assert [p["name"] for p in changes["added"]] == ["idna"] and changes["removed"] == []
    assert changes["a"]["abi_audit"] == changes["b"]["abi_audit"] == "passed"
    assert changes["compressed_size_delta"] != 0

    # the catalog compares the same two builds (page and API)
    catalog = make_catalog(session.factory)
    try:
        assert catalog.refresh()
        client = TestClient(create_app(catalog))
        api = client.get("/api/images/prune-me/diff", params={"a": tags[1], "b": tags[2]})
        assert api.status_code == 200 and api.json()["data"]["added"] == changes["added"]
        page = client.get("/images/prune-me/compare", params={"a": tags[1], "b": tags[2]})
        assert page.status_code == 200 and "idna" in page.text
        assert client.get("/api/images/prune-me/diff",
                          params={"a": tags[1], "b": "nope"}).status_code == 404
        linked = client.get("/api/images/prune-me").json()["data"]["platforms"][PLATFORM]
        a = linked["compare"].partition("?a=")[2].partition("&")[0]
        assert linked["compare"] == f"/images/prune-me/compare?a={a}&b={tags[2]}"
        assert a in tags[:2]
    finally:
        catalog.reader.close()
    doomed = [session.registry.digest(repo, t) for t in tags[:2]]
    assert all(session.registry.manifest(repo, referrers_tag(d or "")) for d in doomed)

    df = json.loads(_cli(session, "df", "--json").stdout)
    [row] = [r for r in df["images"] if r["image"] == "prune-me"]
    assert row["tags"] == 4 and row["bytes"] > 9_000_000  # 3 immutable + the moving tag

    dry = _cli(session, "prune", "prune-me", "--keep", "1", "--keep-days", "0", "--json")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert not planned["acted"] and len(planned["deleted"]) == 2
    assert len(session.registry.tags(repo)) == 7  # a dry run deletes nothing (3 SBOM listings)

    before = folder_size(session.factory.state_dir / "registry" / "data")
    done = _cli(session, "prune", "prune-me", "--keep", "1", "--keep-days", "0", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["deleted_manifests"] == 2
    assert summary["bytes_freed"] >= 6_000_000  # both builds' own layers, collected
    assert folder_size(session.factory.state_dir / "registry" / "data") < before - 6_000_000
    left = session.registry.tags(repo)
    kept = session.registry.digest(repo, tags[-1]) or ""
    # the deleted builds' SBOMs went with them; the kept build's stays
    assert sorted(left) == sorted([PLATFORM, tags[-1], referrers_tag(kept)]), left
    assert _cli(session, "images", "sbom", f"prune-me:{PLATFORM}").returncode == 0

    docker = session.docker
    moving = image_ref(session.factory, "prune-me", PLATFORM)
    for tag in tags:
        docker.remove_image(image_ref(session.factory, "prune-me", tag))
    docker.remove_image(moving)
    assert docker.pull(moving), "the moving tag no longer pulls after prune"
    gone = subprocess.run([docker.client.path, "pull", image_ref(session.factory, "prune-me",
                                                                 tags[0])],
                          capture_output=True, text=True)
    assert gone.returncode != 0 and "manifest unknown" in gone.stderr, gone.stderr

    again = json.loads(_cli(session, "prune", "prune-me", "--keep", "1", "--keep-days", "0",
                            "--yes", "--json").stdout)
    assert again["deleted"] == [] and again["deleted_manifests"] == 0
    docker.remove_image(moving)


def test_a_whole_prune_reviews_the_builders_the_hosts_share(session: Session,
                                                              published: dict[str, ImageResult]
                                                              ) -> None:
    """The publish pushed this platform's builder to factory-cache/builder; a dry run of a
    whole-factory prune reads it from the real registry, by the same rule as images:
    kept as the newest with the defaults, to be deleted with --keep 0 --keep-days 0."""
    cache = f"{session.factory.config.registry.namespace}-cache/builder"
    [tag] = [t for t in session.registry.tags(cache) if t.startswith(f"{PLATFORM}-")]
    # (other tests of the session push builders of their own platforms: this one's rows)
    default = json.loads(_cli(session, "prune", "--json").stdout)
    assert {(r["tag"], r["why"]) for r in default["kept"]
            if r["repository"] == cache and r["platform"] == PLATFORM} == {
        (tag, "one of the newest 3")}
    none_kept = json.loads(_cli(session, "prune", "--keep", "0", "--keep-days", "0",
                                "--json").stdout)
    assert not none_kept["acted"]
    assert [r["tag"] for r in none_kept["deleted"]
            if r["repository"] == cache and r["platform"] == PLATFORM] == [tag]
    assert tag in session.registry.tags(cache)  # a dry run deletes nothing
