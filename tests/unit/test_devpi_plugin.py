"""index/devpi_plugin.py in a real Pyramid app, as devpi-server configures one: the route
matches an index's `+basefactory/wheels` and nothing else, and the answer lists the
index's own release files with their records' text, ordered, and links devpi serves.
devpi's stage is a stand-in here; tests/integration/test_catalog.py reads a real devpi
through the plugin and checks it against the file-by-file read."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import pytest
from pyramid.config import Configurator
from webob import Request

from basefactory.index import devpi_plugin

FILE_ROUTE = "/{user}/{index}/+f/{relpath:.*}"


class Link:
    def __init__(self, entrypath: str, data: bytes = b"", sha256: str = "") -> None:
        self.entrypath = entrypath
        self.hashes = {"sha256": sha256} if sha256 else {}
        self.entry = SimpleNamespace(file_open_read=lambda: contextlib.closing(io.BytesIO(data)))


class LinkStore:
    def __init__(self, files: list[Link], records: dict[str, list[Link]]) -> None:
        self.files, self.records = files, records

    def get_links(self, rel: str, for_entrypath: Any = None) -> list[Link]:
        if rel == "releasefile":
            return self.files
        return self.records.get(for_entrypath.entrypath, [])


class Stage:
    def __init__(self) -> None:
        whl = Link("factory/p1/+f/abc/tiny-1.0-py3-none-any.whl", sha256="a" * 64)
        sdist = Link("factory/p1/+f/def/tiny-1.0.tar.gz", sha256="b" * 64)
        older = Link("factory/p1/+f/123/tiny-0.9-py3-none-any.whl", sha256="c" * 64)
        record = Link("factory/p1/+f/abc/tiny-1.0-py3-none-any.whl.toxresult0",
                      json.dumps({"basefactory": {"kind": "wheel-test"}}).encode() + b"\xff")
        self.stores = {("tiny", "1.0"): LinkStore([whl, sdist], {whl.entrypath: [record]}),
                       ("tiny", "0.9"): LinkStore([older], {})}

    def list_projects_perstage(self) -> set[str]:
        return {"tiny"}

    def list_versions_perstage(self, project: str) -> set[str]:
        return {"1.0", "0.9"}

    def get_versiondata_perstage(self, project: str, version: str) -> dict[str, str]:
        return {"name": "Tiny"}

    def get_linkstore_perstage(self, project: str, version: str) -> LinkStore:
        return self.stores[(project, version)]


@pytest.fixture()
def app() -> Iterator[Any]:
    config = Configurator()
    config.add_route(FILE_ROUTE, FILE_ROUTE)  # devpi's own file route, which links name
    devpi_plugin.devpiserver_pyramid_configure(None, config)
    stages = {("factory", "p1"): Stage()}
    config.registry["xom"] = SimpleNamespace(model=SimpleNamespace(
        getstage=lambda user, index: stages.get((user, index))))
    yield config.make_wsgi_app()


def get(app: Any, path: str) -> tuple[int, Any]:
    response = Request.blank(path).get_response(app)
    body = json.loads(response.body) if response.content_type == "application/json" else None
    return response.status_code, body


def test_an_index_answers_its_files_with_their_records_in_one_request(app: Any) -> None:
    status, body = get(app, "/factory/p1/+basefactory/wheels")
    assert status == 200
    files = body["result"]["files"]
    # projects, then versions, in order; each file's link as devpi serves it
    assert [(f["project"], f["version"], f["href"].rsplit("/", 1)[1]) for f in files] == [
        ("Tiny", "0.9", "tiny-0.9-py3-none-any.whl"),
        ("Tiny", "1.0", "tiny-1.0-py3-none-any.whl"),
        ("Tiny", "1.0", "tiny-1.0.tar.gz")]
    # (this bare Pyramid quotes the "+" of the route; devpi's URLs are read the same way)
    assert unquote(files[1]["href"]) == (
        "http://localhost/factory/p1/+f/abc/tiny-1.0-py3-none-any.whl")
    assert files[1]["sha256"] == "a" * 64
    [record] = files[1]["toxresults"]
    assert record["href"].endswith("tiny-1.0-py3-none-any.whl.toxresult0")
    # a record's text as stored, a byte that is not UTF-8 replaced rather than fatal
    assert record["record"].startswith('{"basefactory"') and record["record"].endswith("\ufffd")
    assert files[0]["toxresults"] == [] and files[2]["toxresults"] == []


def test_an_unknown_index_is_404_and_other_paths_are_not_the_plugins(app: Any) -> None:
    assert get(app, "/factory/nope/+basefactory/wheels") == (404, {"message": "no such index"})
    assert get(app, "/factory/+basefactory/wheels")[0] == 404  # a user is not an index
    assert get(app, "/factory/p1/+basefactory/other")[0] == 404
