"""Where a platform's fingerprint lives: the platform index's custom_data, which the
pipeline and the catalog read (one copy: a mirror in the state folder was never read)."""

from __future__ import annotations

import functools
import json
from typing import Any

from basefactory.adapters.devpi_api import DevpiClient
from basefactory.config.factory import Factory
from basefactory.platforms.fingerprint import Fingerprint
from basefactory.plumbing.errors import ConfigError
from basefactory.refs import platform_index


def save(factory: Factory, devpi: DevpiClient, fingerprint: Fingerprint) -> None:
    index = platform_index(factory, fingerprint.platform)
    data: dict[str, Any] = devpi.custom_data(index)
    data["fingerprint"] = fingerprint.model_dump()
    devpi.set_custom_data(index, data)


def load(factory: Factory, devpi: DevpiClient, platform: str) -> Fingerprint | None:
    data = devpi.custom_data(platform_index(factory, platform)).get("fingerprint")
    if data is None:
        return None
    return _parse(json.dumps(data, sort_keys=True))


@functools.lru_cache(maxsize=64)
def _parse(text: str) -> Fingerprint:
    # the same fingerprint is read for every wheel and image of a platform
    return Fingerprint.model_validate_json(text)


def require(factory: Factory, devpi: DevpiClient, platform: str) -> Fingerprint:
    found = load(factory, devpi, platform)
    if found is None:
        raise ConfigError(f"platform `{platform}` has not been probed",
                          hint=f"run `basefactory platforms build {platform}` first")
    return found

