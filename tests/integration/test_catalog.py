"""The catalog over the real registry and devpi, holding what this session published:
the JSON API, a source going down, a real browser, and schema fuzzing."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from basefactory.adapters.registry_api import Registry
from basefactory.catalog.app import create_app
from basefactory.catalog.server import make_catalog
from basefactory.catalog.snapshot import Reader, Wheel
from basefactory.catalog.state import Catalog
from basefactory.images.plan import ImageResult
from basefactory.pipeline import Step
from basefactory.refs import platform_index
from basefactory.session import Session
from tests.helpers import PLATFORM, ROOT, require

ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def catalog(session: Session, published: dict[str, ImageResult], fitted: list[Step]
            ) -> Iterator[Catalog]:
    c = make_catalog(session.factory)
    assert c.refresh()
    yield c
    c.reader.close()


@pytest.fixture(scope="module")
def client(catalog: Catalog) -> TestClient:
    return TestClient(create_app(catalog))


def test_api_shows_what_was_published(client: TestClient, published: dict[str, ImageResult]) -> None:
    platforms = client.get("/api/platforms").json()["data"]
    mine = next(p for p in platforms if p["name"] == PLATFORM)
    assert mine["torch"] == "2.13.0+cpu" and mine["python_tag"] == "cp311"
    images = {i["name"]: i for i in client.get("/api/images").json()["data"]}
    assert {"cuda-deps", "tts-deps", "stt-deps", "api-lean"} <= set(images)
    cell = images["tts-deps"]["platforms"][PLATFORM]
    assert cell["tag"] == published["tts-deps"].tag
    tts = client.get("/api/images/tts-deps").json()["data"]["platforms"][PLATFORM]
    assert tts["chain"] == ["tts-deps", "cuda-deps", f"platform:{PLATFORM}"]
    assert any(m["name"] == "torch" and m["version"] == "2.13.0+cpu" for m in tts["installed"])
    assert tts["from"].startswith("FROM ") and tts["from_pinned"].endswith(published["tts-deps"].tag)
    wheels = client.get("/api/wheels", params={"platform": PLATFORM}).json()["data"]
    assert {"torchsort", "monotonic-alignment-search", "openai-whisper"} <= {w["project"] for w in wheels}


def test_one_request_per_index_reads_what_the_file_by_file_read_does(
        catalog: Catalog, session: Session) -> None:
    """The embedded devpi loads the factory's plugin (its entry point): an index's wheels
    and their test records in one request, the same files and proofs that one request
    per project and per record reads from devpi's own JSON pages."""
    index = platform_index(session.factory, PLATFORM)
    answer = session.devpi.index_wheels(index)
    assert answer is not None, "the embedded devpi did not load basefactory's plugin"
    files, records = answer
    by_project = sorted({f.project for f in files})
    one_by_one = [f for p in by_project for f in session.devpi.release_files(index, p)]
    assert sorted(files, key=lambda f: f.url) == sorted(one_by_one, key=lambda f: f.url)
    assert any(f.toxresults for f in files)
    for url in (u for f in files for u in f.toxresults):
        assert json.loads(records[url]) == session.devpi.test_record(url)
    # and the catalog's wheels carry the same proofs either way
    def seen(wheels: list[Wheel]) -> set[tuple[str, str]]:
        return {(w.url, json.dumps([(p.source, p.to_dict()) for p in w.proofs], sort_keys=True))
                for w in wheels}

    bulk = seen(catalog.reader.wheels())
    reader = Reader(session.factory)
    reader.devpi.index_wheels = lambda index: None  # type: ignore[method-assign]
    try:
        assert seen(reader.wheels()) == bulk
    finally:
        reader.close()


def test_combos_link_to_the_tests_that_proved_them(client: TestClient) -> None:
    combos = client.get("/api/combos", params={"image": "tts-deps"}).json()["data"]["combos"]
    mas = next(c for c in combos if c["wheel"] == "monotonic-alignment-search")
    assert mas["included"] is True
    assert mas["fits"] is True
    record = httpx.get(mas["proven_by"]["wheel_test"], timeout=10).json()
    assert record["kind"] == "wheel-test" and record["passed"] is True
    assert record["evidence"]["torch"].startswith("2.13.0+cpu ")
    assert record["evidence"]["abi_audit"]["failures"] == []
    image = client.get(mas["proven_by"]["image_smoke"]).json()["data"]
    assert image["proofs"]["smoke"]["passed"] is True
    # what tts-deps's own smoke command printed stands in its record (MAS ran in the
    # image) and on its page
    assert any(line.startswith("libsndfile ok, torch.Size([1, 4, 8])")
               for line in image["proofs"]["smoke"]["evidence"]["output"]), image["proofs"]["smoke"]
    assert "libsndfile ok, torch.Size([1, 4, 8])" in client.get("/images/tts-deps").text
    assert image["proofs"]["abi-audit"]["passed"] is True
    assert mas["proven_by"]["image_abi_audit"] == mas["proven_by"]["image_smoke"]
    # torchsort needs torch, which the lean tier does not have: its fit test installed it
    # there, saw torch pulled in, and the catalog says so with the record it stands on
    lean = client.get("/api/combos", params={"image": "api-lean", "wheel": "torchsort"}).json()
    assert lean["data"]["fits"] is False
    (pair,) = lean["data"]["combos"]
    assert pair["reason"].startswith("adds torch (") and pair["pip"] is None
    record = httpx.get(pair["proven_by"]["fit"], timeout=10).json()
    assert record["kind"] == "fit" and record["passed"] is False
    assert record["subject"]["image"] == "api-lean"
    assert record["subject"]["image_digest"] == client.get(
        f"/api/images/api-lean/platforms/{PLATFORM}").json()["data"]["digest"]
    # and where it fits, the copy-paste lines for pip and uv come with it
    base = client.get("/api/combos", params={"image": "cuda-deps", "wheel": "torchsort"}).json()
    assert base["data"]["fits"] is True
    (pair,) = base["data"]["combos"]
    assert pair["pip"].startswith("pip install --index-url ") and "explicit = true" in pair["uv"]


@pytest.mark.parametrize(("url", "status"), [
    ("/api/images/nope", 404), ("/api/platforms/nope", 404), ("/api/combos?wheel=nope", 404),
    ("/api/combos", 422), ("/api/wheels?platform=nope", 404), ("/api/combos?image=" + "x" * 300, 422),
    ("/images/nope", 404),
])
def test_errors_are_json(client: TestClient, url: str, status: int) -> None:
    response = client.get(url)
    assert response.status_code == status
    assert response.json()["error"]["status"] == status and response.json()["error"]["message"]


def test_etag_answers_304(client: TestClient) -> None:
    first = client.get("/api/images")
    again = client.get("/api/images", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def test_a_source_down_shows_a_banner_and_the_last_good_data(session: Session,
                                                              published: dict[str, ImageResult]) -> None:
    c = make_catalog(session.factory)
    assert c.refresh()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    c.reader.registry = Registry(f"http://127.0.0.1:{dead}", timeout=2)  # the registry "goes down"
    assert c.refresh() is False and c.error
    client = TestClient(create_app(c))
    page = client.get("/")
    assert page.status_code == 200
    assert "not answering" in page.text and "tts-deps" in page.text
    assert client.get("/api/images").json()["stale"]
    c.reader.close()


@pytest.fixture(scope="module")
def server(session: Session, published: dict[str, ImageResult], fitted: list[Step]
           ) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "basefactory", "--config",
                             str(session.factory.path), "catalog", "serve", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    while time.monotonic() - started < 30:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).json()["ok"]:
                break
        except (httpx.HTTPError, ValueError):
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def test_overview_in_headless_chromium(server: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require(chromium is not None, "Debian's chromium is not installed (make setup installs it)")
    assert chromium is not None
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-quic", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000"]
    dom = subprocess.run([*flags, "--dump-dom", f"{server}/"], capture_output=True, text=True,
                         timeout=120)
    assert '<table id="overview">' in dom.stdout, dom.stderr[-2000:]
    assert f'<a href="/platforms/{PLATFORM}">{PLATFORM}</a>' in dom.stdout
    assert "FROM 127.0.0.1:" in dom.stdout and "/factory/tts-deps:" in dom.stdout
    assert "pip install --index-url" in dom.stdout
    # the image x wheel matrix, with verdicts from fit records both ways
    assert f'<table class="matrix" data-platform="{PLATFORM}">' in dom.stdout
    assert 'data-fits="true"' in dom.stdout and 'data-fits="false"' in dom.stdout
    assert "adds torch (" in dom.stdout  # the reason, on hover
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "catalog-overview.png"
    shot.unlink(missing_ok=True)
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1400,900", f"{server}/"],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000


def test_no_input_gives_a_500(client: TestClient) -> None:
    """Schema fuzzing: hypothesis cases generated from the app's own OpenAPI spec, for
    every operation; none may answer 5xx. (Driven directly rather than through
    schemathesis's pytest plugin, which does not load under pytest 9.)"""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    calls = 0
    for operation in operations:
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True)
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            nonlocal calls
            response = case.call()
            calls += 1
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)

        check()
    assert calls >= 100
