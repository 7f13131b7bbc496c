"""How the registry client authenticates: HTTP Basic, or Docker's token flow.

Registries that delegate auth (Harbor, GitLab, GHCR, Quay, Docker Hub, the distribution
registry with `auth: token`) answer 401 with `WWW-Authenticate: Bearer realm=…,
service=…,scope=…`; the client then asks the realm for a token covering exactly the scopes
the call needs and sends it as `Authorization: Bearer`. This is Docker's token
authentication specification, written here as one httpx.Auth (~150 lines) because the
maintained Python registry clients (oras-py, python-dxf) speak it over requests, not the
httpx client every adapter of the factory shares (DESIGN.md, "Registries").

A token is cached per scope set until shortly before it expires, so a no-op publish asks
the realm once per repository, not once per request. Once a registry has shown a Bearer
challenge, later requests carry a token from the start (no 401 round trip each); a 401
with a token (expired, revoked) drops it and asks again, at most twice.
"""

from __future__ import annotations

import base64
import email.utils
import re
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import httpx

from basefactory.plumbing.errors import ServiceError

# a token whose expiry is this close is not sent: the request may reach the registry late
EXPIRY_MARGIN_S = 10.0
# the spec's default when the realm's answer names no lifetime
DEFAULT_TOKEN_LIFETIME_S = 60.0
_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
_REPO_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)(?:/|$)")


@dataclass(frozen=True)
class Credentials:
    user: str
    secret: str
    # where they came from, for error messages ("$BASEFACTORY_REGISTRY_PASSWORD",
    # "docker-credential-ecr-login"): never the secret itself
    source: str

    def __repr__(self) -> str:  # a traceback or a log line never shows the secret
        return f"Credentials(user={self.user!r}, source={self.source!r})"


@dataclass(frozen=True)
class Challenge:
    scheme: str  # "basic" or "bearer"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """`Bearer realm="…",service="…",scope="…"` (or `Basic realm=…`) as a Challenge."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in _PARAM.finditer(rest)}
    return Challenge(scheme.lower(), params)


def scopes_for(request: httpx.Request) -> tuple[str, ...]:
    """The scopes a registry call needs, as the specification spells them: pull for reads,
    pull,push for writes, delete for DELETE, the source's pull for a cross-repository
    mount, registry:catalog:* for the catalog; none for /v2/ itself."""
    path = request.url.path
    if path.startswith("/v2/_catalog"):
        return ("registry:catalog:*",)
    m = _REPO_PATH.match(path)
    if m is None:
        return ()
    name = m.group("name")
    method = request.method.upper()
    if method in ("GET", "HEAD"):
        actions = "pull"
    elif method == "DELETE":
        actions = "delete"
    else:
        actions = "pull,push"
    scopes = [f"repository:{name}:{actions}"]
    source = request.url.params.get("from")
    if request.url.params.get("mount") and source and source != name:
        scopes.append(f"repository:{source}:pull")
    return tuple(scopes)


@dataclass
class _Token:
    value: str
    expires_at: float


class RegistryAuth(httpx.Auth):
    """Basic or Bearer, whichever the registry asks for. `credentials` is called at most
    once, when a challenge first needs them (a credential helper is a process)."""

    def __init__(self, credentials: Callable[[], Credentials | None], *,
                 verify: object = True, clock: Callable[[], float] = time.monotonic,
                 token_transport: httpx.BaseTransport | None = None) -> None:
        self._get_credentials = credentials
        self._token_transport = token_transport
        self._credentials: Credentials | None = None
        self._credentials_read = False
        self._verify = verify
        self._clock = clock
        self._lock = threading.RLock()
        self._bearer: dict[str, str] | None = None  # the realm's challenge params, once seen
        self._basic = False
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self.tokens_fetched = 0  # for the bench and the tests: the realm's load
        self._realm_client: httpx.Client | None = None

    def close(self) -> None:
        if self._realm_client is not None:
            self._realm_client.close()

    def credentials(self) -> Credentials | None:
        with self._lock:
            if not self._credentials_read:
                self._credentials = self._get_credentials()
                self._credentials_read = True
            return self._credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scopes = scopes_for(request)
        if self._bearer is not None:
            request.headers["Authorization"] = f"Bearer {self._token(scopes)}"
        elif self._basic:
            self._set_basic(request)
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None:
            return
        if challenge.scheme == "basic":
            if self._basic or self.credentials() is None:
                return  # refused: the caller names the credentials' source
            self._basic = True
            self._set_basic(request)
            yield request
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return
        # the challenge may name more than this client derived (a registry's own rule)
        wanted = tuple(dict.fromkeys(scopes + tuple(
            (challenge.params.get("scope") or "").split())))
        for _ in range(2):
            with self._lock:
                self._bearer = challenge.params
                # expired, revoked, or issued by a realm whose clock runs ahead: a new
                # one, at most twice (a realm that keeps issuing bad ones is an error)
                self._tokens.pop(tuple(sorted(wanted)), None)
            request.headers["Authorization"] = f"Bearer {self._token(wanted)}"
            response = yield request
            again = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            if response.status_code != 401 or again is None or \
                    again.params.get("error") != "invalid_token":
                return

    def _set_basic(self, request: httpx.Request) -> None:
        creds = self.credentials()
        if creds is not None:
            pair = base64.b64encode(f"{creds.user}:{creds.secret}".encode()).decode()
            request.headers["Authorization"] = f"Basic {pair}"

    def _token(self, scopes: tuple[str, ...]) -> str:
        key = tuple(sorted(scopes))
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.expires_at - EXPIRY_MARGIN_S > self._clock():
                return cached.value
            assert self._bearer is not None
            token = self._fetch(self._bearer, key)
            self._tokens[key] = token
            return token.value

    def _fetch(self, challenge: dict[str, str], scopes: tuple[str, ...]) -> _Token:
        realm = challenge["realm"]
        creds = self.credentials()
        params: list[tuple[str, str]] = []
        if challenge.get("service"):
            params.append(("service", challenge["service"]))
        params += [("scope", s) for s in scopes]
        auth = httpx.BasicAuth(creds.user, creds.secret) if creds else None
        started = self._clock()
        if self._realm_client is None:
            # one client for the realm, kept: its connection is reused by the next scope
            self._realm_client = httpx.Client(verify=self._verify, timeout=30.0,  # type: ignore[arg-type]
                                              transport=self._token_transport)
        client = self._realm_client
        try:
            if creds is not None and creds.user == "<token>":
                # a refresh token from `docker login` (identitytoken): OAuth2's grant
                response = client.post(realm, data={
                    "grant_type": "refresh_token", "refresh_token": creds.secret,
                    "service": challenge.get("service", ""), "scope": " ".join(scopes),
                    "client_id": "basefactory"})
            else:
                response = client.get(realm, params=params, auth=auth)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise ServiceError(f"the registry's token server {realm} is not answering"
                               f" ({type(exc).__name__}: {exc})",
                               hint="the registry names it in its WWW-Authenticate header;"
                                    " is it reachable from here?") from None
        who = f"user `{creds.user}` (from {creds.source})" if creds else "no credentials"
        if response.status_code in (401, 403):
            raise ServiceError(
                f"the registry's token server {realm} refused {who}"
                f" for {' '.join(scopes) or 'login'}",
                hint="check the password (factory.toml [registry] password_env, or"
                     " `docker login` for the Docker client's config)")
        if response.status_code != 200:
            raise ServiceError(f"the registry's token server {realm} answered"
                               f" {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
            value = str(body.get("token") or body["access_token"])
            lifetime = float(body.get("expires_in") or DEFAULT_TOKEN_LIFETIME_S)
        except (ValueError, KeyError, TypeError):
            raise ServiceError(f"the registry's token server {realm} sent no token"
                               f" ({response.text[:200]})") from None
        self.tokens_fetched += 1
        return _Token(value, started + lifetime)


def retry_after_s(response: httpx.Response, *, default: float, cap: float) -> float:
    """Seconds a 429 (or 503) asks to wait: Retry-After in seconds or as an HTTP date."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        seconds = when.timestamp() - time.time() if when is not None else default
    return max(0.0, min(seconds, cap))


class RetryAfterTransport(httpx.BaseTransport):
    """Waits out a registry's `429 Too Many Requests` (its Retry-After, capped) and sends
    the request again, a bounded number of times; then the 429 reaches the caller."""

    def __init__(self, inner: httpx.BaseTransport, *, attempts: int = 5,
                 cap_s: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self._inner = inner
        self._attempts = attempts
        self._cap_s = cap_s
        self._sleep = sleep
        self.waited_s = 0.0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(1, self._attempts + 1):
            response = self._inner.handle_request(request)
            if response.status_code != 429 or attempt == self._attempts:
                return response
            wait = retry_after_s(response, default=float(attempt), cap=self._cap_s)
            response.close()
            self.waited_s += wait
            self._sleep(wait)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._inner.close()
