"""Typed, validated models of factory.toml: every model frozen, unknown keys forbidden."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Self

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from basefactory.plumbing.tls import Tls

CONFIG_ENV = "BASEFACTORY_CONFIG"
DEFAULT_CONFIG = "factory.toml"

# Platform names become devpi index names, Docker tags and PEP 440 local labels' context:
# keep them to what all three accept.
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _debian_packages(value: tuple[str, ...]) -> tuple[str, ...]:
    for pkg in value:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.:+~-]+)?", pkg):
            raise ValueError(f"`{pkg}` is not a Debian package name (e.g. \"libsndfile1\")")
    return value


def _env_names(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"`{key}` is not an environment variable name")
    return value


# The same checks wherever apt packages and environment tables appear (platforms, recipes,
# images), so that one input is valid everywhere or nowhere.
AptPackages = Annotated[tuple[str, ...], AfterValidator(_debian_packages)]
EnvTable = Annotated[dict[str, str], AfterValidator(_env_names)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EmbeddedService(Model):
    """A service `basefactory up` runs on loopback, or an existing one reached by `url`."""

    noun: ClassVar[str]
    example_url: ClassVar[str]

    embedded: bool = True
    host: str = "127.0.0.1"
    port: int
    url: AnyHttpUrl | None = None
    # for an https url: the CA that signed its certificate (PEM; default: the system's
    # store), and a client certificate where the service asks for one
    ca_bundle: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    @model_validator(mode="after")
    def _tls_files(self) -> Self:
        given = [k for k in ("ca_bundle", "client_cert", "client_key") if getattr(self, k)]
        if given and not self.base_url.startswith("https:"):
            raise ValueError(f"`{given[0]}` is for an https url; set url = \"https://…\""
                             " (and embedded = false), or remove it")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("`client_key` needs `client_cert` (the certificate it belongs to)")
        return self

    @property
    def tls(self) -> Tls:
        return Tls(self.ca_bundle, self.client_cert, self.client_key,
                   setting=f"factory.toml [{self.noun}]")

    @model_validator(mode="after")
    def _embedded_or_url(self) -> Self:
        if not self.embedded and self.url is None:
            raise ValueError(
                f"the {self.noun} is not embedded, so it needs `url`"
                f" (e.g. url = \"{self.example_url}\"), or set embedded = true"
            )
        if self.embedded and self.url is not None:
            raise ValueError(f"`url` is for an external {self.noun}: remove it,"
                             " or set embedded = false")
        return self

    @property
    def base_url(self) -> str:
        if self.url is not None:
            return str(self.url).rstrip("/")
        return f"http://{self.host}:{self.port}"


class IndexConfig(EmbeddedService):
    """The devpi server: embedded (started by `basefactory up`) or an existing one."""

    noun = "index"
    example_url = "http://devpi:3141"

    port: int = Field(default=3141, ge=1, le=65535)
    user: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")] = "factory"
    password_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = (
        "BASEFACTORY_INDEX_PASSWORD"
    )
    # an existing devpi whose admin lets the factory make its user and indexes: the
    # admin's name and the variable holding its password (else an admin makes them
    # beforehand: `basefactory up` lists what it needs)
    admin_user: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")] = "root"
    admin_password_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    common: Name = "common"
    mirror: Annotated[str, Field(pattern=r"^[^/\s]+/[^/\s]+$")] = "root/pypi"
    # a read replica of the embedded devpi (devpi's own replication), started by `up`:
    # pip and the catalog can read from it while uploads go to the primary
    replica_port: int | None = Field(default=None, ge=1, le=65535)

    @property
    def build_ca(self) -> Path | None:
        """The CA builds and containers must trust to install from the index (pip's
        --cert, uv's SSL_CERT_FILE): the index's own, where it is https with one."""
        return self.ca_bundle if self.base_url.startswith("https:") else None

    @property
    def replica_url(self) -> str | None:
        return f"http://{self.host}:{self.replica_port}" if self.replica_port else None


class RegistryConfig(EmbeddedService):
    """The OCI registry: embedded (Debian's docker-registry) or an existing one."""

    noun = "registry"
    example_url = "http://registry:5000"

    port: int = Field(default=5000, ge=1, le=65535)
    namespace: Name = "factory"
    # who may push: the embedded registry takes this user and the password from
    # $password_env or a generated 0600 file; for an external one both are optional
    # (without a password the engine's own `docker login` is used). Harbor's robot
    # accounts are `robot$project+name`, GitLab's deploy tokens `gitlab+deploy-token-N`
    user: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.+$@-]*$")] = "factory"
    password_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = (
        "BASEFACTORY_REGISTRY_PASSWORD"
    )
    # how image layers are published: gzip always (the factory's own engine and every
    # Docker before 23 pull only gzip); "zstd" adds a copy of each image with zstd layers
    # under <namespace>-zstd/ (containerd, Docker 23+ decompress it ~5x faster)
    compression: tuple[Literal["gzip", "zstd"], ...] = ("gzip",)
    # who compresses an image's new layers on push: "docker" (dockerd, one thread per
    # layer) or "pigz" (images/upload.py: every core, but it reads the whole image from
    # `docker save` first); one for all images, or layers get stored twice (bench `push`)
    push: Literal["docker", "pigz"] = "docker"

    @field_validator("compression")
    @classmethod
    def _gzip_first(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or value[0] != "gzip" or len(set(value)) != len(value):
            raise ValueError('write ["gzip"] or ["gzip", "zstd"]: gzip is always published'
                             " (Docker before 23 and the factory's own checks pull it)")
        return value

    @property
    def zstd(self) -> bool:
        return "zstd" in self.compression

    @property
    def address(self) -> str:
        """host:port as it appears in an image reference."""
        return self.base_url.split("://", 1)[1]


class EngineConfig(Model):
    """How to reach a Docker engine."""

    docker: str | None = None  # a docker client to use; default: detect one that builds with BuildKit
    start: bool = True  # start dockerd when none answers (root only)


class Bootstrap(Model):
    """A platform made locally, for hosts that can pull nothing: debootstrap + python + torch."""

    suite: Annotated[str, Field(pattern=r"^[a-z]+$")] = "bookworm"
    # default: the mirror this host's apt uses (platforms.rootfs.host_apt_mirror)
    mirror: AnyHttpUrl | None = None
    python: Annotated[str, Field(pattern=r"^3\.\d+$")] = "3.11"
    torch: str
    # the torch wheel's sha256 when it comes from the index (its mirror), checked before
    # it is installed; a wheelhouse is trusted as the site's own
    torch_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    # distributions that belong with this torch (torchaudio, torchvision), pinned and
    # installed with it: the base ships them and every image keeps them
    packages: tuple[str, ...] = ()
    wheelhouse: Path | None = None
    apt: AptPackages = ()
    cuda_toolkit: Path | None = None
    env: EnvTable = Field(default_factory=dict)

    @field_validator("torch")
    @classmethod
    def _pinned_torch(cls, value: str) -> str:
        try:
            req = Requirement(value)
        except InvalidRequirement as exc:
            raise ValueError(f"not a requirement ({exc}); write e.g. \"torch==2.13.0+cpu\"") from None
        if req.name.lower() != "torch":
            raise ValueError(f"names `{req.name}`, not torch; write e.g. \"torch==2.13.0+cpu\"")
        pins = [s for s in req.specifier if s.operator in ("==", "===") and "*" not in s.version]
        if len(pins) != 1 or len(req.specifier) != 1:
            raise ValueError(
                f"`{value}` does not pin one exact torch; a platform is one torch, e.g."
                " \"torch==2.13.0+cpu\""
            )
        return value

    @field_validator("packages")
    @classmethod
    def _pinned_packages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                req = Requirement(item)
            except InvalidRequirement as exc:
                raise ValueError(f"`{item}` is not a requirement ({exc})") from None
            if len(req.specifier) != 1 or next(iter(req.specifier)).operator != "==":
                raise ValueError(f"`{item}` must pin one version: e.g. \"torchaudio==2.11.0\"")
        return value


class Platform(Model):
    """A base image plus what its probe finds. Exactly one of `image` or `bootstrap`."""

    description: str = ""
    image: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$")] | None = None
    bootstrap: Bootstrap | None = None
    # with `image`: a Python image without torch for the lean tier (e.g. python:3.11-slim)
    slim_image: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._/:@-]*$")] | None = None
    enabled: bool = True  # false: declared (e.g. an nvcr.io image) but not built on this host

    @model_validator(mode="after")
    def _one_source(self) -> Platform:
        if (self.image is None) == (self.bootstrap is None):
            raise ValueError(
                "a platform needs exactly one of `image` (a reference such as"
                " \"nvcr.io/nvidia/pytorch:24.09-py3\") or a [platforms.NAME.bootstrap] table"
            )
        if self.slim_image is not None and self.bootstrap is not None:
            raise ValueError("`slim_image` is for an `image` platform; a bootstrapped platform"
                             " makes its own slim image")
        return self


class CatalogConfig(Model):
    """The catalog web page and JSON API (`basefactory catalog serve`)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8780, ge=1, le=65535)
    refresh_seconds: float = Field(default=10.0, gt=0)
    # read the index from its replica ([index] replica_port) instead of the primary
    read_replica: bool = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class BuilderConfig(Model):
    """A Docker engine that publish may run steps on, besides the local one."""

    name: Name
    # the engine's address, as DOCKER_HOST takes it: unix:///path.sock, ssh://user@host,
    # tcp://host:2376. It must reach the factory's index and registry at the addresses
    # factory.toml gives (builds run with --network host on that engine).
    docker_host: Annotated[str, Field(pattern=r"^(unix|ssh|tcp)://\S+$")]


class WheelsConfig(Model):
    """Factory-wide wheel settings."""

    # recipes this factory does not build (e.g. sources this host cannot reach)
    exclude: tuple[Name, ...] = ()


class RetentionConfig(Model):
    """What `basefactory prune` keeps of each image's immutable tags, per platform."""

    keep: int = Field(default=3, ge=1)  # the newest N (the moving tag's is always kept)
    keep_days: float = Field(default=14.0, ge=0)  # and every tag younger than this


class FactoryConfig(Model):
    state_dir: Path = Path(".factory")
    index: IndexConfig = IndexConfig()
    registry: RegistryConfig = RegistryConfig()
    engine: EngineConfig = EngineConfig()
    wheels: WheelsConfig = WheelsConfig()
    catalog: CatalogConfig = CatalogConfig()
    retention: RetentionConfig = RetentionConfig()
    builders: tuple[BuilderConfig, ...] = ()  # more engines for `publish --jobs`
    platforms: dict[Name, Platform]

    @field_validator("builders")
    @classmethod
    def _distinct_builders(cls, value: tuple[BuilderConfig, ...]) -> tuple[BuilderConfig, ...]:
        names = [b.name for b in value]
        if "local" in names or len(set(names)) != len(names):
            raise ValueError("builder names must be unique and not `local` (the local engine)")
        return value

    @field_validator("platforms")
    @classmethod
    def _distinct_platforms(cls, value: dict[str, Platform]) -> dict[str, Platform]:
        if not value:
            raise ValueError("declare at least one platform, e.g. [platforms.cpu-py311-torch2.13]")
        seen: dict[str, str] = {}
        for name in value:
            key = re.sub(r"[-_.]+", "-", name)
            if key in seen:
                raise ValueError(
                    f"platforms `{seen[key]}` and `{name}` differ only in punctuation and would"
                    " share an index; rename one"
                )
            seen[key] = name
        return value


# --- the loader -------------------------------------------------------------------------
