"""Names of what the factory publishes, in one place: image references, the immutable tag
format and its parser, the label keys written on images and read back, and the names of
its indexes on devpi (index/layout.py creates them; adapters/devpi_api.simple_url makes
their pip URLs)."""

from __future__ import annotations

import platform as _platform
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from basefactory.adapters.docker import OWNER_LABEL
from basefactory.config.factory import Factory
from basefactory.plumbing.errors import ConfigError

# every label the factory writes on an image starts with this
LABEL = "org.basefactory"


class Labels:
    """The label keys of the factory's images: written at build, read by the catalog,
    fits, SBOMs, diffs and audits. OCI's own keys (org.opencontainers.image.*) as OCI."""

    INPUT_DIGEST = f"{LABEL}.input-digest"
    IMAGE = f"{LABEL}.image"
    PLATFORM = f"{LABEL}.platform"
    PARENT = f"{LABEL}.parent"
    FINGERPRINT = f"{LABEL}.fingerprint"
    LOCK = f"{LABEL}.lock"
    LOCK_SHA256 = f"{LABEL}.lock-sha256"
    WHEELS = f"{LABEL}.wheels"
    WHEEL_FILES = f"{LABEL}.wheel-files"
    MANIFEST = f"{LABEL}.manifest"
    PROOF_PREFIX = f"{LABEL}.proof."
    SMOKE_V1 = f"{LABEL}.smoke"  # the smoke proof's schema 1
    COPY_OF = f"{LABEL}.copy-of"  # an annotation of a zstd copy: the gzip image it copies
    PROBE = f"{LABEL}.probe"  # an annotation of `up`'s probe of an existing registry
    OWNER = OWNER_LABEL  # on the containers a run starts (the docker adapter writes it)
    OCI_TITLE = "org.opencontainers.image.title"
    OCI_DESCRIPTION = "org.opencontainers.image.description"
    OCI_VERSION = "org.opencontainers.image.version"
    OCI_REVISION = "org.opencontainers.image.revision"
    OCI_CREATED = "org.opencontainers.image.created"
    OCI_BASE_NAME = "org.opencontainers.image.base.name"
    OCI_BASE_DIGEST = "org.opencontainers.image.base.digest"


# an image's immutable tag: <platform>-<YYYYMMDD>-<first 12 hex of its input digest>
IMMUTABLE_TAG = re.compile(r"^(?P<platform>.+)-(?P<day>\d{8})-(?P<digest>[0-9a-f]{12})$")


@dataclass(frozen=True)
class ImmutableTag:
    platform: str  # as the tag spells it (a platform name may contain dashes)
    day: str  # YYYY-MM-DD
    digest: str  # 12 hex


def immutable_tag(platform: str, input_digest: str, when: datetime | None = None) -> str:
    return f"{platform}-{(when or datetime.now(UTC)):%Y%m%d}-{input_digest[:12]}"


def parse_immutable_tag(tag: str) -> ImmutableTag | None:
    """The parts of an immutable tag; None for a moving tag or anything else."""
    m = IMMUTABLE_TAG.match(tag)
    if m is None:
        return None
    day = m.group("day")
    return ImmutableTag(m.group("platform"), f"{day[:4]}-{day[4:6]}-{day[6:]}", m.group("digest"))


def arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(_platform.machine(), _platform.machine())


def repository(factory: Factory, name: str) -> str:
    """The registry path of an image: factory/<name>."""
    return f"{factory.config.registry.namespace}/{name}"


def zstd_repository(factory: Factory, name: str) -> str:
    """The registry path of an image's zstd copy: factory-zstd/<name>, with the same tags
    as factory/<name> (a namespace of its own, so that no reader of factory/ meets a
    repository or tag it does not know)."""
    return f"{factory.config.registry.namespace}-zstd/{name}"


def image_ref(factory: Factory, name: str, tag: str) -> str:
    return f"{factory.config.registry.address}/{repository(factory, name)}:{tag}"


def zstd_ref(factory: Factory, name: str, tag: str) -> str:
    return f"{factory.config.registry.address}/{zstd_repository(factory, name)}:{tag}"


def base_ref(factory: Factory, platform: str) -> str:
    """A platform's base image, as pushed: REGISTRY/factory/base:<platform>."""
    return image_ref(factory, "base", platform)


def slim_ref(factory: Factory, platform: str) -> str:
    """The platform's Python without torch: REGISTRY/factory/slim:<platform>."""
    return image_ref(factory, "slim", platform)


def rootfs_ref(suite: str) -> str:
    return f"basefactory/rootfs:{suite}-{arch()}"


def builder_ref(platform: str) -> str:
    """The base plus compilers, as each engine names it locally."""
    return f"basefactory/builder:{platform}"


def cache_repository(factory: Factory, name: str) -> str:
    """What engines share that is no image users are offered (the builders):
    factory-cache/<name>, outside factory/ so that no catalog, fit or prune reads it."""
    return f"{factory.config.registry.namespace}-cache/{name}"


def builder_cache_tag(platform: str, input_digest: str) -> str:
    return f"{platform}-{input_digest[:12]}"


BUILDER_CACHE_TAG = re.compile(r"^(?P<platform>.+)-(?P<digest>[0-9a-f]{12})$")


def platform_of_builder_tag(tag: str) -> str | None:
    """The platform a shared builder's tag names; None for any other tag."""
    m = BUILDER_CACHE_TAG.match(tag)
    return m.group("platform") if m else None


def platform_of_tag(factory: Factory, tag: str) -> str:
    """The platform a tag belongs to: the moving tag is its name, an immutable tag starts
    with it (the longest configured name that fits, as names may prefix one another)."""

    for name in sorted(factory.config.platforms, key=len, reverse=True):
        if tag == name or tag.startswith(f"{name}-"):
            return name
    raise ConfigError(f"tag {tag} belongs to no platform of {factory.path}",
                      hint=f"platforms: {', '.join(factory.config.platforms)}")


@dataclass(frozen=True)
class FactoryRef:
    """An image of this factory as a user names it: `NAME`, `NAME:TAG`, `NAME@sha256:…`,
    or the full reference the catalog and `images ls` print (REGISTRY/NAMESPACE/NAME:TAG,
    @digest too). `reference` is the tag or the digest, None where none was given."""

    name: str
    reference: str | None = None


def factory_ref(factory: Factory, text: str) -> FactoryRef | None:
    """`text` as an image of this factory; None where it names another registry or
    namespace (a full reference of someone else's image)."""
    cfg = factory.config.registry
    rest = text.strip()
    for prefix in (f"{cfg.address}/{cfg.namespace}/", f"{cfg.namespace}/"):
        if rest.startswith(prefix):
            rest = rest[len(prefix):]
            break
    else:
        if "/" in rest:
            return None
    name, at, digest = rest.partition("@")
    if at:
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ConfigError(f"`{text}`: `{digest}` is not a sha256 digest",
                              hint="write NAME@sha256:<64 hex>, as `images ls --json` prints it")
        return FactoryRef(name, digest)
    name, colon, tag = name.partition(":")
    if not name or "/" in name or (colon and not tag):
        raise ConfigError(f"`{text}` is not an image reference",
                          hint="write NAME, NAME:TAG or the full reference `images ls` prints")
    return FactoryRef(name, tag or None)


# the factory's indexes on devpi (index/layout.py creates them): <user>/<name>
def common_index(factory: Factory) -> str:
    return user_index(factory.config.index.user, factory.config.index.common)


def platform_index(factory: Factory, platform: str) -> str:
    return user_index(factory.config.index.user, platform)


def base_pins_index(factory: Factory, platform: str) -> str:
    """What the platform's base pins, at the base's versions (index/base_pins.py): first
    among the platform index's bases, so that devpi hides the mirror's other releases."""
    return user_index(factory.config.index.user, f"{platform}-base")


def user_index(user: str, name: str) -> str:
    """devpi's name of an index: <user>/<name>."""
    return f"{user}/{name}"


def staging_index(factory: Factory) -> str:
    """Uploads land here, get their test record, then reach their index by one push: devpi
    commits a push (file and records) in one transaction, so a wheel is never installable
    from a factory index without its test record, even after a kill -9 mid-publish."""
    return user_index(factory.config.index.user, "staging")
