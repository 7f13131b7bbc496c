"""The factory's index layout on devpi.

    root/pypi            the PyPI mirror (devpi's own)
    factory/common       pure-Python wheels the factory builds; bases: root/pypi
    factory/<platform>   wheels built against that platform; bases: factory/<platform>-base,
                         factory/common
    factory/<platform>-base  what the platform's base pins, at the base's versions
                         (volatile: rewritten when the base changes; index/base_pins.py)
    factory/staging      where a tested wheel and its test record wait to be pushed (no
                         index inherits it, so nothing installs from it)

Every factory index is non-volatile: a published file is never overwritten (409), and
only the factory user may upload. Because devpi hides a mirror's releases of any
project an index holds itself, a private wheel (or the platform's own torch) can never
be shadowed by a public one of the same name; and no public release of what the base
pins (NGC's torch, torchvision, ...) is offered beside the base's own version.
"""

from __future__ import annotations

import os
from typing import Any

from basefactory.adapters.devpi_api import DevpiClient
from basefactory.config.factory import Factory
from basefactory.daemons.credentials import index_password, root_password
from basefactory.plumbing.errors import ConfigError, ServiceError
from basefactory.refs import base_pins_index, common_index, platform_index, staging_index


def _stage(user: str, bases: list[str], title: str, *, volatile: bool = False) -> dict[str, Any]:
    return {
        "bases": bases,
        "volatile": volatile,
        "acl_upload": [user],
        "acl_toxresult_upload": [user],
        "title": title,
    }


def client(factory: Factory, *, login: bool = False) -> DevpiClient:
    """A client of the factory's devpi; with `login`, it authenticates when it first writes."""
    credentials = (factory.config.index.user, index_password(factory)) if login else None
    return DevpiClient(factory.config.index.base_url, credentials=credentials,
                       tls=factory.config.index.tls)


def _wanted(factory: Factory) -> dict[str, dict[str, Any]]:
    cfg = factory.config.index
    common = common_index(factory)
    wanted = {common: _stage(cfg.user, [cfg.mirror], "pure-Python wheels"),
              staging_index(factory): _stage(cfg.user, [], "tested wheels on their way to"
                                             " their index (nothing installs from here)",
                                             volatile=True)}
    for name, platform in factory.config.platforms.items():
        title = platform.description or f"wheels built against platform {name}"
        pins = base_pins_index(factory, name)
        wanted[pins] = _stage(cfg.user, [], f"what the base of {name} pins, at its versions"
                              " (rewritten when the base changes)", volatile=True)
        wanted[platform_index(factory, name)] = _stage(cfg.user, [pins, common], title)
    return wanted


def layout_current(factory: Factory) -> bool:
    """True when every index exists with its settings: checked anonymously, no login."""
    with client(factory) as devpi:
        for index, settings in _wanted(factory).items():
            current = devpi.index_config(index)
            if current is None or any(current.get(k) != v for k, v in settings.items()):
                return False
    return True


def ensure_layout(factory: Factory) -> list[str]:
    """Create the user and indexes that are missing; return what was created. On the
    embedded devpi as root; on an existing one as the admin where factory.toml names its
    password, else as the factory user, and what it may not make is one error listing
    every index and right an admin must give it."""
    cfg = factory.config.index
    created: list[str] = []
    if layout_current(factory):
        return created
    password = index_password(factory)
    admin = _admin(factory)
    with client(factory) as devpi:
        if admin is not None:
            devpi.login(*admin)
            if not devpi.user_exists(cfg.user):
                devpi.create_user(cfg.user, password)
                created.append(f"user {cfg.user}")
        elif not devpi.user_exists(cfg.user):
            raise ConfigError(f"devpi at {cfg.base_url} has no user `{cfg.user}`",
                              hint=needs(factory))
        # the factory user owns its indexes (and changes their settings, e.g. the
        # fingerprint in custom_data); only it may upload to them. The admin, where there
        # is one, makes them: a devpi with --restrict-modify lets no one else
        if admin is None:
            devpi.login(cfg.user, password)
        for index, settings in _wanted(factory).items():
            try:
                if devpi.ensure_index(index, **settings):
                    created.append(index)
            except ServiceError as exc:
                if "refused" not in exc.message:
                    raise
                raise ConfigError(
                    f"devpi at {cfg.base_url} refused to make or set up index {index} for"
                    f" user `{cfg.user}` ({exc.message})", hint=needs(factory)) from None
    return created


def _admin(factory: Factory) -> tuple[str, str] | None:
    cfg = factory.config.index
    if cfg.embedded:
        return "root", root_password(factory)
    if cfg.admin_password_env and os.environ.get(cfg.admin_password_env):
        return cfg.admin_user, os.environ[cfg.admin_password_env]
    return None


def needs(factory: Factory) -> str:
    """What a devpi admin gives the factory, as devpi-client commands."""
    cfg = factory.config.index
    lines = [f"an admin of {cfg.base_url} makes the user and indexes the factory needs"
             f" (or set [index] admin_password_env and the factory makes them):",
             f"  devpi user -c {cfg.user} password=…"
             f"   # and start devpi-server with --restrict-modify root,{cfg.user},"
             " or without it: the user writes each platform index's fingerprint"
             " (custom_data)"]
    for index, settings in _wanted(factory).items():
        args = " ".join(f"{k}={','.join(v) if isinstance(v, list) else str(v)}"
                        for k, v in settings.items() if k != "title")
        lines.append(f"  devpi index -c {index} {args}")
    return "\n".join(lines)
