"""A loaded factory: its validated config and the paths derived from where it lives."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from basefactory.config.loader import load_toml
from basefactory.config.models import CONFIG_ENV, DEFAULT_CONFIG, FactoryConfig, Platform
from basefactory.plumbing.errors import ConfigError


class Factory:
    """A loaded factory: its validated config and the paths derived from where it lives."""

    def __init__(self, path: Path, config: FactoryConfig) -> None:
        self.path = path.resolve()
        self.root = self.path.parent
        self.config = config

    @property
    def state_dir(self) -> Path:
        state = self.config.state_dir
        return state if state.is_absolute() else self.root / state

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def recipes_dir(self) -> Path:
        return self.root / "recipes"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def wheels_dir(self) -> Path:
        return self.root / "wheels"

    def platform(self, name: str) -> Platform:
        try:
            return self.config.platforms[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.config.platforms), n=1)
            raise ConfigError(
                f"{self.path}: no platform `{name}`",
                hint=f"did you mean `{close[0]}`?" if close
                else f"declared: {', '.join(self.config.platforms)}",
            ) from None

    def platforms(self, names: list[str] | None = None) -> list[str]:
        """The named platforms (checked), or every enabled one."""
        if names:
            for name in names:
                self.platform(name)
            return list(names)
        return [n for n, p in self.config.platforms.items() if p.enabled]


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_factory(path: Path) -> Factory:
    config = load_toml(path, FactoryConfig)
    factory = Factory(path, config)
    _check_paths(factory)
    return factory


def _check_paths(factory: Factory) -> None:
    for name, platform in factory.config.platforms.items():
        boot = platform.bootstrap
        if boot is None or not platform.enabled:
            continue
        for key in ("wheelhouse", "cuda_toolkit"):
            value = getattr(boot, key)
            if value is not None and not (factory.root / value).is_dir():
                raise ConfigError(
                    f"{factory.path}: platforms.{name}.bootstrap.{key}: {str(value)!r} is not a"
                    " directory",
                    hint=f"point `{key}` at an existing folder, remove it, or set enabled = false"
                    " on this platform",
                )
