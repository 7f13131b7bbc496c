"""The README's configuration reference documents every key the config models accept:
a key added to a model and not to the README fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from basefactory.audit.allow import Audit
from basefactory.config.models import FactoryConfig, Platform
from basefactory.images.definition import ImageDef
from basefactory.wheels.recipe import Recipe

README = (Path(__file__).parents[2] / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"### {title}")
    end = README.find("\n### ", start + 1)
    return README[start:end if end != -1 else None]


def keys(model: type[BaseModel], skip: set[str] = frozenset()) -> set[str]:  # type: ignore[assignment]
    found = set()
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        found.add(name)
        inner: Any = field.annotation
        for candidate in getattr(inner, "__args__", ()) + (inner,):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found |= keys(candidate)
    return found


def documented(text: str) -> set[str]:
    return {k for cell in re.findall(r"^\| ([^|]*`[^|]*) \|", text, re.M)
            for k in re.findall(r"`(?:\[+[^\]]+\]+ )?\[*([a-z_][a-z0-9_]*)\]*`", cell)}


def test_every_factory_toml_key_is_in_the_reference() -> None:
    wanted = keys(FactoryConfig, {"platforms"}) | keys(Platform)
    # names of tables, not keys
    wanted -= {"index", "registry", "engine", "wheels", "catalog", "builders", "bootstrap",
               "retention"}
    missing = wanted - documented(section("factory.toml"))
    assert not missing, f"README's factory.toml reference lacks {sorted(missing)}"


def test_every_recipe_and_image_key_is_in_the_reference() -> None:
    recipe = (keys(Recipe, {"name"}) | keys(Audit)) - {"source", "adopt", "overrides", "patches", "build", "test", "audit", "allow"}
    missing = recipe - documented(section("recipes/NAME.toml"))
    assert not missing, f"README's recipe reference lacks {sorted(missing)}"
    # requirements, template and files come from files beside image.toml, documented below it
    image = keys(ImageDef, {"name", "requirements", "template", "files"}) - {"smoke", "audit", "allow"}
    missing = image - documented(section("images/NAME/image.toml"))
    assert not missing, f"README's image reference lacks {sorted(missing)}"


def test_the_check_catches_an_undocumented_key() -> None:
    assert "replica_port" in documented(section("factory.toml"))
    assert "no_such_key" not in documented(section("factory.toml"))
