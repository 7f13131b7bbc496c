"""adapters/registry_auth.py: Docker's token authentication specification, case by case
(challenge, scopes, cache, expiry, renewal, refusals), Basic for registries that ask for
Basic, and 429's Retry-After. The registry and the realm here are in-memory handlers that
answer as the distribution registry and a token server do (the headers are copied from the
real ones); tests/integration/test_external_services.py runs the same flow against the
real registry with `auth: token` over TLS."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from basefactory.adapters.registry_api import CatalogRefused, DeleteRefused, Registry
from basefactory.adapters.registry_auth import (
    Credentials,
    RegistryAuth,
    RetryAfterTransport,
    parse_challenge,
    retry_after_s,
    scopes_for,
)
from basefactory.plumbing.errors import PublishRefused, ServiceError

BASE = "http://127.0.0.1:5000"
REALM = "http://127.0.0.1:5999/token"
GOOD = Credentials("ci", "s3cret", "$BASEFACTORY_REGISTRY_PASSWORD")


@dataclass
class TokenWorld:
    """A registry with `auth: token` and its realm, in memory."""

    valid: set[str] = field(default_factory=set)  # tokens the registry accepts now
    grants: dict[str, list[str]] = field(default_factory=dict)  # token -> scopes
    asked: list[list[str]] = field(default_factory=list)  # scopes of each token request
    registry_calls: list[tuple[str, str, str | None]] = field(default_factory=list)
    password: str = "s3cret"
    lifetime: int = 300

    def realm(self, request: httpx.Request) -> httpx.Response:
        user, _, password = base64.b64decode(
            request.headers["Authorization"].split()[1]).decode().partition(":")
        if password != self.password:
            return httpx.Response(401, json={"details": "bad credentials"})
        assert request.url.params["service"] == "registry.test"
        scopes = request.url.params.get_list("scope")
        self.asked.append(scopes)
        token = f"t{len(self.asked)}"
        self.valid.add(token)
        self.grants[token] = scopes
        return httpx.Response(200, json={"token": token, "expires_in": self.lifetime})

    def registry(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("Authorization", "")
        token = header.split()[1] if header.startswith("Bearer ") else None
        self.registry_calls.append((request.method, request.url.path, token))
        needed = scopes_for(request)
        if token is None or token not in self.valid:
            error = ',error="invalid_token"' if token else ""
            scope = f',scope="{" ".join(needed)}"' if needed else ""
            return httpx.Response(401, headers={"WWW-Authenticate":
                                  f'Bearer realm="{REALM}",service="registry.test"{scope}{error}'})
        if any(s not in self.grants[token] for s in needed):
            return httpx.Response(401, headers={"WWW-Authenticate":
                                  f'Bearer realm="{REALM}",service="registry.test",'
                                  f'scope="{" ".join(needed)}",error="insufficient_scope"'})
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Docker-Content-Digest": "sha256:ab"})
        return httpx.Response(200, json={"tags": ["p1"], "repositories": ["factory/x"]})


def client(world: TokenWorld, creds: Credentials | None = GOOD,
           now: list[float] | None = None) -> Registry:
    clock = now or [0.0]
    auth = RegistryAuth(lambda: creds, clock=lambda: clock[0],
                        token_transport=httpx.MockTransport(world.realm))
    registry = Registry(BASE, auth=auth)
    registry.retries._inner = httpx.MockTransport(world.registry)
    return registry


def request(method: str, path: str) -> httpx.Request:
    return httpx.Request(method, f"{BASE}{path}")


def test_scopes_are_exactly_what_each_call_needs() -> None:
    assert scopes_for(request("GET", "/v2/")) == ()
    assert scopes_for(request("GET", "/v2/_catalog?n=1000")) == ("registry:catalog:*",)
    assert scopes_for(request("HEAD", "/v2/factory/tts-deps/manifests/p1")) == (
        "repository:factory/tts-deps:pull",)
    assert scopes_for(request("PUT", "/v2/factory/x/manifests/p1")) == (
        "repository:factory/x:pull,push",)
    assert scopes_for(request("PATCH", "/v2/a/b/c/blobs/uploads/u1?_state=z")) == (
        "repository:a/b/c:pull,push",)
    assert scopes_for(request("DELETE", "/v2/factory/x/manifests/sha256:ab")) == (
        "repository:factory/x:delete",)
    mount = request("POST", "/v2/factory-zstd/x/blobs/uploads/?mount=sha256:ab&from=factory/x")
    assert scopes_for(mount) == ("repository:factory-zstd/x:pull,push",
                                 "repository:factory/x:pull")
    assert scopes_for(request("GET", "/v2/factory/x/tags/list")) == ("repository:factory/x:pull",)


def test_a_challenge_is_parsed_with_commas_inside_quotes() -> None:
    found = parse_challenge('Bearer realm="https://auth.example/token",service="reg",'
                            'scope="repository:a:pull,push repository:b:pull",error="invalid_token"')
    assert found is not None
    assert found.scheme == "bearer"
    assert found.params == {"realm": "https://auth.example/token", "service": "reg",
                            "scope": "repository:a:pull,push repository:b:pull",
                            "error": "invalid_token"}
    basic = parse_challenge('Basic realm=basefactory')
    assert basic is not None and basic.scheme == "basic" and basic.params == {"realm": "basefactory"}


def test_a_token_is_fetched_once_per_scope_and_sent_from_then_on() -> None:
    world = TokenWorld()
    registry = client(world)
    assert registry.tags("factory/x") == ["p1"]
    assert registry.tags("factory/x") == ["p1"]
    assert registry.digest("factory/x", "p1") == "sha256:ab"
    assert world.asked == [["repository:factory/x:pull"]]
    # one 401 to learn the realm; every later call carries the cached token at once
    assert [t for _, _, t in world.registry_calls] == [None, "t1", "t1", "t1"]
    registry.tags("factory/y")
    assert world.asked[-1] == ["repository:factory/y:pull"]
    assert registry.auth is not None and registry.auth.tokens_fetched == 2


def test_a_token_near_its_expiry_is_replaced_before_it_is_sent() -> None:
    world = TokenWorld(lifetime=60)
    now = [0.0]
    registry = client(world, now=now)
    registry.tags("factory/x")
    now[0] = 45.0  # inside the margin: the registry might see it expired
    registry.tags("factory/x")
    assert len(world.asked) == 1
    now[0] = 55.0
    registry.tags("factory/x")
    assert len(world.asked) == 2
    assert world.registry_calls[-1][2] == "t2"


def test_a_token_the_registry_stops_taking_mid_run_is_renewed_once() -> None:
    world = TokenWorld()
    registry = client(world)
    registry.tags("factory/x")
    world.valid.clear()  # revoked, or the registry's clock ran ahead
    assert registry.tags("factory/x") == ["p1"]
    assert [t for _, _, t in world.registry_calls] == [None, "t1", "t1", "t2"]
    world.valid.clear()
    world.password = "rotated"  # and now the realm refuses: an error, not a loop
    with pytest.raises(ServiceError) as caught:
        registry.tags("factory/x")
    assert f"token server {REALM} refused user `ci` (from $BASEFACTORY_REGISTRY_PASSWORD)" \
        in caught.value.message


def test_a_wrong_password_names_the_realm_and_where_the_password_came_from() -> None:
    world = TokenWorld(password="other")
    with pytest.raises(ServiceError) as caught:
        client(world).manifest("factory/x", "p1")
    assert caught.value.message == (
        f"the registry's token server {REALM} refused user `ci` (from"
        " $BASEFACTORY_REGISTRY_PASSWORD) for repository:factory/x:pull")
    assert "password_env" in (caught.value.hint or "")


def test_a_push_asks_for_push_and_a_missing_right_is_named() -> None:
    world = TokenWorld()
    registry = client(world)
    original = world.realm

    def pull_only(request: httpx.Request) -> httpx.Response:
        response = original(request)
        token = response.json()["token"]
        world.grants[token] = [s.replace(",push", "") for s in world.grants[token]]
        return response

    world.realm = pull_only  # type: ignore[method-assign]
    registry.auth._token_transport = httpx.MockTransport(pull_only)  # type: ignore[union-attr]
    with pytest.raises(ServiceError) as caught:
        registry.push_manifest("factory/x", "p1", b"{}", "application/json")
    assert "refused user `ci` (from $BASEFACTORY_REGISTRY_PASSWORD)" in caught.value.message
    assert "needs repository:factory/x:pull,push" in caught.value.message
    assert world.asked[-1] == ["repository:factory/x:pull,push"]


def test_anonymous_pulls_get_an_anonymous_token() -> None:
    world = TokenWorld()

    def anonymous_realm(request: httpx.Request) -> httpx.Response:
        assert "Authorization" not in request.headers
        world.valid.add("anon")
        world.grants["anon"] = request.url.params.get_list("scope")
        return httpx.Response(200, json={"access_token": "anon"})

    auth = RegistryAuth(lambda: None, token_transport=httpx.MockTransport(anonymous_realm))
    registry = Registry(BASE, auth=auth)
    registry.retries._inner = httpx.MockTransport(world.registry)
    assert registry.tags("factory/x") == ["p1"]


def test_basic_is_sent_where_the_registry_asks_for_basic() -> None:
    seen: list[str | None] = []

    def basic_registry(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(b"ci:s3cret").decode():
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="basefactory"'})
        return httpx.Response(200, json={"tags": ["p1"]})

    registry = Registry(BASE, auth=RegistryAuth(lambda: GOOD))
    registry.retries._inner = httpx.MockTransport(basic_registry)
    registry.tags("a")
    registry.tags("b")
    assert seen[0] is None and seen[1] == seen[2]  # challenged once, then sent at once
    assert len(seen) == 3
    wrong = Registry(BASE, auth=RegistryAuth(lambda: Credentials("ci", "no", "docker-credential-pass")))
    wrong.retries._inner = httpx.MockTransport(basic_registry)
    with pytest.raises(ServiceError) as caught:
        wrong.tags("a")
    assert "refused user `ci` (from docker-credential-pass)" in caught.value.message


def test_a_429_is_waited_out_as_retry_after_asks_and_then_reported() -> None:
    answers = [429, 429, 200]
    waits: list[float] = []

    def limited(request: httpx.Request) -> httpx.Response:
        status = answers.pop(0)
        headers = {"Retry-After": "3"} if status == 429 else {}
        return httpx.Response(status, headers=headers, json={"tags": ["p1"]})

    registry = Registry(BASE, retry_sleep=waits.append)
    registry.retries._inner = httpx.MockTransport(limited)
    assert registry.tags("factory/x") == ["p1"]
    assert waits == [3.0, 3.0]
    always = Registry(BASE, retry_sleep=waits.append)
    always.retries._inner = httpx.MockTransport(lambda r: httpx.Response(429, headers={"Retry-After": "120"}))
    with pytest.raises(ServiceError) as caught:
        always.tags("factory/x")
    assert "kept answering 429 Too Many Requests" in caught.value.message
    assert waits[2:] == [60.0] * 4  # capped, and bounded: 5 tries in all


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after_s(httpx.Response(429, headers={"Retry-After": "7"}), default=1, cap=60) == 7
    assert retry_after_s(httpx.Response(429), default=2, cap=60) == 2
    past = httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert retry_after_s(past, default=1, cap=60) == 0
    transport = RetryAfterTransport(httpx.MockTransport(lambda r: httpx.Response(200)))
    assert transport.handle_request(request("GET", "/v2/")).status_code == 200


def test_registries_that_say_no_get_their_own_errors() -> None:
    def no(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/_catalog":
            return httpx.Response(404, json={"errors": [{"code": "UNSUPPORTED"}]})
        if request.method == "DELETE":
            return httpx.Response(405)
        if request.url.path.endswith("/manifests/p1"):
            return httpx.Response(412, text='{"errors":[{"code":"PRECONDITION","message":'
                                  '"The tag p1 is immutable, cannot be overwritten"}]}')
        return httpx.Response(500)

    registry = Registry(BASE)
    registry.retries._inner = httpx.MockTransport(no)
    with pytest.raises(CatalogRefused):
        registry.repositories()
    with pytest.raises(DeleteRefused) as deleted:
        registry.delete("factory/x", "sha256:ab")
    assert "refuses deletes" in deleted.value.message
    with pytest.raises(PublishRefused) as moved:
        registry.push_manifest("factory/x", "p1", b"{}", "application/json")
    assert "keeps factory/x:p1 immutable" in moved.value.message


def test_the_referrers_api_is_used_where_the_registry_has_it_and_asked_once_where_not() -> None:
    calls: list[str] = []
    index = {"schemaVersion": 2, "manifests": [{"digest": "sha256:sb", "artifactType": "x"}]}

    def with_api(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, content=json.dumps(index).encode(),
                              headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})

    registry = Registry(BASE)
    registry.retries._inner = httpx.MockTransport(with_api)
    assert registry.referrers("factory/x", "sha256:ab") == index["manifests"]
    without = Registry(BASE)
    without.retries._inner = httpx.MockTransport(lambda r: (calls.append(r.url.path), httpx.Response(404))[1])
    assert without.referrers("factory/x", "sha256:ab") is None
    assert without.referrers("factory/y", "sha256:cd") is None
    assert calls == ["/v2/factory/x/referrers/sha256:ab", "/v2/factory/x/referrers/sha256:ab"]


def test_credentials_never_show_their_secret() -> None:
    assert "s3cret" not in repr(GOOD)
    assert "s3cret" not in str(GOOD)


def test_up_finds_a_registry_whose_moving_tags_cannot_move(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An existing registry is probed at `up`: the same tag pushed twice; Harbor's answer to
    the second push under an immutability rule is a configuration error with the way out."""
    from basefactory.daemons import registry_server
    from basefactory.plumbing.errors import ConfigError
    from tests.helpers import small_factory

    factory = small_factory(tmp_path, '[registry]\nembedded = false\nurl = "https://r.example"\n')
    puts: list[str] = []

    def harbor(immutable: bool) -> Registry:
        def answer(request: httpx.Request) -> httpx.Response:
            if request.method == "HEAD":
                return httpx.Response(200)  # the empty config blob is there
            if request.method == "PUT" and "/manifests/" in request.url.path:
                puts.append(request.url.path)
                if immutable and len(puts) > 1:
                    return httpx.Response(412, text='{"errors":[{"code":"PRECONDITION","message":'
                                          '"The tag p1 is immutable, cannot be overwritten"}]}')
                return httpx.Response(201, headers={"Docker-Content-Digest": "sha256:ab"})
            return httpx.Response(500)

        registry = Registry("https://r.example")
        registry.retries._inner = httpx.MockTransport(answer)
        return registry

    monkeypatch.setattr(registry_server, "client", lambda f: harbor(immutable=False))
    registry_server.check_external(factory)
    assert puts == ["/v2/factory-cache/probe/manifests/p1"] * 2
    puts.clear()
    monkeypatch.setattr(registry_server, "client", lambda f: harbor(immutable=True))
    with pytest.raises(ConfigError) as caught:
        registry_server.check_external(factory)
    assert "r.example/factory-cache/probe:p1 could not be moved" in caught.value.message
    assert "keep only the dated tags" in (caught.value.hint or "")
