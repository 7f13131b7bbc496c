"""images/<name>/: image.toml, requirements.in, an optional Dockerfile.j2 (it may
`{% include "image.Dockerfile.j2" %}` and add steps) and an optional files/ folder, which
is in the build context as files/ (for the template's COPY) and in the image's inputs.

    description = "..."
    parent = "platform"        # the platform's base (torch); "slim" (Python, no torch);
                               # or another image's name
    wheels = ["torchsort"]     # recipe wheels from the platform's index
    apt = ["libsndfile1"]      # Debian packages
    platforms = ["*"]          # names or globs of platforms it is built for
    size_budget_mb = 4000      # the smoke test fails above it; or a table of
                               # platform globs to budgets: {"cpu-*" = 2500, "*" = 12000}
    [env]                      # environment defaults
    PYTHONUNBUFFERED = "1"
    [smoke]
    imports = ["numpy"]        # modules it promises (its requirements' are added)
    command = "python -c ..."  # an extra check
    [[audit.allow]]            # a shared object that may fail the ABI audit, and why
    module = "numba/np/ufunc/tbbpool*"
    reason = "numba's optional TBB layer; libtbb is not installed"

Definitions are validated like factory.toml; a cycle, an unknown parent or recipe, or a
bad requirement is one ConfigError naming the file and the fix.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Annotated

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from pydantic import Field, field_validator

from basefactory.adapters.registry_api import CatalogRefused, Registry
from basefactory.audit.allow import Audit
from basefactory.config.factory import Factory
from basefactory.config.loader import read_toml, validate
from basefactory.config.models import AptPackages, EnvTable, Model, Name
from basefactory.plumbing.errors import ConfigError
from basefactory.refs import cache_repository, repository, zstd_repository
from basefactory.wheels.recipe import load_recipes

ROOT_PARENTS = ("platform", "slim")


class Smoke(Model):
    imports: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")], ...] = ()
    command: str | None = None


class ImageDef(Model):
    name: Name
    description: str = ""
    parent: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")] = "platform"
    wheels: tuple[Name, ...] = ()
    apt: AptPackages = ()
    env: EnvTable = Field(default_factory=dict)
    platforms: tuple[str, ...] = ("*",)
    # one budget, or {platform glob: budget}: the first glob that matches wins
    size_budget_mb: Annotated[int, Field(gt=0)] | dict[str, Annotated[int, Field(gt=0)]]
    smoke: Smoke = Smoke()
    audit: Audit = Audit()
    requirements: tuple[str, ...] = ()  # read from requirements.in by the loader
    template: Path | None = None  # images/<name>/Dockerfile.j2, if present
    files: Path | None = None  # images/<name>/files/, if present: in the build context

    @field_validator("size_budget_mb")
    @classmethod
    def _budgets(cls, value: int | dict[str, int]) -> int | dict[str, int]:
        if isinstance(value, dict) and not value:
            raise ValueError("give a budget, or a table of platform globs to budgets")
        return value

    def budget_for(self, platform: str) -> int:
        if isinstance(self.size_budget_mb, int):
            return self.size_budget_mb
        for pattern, budget in self.size_budget_mb.items():
            if fnmatch.fnmatchcase(platform, pattern):
                return budget
        raise ConfigError(f"image {self.name}: no size_budget_mb entry matches platform"
                          f" {platform}", hint='add a catch-all, e.g. "*" = 8000')

    def applies_to(self, platform: str) -> bool:
        return any(fnmatch.fnmatchcase(platform, p) for p in self.platforms)

    @property
    def requirement_names(self) -> list[str]:
        return [canonicalize_name(Requirement(r).name) for r in self.requirements]


def read_requirements(path: Path) -> tuple[str, ...]:
    if not path.exists():
        return ()
    found = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-"):
            raise ConfigError(f"{path}:{number}: `{line}`: options are not supported here",
                              hint="list one requirement per line; the index is the factory's")
        try:
            req = Requirement(line)
        except InvalidRequirement as exc:
            raise ConfigError(f"{path}:{number}: `{line}` is not a requirement: {exc}",
                              hint="write e.g. `numpy>=1.26`") from None
        if req.url:
            raise ConfigError(f"{path}:{number}: `{line}`: direct URLs are not allowed",
                              hint="publish it through a recipe and name it in `wheels`")
        found.append(line)
    return tuple(found)


def load_image(folder: Path) -> ImageDef:
    path = folder / "image.toml"
    data, text = read_toml(path)
    if "name" in data:
        raise ConfigError(f"{path}: name: remove it (an image's name is its folder's,"
                          f" `{folder.name}`)")
    data = {**data, "name": folder.name,
            "requirements": read_requirements(folder / "requirements.in")}
    template = folder / "Dockerfile.j2"
    if template.exists():
        data["template"] = template
    if (folder / "files").is_dir():
        data["files"] = folder / "files"
    return validate(path, text, data, ImageDef)


def load_factory_images(factory: Factory) -> dict[str, ImageDef]:
    """The factory's image definitions, checked against its recipes."""

    return load_images(factory.images_dir, recipes=set(load_recipes(
        factory.recipes_dir, exclude=factory.config.wheels.exclude)))


def load_images(directory: Path, *, recipes: set[str]) -> dict[str, ImageDef]:
    """Every image, checked against each other and the recipes, in build order."""
    images = {}
    for folder in sorted(p for p in directory.iterdir() if (p / "image.toml").exists()):
        image = load_image(folder)
        images[image.name] = image
    for image in images.values():
        where = directory / image.name / "image.toml"
        if image.parent not in ROOT_PARENTS and image.parent not in images:
            raise ConfigError(
                f"{where}: parent: no image `{image.parent}`",
                hint=f"use \"platform\", \"slim\" or one of: {', '.join(sorted(images))}",
            )
        for wheel in image.wheels:
            if wheel not in recipes:
                raise ConfigError(f"{where}: wheels: no recipe `{wheel}` in recipes/",
                                  hint=f"recipes: {', '.join(sorted(recipes))}")
    ordered = {name: images[name] for name in order(images, directory)}
    # A child holds its parents' files, so its ABI audit meets their modules too: it
    # inherits their allowances (parents come first, so theirs are already complete).
    for name, image in ordered.items():
        parent = ordered.get(image.parent)
        if parent is not None and parent.audit.allow:
            ordered[name] = image.model_copy(
                update={"audit": Audit(allow=parent.audit.allow + image.audit.allow)})
    return ordered


def order(images: dict[str, ImageDef], directory: Path) -> list[str]:
    """Parents before children; a cycle is a ConfigError naming it."""
    done: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join(visiting[visiting.index(name):] + [name])
            raise ConfigError(f"{directory}: the images' parents form a cycle: {cycle}",
                              hint="an image's parent chain must end at \"platform\" or \"slim\"")
        visiting.append(name)
        parent = images[name].parent
        if parent in images:
            visit(parent)
        visiting.pop()
        done.append(name)

    for name in sorted(images):
        visit(name)
    return done


def chain(images: dict[str, ImageDef], name: str) -> list[str]:
    """The image and its ancestors, nearest first."""
    names = [name]
    while images[names[-1]].parent in images:
        names.append(images[names[-1]].parent)
    return names


def root_of(images: dict[str, ImageDef], name: str) -> str:
    return images[chain(images, name)[-1]].parent


def repositories(factory: Factory, registry: Registry) -> list[str]:
    """The registry's repositories under the factory's namespaces: its `_catalog`, or,
    where the registry serves none (GHCR, ECR, a restricted Harbor), the ones the factory
    itself names: base, slim, every image definition, their zstd copies, the builders."""
    try:
        return registry.repositories()
    except CatalogRefused:
        names = ["base", "slim", *load_factory_images(factory)]
        found = [repository(factory, n) for n in names]
        if factory.config.registry.zstd:
            found += [zstd_repository(factory, n) for n in names]
        return [*found, cache_repository(factory, "builder")]
