"""Layered images end to end on the CPU platform: lock, build, smoke test, push with both
tags and labels, skip when current, and a downstream service built FROM tts-deps."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from basefactory.images import upload
from basefactory.images.plan import ImageResult
from basefactory.images.publish import build_all
from basefactory.plumbing.errors import BuildError, TestFailed
from basefactory.proofs import SCHEMA
from basefactory.refs import image_ref, platform_index, repository
from basefactory.session import Session
from tests.helpers import PLATFORM, ROOT, containerd_run, wait_http
from tests.service_inputs import (
    check_align_refuses_bad_input,
    check_indextts_refuses_bad_input,
    wav,
)
from tests.walk import Walk

IMAGES = {"cuda-deps", "tts-deps", "stt-deps", "api-lean"}


@pytest.fixture(scope="module")
def images(published: dict[str, ImageResult]) -> dict[str, ImageResult]:
    return published


def test_every_image_is_built_tested_and_pushed_with_both_tags(
        session: Session, images: dict[str, ImageResult]) -> None:
    assert set(images) == IMAGES
    for name, result in images.items():
        repo = repository(session.factory, name)
        tags = session.registry.tags(repo)
        assert result.tag in tags and PLATFORM in tags
        assert result.tag.startswith(f"{PLATFORM}-") and result.tag.endswith(result.input_digest[:12])
        # the moving tag points at the immutable one
        assert session.registry.digest(repo, PLATFORM) == session.registry.digest(repo, result.tag)
        labels = session.registry.labels(repo, result.tag)
        for key in ("org.opencontainers.image.version", "org.opencontainers.image.revision",
                    "org.opencontainers.image.created", "org.opencontainers.image.base.name",
                    "org.opencontainers.image.base.digest"):
            assert labels[key], key
        assert labels["org.basefactory.input-digest"] == result.input_digest
        # OCI's meaning: the manifest digest of the parent as the registry serves it
        parent = labels["org.opencontainers.image.base.name"]
        path, _, tag = parent.partition("/")[2].rpartition(":")
        assert labels["org.opencontainers.image.base.digest"] == session.registry.digest(path, tag)
        assert labels["org.opencontainers.image.base.digest"].startswith("sha256:")
        assert json.loads(labels["org.basefactory.fingerprint"])["torch"] == "2.13.0+cpu"
        smoke = json.loads(labels["org.basefactory.proof.smoke"])
        assert smoke["passed"] is True and smoke["schema"] == SCHEMA and smoke["kind"] == "smoke"
        assert smoke["subject"] == {"platform": PLATFORM, "image": name, "image_digest":
                                    result.input_digest, "wheel": None, "wheel_sha256": None}
        manifest = {m["name"].lower(): m for m in json.loads(labels["org.basefactory.manifest"])}
        if name == "api-lean":
            assert "torch" not in manifest and "fastapi" in manifest
        else:
            assert manifest["torch"]["version"] == "2.13.0+cpu"  # the platform's, untouched
            assert manifest["torch"]["size"] > 100_000_000
    tts = json.loads(session.registry.labels(repository(session.factory, "tts-deps"),
                                             images["tts-deps"].tag)["org.basefactory.wheels"])
    assert tts["monotonic-alignment-search"].endswith("+pt213cpu")
    assert "coqui-tts" not in tts  # needs torchaudio, which this platform's base lacks


def test_the_parallel_push_mounts_the_parents_layers_and_keeps_the_engines_image(
        session: Session, images: dict[str, ImageResult]) -> None:
    """`[registry] push = "pigz"` (images/upload.py) on a published image: the registry's
    config is the engine's image byte for byte (same image ID), the parent's layers are
    the parent's blobs (mounted by digest, never sent again, though `docker push` sent
    them), and an empty containerd pulls and runs it (checking every blob's digest and
    every layer's diff_id)."""
    docker, registry, factory = session.docker, session.registry, session.factory
    lean = images["api-lean"]
    repo = repository(factory, "push-check")
    slim = registry.manifest(repository(factory, "slim"), PLATFORM)
    assert slim is not None
    pushed = upload.push(docker, registry, lean.ref, repo, "pigz",
                         reuse=upload.known_layers(registry, [(repository(factory, "slim"),
                                                               PLATFORM)]),
                         scratch=factory.state_dir / "build" / "push")
    assert pushed.mounted == len(slim.body["layers"]) and pushed.sent >= 1
    manifest = registry.manifest(repo, "pigz")
    assert manifest is not None and manifest.digest == pushed.digest
    assert manifest.config_digest == docker.image_id(lean.ref)
    slim_layers = [layer["digest"] for layer in slim.body["layers"]]
    assert [layer["digest"] for layer in manifest.body["layers"]][:len(slim_layers)] == slim_layers
    ran = containerd_run(factory, image_ref(factory, "push-check", "pigz"),
                         ["python3", "-c", "import fastapi; print('ok')"])
    assert ran.strip() == "ok"


def test_lean_tier_fits_its_budget(images: dict[str, ImageResult]) -> None:
    size = images["api-lean"].size
    assert size is not None and size <= 150_000_000, size


def test_a_second_build_rebuilds_nothing(session: Session, images: dict[str, ImageResult]) -> None:
    again = build_all(session)
    assert {r.image: r.state for r in again} == {name: "current" for name in IMAGES}
    assert {r.image: r.tag for r in again} == {n: r.tag for n, r in images.items()}


def _image(session: Session, name: str, toml: str, requirements: str) -> Path:
    folder = session.factory.images_dir / name
    folder.mkdir()
    (folder / "image.toml").write_text(textwrap.dedent(toml))
    (folder / "requirements.in").write_text(requirements)
    return folder


def test_an_image_build_enters_no_room_more_than_twice(session: Session,
                                                       images: dict[str, ImageResult]) -> None:
    """Issue 28's floor plan, on a real build (lock, build, audit, smoke test, SBOM, push):
    the route through the package's modules (tests/walk.py) enters none of them more than
    twice, so a reader follows the build in one pass instead of back and forth."""
    folder = _image(session, "walk-probe", 'parent = "api-lean"\nsize_budget_mb = 1000\n',
                    "six\n")
    walk = Walk("basefactory.images.publish:ensure_image")
    try:
        sys.setprofile(walk)
        try:
            [result] = build_all(session, ["walk-probe"])
        finally:
            sys.setprofile(None)
        assert result.state == "built"
        # its parent api-lean is ensured first (current: planned, its moving tag checked)
        assert len(walk.routes) == 2
        visits = walk.visits()
        assert {"images.plan", "audit.abi", "images.smoke", "images.sbom",
                "images.push"} <= set(visits), walk.path
        for call, path in enumerate(walk.paths):
            assert max(walk.visits(call).values()) <= 2, (walk.visits(call), " -> ".join(path))
    finally:
        shutil.rmtree(folder)
        repo = repository(session.factory, "walk-probe")
        for tag in session.registry.tags(repo):
            digest = session.registry.digest(repo, tag)
            if digest is not None:
                session.registry.delete(repo, digest)


def test_a_requirement_needing_another_torch_fails_the_lock(
        session: Session, images: dict[str, ImageResult]) -> None:
    folder = _image(session, "bad-torch", "size_budget_mb = 5000\n", "torchaudio==2.9.1\n")
    try:
        with pytest.raises(BuildError, match="need another torch"):
            build_all(session, ["bad-torch"])
        assert session.registry.tags(repository(session.factory, "bad-torch")) == []
    finally:
        shutil.rmtree(folder)


def test_a_failing_smoke_test_pushes_nothing(session: Session,
                                             images: dict[str, ImageResult]) -> None:
    folder = _image(session, "bad-smoke", """
        parent = "cuda-deps"
        size_budget_mb = 5000
        [smoke]
        command = "python -c 'raise SystemExit(3)'"
    """, "six\n")
    try:
        with pytest.raises(TestFailed, match="nothing was pushed"):
            build_all(session, ["bad-smoke"])
        assert session.registry.tags(repository(session.factory, "bad-smoke")) == []
    finally:
        shutil.rmtree(folder)


def test_an_image_over_its_size_budget_pushes_nothing(session: Session,
                                                     images: dict[str, ImageResult]) -> None:
    folder = _image(session, "too-big", 'parent = "cuda-deps"\nsize_budget_mb = 1\n', "six\n")
    try:
        with pytest.raises(TestFailed, match=r"is \d+ MB, over its budget of 1 MB; nothing"):
            build_all(session, ["too-big"])
        assert session.registry.tags(repository(session.factory, "too-big")) == []
    finally:
        shutil.rmtree(folder)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_downstream_service_builds_from_tts_deps_and_runs(
        session: Session, images: dict[str, ImageResult], tmp_path: Path) -> None:
    docker = session.docker
    base = image_ref(session.factory, "tts-deps", PLATFORM)
    context = ROOT / "examples" / "tts-service"
    tag = "basefactory-test/tts-service:latest"
    started = time.monotonic()
    docker.build(context, dockerfile=context / "Dockerfile", tags=[tag],
                 build_args={"BASE": base}, log_file=tmp_path / "build.log")
    assert time.monotonic() - started < 120
    port = _free_port()
    name = f"tts-service-{port}"
    subprocess.run([docker.client.path, "run", "-d", "--rm", "--name", name, "--network", "host",
                    tag, "python", "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port",
                    str(port)], check=True, capture_output=True)
    try:
        health = wait_http(f"http://127.0.0.1:{port}/health")
        assert health.json() == {"status": "ok", "torch": "2.13.0+cpu"}
        aligned = httpx.post(f"http://127.0.0.1:{port}/align",
                             json={"scores": [[1, 0, 0, 0], [0, 1, 1, 1]]}, timeout=10)
        assert aligned.status_code == 200
        assert aligned.json() == {"path": [[1, 0, 0, 0], [0, 1, 1, 1]]}
        # bad input: a 422 naming the field, then the good request still answers
        check_align_refuses_bad_input(f"http://127.0.0.1:{port}")
        again = httpx.post(f"http://127.0.0.1:{port}/align",
                           json={"scores": [[1, 0, 0, 0], [0, 1, 1, 1]]}, timeout=10)
        assert again.status_code == 200 and again.json() == aligned.json()
    finally:
        subprocess.run([docker.client.path, "rm", "-f", name], capture_output=True)


def test_the_indextts_service_checks_its_input_before_the_model(
        session: Session, images: dict[str, ImageResult]) -> None:
    """Seed 001's service (examples/indextts-service) on the CPU tts-deps image, which has
    its web stack but not Index-TTS (tests/tts runs it with the model loaded): each bad
    request is a 422 naming its field, not the 500 it was; a good one is told the model is
    not loaded (503), and /health keeps answering."""
    docker = session.docker.client.path
    port = _free_port()
    name = f"indextts-inputs-{port}"
    index = session.devpi.simple_url(platform_index(session.factory, PLATFORM))
    app = ROOT / "examples" / "indextts-service" / "app.py"
    subprocess.run([docker, "run", "-d", "--rm", "--name", name, "--network", "host",
                    "-v", f"{app}:/app/app.py:ro", "-w", "/app",
                    image_ref(session.factory, "tts-deps", PLATFORM), "bash", "-c",
                    f"pip install -q --index-url {index} python-multipart && exec python -m"
                    f" uvicorn app:app --host 127.0.0.1 --port {port}"],
                   check=True, capture_output=True)
    url = f"http://127.0.0.1:{port}"
    try:
        health = wait_http(f"{url}/health", timeout=180).json()
        assert health["model_loaded"] is False and "indextts" in health["error"], health
        check_indextts_refuses_bad_input(url)
        good = httpx.post(f"{url}/synthesize", data={"text": "Hello.", "max_mel_tokens": "60"},
                          files={"prompt": ("v.wav", wav(1.0), "audio/wav")}, timeout=60)
        assert good.status_code == 503 and "not loaded" in good.text, good.text
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True)


def test_a_build_waits_for_its_locked_versions_on_the_index(session: Session,
                                                           images: dict[str, ImageResult]) -> None:
    """The pre-build check reads the real simple pages: what the lock of a published image
    pins is listed; a version no index has is reported, not met later by uv in a build."""
    from basefactory.images.lock import parse
    from basefactory.refs import platform_index

    index = platform_index(session.factory, PLATFORM)
    lock = (session.factory.images_dir / "cuda-deps" / "locks" / f"{PLATFORM}.txt").read_text()
    pins = parse(lock)
    assert pins and session.devpi.wait_listed(index, pins, attempts=1) == {}
    assert session.devpi.wait_listed(index, {"numpy": "0.0.0.1"}, attempts=2) == {
        "numpy": "0.0.0.1"}
