"""Every published image has a CycloneDX SBOM beside it in the real registry: stored as an
artifact referring to the image (the referrers tag scheme), valid against the CycloneDX
1.6 schema, naming torch, the factory's recipe wheels (with the sha256 of the file the
index served and the recipe's source pin) and the Debian packages; readable with
`images sbom` and from the catalog."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from fastapi.testclient import TestClient

from basefactory.catalog.app import create_app
from basefactory.catalog.server import make_catalog
from basefactory.images.plan import ImageResult
from basefactory.images.referrers import tag as referrers_tag
from basefactory.images.sbom import ARTIFACT_TYPE, fetch
from basefactory.refs import common_index, platform_index, repository
from basefactory.session import Session
from tests.helpers import PLATFORM


def _cli(session: Session, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "basefactory", "--config",
                           str(session.factory.path), *args], capture_output=True, text=True,
                          timeout=300)


def _props(component: dict[str, object]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties") or []}  # type: ignore[attr-defined]


def test_tts_deps_sbom_is_valid_and_names_what_the_image_holds(
        session: Session, published: dict[str, ImageResult], tmp_path: Path) -> None:
    done = _cli(session, "images", "sbom", f"tts-deps:{PLATFORM}")
    assert done.returncode == 0, done.stderr
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(done.stdout) is None
    bom = json.loads(done.stdout)
    root = bom["metadata"]["component"]
    assert root["type"] == "container" and root["version"] == published["tts-deps"].tag
    assert json.loads(_props(root)["basefactory:fingerprint"])["torch"] == "2.13.0+cpu"
    assert _props(root)["basefactory:base-digest"].startswith("sha256:")
    by_purl = {c["purl"].split("@")[0]: c for c in bom["components"]}
    torch = by_purl["pkg:pypi/torch"]
    assert torch["version"] == "2.13.0+cpu"
    assert "libsndfile1" in {c["name"] for c in bom["components"]
                             if c["purl"].startswith("pkg:deb/")}
    # the recipe wheels, compiled here: the exact file the platform's index served
    files = {f.filename: f for f in session.devpi.release_files(
        platform_index(session.factory, PLATFORM), "monotonic-alignment-search")}
    mas = by_purl["pkg:pypi/monotonic-alignment-search"]
    props = _props(mas)
    assert props["basefactory:wheel"] in files
    assert mas["hashes"] == [{"alg": "SHA-256",
                              "content": files[props["basefactory:wheel"]].sha256}]
    assert props["basefactory:source"].startswith("sdist ") and "sha256:" in props[
        "basefactory:source"]

    out = tmp_path / "tts.cdx.json"
    written = _cli(session, "images", "sbom", f"tts-deps:{PLATFORM}", "-o", str(out), "--json")
    assert written.returncode == 0, written.stderr
    counts = json.loads(written.stdout)
    # monotonic-alignment-search only: coqui-tts's recipe does not apply on torch 2.13
    assert counts["factory_wheels"] == 1 and counts["debian"] > 50
    assert json.loads(out.read_text()) == bom


def test_the_sbom_refers_to_the_image_it_describes(session: Session,
                                                   published: dict[str, ImageResult]) -> None:
    repo = repository(session.factory, "stt-deps")
    image_digest = session.registry.digest(repo, PLATFORM)
    assert image_digest is not None
    listing = session.registry.manifest(repo, referrers_tag(image_digest))
    assert listing is not None, "no referrers tag for the published image"
    [entry] = [m for m in listing.body["manifests"] if m["artifactType"] == ARTIFACT_TYPE]
    artifact = session.registry.manifest(repo, entry["digest"])
    assert artifact is not None
    assert artifact.body["subject"]["digest"] == image_digest
    assert artifact.body["artifactType"] == ARTIFACT_TYPE
    # a pure recipe wheel comes from the common index: its file is named there
    text = fetch(session.registry, repo, image_digest)
    assert text is not None
    [whisper] = [c for c in json.loads(text)["components"]
                 if c["purl"].startswith("pkg:pypi/openai-whisper@")]
    files = {f.filename: f.sha256 for f in session.devpi.release_files(
        common_index(session.factory), "openai-whisper")}
    assert whisper["hashes"][0]["content"] == files[_props(whisper)["basefactory:wheel"]]


def test_an_image_without_sbom_is_a_clear_error(session: Session,
                                                published: dict[str, ImageResult]) -> None:
    missing = _cli(session, "images", "sbom", "no-such-image")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "no image `no-such-image`" in missing.stderr


def test_catalog_links_and_serves_the_sbom(session: Session,
                                           published: dict[str, ImageResult]) -> None:
    catalog = make_catalog(session.factory)
    try:
        assert catalog.refresh()
        client = TestClient(create_app(catalog))
        cell = client.get("/api/images/tts-deps").json()["data"]["platforms"][PLATFORM]
        assert cell["sbom"] == f"/api/images/tts-deps/platforms/{PLATFORM}/sbom"
        served = client.get(cell["sbom"])
        assert served.status_code == 200
        assert served.headers["content-type"].startswith("application/vnd.cyclonedx+json")
        assert served.json()["metadata"]["component"]["version"] == published["tts-deps"].tag
        assert 'href="/api/images/tts-deps/platforms/' in client.get("/images/tts-deps").text
    finally:
        catalog.reader.close()
