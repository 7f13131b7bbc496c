"""The catalog app's HTTP behaviour over an in-memory snapshot (no services): HEAD for
every GET route, nosniff everywhere, and a CSP that lets exactly the page's own inline
script and style run."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from fastapi.testclient import TestClient

from basefactory.catalog.app import create_app
from basefactory.catalog.state import Catalog
from tests.unit.test_catalog_views import P, snapshot

URLS = ["/", f"/platforms/{P}", "/images/tts-deps", "/api/images", f"/api/platforms/{P}",
        "/api/combos?image=tts-deps", "/healthz", "/api/images/nope"]


@pytest.fixture(scope="module")
def client() -> TestClient:
    catalog = Catalog(reader=None)  # type: ignore[arg-type]  # never refreshed here
    catalog.snapshot, catalog.version = snapshot(), 1
    return TestClient(create_app(catalog))


@pytest.mark.parametrize("url", URLS)
def test_head_answers_like_get_without_a_body(client: TestClient, url: str) -> None:
    for _ in range(2):  # the first GET renders, the second comes from the fast path
        get = client.get(url)
        head = client.head(url)
        assert head.status_code == get.status_code
        assert head.content == b""
        assert head.headers.get("content-type") == get.headers.get("content-type")
        assert head.headers.get("etag") == get.headers.get("etag")
        for reply in (get, head):
            assert reply.headers["x-content-type-options"] == "nosniff"


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_pages_carry_a_csp_that_admits_their_own_inline_code_only(client: TestClient) -> None:
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp
    scripts = re.findall(r"<script>(.*?)</script>", page.text, re.S)
    styles = re.findall(r"<style>(.*?)</style>", page.text, re.S)
    assert scripts and styles
    for block in scripts + styles:
        assert _sha(block) in csp  # the rendered block is the hashed one, byte for byte
    assert _sha(scripts[0] + " ") not in csp  # a changed script would not run
    assert "content-security-policy" not in client.get("/api/images").headers
