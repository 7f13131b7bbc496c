"""adapters/devpi_api.py and adapters/registry_api.py: how each reads the answers it gets
(pagination, files and their test records, refusals as clear errors). The answers are
shaped as devpi 6 and Distribution's registry send them (copied from real replies); the
integration tests talk to the real servers."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from basefactory.adapters.devpi_api import DevpiClient
from basefactory.adapters.registry_api import Registry
from basefactory.plumbing.errors import ServiceError

Handler = Callable[[httpx.Request], httpx.Response]
DEVPI = "http://127.0.0.1:3141"


def devpi(handler: Handler) -> DevpiClient:
    client = DevpiClient(DEVPI)
    client._http = httpx.Client(base_url=DEVPI, transport=httpx.MockTransport(handler))
    return client


def registry(handler: Handler, **kwargs: object) -> Registry:
    client = Registry("http://127.0.0.1:5000", **kwargs)  # type: ignore[arg-type]
    client.retries._inner = httpx.MockTransport(handler)
    return client


def link(rel: str, href: str, **extra: object) -> dict[str, object]:
    return {"rel": rel, "href": href, "hash_spec": "sha256=ab", "hashes": {"sha256": "ab"},
            "log": [], **extra}


OWN = f"{DEVPI}/factory/p1/+f/d7d/790457de3f85e/ext-1.0+p1-cp311-cp311-linux_x86_64.whl"
INHERITED = f"{DEVPI}/factory/common/+f/111/2222/ext-1.0-py3-none-any.whl"
PROJECT = {"result": {"1.0": {"name": "ext", "version": "1.0", "+links": [
    link("releasefile", OWN),
    link("toxresult", f"{OWN}.toxresult-20261130215756-0", for_href=OWN),
    link("toxresult", f"{OWN}.toxresult-20261130215757-1", for_href=OWN),
    link("releasefile", INHERITED),
    link("doczip", f"{DEVPI}/factory/p1/+f/333/ext-1.0.doc.zip"),
]}}}


def test_release_files_are_the_index_own_with_their_test_records() -> None:
    seen = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json=PROJECT)

    files = devpi(answer).release_files("factory/p1", "Ext_Name")
    assert seen == ["/factory/p1/ext-name"]  # the normalized name
    assert [(f.filename, f.version, f.sha256) for f in files] == [
        ("ext-1.0+p1-cp311-cp311-linux_x86_64.whl", "1.0", "ab")]
    assert files[0].toxresults == (f"{OWN}.toxresult-20261130215756-0",
                                   f"{OWN}.toxresult-20261130215757-1")
    both = devpi(answer).release_files("factory/p1", "ext", inherited=True)
    assert [f.url for f in both] == [OWN, INHERITED] and both[1].toxresults == ()


def test_a_missing_project_has_no_files_and_a_server_error_is_named() -> None:
    assert devpi(lambda r: httpx.Response(404)).release_files("factory/p1", "x") == []
    with pytest.raises(ServiceError, match="devpi GET /factory/p1/x answered 502"):
        devpi(lambda r: httpx.Response(502)).release_files("factory/p1", "x")


def test_the_simple_page_lists_versions_of_wheels_and_sdists_only() -> None:
    page = ('<a href="../../+f/1/x-1.0-py3-none-any.whl#sha256=1">x-1.0-py3-none-any.whl</a>'
            '<a href="../../+f/2/x-1.1.tar.gz#sha256=2">x-1.1.tar.gz</a>'
            '<a href="../../+f/3/x-2.0+p1-cp311-cp311-linux_x86_64.whl">'
            'x-2.0+p1-cp311-cp311-linux_x86_64.whl</a>'
            '<a href="x">not-a-dist.txt</a><a href="y">broken-name.whl</a>')
    client = devpi(lambda r: httpx.Response(200, text=page))
    assert client.simple_versions("factory/p1", "x") == {"1.0", "1.1", "2.0+p1"}
    assert devpi(lambda r: httpx.Response(404)).simple_versions("factory/p1", "x") == set()


def test_serial_comes_from_devpis_header_and_its_absence_is_named() -> None:
    assert devpi(lambda r: httpx.Response(200, headers={"X-Devpi-Serial": "42"})).serial() == 42
    with pytest.raises(ServiceError, match="sent no X-Devpi-Serial: is it devpi"):
        devpi(lambda r: httpx.Response(200)).serial()


def test_custom_data_that_is_not_json_reads_as_empty() -> None:
    config = {"result": {"type": "stage", "custom_data": "{not json"}}
    assert devpi(lambda r: httpx.Response(200, json=config)).custom_data("factory/p1") == {}


def test_an_index_is_changed_with_its_settable_keys_only() -> None:
    """devpi refuses a PATCH carrying read-only keys (projects, ...): only settings go."""
    sent: list[tuple[str, dict[str, object]]] = []
    current = {"type": "stage", "bases": ["root/pypi"], "volatile": False, "title": "old",
               "projects": ["a", "b"], "acl_upload": ["factory"]}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"result": current})
        sent.append((request.method, json.loads(request.content)))
        return httpx.Response(200, json={"result": {}})

    assert not devpi(answer).ensure_index("factory/p1", title="new", bases=["root/pypi"])
    assert sent == [("PATCH", {"type": "stage", "bases": ["root/pypi"], "volatile": False,
                               "title": "new", "acl_upload": ["factory"]})]
    sent.clear()
    assert not devpi(answer).ensure_index("factory/p1", title="old")
    assert sent == []  # nothing to change: no write


def test_a_refused_write_names_the_credentials() -> None:
    answer = httpx.Response(403, json={"message": "user factory may not upload"})
    with pytest.raises(ServiceError) as caught:
        devpi(lambda r: answer).push("factory/staging", name="x", version="1", target="factory/p1")
    assert "devpi refused PUSH /factory/staging (403): user factory may not upload" in str(
        caught.value)
    assert "credentials" in caught.value.hint


def test_devpi_not_answering_says_to_start_it() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(ServiceError) as caught:
        devpi(down).index_config("factory/p1")
    assert "devpi at http://127.0.0.1:3141 is not answering" in str(caught.value)
    assert "basefactory up" in caught.value.hint


def test_registry_listings_follow_the_link_header_across_pages() -> None:
    pages = {"/v2/_catalog": [({"repositories": ["factory/a", "factory/b"]},
                               '</v2/_catalog?last=factory/b&n=2>; rel="next"'),
                              ({"repositories": ["factory/c"]}, None)]}

    def answer(request: httpx.Request) -> httpx.Response:
        body, nxt = pages[request.url.path].pop(0)
        return httpx.Response(200, json=body, headers={"Link": nxt} if nxt else {})

    assert registry(answer).repositories() == ["factory/a", "factory/b", "factory/c"]


def test_tags_of_a_missing_repository_are_none_and_come_sorted() -> None:
    assert registry(lambda r: httpx.Response(404)).tags("factory/x") == []
    assert registry(lambda r: httpx.Response(200, json={"tags": ["p1-2", "p1", "p1-1"]})
                    ).tags("factory/x") == ["p1", "p1-1", "p1-2"]
    # a repository whose tags were all deleted lists null
    assert registry(lambda r: httpx.Response(200, json={"tags": None})).tags("factory/x") == []


def test_a_manifest_keeps_its_bytes_digest_and_layer_sizes() -> None:
    body = {"schemaVersion": 2, "config": {"digest": "sha256:c"},
            "layers": [{"digest": "sha256:1", "size": 10}, {"digest": "sha256:2", "size": 32}]}
    raw = json.dumps(body, indent=3).encode()  # as sent: re-serialized JSON changes the digest

    def answer(request: httpx.Request) -> httpx.Response:
        assert "application/vnd.oci.image.manifest.v1+json" in request.headers["Accept"]
        return httpx.Response(200, content=raw, headers={
            "Docker-Content-Digest": "sha256:m",
            "Content-Type": "application/vnd.oci.image.manifest.v1+json"})

    found = registry(answer).manifest("factory/x", "p1")
    assert found is not None and found.raw == raw and found.digest == "sha256:m"
    assert found.config_digest == "sha256:c" and found.size == 42
    assert registry(lambda r: httpx.Response(404)).manifest("factory/x", "p1") is None


def test_refused_credentials_say_where_the_password_lives() -> None:
    with pytest.raises(ServiceError) as caught:
        registry(lambda r: httpx.Response(401)).repositories()
    assert "refused an anonymous client (no credentials found) (GET /v2/_catalog: 401)" \
        in str(caught.value)
    assert "secrets/registry-password" in caught.value.hint


def test_an_index_read_in_one_request_where_devpi_has_the_plugin() -> None:
    record = json.dumps({"kind": "wheel-test", "passed": True})
    answer = {"result": {"files": [{
        "project": "Ext", "version": "1.0", "href": OWN, "sha256": "ab",
        "toxresults": [{"href": f"{OWN}.toxresult-1", "record": record}]}]}}
    paths = []

    def plugin(request: httpx.Request) -> httpx.Response:
        paths.append(f"{request.method} {request.url.path}")
        return httpx.Response(200, json=answer)

    found = devpi(plugin).index_wheels("factory/p1")
    assert paths == ["GET /factory/p1/+basefactory/wheels"]
    assert found is not None
    files, records = found
    assert [(f.project, f.version, f.filename, f.toxresults) for f in files] == [
        ("Ext", "1.0", "ext-1.0+p1-cp311-cp311-linux_x86_64.whl", (f"{OWN}.toxresult-1",))]
    assert records == {f"{OWN}.toxresult-1": record}


def test_two_files_of_one_version_each_keep_their_own_records() -> None:
    """Two builds of one version (two build tags, or two platforms' wheels): each file's
    records are its own, never the other's."""
    other = OWN.replace("+p1-cp311", "+p1-1-cp311")
    answer = {"result": {"files": [
        {"project": "Ext", "version": "1.0", "href": href, "sha256": sha,
         "toxresults": [{"href": f"{href}.toxresult-{n}", "record": f'{{"n": {n}}}'}]}
        for n, (href, sha) in enumerate([(OWN, "ab"), (other, "cd")])]}}
    found = devpi(lambda r: httpx.Response(200, json=answer)).index_wheels("factory/p1")
    assert found is not None
    files, records = found
    assert [(f.url, f.sha256, f.toxresults) for f in files] == [
        (OWN, "ab", (f"{OWN}.toxresult-0",)), (other, "cd", (f"{other}.toxresult-1",))]
    assert records == {f"{OWN}.toxresult-0": '{"n": 0}', f"{other}.toxresult-1": '{"n": 1}'}


@pytest.mark.parametrize("reply", [
    httpx.Response(404, json={"message": "Not Found"}),  # a devpi without the plugin
    httpx.Response(500, text="Internal Server Error"),  # a plugin broken by a devpi upgrade
    httpx.Response(200, json={"result": {"type": "stage"}}),  # something else answered
])
def test_without_the_plugin_the_index_is_read_file_by_file(reply: httpx.Response) -> None:
    assert devpi(lambda r: reply).index_wheels("factory/p1") is None
