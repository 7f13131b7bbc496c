"""Registry credentials as the Docker client reads them from its config file.

`$DOCKER_CONFIG/config.json` (default `~/.docker/config.json`): `credHelpers[host]` first,
then `credsStore`, then `auths[host].auth` (base64 `user:password`) or
`auths[host].identitytoken` (an OAuth2 refresh token). A helper is the program
`docker-credential-NAME`, given the server on stdin and answering JSON, as Docker runs
it (ECR's, GCR's, pass, secretservice). Nothing here prints or logs a secret.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from basefactory.adapters.registry_auth import Credentials
from basefactory.plumbing.errors import ServiceError

HELPER_TIMEOUT_S = 30


def config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def _host(key: str) -> str:
    """`https://host:5000/v1/` and `host:5000` are one registry to Docker."""
    key = key.split("://", 1)[-1]
    return key.split("/", 1)[0].lower()


def _read() -> dict[str, Any]:
    try:
        data = json.loads(config_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ServiceError(f"the Docker client's config {config_path()} cannot be read: {exc}",
                           hint="fix or remove it (`docker login` writes it anew)") from None
    return data if isinstance(data, dict) else {}


def _helper(name: str, address: str, host: str) -> Credentials | None:
    program = f"docker-credential-{name}"
    if shutil.which(program) is None:
        raise ServiceError(
            f"the Docker client's config {config_path()} names the credential helper"
            f" `{name}`, and `{program}` is not on PATH",
            hint=f"install {program}, or remove `{name}` from credsStore/credHelpers")
    try:
        proc = subprocess.run([program, "get"], input=address, capture_output=True,
                              text=True, timeout=HELPER_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ServiceError(f"`{program} get` for {host} did not answer in"
                           f" {HELPER_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        # the helper's own words, never its stdout (which could hold a secret)
        raise ServiceError(f"`{program} get` for {host} failed: {proc.stderr.strip()[:300]}",
                           hint=f"run `{program} get` by hand to see why")
    try:
        answer = json.loads(proc.stdout)
        return Credentials(str(answer["Username"]), str(answer["Secret"]), program)
    except (ValueError, KeyError, TypeError):
        raise ServiceError(f"`{program} get` for {host} answered no Username/Secret") from None


def lookup(address: str) -> Credentials | None:
    """Credentials for registry `address` (host[:port]) from the Docker client's config;
    None where it holds none (then the registry is tried anonymously)."""
    host = _host(address)
    config = _read()
    helpers = config.get("credHelpers") or {}
    for key, name in helpers.items():
        if _host(key) == host:
            return _helper(str(name), address, host)
    if config.get("credsStore"):
        found = _helper(str(config["credsStore"]), address, host)
        if found is not None:
            return found
    for key, entry in (config.get("auths") or {}).items():
        if _host(key) != host or not isinstance(entry, dict):
            continue
        where = f"{config_path()} auths"
        if entry.get("identitytoken"):
            return Credentials("<token>", str(entry["identitytoken"]), where)
        if entry.get("auth"):
            try:
                user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise ServiceError(f"{where}[{key}].auth is not base64 of user:password",
                                   hint=f"run `docker login {address}` again") from None
            return Credentials(user, secret, where)
    return None
