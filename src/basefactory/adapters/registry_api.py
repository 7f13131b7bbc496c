"""OCI distribution v2 client over httpx: repositories, tags, manifests and config labels.

The catalog, the skip logic and publish's read-back all go through here, so a registry
that is down becomes one ServiceError naming the URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from basefactory.adapters import http
from basefactory.adapters.registry_auth import (
    Credentials,
    RegistryAuth,
    RetryAfterTransport,
    parse_challenge,
)
from basefactory.plumbing.errors import PublishRefused, ServiceError

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


class CatalogRefused(ServiceError):
    """The registry serves no `_catalog` (GHCR, ECR, a restricted Harbor)."""


class DeleteRefused(ServiceError):
    """The registry does not let the factory delete manifests."""


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str
    body: dict[str, Any]
    raw: bytes = b""  # as the registry sent it: re-serialized JSON would change the digest

    @property
    def config_digest(self) -> str | None:
        config = self.body.get("config")
        return str(config["digest"]) if isinstance(config, dict) else None

    @property
    def size(self) -> int:
        """Compressed bytes of the image's layers, as the registry stores them."""
        layers = self.body.get("layers") or []
        return sum(int(layer.get("size", 0)) for layer in layers)


class Registry:
    def __init__(self, base_url: str, *, timeout: float = 30.0,
                 auth: RegistryAuth | tuple[str, str] | None = None,
                 tls: http.Tls | None = None, retry_sleep: Callable[[float], None] | None = None
                 ) -> None:
        self.base_url = base_url.rstrip("/")
        self.tls = tls
        if isinstance(auth, tuple):
            given = Credentials(auth[0], auth[1], "the factory's registry password")
            auth = RegistryAuth(lambda: given)
        self.auth = auth
        self._referrers_api: bool | None = None
        self.retries = RetryAfterTransport(http.transport(self.base_url, tls),
                                           sleep=retry_sleep or time.sleep)
        self._http = http.client(self.base_url, timeout=timeout, transport=self.retries,
                                 auth=auth, tls=tls)

    def close(self) -> None:
        self._http.close()
        if self.auth is not None:
            self.auth.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """One request; a registry that does not answer (or whose certificate is not
        trusted) is one ServiceError naming it."""
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(
                http.explain(exc, f"registry {self.base_url}", self.tls),
                hint="run `basefactory up`, or check [registry] in factory.toml",
            ) from None

    def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self._send("GET", path, **kwargs)

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code in (401, 403):
            creds = self.auth.credentials() if self.auth is not None else None
            who = (f"user `{creds.user}` (from {creds.source})" if creds
                   else "an anonymous client (no credentials found)")
            challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
            scope = challenge.params.get("scope") if challenge else None
            error = challenge.params.get("error") if challenge else None
            scope = f"{scope}, {error}" if scope and error else scope
            raise ServiceError(
                f"registry {self.base_url} refused {who}"
                f" ({response.request.method} {response.request.url.path}"
                f"{', needs ' + scope if scope else ''}: {response.status_code})",
                hint="give the factory a user with these rights: [registry] user and"
                     " password_env in factory.toml, else the Docker client's login"
                     " (`docker login`); the embedded registry's password is"
                     " .factory/secrets/registry-password, which `basefactory up` sets",
            )
        if response.status_code == 429:
            raise ServiceError(
                f"registry {self.base_url} kept answering 429 Too Many Requests"
                f" ({response.request.method} {response.request.url.path}) after"
                f" {self.retries.waited_s:.0f} s of waiting as it asked",
                hint="the registry's rate limit is lower than this publish needs: raise it,"
                     " or publish with fewer --jobs")
        if response.status_code >= 400:
            raise ServiceError(
                f"registry {response.request.method} {response.request.url} answered {response.status_code}:"
                f" {response.text[:300]}"
            )
        return response

    def ping(self) -> bool:
        """Answering and accepting this client's credentials (or none, if it has none)."""
        return self.ping_status() == 200

    def ping_status(self, *, anonymous: bool = False) -> int | None:
        """/v2/'s status code (401: credentials needed or refused); None: not answering."""
        try:
            if anonymous:
                with httpx.Client(verify=http.verify_for(self.base_url, self.tls),
                                  timeout=2.0) as bare:
                    return bare.get(f"{self.base_url}/v2/").status_code
            return self._http.get("/v2/", timeout=2.0).status_code
        except httpx.HTTPError:
            return None

    def repositories(self) -> list[str]:
        """Every repository of the registry (its `_catalog`); a registry that serves none
        (GHCR, ECR, registries that restrict it) raises CatalogRefused, and callers list
        the repositories the factory's image definitions name instead."""
        repos: list[str] = []
        url: str | None = "/v2/_catalog?n=1000"
        while url:
            response = self._get(url)
            refused = response.status_code in (403, 404, 405) or (
                response.status_code == 401 and "insufficient_scope" in
                response.headers.get("WWW-Authenticate", ""))
            if refused and not repos:
                raise CatalogRefused(f"registry {self.base_url} lists no repositories"
                                     f" (GET /v2/_catalog answered {response.status_code})")
            repos.extend(self._check(response).json().get("repositories") or [])
            url = _next_link(response)
        return repos

    def tags(self, repository: str) -> list[str]:
        tags: list[str] = []
        url: str | None = f"/v2/{repository}/tags/list?n=1000"
        while url:
            response = self._get(url)
            if response.status_code == 404:
                return []
            self._check(response)
            tags.extend(response.json().get("tags") or [])
            url = _next_link(response)
        return sorted(tags)

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        response = self._get(
            f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}
        )
        if response.status_code == 404:
            return None
        self._check(response)
        return Manifest(
            digest=response.headers.get("Docker-Content-Digest", ""),
            media_type=response.headers.get("Content-Type", ""),
            body=response.json(),
            raw=response.content,
        )

    def _head_manifest(self, repository: str, reference: str) -> httpx.Response | None:
        response = self._send("HEAD", f"/v2/{repository}/manifests/{reference}",
                              headers={"Accept": MANIFEST_TYPES})
        return None if response.status_code == 404 else self._check(response)

    def digest(self, repository: str, reference: str) -> str | None:
        response = self._head_manifest(repository, reference)
        return None if response is None else response.headers.get("Docker-Content-Digest")

    def delete(self, repository: str, digest: str) -> bool:
        """Delete a manifest by digest (every tag on it goes); False if it was not there."""
        response = self._send("DELETE", f"/v2/{repository}/manifests/{digest}")
        if response.status_code == 404:
            return False
        if response.status_code in (405, 403) or (
                response.status_code == 401 and "insufficient_scope" in
                response.headers.get("WWW-Authenticate", "")):
            raise DeleteRefused(
                f"registry {self.base_url} refuses deletes (DELETE {repository}@{digest}"
                f" answered {response.status_code})",
                hint="enable deletes in the registry (distribution: storage.delete.enabled;"
                     " Harbor, GitLab: a user or robot with delete rights), or let the"
                     " registry's own retention policy prune; `prune --dry-run` lists"
                     " what the factory would delete")
        self._check(response)
        return True

    def descriptor(self, repository: str, reference: str) -> dict[str, Any] | None:
        """An OCI descriptor (mediaType, digest, size) of a manifest, for a `subject`."""
        response = self._head_manifest(repository, reference)
        if response is None:
            return None
        return {"mediaType": response.headers.get("Content-Type", "").split(";")[0],
                "digest": response.headers["Docker-Content-Digest"],
                "size": int(response.headers.get("Content-Length", "0"))}

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """The OCI 1.1 referrers API's manifests pointing at `digest`; None where the
        registry has no such API (the caller reads the fallback tag instead)."""
        if self._referrers_api is False:
            return None  # asked once: a registry does not grow the API mid-run
        response = self._get(f"/v2/{repository}/referrers/{digest}",
                             headers={"Accept": "application/vnd.oci.image.index.v1+json"})
        self._referrers_api = response.status_code == 200 and response.headers.get(
            "Content-Type", "").startswith("application/vnd.oci.image.index.v1+json")
        if not self._referrers_api:
            return None
        manifests: list[dict[str, Any]] = self._check(response).json().get("manifests") or []
        return manifests

    def _upload_url(self, location: str, digest: str) -> httpx.URL:
        # the Location may carry the registry's own state (`_state=`): keep its query
        return httpx.URL(location).copy_add_param("digest", digest)

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload `data` as a blob in one request (it is small: an SBOM, a config); its
        digest. A blob the repository has is not sent again."""
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if self.has_blob(repository, digest):
            return digest
        started = self._check(self._send("POST", f"/v2/{repository}/blobs/uploads/"))
        self._check(self._send("PUT", self._upload_url(started.headers["Location"], digest),
                               content=data,
                               headers={"Content-Type": "application/octet-stream"}))
        return digest

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Make a blob of `source` one of `repository`'s without sending it (the
        distribution API's cross-repository mount); True when the repository has it."""
        if self.has_blob(repository, digest):
            return True
        response = self._send("POST", f"/v2/{repository}/blobs/uploads/",
                              params={"mount": digest, "from": source})
        if response.status_code == 201:
            return True
        self._check(response)
        location = response.headers.get("Location")
        if response.status_code == 202 and location:  # an upload was opened instead
            # an upload left open expires in the registry
            with contextlib.suppress(httpx.HTTPError):
                self._http.delete(location)
        return False

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self._send("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code in (401, 403):
            self._check(response)
        return response.status_code == 200

    def read_blob(self, repository: str, digest: str, sink: Callable[[bytes], object],
                  *, chunk: int = 1 << 20) -> None:
        """Stream a blob (a layer of GBs) into `sink`, a chunk at a time."""
        try:
            with self._http.stream("GET", f"/v2/{repository}/blobs/{digest}",
                                   follow_redirects=True, timeout=None) as response:
                self._check(response)
                for data in response.iter_bytes(chunk):
                    sink(data)
        except httpx.HTTPError as exc:
            raise ServiceError(http.explain(exc, f"registry {self.base_url}", self.tls)) from None

    def upload_blob(self, repository: str, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Upload a blob of unknown size as it is produced (the distribution API's chunked
        upload: POST, a PATCH per chunk, PUT with the digest); (digest, size). Nothing is
        visible under the digest before the last PUT."""
        sha, size = hashlib.sha256(), 0
        location = self._check(self._send(
            "POST", f"/v2/{repository}/blobs/uploads/")).headers["Location"]
        for data in chunks:
            sha.update(data)
            size += len(data)
            location = self._check(self._send(
                "PATCH", location, content=data, timeout=None,
                headers={"Content-Type": "application/octet-stream"})).headers["Location"]
        digest = f"sha256:{sha.hexdigest()}"
        self._check(self._send("PUT", self._upload_url(location, digest), timeout=None))
        return digest, size

    def push_manifest(self, repository: str, reference: str, body: bytes,
                      media_type: str) -> str:
        """PUT a manifest under a tag or its digest; the digest the registry gives it."""
        response = self._send("PUT", f"/v2/{repository}/manifests/{reference}", content=body,
                              headers={"Content-Type": media_type})
        if response.status_code >= 400 and not reference.startswith("sha256:") and \
                _IMMUTABLE.search(response.text):
            raise PublishRefused(
                f"registry {self.base_url} keeps {repository}:{reference} immutable",
                hint="the factory moves this tag on every build: exclude the moving tags"
                     " (e.g. cpu-py311-torch2.13) from the registry's tag immutability"
                     " rule, and keep the dated immutable tags immutable")
        self._check(response)
        return str(response.headers.get("Docker-Content-Digest")
                   or f"sha256:{hashlib.sha256(body).hexdigest()}")

    def blob(self, repository: str, digest: str, *, timeout: float | None = None) -> bytes:
        kwargs: dict[str, Any] = {"timeout": timeout} if timeout else {}
        return self._check(self._get(f"/v2/{repository}/blobs/{digest}",
                                     follow_redirects=True, **kwargs)).content

    def blob_json(self, repository: str, digest: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.blob(repository, digest))
        return data

    def labels(self, repository: str, reference: str) -> dict[str, str]:
        manifest = self.manifest(repository, reference)
        if manifest is None or manifest.config_digest is None:
            return {}
        config = self.blob_json(repository, manifest.config_digest)
        return dict((config.get("config") or {}).get("Labels") or {})


# Harbor: 412 "…is immutable, cannot be overwritten"; ECR: ImageTagAlreadyExistsException
_IMMUTABLE = re.compile(r"immutable|ImageTagAlreadyExists", re.IGNORECASE)


def _next_link(response: httpx.Response) -> str | None:
    link = str(response.headers.get("Link") or "")
    if 'rel="next"' not in link:
        return None
    return link.split(";")[0].strip().strip("<>")
