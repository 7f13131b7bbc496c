"""Where a platform's fingerprint lives: the platform index's custom_data (what the
catalog reads), mirrored to the state folder for commands that run before devpi is up."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from basefactory.config import Factory
from basefactory.index.client import DevpiClient
from basefactory.index.layout import platform_index
from basefactory.platforms.fingerprint import Fingerprint
from basefactory.plumbing.errors import ConfigError


def _local(factory: Factory, platform: str) -> Path:
    return factory.state_dir / "platforms" / f"{platform}.json"


def save(factory: Factory, devpi: DevpiClient, fingerprint: Fingerprint) -> None:
    index = platform_index(factory, fingerprint.platform)
    data: dict[str, Any] = devpi.custom_data(index)
    data["fingerprint"] = fingerprint.model_dump()
    devpi.set_custom_data(index, data)
    path = _local(factory, fingerprint.platform)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(fingerprint.model_dump_json(indent=2))
    tmp.replace(path)


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


def load_local(factory: Factory, platform: str) -> Fingerprint | None:
    try:
        return Fingerprint.model_validate(json.loads(_local(factory, platform).read_text()))
    except (OSError, ValueError):
        return None
