"""session.py (clients made on first use, shared by a session on another engine, closed
together) and catalog/process.py (the catalog's background command line and health
check), without services."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from basefactory.catalog import process
from basefactory.session import Session
from tests.helpers import small_factory

CATALOG = "[catalog]\nport = 8999\n"


def test_clients_are_made_on_first_use_and_closed_together(tmp_path: Path) -> None:
    session = Session(small_factory(tmp_path, CATALOG))
    assert "devpi" not in session.__dict__ and "registry" not in session.__dict__
    devpi, registry = session.devpi, session.registry
    assert session.devpi is devpi and session.proofs.devpi is devpi  # one of each
    assert devpi.base_url == "http://127.0.0.1:3141"
    with session:
        pass
    for client in (devpi, registry):
        assert client._http.is_closed


def test_a_session_on_another_engine_shares_the_index_registry_and_proofs(
        tmp_path: Path) -> None:
    session = Session(small_factory(tmp_path, CATALOG))
    other_engine = SimpleNamespace(name="b2")
    other = session.on(other_engine)  # type: ignore[arg-type]
    assert other.docker is other_engine
    assert (other.devpi, other.registry, other.proofs) == \
        (session.devpi, session.registry, session.proofs)
    session.close()


def test_the_catalog_runs_as_this_python_with_this_config(tmp_path: Path) -> None:
    f = small_factory(tmp_path, CATALOG)
    argv = list(process.process(f).argv)
    assert argv[:3] == [sys.executable, "-m", "basefactory"]
    assert argv[argv.index("--config") + 1] == str(f.path)
    assert argv[argv.index("--port") + 1] == "8999" and "serve" in argv


def test_the_catalog_answers_only_when_its_health_check_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    replies = {"http://up": 200, "http://sick": 503}

    def get(url: str, timeout: float) -> httpx.Response:
        base = url.removesuffix("/healthz")
        if base not in replies:
            raise httpx.ConnectError("refused")
        return httpx.Response(replies[base])

    monkeypatch.setattr(process.httpx, "get", get)
    assert process.answers("http://up")
    assert not process.answers("http://sick") and not process.answers("http://down")
