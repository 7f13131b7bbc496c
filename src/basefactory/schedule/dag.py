"""The steps of a publish and their dependencies, as data.

    platform:P        bootstrap or probe platform P
    wheel:R:P         build, test and upload recipe R's wheel for P (a pure recipe once,
                      on its first platform, to the common index)
    image:I:P         build, audit, smoke-test and push image I on P
    fit:I:P           fit every published wheel of P into image I (I may be the
                      platform's `base` or `slim`)

An image needs its platform, its parent image and the recipe wheels it includes; a fit
needs its image and every wheel of its platform. `current` and `input_digest` come from
the same planning `publish --dry-run` does, on what is published now: an image whose
parent is to be rebuilt is planned on the parent's planned build (its digest is final
only if the parent's lock resolves the same when it runs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from basefactory.images import fit
from basefactory.images import publish as images
from basefactory.images.plan import ImageResult, load_definitions, parent_of, plan_image, walk
from basefactory.pipeline import platform_state, split_only
from basefactory.platforms import store
from basefactory.plumbing.errors import ConfigError
from basefactory.session import Session
from basefactory.wheels import publish as wheels
from basefactory.wheels.recipe import Recipe, factory_recipes

PLATFORM_IMAGES = ("base", "slim")  # fit targets every platform has, not image definitions


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # platform | wheel | image | fit
    name: str  # the platform, recipe or image
    platform: str
    needs: tuple[str, ...]
    current: bool
    input_digest: str | None  # None where nothing names it yet (a platform not probed)
    reason: str
    # what a worker must have: every step a Docker engine; a CUDA compile the toolkit
    resources: dict[str, int] = field(default_factory=lambda: {"docker": 1})

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["needs"] = list(self.needs)
        return data


def node_id(kind: str, *parts: str) -> str:
    return ":".join((kind, *parts))


def parse_id(step_id: str) -> tuple[str, list[str]]:
    """(kind, parts) of a step id, or a ConfigError saying what an id looks like."""
    kind, _, rest = step_id.partition(":")
    parts = rest.split(":") if rest else []
    expected = {"platform": 1, "wheel": 2, "image": 2, "fit": 2}
    if expected.get(kind) != len(parts) or not all(parts):
        raise ConfigError(f"`{step_id}` is not a step id",
                          hint="platform:P, wheel:RECIPE:P, image:IMAGE:P or fit:IMAGE:P"
                          " (`basefactory plan` lists them)")
    return kind, parts


def build(session: Session, *, platforms: list[str] | None = None,
          only: list[str] | None = None) -> list[Node]:
    """Every step of a publish of `platforms` (all) and `only` (recipes and images by
    name, an image with its ancestors; all by default), dependencies first."""
    factory = session.factory
    names = factory.platforms(platforms)
    recipe_names, image_names = split_only(session, only)
    nodes: list[Node] = []
    for platform in names:
        fp = store.load(factory, session.devpi, platform)
        current, reason = platform_state(session, platform, fp)
        nodes.append(Node(
            node_id("platform", platform), "platform", platform, platform, (), current,
            fp.base_digest if fp is not None else None, reason,
            {"docker": 1, **({"cuda_toolkit": 1} if fp is not None and fp.cuda else {})}))
    if any(not n.current for n in nodes):
        # wheels and images are planned against a probed platform: stop at what is known
        return nodes
    wheel_nodes: dict[str, Node] = {}  # recipe -> its node on a platform, per platform
    by_platform: dict[str, list[Node]] = {p: [] for p in names}
    if recipe_names is None or recipe_names:
        for recipe, platform in wheels.plan(session, recipe_names or None, names):
            planned = wheels.plan_wheel(session, recipe, platform)
            node = Node(node_id("wheel", recipe.name, platform), "wheel", recipe.name, platform,
                        (node_id("platform", platform),), planned.action == "current",
                        planned.digest, planned.reason, _wheel_resources(recipe))
            nodes.append(node)
            wheel_nodes[f"{recipe.name}@{platform}"] = node
            for p in (names if recipe.pure else [platform]):
                by_platform[p].append(node)
    if image_names is not None and not image_names:
        return nodes
    definitions = load_definitions(session, image_names or None)
    planned_images: dict[tuple[str, str], ImageResult] = {}
    for platform in names:
        platform_wheels = {n.name: n for n in by_platform[platform]}
        fp_ = store.require(factory, session.devpi, platform)
        for image in walk(definitions, image_names or None, platform):
            # planned on the published parent, as `publish --dry-run` plans (ancestors too)
            parent = parent_of(session, definitions, image, platform, fp_,
                               planned_images.get((image.parent, platform)))
            result = images.planned_result(session, image, platform, plan_image(
                session, image, platform, parent, write_lock=False))
            planned_images[(image.name, platform)] = result
            needs = [node_id("platform", platform)]
            if image.parent in definitions:
                needs.append(node_id("image", image.parent, platform))
            needs += [platform_wheels[r].id for r in image.wheels if r in platform_wheels]
            nodes.append(Node(node_id("image", image.name, platform), "image", image.name,
                              platform, tuple(needs), result.state == "current",
                              result.input_digest, result.reason))
        targets = ([*PLATFORM_IMAGES] if image_names is None else []) + [
            i.name for i in walk(definitions, image_names or None, platform)]
        nodes += _fits(session, platform, targets, planned_images, definitions,
                       list(platform_wheels.values()))
    return nodes


def _fits(session: Session, platform: str, targets: list[str],
          planned: dict[tuple[str, str], ImageResult], definitions: dict[str, Any],
          wheel_nodes: list[Node]) -> list[Node]:
    """One fit step per image: every wheel of the platform into it. Current when the
    image and every wheel are, and each pair has its fit proof."""
    found = []
    wheels_current = all(n.current for n in wheel_nodes)
    current_images = [(t, planned[(t, platform)].tag) for t in targets
                      if t not in PLATFORM_IMAGES and planned[(t, platform)].state == "current"]
    published = fit.targets(session, platform, current_images, definitions,
                            platform_images=any(t in PLATFORM_IMAGES for t in targets))
    recipes = factory_recipes(session.factory)
    candidates = fit.candidates(session, platform, recipes) if wheels_current else []
    for name in targets:
        target = next((t for t in published if t.image == name), None)
        pairs = fit.pairs(session, [target], candidates) if target is not None else []
        current = target is not None and wheels_current and all(p.proof is not None for p in pairs)
        image_need = (node_id("platform", platform) if name in PLATFORM_IMAGES else
                      node_id("image", name, platform))
        reason = (f"{len(pairs)} pairs proven" if current else
                  "its image or a wheel is not current" if target is None or not wheels_current
                  else f"{sum(p.proof is None for p in pairs)} of {len(pairs)} pairs not tested")
        found.append(Node(node_id("fit", name, platform), "fit", name, platform,
                          (image_need, *(n.id for n in wheel_nodes)), current,
                          target.digest if target is not None else None, reason))
    return found


def _wheel_resources(recipe: Recipe) -> dict[str, int]:
    return {"docker": 1, **({"cuda_toolkit": 1} if recipe.requires_cuda else {})}


def order(nodes: list[Node]) -> list[Node]:
    """Dependencies first (the order `build` gives; checked, since CI exports rely on it)."""
    seen: set[str] = set()
    for node in nodes:
        missing = [n for n in node.needs if n not in seen]
        if missing:
            raise ValueError(f"{node.id} comes before {', '.join(missing)}")
        seen.add(node.id)
    return nodes
