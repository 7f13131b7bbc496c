"""OCI distribution v2 client over httpx: repositories, tags, manifests and config labels.

The catalog, the skip logic and publish's read-back all go through here, so a registry
that is down becomes one ServiceError naming the URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from basefactory.adapters import http
from basefactory.plumbing.errors import ServiceError

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


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
                 auth: tuple[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = http.client(self.base_url, timeout=timeout)
        if auth is not None:
            self._http.auth = httpx.BasicAuth(*auth)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.get(path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(
                f"registry {self.base_url} is not answering ({type(exc).__name__}: {exc})",
                hint="run `basefactory up`, or check [registry] in factory.toml",
            ) from None

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code == 401:
            raise ServiceError(
                f"registry {self.base_url} refused the factory's credentials"
                f" ({response.request.method} {response.request.url.path})",
                hint="the registry's password is $BASEFACTORY_REGISTRY_PASSWORD or the"
                     " state folder's secrets/registry-password; `basefactory up` sets it",
            )
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
            return self._http.get("/v2/", timeout=2.0,
                                  auth=None if anonymous else httpx.USE_CLIENT_DEFAULT
                                  ).status_code
        except httpx.HTTPError:
            return None

    def repositories(self) -> list[str]:
        repos: list[str] = []
        url: str | None = "/v2/_catalog?n=1000"
        while url:
            response = self._check(self._get(url))
            repos.extend(response.json().get("repositories") or [])
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

    def digest(self, repository: str, reference: str) -> str | None:
        try:
            response = self._http.head(
                f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_TYPES}
            )
        except httpx.HTTPError as exc:
            raise ServiceError(f"registry {self.base_url} is not answering: {exc}") from None
        if response.status_code == 404:
            return None
        self._check(response)
        digest: str | None = response.headers.get("Docker-Content-Digest")
        return digest

    def delete(self, repository: str, digest: str) -> bool:
        """Delete a manifest by digest (every tag on it goes); False if it was not there."""
        try:
            response = self._http.delete(f"/v2/{repository}/manifests/{digest}")
        except httpx.HTTPError as exc:
            raise ServiceError(f"registry {self.base_url} is not answering: {exc}") from None
        if response.status_code == 404:
            return False
        if response.status_code == 405:
            raise ServiceError(f"registry {self.base_url} does not allow deletes",
                               hint="enable storage.delete in the registry's configuration")
        self._check(response)
        return True

    def descriptor(self, repository: str, reference: str) -> dict[str, Any] | None:
        """An OCI descriptor (mediaType, digest, size) of a manifest, for a `subject`."""
        try:
            response = self._http.head(f"/v2/{repository}/manifests/{reference}",
                                       headers={"Accept": MANIFEST_TYPES})
        except httpx.HTTPError as exc:
            raise ServiceError(f"registry {self.base_url} is not answering: {exc}") from None
        if response.status_code == 404:
            return None
        self._check(response)
        return {"mediaType": response.headers.get("Content-Type", "").split(";")[0],
                "digest": response.headers["Docker-Content-Digest"],
                "size": int(response.headers.get("Content-Length", "0"))}

    def push_blob(self, repository: str, data: bytes) -> str:
        """Upload `data` as a blob in one request (it is small: an SBOM, a config); its
        digest. A blob the repository has is not sent again."""
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        try:
            if self._http.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
                return digest
            started = self._check(self._http.post(f"/v2/{repository}/blobs/uploads/"))
            location = started.headers["Location"]
            joiner = "&" if "?" in location else "?"
            self._check(self._http.put(f"{location}{joiner}digest={digest}", content=data,
                                       headers={"Content-Type": "application/octet-stream"}))
        except httpx.HTTPError as exc:
            raise ServiceError(f"registry {self.base_url} is not answering: {exc}") from None
        return digest

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Make a blob of `source` one of `repository`'s without sending it (the
        distribution API's cross-repository mount); True when the repository has it."""
        if self.has_blob(repository, digest):
            return True
        try:
            response = self._http.post(f"/v2/{repository}/blobs/uploads/",
                                       params={"mount": digest, "from": source})
        except httpx.HTTPError as exc:
            raise ServiceError(f"registry {self.base_url} is not answering: {exc}") from None
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
        try:
            return self._http.head(f"/v2/{repository}/blobs/{digest}").status_code == 200
        except httpx.HTTPError as exc:
            raise ServiceError(f"registry {self.base_url} is not answering: {exc}") from None

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
            raise ServiceError(f"registry {self.base_url} is not answering: {exc}") from None

    def upload_blob(self, repository: str, chunks: Iterable[bytes]) -> tuple[str, int]:
        """Upload a blob of unknown size as it is produced (the distribution API's chunked
        upload: POST, a PATCH per chunk, PUT with the digest); (digest, size). Nothing is
        visible under the digest before the last PUT."""
        sha, size = hashlib.sha256(), 0
        try:
            location = self._check(self._http.post(
                f"/v2/{repository}/blobs/uploads/")).headers["Location"]
            for data in chunks:
                sha.update(data)
                size += len(data)
                location = self._check(self._http.patch(
                    location, content=data, timeout=None,
                    headers={"Content-Type": "application/octet-stream"})).headers["Location"]
            digest = f"sha256:{sha.hexdigest()}"
            joiner = "&" if "?" in location else "?"
            self._check(self._http.put(f"{location}{joiner}digest={digest}", timeout=None))
        except httpx.HTTPError as exc:
            raise ServiceError(f"registry {self.base_url} is not answering: {exc}") from None
        return digest, size

    def push_manifest(self, repository: str, reference: str, body: bytes,
                      media_type: str) -> str:
        """PUT a manifest under a tag or its digest; the digest the registry gives it."""
        try:
            response = self._check(self._http.put(
                f"/v2/{repository}/manifests/{reference}", content=body,
                headers={"Content-Type": media_type}))
        except httpx.HTTPError as exc:
            raise ServiceError(f"registry {self.base_url} is not answering: {exc}") from None
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


def _next_link(response: httpx.Response) -> str | None:
    link = str(response.headers.get("Link") or "")
    if 'rel="next"' not in link:
        return None
    return link.split(";")[0].strip().strip("<>")
