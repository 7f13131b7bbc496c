"""The services' secrets (index and registry): from the environment, or a generated file
that is never committed.

Secrets live under the state folder (ignored by git), with mode 0600, and are never
printed: commands that carry one pass it to cmd.run's `secrets` so it is masked.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from basefactory.adapters import docker_config
from basefactory.adapters.registry_auth import Credentials
from basefactory.config.factory import Factory
from basefactory.plumbing.errors import ConfigError


def secrets_dir(factory: Factory) -> Path:
    return factory.state_dir / "secrets"


def _read_or_create(path: Path, *, create: bool) -> str | None:
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def index_password(factory: Factory) -> str:
    """The factory user's password: $password_env, else the secret file (made if embedded)."""
    cfg = factory.config.index
    from_env = os.environ.get(cfg.password_env)
    if from_env:
        return from_env
    path = secrets_dir(factory) / "index-password"
    value = _read_or_create(path, create=cfg.embedded)
    if value is None:
        raise ConfigError(
            f"no password for index user `{cfg.user}` at {cfg.base_url}",
            hint=f"export {cfg.password_env}=... or write it to {path} (mode 0600)",
        )
    return value


def root_password(factory: Factory) -> str:
    """The embedded devpi's root password (generated once; only `up` uses it)."""
    value = _read_or_create(secrets_dir(factory) / "devpi-root-password", create=True)
    assert value is not None
    return value


def registry_credentials(factory: Factory) -> Credentials | None:
    """Who the factory is at its registry: $password_env (with [registry] user), else the
    embedded registry's generated secret, else what the Docker client's config holds for
    the registry (auths, credsStore, credHelpers, as Docker reads them); None: anonymous."""
    cfg = factory.config.registry
    from_env = os.environ.get(cfg.password_env)
    if from_env:
        return Credentials(cfg.user, from_env, f"${cfg.password_env}")
    if cfg.embedded:
        path = secrets_dir(factory) / "registry-password"
        value = _read_or_create(path, create=True)
        assert value is not None
        return Credentials(cfg.user, value, str(path))
    return docker_config.lookup(cfg.address)


def registry_auth(factory: Factory) -> tuple[str, str] | None:
    """(user, password) the engine must be logged in with (`docker login`): the factory's
    own (environment or embedded secret); None where the Docker client's config already
    holds them or the registry is anonymous."""
    cfg = factory.config.registry
    if not cfg.embedded and not os.environ.get(cfg.password_env):
        return None
    creds = registry_credentials(factory)
    return (creds.user, creds.secret) if creds is not None else None
