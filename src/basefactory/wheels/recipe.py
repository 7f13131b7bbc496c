"""recipes/*.toml: how one pinned source becomes a wheel for a platform.

    project = "torchsort"              # the distribution's name (from sdist when omitted)
    requires_cuda = false              # CUDA platforms only?
    base_requires = ["torchaudio"]     # what the platform's base must already ship
    platforms = ["*"]                  # names or globs of platforms it applies to
    [source]                           # exactly one of:
    sdist = "torchsort==0.1.9"         #   an sdist from the index, with sha256 = "..."
    git = "https://github.com/x/y"     #   a git URL at commit = "<40 hex>"
    path = "local/folder"              #   a folder of the factory
    [adopt]                            # or, instead of [source] and [build]: a prebuilt
    wheel = "vllm-0.33.0-...whl"       #   wheel from the index, pinned by sha256 = "..."
    [[adopt.overrides]]                #   a Requires-Dist of it replaced (or dropped when
    requirement = "torch==2.14.0"      #   `replace` is omitted), with the reason; recorded
    replace = "torch==2.14.1"          #   in its test record and shown in the catalog
    reason = "..."
    [[adopt.patches]]                  #   a unified diff of the wheel's files (a/ b/ paths
    file = "patches/x/fix.patch"       #   from its root; the file relative to recipes/),
    reason = "..."                     #   recorded and shown like an override
    [build]
    requires = ["setuptools", ...]     # build requirements (from the index, constrained)
    no_build_isolation = true          # build against the platform's own torch
    env = { MAX_JOBS = "2" }
    pre_build = ["..."]                # shell commands in the source folder first
    apt = ["libsndfile1-dev"]          # system packages the build needs
    exclude = ["libtorch*.so*", ...]   # libraries auditwheel must not vendor (added to defaults)
    [test]
    requires = []
    command = "python -c '...'"
    [[audit.allow]]                    # a module its dependencies bring that may fail the
    module = "numba/np/ufunc/tbbpool*" # ABI audit in the images it is installed into
    reason = "..."
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion
from pydantic import Field, field_validator, model_validator

from basefactory.audit.allow import Audit
from basefactory.config.factory import Factory
from basefactory.config.loader import read_toml, validate
from basefactory.config.models import AptPackages, EnvTable, Model, Name
from basefactory.plumbing.errors import ConfigError

# What a wheel built against torch must link to, never carry: torch's own libraries, the
# CUDA runtime and NVIDIA's wheels' libraries. The platform provides them.
DEFAULT_EXCLUDES: tuple[str, ...] = (
    "libtorch*.so*", "libc10*.so*", "libshm.so*", "libtorch_python.so*", "libgomp*.so*",
    "libcuda.so*", "libcudart*.so*", "libnvrtc*.so*", "libnvToolsExt*.so*", "libcublas*.so*",
    "libcublasLt*.so*", "libcudnn*.so*", "libcufft*.so*", "libcurand*.so*", "libcusolver*.so*",
    "libcusparse*.so*", "libnccl*.so*", "libnvJitLink*.so*", "libcupti*.so*", "libnvshmem*.so*",
    "libcufile*.so*", "libcusparseLt*.so*",
)

SHA256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
COMMIT = Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]


class Source(Model):
    sdist: str | None = None
    sha256: SHA256 | None = None
    git: str | None = None
    commit: COMMIT | None = None
    subdirectory: str | None = None
    path: Path | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        kinds = [k for k in ("sdist", "git", "path") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "needs exactly one of `sdist` (with sha256), `git` (with commit) or `path`;"
                f" found {', '.join(kinds) or 'none'}"
            )
        if self.sdist is not None and self.sha256 is None:
            raise ValueError("an sdist source is pinned by `sha256 = \"<64 hex>\"`: add it")
        if self.git is not None and self.commit is None:
            raise ValueError("a git source is pinned by `commit = \"<40 hex>\"`: add it")
        if self.sdist is None and self.sha256 is not None:
            raise ValueError("`sha256` pins an sdist: remove it, or add `sdist`")
        if self.git is None and (self.commit is not None or self.subdirectory is not None):
            raise ValueError("`commit` and `subdirectory` belong to a git source")
        return self

    @field_validator("sdist")
    @classmethod
    def _pinned_sdist(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            req = Requirement(value)
        except InvalidRequirement:
            raise ValueError(f"`{value}` is not `name==version`") from None
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            raise ValueError(f"`{value}` must pin one version: `name==version`")
        return value

    @field_validator("git")
    @classmethod
    def _git_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?|ssh|git|file)://\S+$|^/\S+$", value):
            raise ValueError(f"`{value}` is not a git URL (https://, ssh://, git://, file:// or"
                             " an absolute path)")
        return value

    @property
    def kind(self) -> str:
        return "sdist" if self.sdist else "git" if self.git else "path"

    @property
    def sdist_name_version(self) -> tuple[str, str]:
        assert self.sdist is not None
        req = Requirement(self.sdist)
        return canonicalize_name(req.name), next(iter(req.specifier)).version


def _requirement(value: str) -> Requirement:
    try:
        return Requirement(value)
    except InvalidRequirement as exc:
        raise ValueError(f"`{value}` is not a requirement: {exc}") from None


def same_requirement(a: Requirement, b: Requirement) -> bool:
    """Equal as pip reads them: canonical name, extras, specifier set and marker."""
    return (canonicalize_name(a.name), a.extras, a.specifier, str(a.marker or "")) == \
        (canonicalize_name(b.name), b.extras, b.specifier, str(b.marker or ""))


class Override(Model):
    """One Requires-Dist of an adopted wheel, replaced or dropped, and why."""

    requirement: str  # as the wheel's METADATA writes it (compared as pip reads it)
    replace: str | None = None  # omitted: the requirement is dropped
    reason: Annotated[str, Field(min_length=10)]

    @field_validator("requirement", "replace")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            _requirement(value)
        return value

    @model_validator(mode="after")
    def _same_project(self) -> Override:
        if self.replace is not None and canonicalize_name(Requirement(self.replace).name) != \
                canonicalize_name(Requirement(self.requirement).name):
            raise ValueError(f"`replace` ({self.replace}) must name the same project as"
                             f" `requirement` ({self.requirement}); to drop it, omit `replace`")
        return self


class Patch(Model):
    """A unified diff applied to an adopted wheel's files (wheels/patch.py), and why."""

    file: Path  # relative to the recipes folder
    reason: Annotated[str, Field(min_length=10)]


class Adopt(Model):
    """A prebuilt wheel taken as it is published (fetched through the index, sha256-pinned),
    relabelled for the platform, with its declared overrides, then tested like a build."""

    wheel: str  # the file's name on the index
    sha256: SHA256
    overrides: tuple[Override, ...] = ()
    patches: tuple[Patch, ...] = ()

    @field_validator("wheel")
    @classmethod
    def _wheel_name(cls, value: str) -> str:
        try:
            parse_wheel_filename(value)
        except (InvalidWheelFilename, InvalidVersion) as exc:
            raise ValueError(f"`{value}` is not a wheel's file name: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_override_each(self) -> Adopt:
        seen: list[Requirement] = []
        for o in self.overrides:
            req = Requirement(o.requirement)
            if any(same_requirement(req, s) for s in seen):
                raise ValueError(f"two overrides of `{o.requirement}`: keep one")
            seen.append(req)
        return self

    @property
    def name_version(self) -> tuple[str, str]:
        name, version, _, _ = parse_wheel_filename(self.wheel)
        return str(name), str(version)


class BuildSpec(Model):
    requires: tuple[str, ...] = ()  # installed before building, with no_build_isolation
    no_build_isolation: bool = False
    env: EnvTable = Field(default_factory=dict)
    pre_build: tuple[str, ...] = ()
    apt: AptPackages = ()
    exclude: tuple[str, ...] = ()

    @field_validator("requires")
    @classmethod
    def _requirements(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            _requirement(item)
        return value

    @model_validator(mode="after")
    def _requires_need_no_isolation(self) -> BuildSpec:
        if self.requires and not self.no_build_isolation:
            raise ValueError(
                "`requires` is installed into the platform's environment for a build without"
                " isolation: set no_build_isolation = true, or remove `requires` (an isolated"
                " build uses the source's own build-system.requires)"
            )
        return self


class TestSpec(Model):
    command: Annotated[str, Field(min_length=1)]
    requires: tuple[str, ...] = ()

    @field_validator("requires")
    @classmethod
    def _requirements(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return BuildSpec._requirements(value)


class Recipe(Model):
    name: Name  # the file's stem, filled in by the loader
    description: str = ""
    project: str | None = None
    requires_cuda: bool = False
    # distributions the platform's base must already ship (e.g. torchaudio): the recipe
    # is skipped on platforms without them
    base_requires: tuple[str, ...] = ()
    # a pure-Python wheel: built and tested once, published unlabelled to factory/common
    pure: bool = False
    platforms: tuple[str, ...] = ("*",)
    source: Source | None = None
    adopt: Adopt | None = None
    build: BuildSpec = BuildSpec()
    test: TestSpec
    # modules the wheel's dependencies ship that may fail the ABI audit where it is
    # installed into an image (its fit tests), with the reason; not an input of the wheel
    audit: Audit = Audit()

    @model_validator(mode="after")
    def _project_known(self) -> Recipe:
        if (self.source is None) == (self.adopt is None):
            raise ValueError("needs exactly one of [source] (a source to build) or [adopt]"
                             " (a prebuilt wheel to take)")
        if self.adopt is not None:
            if self.build != BuildSpec():
                raise ValueError("an adopted wheel is not built: remove [build]")
            named = canonicalize_name(self.adopt.name_version[0])
            if self.project is not None and canonicalize_name(self.project) != named:
                raise ValueError(f"`project` ({self.project}) differs from the wheel's name")
            return self
        assert self.source is not None
        if self.project is None and self.source.sdist is None:
            raise ValueError("a git or path source needs `project = \"<distribution name>\"`")
        if self.project is not None and self.source.sdist is not None and \
                canonicalize_name(self.project) != self.source.sdist_name_version[0]:
            raise ValueError(f"`project` ({self.project}) differs from the sdist's name")
        return self

    @property
    def distribution(self) -> str:
        """The canonical distribution name of the wheel this recipe makes."""
        if self.adopt is not None:
            return canonicalize_name(self.adopt.name_version[0])
        assert self.source is not None
        return canonicalize_name(self.project or self.source.sdist_name_version[0])

    @property
    def excludes(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(DEFAULT_EXCLUDES + self.build.exclude))

    def applies_to(self, platform: str, *, has_cuda: bool,
                   distributions: dict[str, str] | None = None) -> bool:
        if self.requires_cuda and not has_cuda:
            return False
        if distributions is not None and any(
                canonicalize_name(d) not in distributions for d in self.base_requires):
            return False
        return any(fnmatch.fnmatchcase(platform, pattern) for pattern in self.platforms)


def load_recipe(path: Path) -> Recipe:

    data, text = read_toml(path)
    if "name" in data and data["name"] != path.stem:
        raise ConfigError(f"{path}: name: `{data['name']}` differs from the file name",
                          hint=f"remove `name` (it is the file's stem, `{path.stem}`)")
    data = {**data, "name": path.stem}
    return validate(path, text, data, Recipe)


def load_recipes(directory: Path, names: list[str] | None = None,
                 exclude: Iterable[str] = ()) -> dict[str, Recipe]:
    """Every recipe (or the named ones). Two recipes may make one distribution (vLLM from
    source and adopted) when all but one are in `exclude`, or one is named."""
    found: dict[str, Recipe] = {}
    for path in sorted(directory.glob("*.toml")):
        recipe = load_recipe(path)
        found[recipe.name] = recipe
    if names:
        missing = [n for n in names if n not in found]
        if missing:
            raise ConfigError(f"no recipe {', '.join(missing)} in {directory}",
                              hint=f"recipes: {', '.join(found) or 'none'}")
    skipped = set() if names else set(exclude)
    by_dist: dict[str, str] = {}
    for recipe in found.values():
        if recipe.name in skipped or (names and recipe.name not in names):
            continue
        other = by_dist.setdefault(recipe.distribution, recipe.name)
        if other != recipe.name:
            raise ConfigError(
                f"{directory}: recipes `{other}` and `{recipe.name}` both make {recipe.distribution}",
                hint="keep one recipe per distribution, or list the others in factory.toml's"
                     " [wheels] exclude",
            )
    return {n: found[n] for n in names} if names else found


def factory_recipes(factory: Factory, names: list[str] | None = None) -> dict[str, Recipe]:
    """The recipes this factory builds: the named ones, else all but [wheels] exclude."""
    excluded = set(factory.config.wheels.exclude)
    recipes = load_recipes(factory.recipes_dir, names, exclude=excluded)
    return recipes if names else {n: r for n, r in recipes.items() if n not in excluded}
