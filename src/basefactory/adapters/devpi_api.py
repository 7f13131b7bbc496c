"""devpi's HTTP API over httpx: login, users, indexes, uploads and queries.

The JSON API is devpi's own (the one devpi-client speaks); uploads use the same
multipart `file_upload` action twine sends. Every failure becomes a ServiceError or
PublishRefused that names the URL and what to do.
"""

from __future__ import annotations

import base64
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from basefactory.adapters import http
from basefactory.plumbing.errors import PublishRefused, ServiceError

JSON = {"Accept": "application/json", "Content-Type": "application/json"}


def simple_url(base_url: str, index: str) -> str:
    """An index's simple page (PEP 503), as pip and uv take it: BASE/<user>/<index>/+simple/."""
    return f"{base_url.rstrip('/')}/{index}/+simple/"


@dataclass(frozen=True)
class ReleaseFile:
    project: str
    version: str
    filename: str
    url: str
    sha256: str
    toxresults: tuple[str, ...] = ()  # URLs of test records attached to this file


class DevpiClient:
    def __init__(self, base_url: str, *, timeout: float = 60.0,
                 credentials: tuple[str, str] | None = None,
                 tls: http.Tls | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.tls = tls
        self._http = http.client(self.base_url, timeout=timeout, tls=tls)
        self._auth: dict[str, str] = {}
        self.user: str | None = None
        # logged in on the first request that needs it: a login costs devpi a password
        # hash (~0.2 s), and a no-op publish only reads
        self._credentials = credentials
        self._custom: dict[str, dict[str, Any]] = {}  # index -> custom_data, this process's view

    def _authenticate(self) -> None:
        if not self._auth and self._credentials is not None:
            self.login(*self._credentials)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DevpiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**JSON, **self._auth, **kwargs.pop("headers", {})}
        try:
            return self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(
                http.explain(exc, f"devpi at {self.base_url}", self.tls),
                hint="run `basefactory up`, or check [index] in factory.toml",
            ) from None

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        if method != "GET":
            self._authenticate()
        response = self._request(method, path, **kwargs)
        _raise_for_status(response, refused=f"devpi refused {method} {path}",
                          hint="check the index credentials (BASEFACTORY_INDEX_PASSWORD or the"
                          " secret file)", failed=f"devpi {method} {self.base_url}{path}")
        return response.json().get("result") if response.content else None

    def ping(self) -> bool:
        try:
            return self._http.get("/+api", headers=JSON, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    # --- auth ----------------------------------------------------------------------------

    def login(self, user: str, password: str) -> None:
        response = self._request(
            "POST", "/+login", content=json.dumps({"user": user, "password": password})
        )
        if response.status_code != 200:
            raise ServiceError(
                f"devpi login as `{user}` at {self.base_url} failed ({response.status_code})",
                hint="check the index password (BASEFACTORY_INDEX_PASSWORD or the secret file)",
            )
        token = response.json()["result"]["password"]
        self._auth = {"X-Devpi-Auth": base64.b64encode(f"{user}:{token}".encode()).decode()}
        self.user = user

    # --- users and indexes ---------------------------------------------------------------

    def user_exists(self, user: str) -> bool:
        return self._request("GET", f"/{user}").status_code == 200

    def create_user(self, user: str, password: str) -> None:
        self._json("PUT", f"/{user}", content=json.dumps({"password": password, "email": ""}))

    def set_password(self, user: str, password: str) -> None:
        self._json("PATCH", f"/{user}", content=json.dumps({"password": password}))

    def index_config(self, index: str) -> dict[str, Any] | None:
        response = self._request("GET", f"/{index}")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise ServiceError(f"devpi GET /{index} answered {response.status_code}")
        result: dict[str, Any] = response.json()["result"]
        return result

    def ensure_index(self, index: str, **config: Any) -> bool:
        """Create the index, or bring its settings to `config`; True if it was created."""
        current = self.index_config(index)
        if current is None:
            self._json("PUT", f"/{index}", content=json.dumps({"type": "stage", **config}))
            return True
        changed = {k: v for k, v in config.items() if current.get(k) != v}
        if changed:
            self._json("PATCH", f"/{index}", content=json.dumps({**_settable(current), **changed}))
        return False

    def custom_data(self, index: str) -> dict[str, Any]:
        """An index's custom_data (the platform's fingerprint), read once per client."""
        if index in self._custom:
            return dict(self._custom[index])
        config = self.index_config(index)
        data: dict[str, Any] = {}
        if config and config.get("custom_data"):
            try:
                data = json.loads(config["custom_data"])
            except json.JSONDecodeError:
                data = {}
        self._custom[index] = data
        return dict(data)

    def set_custom_data(self, index: str, data: dict[str, Any]) -> None:
        config = self.index_config(index)
        if config is None:
            raise ServiceError(f"devpi index {index} does not exist", hint="run `basefactory up`")
        payload = {**_settable(config), "custom_data": json.dumps(data, sort_keys=True)}
        try:
            self._json("PATCH", f"/{index}", content=json.dumps(payload))
        except ServiceError as exc:
            if "refused" not in exc.message:
                raise
            raise ServiceError(
                f"devpi at {self.base_url} does not let user `{self.user}` change the settings"
                f" of {index} ({exc.message})",
                hint="the factory keeps the platform's fingerprint there: start devpi-server"
                     f" with --restrict-modify listing `{self.user}` beside root (the"
                     " embedded devpi does), or without --restrict-modify") from None
        self._custom[index] = dict(data)

    # --- releases ------------------------------------------------------------------------

    def upload(self, index: str, path: Path, *, name: str, version: str) -> str:
        """Upload one file; return 'uploaded' or 'identical' (already there, same bytes).

        A different file under a name already published is refused by the non-volatile
        index (409): raised as PublishRefused, never overwritten.
        """
        self._authenticate()
        try:
            with path.open("rb") as fh:
                response = self._http.post(
                    f"/{index}/",
                    headers=self._auth,
                    data={":action": "file_upload", "name": name, "version": version},
                    files={"content": (path.name, fh, "application/octet-stream")},
                    timeout=600.0,
                )
        except httpx.HTTPError as exc:
            raise ServiceError(f"upload of {path.name} to {self.base_url}/{index} failed: {exc}",
                               hint="is devpi up? `basefactory status`") from None
        if response.status_code == 409:
            raise PublishRefused(
                f"{index} already holds a different {path.name}; published files are never"
                " overwritten",
                hint="change the recipe's inputs so that the build gets a new build tag",
            )
        _raise_for_status(response, refused=f"devpi refused the upload of {path.name} to {index}",
                          hint="uploads need the factory user's credentials",
                          failed=f"upload of {path.name} to {index}")
        return "identical" if "identical" in response.text else "uploaded"

    def push(self, index: str, *, name: str, version: str, target: str) -> None:
        """devpi's push: every file of NAME VERSION on `index`, with the test records
        attached to it, copied to `target` in one transaction of the server (a file never
        shows on `target` without its records)."""
        self._json("PUSH", f"/{index}",
                   content=json.dumps({"name": name, "version": version, "targetindex": target}))

    def delete_version(self, index: str, name: str, version: str) -> None:
        """Remove NAME VERSION and its files from a volatile index; absent is fine."""
        self._authenticate()
        response = self._request("DELETE", f"/{index}/{canonicalize_name(name)}/{version}")
        if response.status_code not in (200, 201, 404):
            raise ServiceError(f"devpi DELETE {index}/{name}/{version} answered"
                               f" {response.status_code}: {_message(response)}")

    def serial(self) -> int:
        """devpi's change serial: it grows with every write, so an unchanged serial means
        nothing on the server changed (a replica reports the serial it has applied)."""
        response = self._request("GET", "/+api")
        try:
            return int(response.headers["X-Devpi-Serial"])
        except (KeyError, ValueError):
            raise ServiceError(f"{self.base_url}/+api sent no X-Devpi-Serial: is it devpi?",
                               hint="check [index] url in factory.toml") from None

    def projects(self, index: str) -> list[str]:
        """Projects that live in this index itself (not inherited from bases)."""
        result = self._json("GET", f"/{index}")
        return sorted(result.get("projects") or [])

    def release_files(self, index: str, project: str, *, inherited: bool = False
                      ) -> list[ReleaseFile]:
        """Files of `project` in `index` itself (with `inherited`, its bases' too)."""
        response = self._request("GET", f"/{index}/{canonicalize_name(project)}")
        if response.status_code == 404:
            return []
        if response.status_code >= 400:
            raise ServiceError(f"devpi GET /{index}/{project} answered {response.status_code}")
        files = []
        for version, meta in (response.json().get("result") or {}).items():
            links = meta.get("+links") or []
            results: dict[str, list[str]] = {}
            for link in links:
                if link.get("rel") == "toxresult" and link.get("for_href"):
                    results.setdefault(link["for_href"], []).append(link["href"])
            for link in links:
                if link.get("rel") != "releasefile":
                    continue
                if not inherited and f"/{index}/+f/" not in link["href"]:
                    continue
                files.append(
                    ReleaseFile(
                        project=meta.get("name", project),
                        version=version,
                        filename=link["href"].rsplit("/", 1)[-1],
                        url=link["href"],
                        sha256=(link.get("hashes") or {}).get("sha256", ""),
                        toxresults=tuple(results.get(link["href"], ())),
                    )
                )
        return files

    def index_wheels(self, index: str) -> tuple[list[ReleaseFile], dict[str, str]] | None:
        """Every release file of `index` itself and the text of each test record attached
        to one (by the record's URL), in one request: what the factory's plugin of the
        embedded devpi answers (index/devpi_plugin.py). None where the answer is not that
        (a devpi without the plugin): then read file by file, with `release_files`."""
        response = self._request("GET", f"/{index}/+basefactory/wheels")
        if response.status_code != 200:
            return None
        try:
            rows = response.json()["result"]["files"]
            files: list[ReleaseFile] = []
            records: dict[str, str] = {}
            for row in rows:
                files.append(ReleaseFile(
                    project=row["project"], version=row["version"],
                    filename=row["href"].rsplit("/", 1)[-1], url=row["href"],
                    sha256=row["sha256"],
                    toxresults=tuple(r["href"] for r in row["toxresults"])))
                records.update((r["href"], r["record"]) for r in row["toxresults"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # not the plugin's answer: read it the long way
        return files, records

    def attach_test_result(self, file_url: str, record_json: str) -> None:
        """Attach a JSON test record to a release file (devpi's toxresult mechanism)."""
        path = httpx.URL(file_url).path
        self._json("POST", path, content=record_json)

    def test_record(self, url: str) -> Any:
        """A test record attached to a file, as it was uploaded (not devpi's file metadata,
        which an `Accept: application/json` request would return instead)."""
        response = self._request("GET", httpx.URL(url).path, headers={"Accept": "*/*"})
        if response.status_code >= 400:
            raise ServiceError(f"devpi GET {url} answered {response.status_code}")
        return response.json()

    def simple_files(self, index: str, project: str) -> list[tuple[str, str]]:
        """(file name, URL) of each file of `project` the index's simple page lists: what
        pip and uv see. An index that does not know the project lists none."""
        page = simple_url("", index) + f"{canonicalize_name(project)}/"
        response = self._request("GET", page, headers={"Accept": "text/html"})
        if response.status_code != 200:
            return []
        here = httpx.URL(self.base_url + page)
        return [(name, str(here.join(href).copy_with(fragment=None)))
                for href, name in re.findall(
                    r'<a\s[^>]*href="([^"]+)"[^>]*>([^<>]+\.(?:whl|tar\.gz|zip))</a>',
                    response.text)]

    def simple_versions(self, index: str, project: str) -> set[str]:
        """Versions of `project` that the index's simple page lists (what pip and uv see)."""
        versions = set()
        for filename, _ in self.simple_files(index, project):
            version = file_version(filename)
            if version is not None:
                versions.add(version)
        return versions

    def register(self, index: str, *, name: str, version: str, summary: str) -> None:
        """A release without files (devpi's `submit`, what `devpi upload --only-docs` and
        setup.py register send): the project is then the index's own, and devpi hides the
        mirror's releases of it from every index that inherits this one."""
        self._authenticate()
        try:
            response = self._http.post(
                f"/{index}/", headers={**self._auth, "Accept": "application/json"},
                data={":action": "submit", "name": name, "version": version,
                      "summary": summary, "metadata_version": "2.1"})
        except httpx.HTTPError as exc:
            raise ServiceError(http.explain(exc, f"devpi at {self.base_url}", self.tls),
                               hint="is devpi up? `basefactory status`") from None
        _raise_for_status(response, refused=f"devpi refused to register {name} {version} on"
                          f" {index}", hint="registering needs the factory user's credentials",
                          failed=f"register of {name} {version} on {index}")

    def wait_listed(self, index: str, pins: dict[str, str], *, attempts: int = 5
                    ) -> dict[str, str]:
        """Make sure the index lists every `name==version` of `pins`; return those it still
        does not after `attempts` reads. A mirror's first read of a project can time out
        under load, and devpi then answers with the private part only (an empty page):
        a build that met that page would fail with a resolver's "no version", so the pins
        are checked (and the mirror warmed) before a build starts."""
        missing = dict(pins)
        for attempt in range(attempts):
            with ThreadPoolExecutor(max_workers=4) as pool:
                listed = dict(zip(missing, pool.map(
                    lambda name: self.simple_versions(index, name), missing), strict=True))
            missing = {name: version for name, version in missing.items()
                       if not any(Version(v) == Version(version) for v in listed[name])}
            if not missing or attempt == attempts - 1:
                break
            time.sleep(1.0 + 2 * attempt)
        return missing

    def simple_has(self, index: str, project: str) -> bool:
        """True when the index's simple page lists at least one file of `project`."""
        return bool(self.simple_versions(index, project))

    def simple_url(self, index: str) -> str:
        return simple_url(self.base_url, index)

    def download(self, url: str, dest: Path) -> None:
        try:
            with self._http.stream("GET", url, timeout=600.0, follow_redirects=True) as r:
                if r.status_code >= 400:
                    raise ServiceError(f"download of {url} answered {r.status_code}")
                with dest.open("wb") as fh:
                    for chunk in r.iter_bytes():
                        fh.write(chunk)
        except httpx.HTTPError as exc:
            raise ServiceError(f"download of {url} failed: {exc}") from None


def file_version(filename: str) -> str | None:
    """The version in a wheel's or an sdist's file name; None for a name that is neither."""
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None


_SETTABLE = (
    "type", "bases", "volatile", "acl_upload", "acl_toxresult_upload", "mirror_whitelist",
    "mirror_whitelist_inheritance", "title", "description", "custom_data",
)


def _settable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k in _SETTABLE}


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", ""))[:300]
    except (ValueError, AttributeError):
        return response.text[:300]


def _raise_for_status(response: httpx.Response, *, refused: str, hint: str, failed: str) -> None:
    """A ServiceError for a refused (401/403) or failed (other 4xx/5xx) answer."""
    if response.status_code in (401, 403):
        raise ServiceError(f"{refused} ({response.status_code}): {_message(response)}", hint=hint)
    if response.status_code >= 400:
        raise ServiceError(f"{failed} answered {response.status_code}: {_message(response)}")
