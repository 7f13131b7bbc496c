"""`basefactory run STEP_ID`: exactly one step of the DAG, idempotently. A current step is
a no-op; a step whose inputs are not published yet fails, naming the step to run first.
Each is the same call `publish` makes for that step, so a DAG run step by step (by a CI
system or Dask) publishes what one `publish` would."""

from __future__ import annotations

from basefactory import pipeline
from basefactory.images import fit
from basefactory.images import publish as images
from basefactory.images.plan import ImageResult, load_definitions, parent_of, plan_image, walk
from basefactory.pipeline import Step
from basefactory.platforms import store
from basefactory.plumbing.errors import ConfigError
from basefactory.schedule.dag import PLATFORM_IMAGES, node_id, parse_id
from basefactory.session import Session
from basefactory.wheels.recipe import factory_recipes


def run_step(session: Session, step_id: str) -> list[Step]:
    kind, parts = parse_id(step_id)
    platform = parts[-1]
    if platform not in session.factory.config.platforms:
        raise ConfigError(f"{step_id}: no platform `{platform}` in {session.factory.path}",
                          hint=f"platforms: {', '.join(session.factory.config.platforms)}")
    if kind == "platform":
        return [pipeline.run_platform(session, platform)]
    fp = store.load(session.factory, session.devpi, platform)
    if fp is None:
        raise _not_yet(step_id, node_id("platform", platform), "its platform is not probed")
    if kind == "wheel":
        recipes = factory_recipes(session.factory)
        if parts[0] not in recipes:
            raise ConfigError(f"{step_id}: no recipe `{parts[0]}`",
                              hint=f"recipes: {', '.join(sorted(recipes))}")
        return [pipeline.run_wheel(session, recipes[parts[0]], platform)]
    if kind == "image":
        return [_image(session, step_id, parts[0], platform)]
    return _fit(session, step_id, parts[0], platform)


def _image(session: Session, step_id: str, name: str, platform: str) -> Step:
    definitions = load_definitions(session, [name])
    chain = walk(definitions, [name], platform)
    if not chain or chain[-1].name != name:
        raise ConfigError(f"{step_id}: image `{name}` (or an image it is built on) is not"
                          f" built for {platform}", hint="see the image's `platforms`")
    fp = store.require(session.factory, session.devpi, platform)
    built: ImageResult | None = None
    for ancestor in chain[:-1]:  # each must be published for its current inputs
        parent = parent_of(session, definitions, ancestor, platform, fp, built)
        planned = plan_image(session, ancestor, platform, parent, write_lock=False)
        if planned.existing is None:
            raise _not_yet(step_id, node_id("image", ancestor.name, platform),
                           f"the image it is built on, {ancestor.name}, is not published for"
                           " its current inputs")
        built = images.planned_result(session, ancestor, platform, planned)
    image = chain[-1]
    result = images.ensure_image(session, image, platform,
                                 parent_of(session, definitions, image, platform, fp, built))
    return Step("image", result.image, result.platform, result.state, result.reason,
                result.duration_s, result.size, result.ref)


def _fit(session: Session, step_id: str, name: str, platform: str) -> list[Step]:
    definitions = load_definitions(session, None if name in PLATFORM_IMAGES else [name])
    images_ = [] if name in PLATFORM_IMAGES else [(name, platform)]
    targets = [t for t in fit.targets(session, platform, images_, definitions,
                                      platform_images=name in PLATFORM_IMAGES)
               if t.image == name]
    if not targets:
        need = node_id("platform" if name in PLATFORM_IMAGES else "image",
                       *([platform] if name in PLATFORM_IMAGES else [name, platform]))
        raise _not_yet(step_id, need, f"{name} is not in the registry for {platform}")
    candidates = fit.candidates(session, platform, factory_recipes(session.factory))
    return [pipeline.run_fit(session, pair) for pair in fit.pairs(session, targets, candidates)]


def _not_yet(step_id: str, first: str, why: str) -> ConfigError:
    return ConfigError(f"{step_id} cannot run yet: {why}", hint=f"run {first} first")

