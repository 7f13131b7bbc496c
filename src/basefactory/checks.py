"""`basefactory config check`: load and cross-check every input of the factory."""

from __future__ import annotations

from typing import Any

from basefactory.config.factory import Factory
from basefactory.images.definition import load_images
from basefactory.plumbing.errors import ConfigError
from basefactory.wheels.recipe import load_recipes


def check_all(factory: Factory) -> dict[str, Any]:
    recipes = (load_recipes(factory.recipes_dir, exclude=factory.config.wheels.exclude)
               if factory.recipes_dir.is_dir() else {})
    for name in factory.config.wheels.exclude:
        if name not in recipes:
            raise ConfigError(f"{factory.path}: wheels.exclude: no recipe `{name}` in"
                              f" {factory.recipes_dir}",
                              hint=f"recipes: {', '.join(sorted(recipes)) or 'none'}")
    images = (load_images(factory.images_dir, recipes=set(recipes))
              if factory.images_dir.is_dir() else {})
    checked = [
        f"{factory.path}: {len(factory.config.platforms)} platform(s):"
        f" {', '.join(factory.config.platforms)}",
        f"{factory.recipes_dir}: {len(recipes)} recipe(s): {', '.join(recipes) or 'none'}",
        f"{factory.images_dir}: {len(images)} image(s) in build order:"
        f" {' -> '.join(images) or 'none'}",
    ]
    return {"checked": checked, "platforms": list(factory.config.platforms),
            "recipes": list(recipes), "images": list(images)}
