"""Typed, validated models of factory.toml, and the one loader every TOML input goes through.

Every model is frozen and forbids unknown keys. `load_toml` turns a read error, a TOML
syntax error or a pydantic ValidationError into one ConfigError that names the file, the
line where it can find it, the field, the bad value and the fix.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from packaging.requirements import InvalidRequirement, Requirement
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from basefactory.plumbing.errors import ConfigError

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
    common: Name = "common"
    mirror: Annotated[str, Field(pattern=r"^[^/\s]+/[^/\s]+$")] = "root/pypi"
    # a read replica of the embedded devpi (devpi's own replication), started by `up`:
    # pip and the catalog can read from it while uploads go to the primary
    replica_port: int | None = Field(default=None, ge=1, le=65535)

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
    # (without a password the engine's own `docker login` is used)
    user: Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")] = "factory"
    password_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = (
        "BASEFACTORY_REGISTRY_PASSWORD"
    )
    # how image layers are published: gzip always (the factory's own engine and every
    # Docker before 23 pull only gzip); "zstd" adds a copy of each image with zstd layers
    # under <namespace>-zstd/ (containerd, Docker 23+ decompress it ~5x faster)
    compression: tuple[Literal["gzip", "zstd"], ...] = ("gzip",)

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

    @property
    def torch_version(self) -> str:
        return next(iter(Requirement(self.torch).specifier)).version


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

M = TypeVar("M", bound=BaseModel)


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found", hint="create it, or pass --config PATH") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a TOML file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}", hint="check the file's permissions") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {_toml_message(exc)}", hint=_toml_hint(str(exc))) from None


def load_toml(path: Path, model: type[M], *, context: Mapping[str, Any] | None = None) -> M:
    data, text = read_toml(path)
    return validate(path, text, data, model, context=context)


def validate(
    path: Path,
    text: str,
    data: dict[str, Any],
    model: type[M],
    *,
    context: Mapping[str, Any] | None = None,
) -> M:
    try:
        return model.model_validate(data, context=dict(context or {}))
    except ValidationError as exc:
        raise _config_error(path, text, model, exc) from None


def _toml_message(exc: tomllib.TOMLDecodeError) -> str:
    msg = str(exc)
    m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
    if m:
        body = msg[: m.start()].strip()
        return f"line {m.group(1)}, column {m.group(2)}: TOML syntax error: {body}"
    return f"TOML syntax error: {msg}"


def _toml_hint(msg: str) -> str:
    if "declare" in msg and "twice" in msg:
        return "each table and key may appear once: merge or rename the duplicate"
    if "Invalid value" in msg:
        return "strings need quotes, e.g. key = \"value\""
    return "see https://toml.io for the syntax"


def _config_error(path: Path, text: str, model: type[BaseModel], exc: ValidationError) -> ConfigError:
    err = exc.errors(include_url=False)[0]
    loc = tuple(str(p) for p in err["loc"])
    field = ".".join(loc) if loc else "(top level)"
    line = _locate(text, loc)
    where = f"{path}:{line}" if line else str(path)
    kind = err["type"]
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    hint: str | None
    if kind == "extra_forbidden":
        valid = _valid_keys(model, loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = (
            f"did you mean `{close[0]}`?"
            if close
            else f"valid keys here: {', '.join(sorted(valid))}" if valid else "remove it"
        )
        return ConfigError(f"{where}: unknown key `{field}`{more}", hint=hint)
    if kind == "missing":
        table = ".".join(loc[:-1])
        return ConfigError(
            f"{where}: missing required field `{field}`{more}",
            hint=f"add `{loc[-1]} = ...` to {'[' + table + ']' if table else 'the top level'}",
        )
    value = err.get("input")
    shown = repr(value) if not isinstance(value, dict) else "a table"
    message = err["msg"].removeprefix("Value error, ")
    if kind == "string_pattern_mismatch" and loc and loc[-1] not in ("torch",):
        message = f"{shown} is not allowed here ({message})"
        hint = "use lowercase letters, digits, '.', '_' and '-'"
    elif kind == "value_error":
        hint = None
    else:
        message = f"{message}, got {shown}"
        hint = _example(model, loc)
    return ConfigError(f"{where}: {field}: {message}{more}", hint=hint)


def _example(model: type[BaseModel], loc: tuple[str, ...]) -> str | None:
    """`key = <default>` for the field at `loc`, as a model of a valid value."""
    if not loc:
        return None
    owner = _model_at(model, loc[:-1])
    field = owner.model_fields.get(loc[-1]) if owner is not None else None
    if field is None or field.default is None or field.is_required():
        return None
    default = field.default
    if isinstance(default, BaseModel):
        return None
    rendered = (str(default).lower() if isinstance(default, bool) else
                str(default) if isinstance(default, int) else f'"{default}"')
    return f"e.g. {loc[-1]} = {rendered}"


def _model_at(model: type[BaseModel], loc: tuple[str, ...]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part)
        if field is None:
            continue  # a dict's key (e.g. a platform name): stay on the dict's value type
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _valid_keys(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The keys a table at `loc` accepts, walking the model tree (dict values included)."""
    found = _model_at(model, loc)
    return list(found.model_fields) if found is not None else []


def _inner_model(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", ())
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in reversed(args):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _locate(text: str, loc: tuple[str, ...]) -> int | None:
    """Best effort: the line number of the key `loc` names, or of its table."""
    lines = text.splitlines()
    keys = [k for k in loc if not k.isdigit()]
    best: int | None = None
    for depth in range(len(keys), 0, -1):
        table, key = keys[: depth - 1], keys[depth - 1]
        start = 0
        if table:
            header = _find_header(lines, table)
            if header is None:
                continue
            start = header + 1
        for i in range(start, len(lines)):
            stripped = lines[i].strip()
            if stripped.startswith("[") and i > start - 1 and table:
                break
            if re.match(rf"^\s*\"?{re.escape(key)}\"?\s*=", lines[i]):
                return i + 1
        header = _find_header(lines, keys[:depth])
        if header is not None:
            return header + 1
    return best


def _find_header(lines: list[str], table: list[str]) -> int | None:
    wanted = ".".join(table)
    for i, line in enumerate(lines):
        m = re.match(r"^\s*\[+\s*([^\]]+?)\s*\]+", line)
        if m and m.group(1).replace('"', "").replace(" ", "") == wanted:
            return i
    return None


# --- the factory --------------------------------------------------------------------------


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
