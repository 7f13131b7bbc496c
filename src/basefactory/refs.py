"""Names of the images the factory makes, in one place."""

from __future__ import annotations

import platform as _platform

from basefactory.config import Factory

# every label the factory writes on an image starts with this
LABEL = "org.basefactory"


def arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(_platform.machine(), _platform.machine())


def repository(factory: Factory, name: str) -> str:
    """The registry path of an image: factory/<name>."""
    return f"{factory.config.registry.namespace}/{name}"


def image_ref(factory: Factory, name: str, tag: str) -> str:
    return f"{factory.config.registry.address}/{repository(factory, name)}:{tag}"


def base_ref(factory: Factory, platform: str) -> str:
    """A platform's base image, as pushed: REGISTRY/factory/base:<platform>."""
    return image_ref(factory, "base", platform)


def slim_ref(factory: Factory, platform: str) -> str:
    """The platform's Python without torch: REGISTRY/factory/slim:<platform>."""
    return image_ref(factory, "slim", platform)


def rootfs_ref(suite: str) -> str:
    return f"basefactory/rootfs:{suite}-{arch()}"


def builder_ref(platform: str) -> str:
    """The base plus compilers: local only, never pushed."""
    return f"basefactory/builder:{platform}"


def platform_of_tag(factory: Factory, tag: str) -> str:
    """The platform a tag belongs to: the moving tag is its name, an immutable tag starts
    with it (the longest configured name that fits, as names may prefix one another)."""
    from basefactory.plumbing.errors import ConfigError

    for name in sorted(factory.config.platforms, key=len, reverse=True):
        if tag == name or tag.startswith(f"{name}-"):
            return name
    raise ConfigError(f"tag {tag} belongs to no platform of {factory.path}",
                      hint=f"platforms: {', '.join(factory.config.platforms)}")
