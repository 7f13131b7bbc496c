"""What an image build would be, before anything is built: the images to ensure and
their parents (`walk`, `parent_of`), the recipe wheels an image pins, its lock, its
rendered Dockerfile and the input digest of all of them, and whether that digest is
already published (`plan_image`). `images build --dry-run` stops here; `publish.py`
goes on to build, audit, test, label and push."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from basefactory.images.definition import (
    ImageDef,
    chain,
    load_factory_images,
    root_of,
)
from basefactory.images.lock import Lock, lock_image, python_platform
from basefactory.platforms import store
from basefactory.platforms.fingerprint import Fingerprint
from basefactory.plumbing import digest, log, templates
from basefactory.plumbing.errors import ConfigError
from basefactory.proofs import Kind
from basefactory.proofs.read import proven
from basefactory.refs import (
    Labels,
    base_ref,
    common_index,
    parse_immutable_tag,
    platform_index,
    repository,
    slim_ref,
)
from basefactory.session import Session
from basefactory.wheels.publish import input_digest as wheel_input_digest
from basefactory.wheels.publish import published, source_digest
from basefactory.wheels.recipe import Recipe, load_recipes


@dataclass(frozen=True)
class ImageResult:
    image: str
    platform: str
    state: str  # built | current
    tag: str  # the immutable tag
    ref: str  # REGISTRY/factory/<image>:<immutable tag>
    input_digest: str
    size: int | None
    duration_s: float
    installed: dict[str, str] = field(repr=False, default_factory=dict)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("installed")
        return data


@dataclass(frozen=True)
class Parent:
    ref: str
    input_digest: str
    installed: dict[str, str]
    torch: str | None


def load_definitions(session: Session, names: list[str] | None = None
                     ) -> dict[str, ImageDef]:
    """Every image definition; with `names`, a ConfigError for any that is not one."""
    factory = session.factory
    images = load_factory_images(factory)
    unknown = [n for n in names or [] if n not in images]
    if unknown:
        raise ConfigError(f"no image {', '.join(unknown)} in {factory.images_dir}",
                          hint=f"images: {', '.join(images)}")
    return images


def recipe_pins(session: Session, image: ImageDef, platform: str, fp: Fingerprint
                ) -> tuple[dict[str, str], list[str]]:
    """(name -> exact version, hashed requirement lines) of the image's recipe wheels."""
    factory = session.factory
    recipes = load_recipes(factory.recipes_dir, list(image.wheels)) if image.wheels else {}
    pins: dict[str, str] = {}
    lines: list[str] = []
    for recipe in recipes.values():
        if not recipe.applies_to(platform, has_cuda=fp.cuda is not None,
                                 distributions=fp.distributions):
            log.detail(f"{image.name} on {platform}: recipe {recipe.name} does not apply here"
                       " (see its requires_cuda, base_requires, platforms)")
            continue
        found = _published_wheel(session, recipe, platform, fp)
        pins[recipe.distribution] = found.version
        lines.append(f"{recipe.distribution}=={found.version} --hash=sha256:{found.sha256}")
    return pins, lines


def _published_wheel(session: Session, recipe: Recipe, platform: str, fp: Fingerprint) -> Any:
    factory = session.factory
    index = common_index(factory) if recipe.pure else platform_index(factory, platform)
    wanted = wheel_input_digest(recipe, fp, source_digest(session, recipe))
    found = published(session.devpi.release_files(index, recipe.distribution), wanted)
    if found is None or not proven(session.proofs.wheel(found), Kind.WHEEL_TEST):
        raise ConfigError(
            f"the image needs recipe wheel {recipe.name} on {platform}, which is not published"
            " (or not tested) for its current inputs",
            hint=f"run `basefactory wheels build {recipe.name} --platform {platform}` first",
        )
    return found


def root_parent(session: Session, root: str, platform: str, fp: Fingerprint) -> Parent:
    factory = session.factory
    labels = session.registry.labels(repository(factory, "base"), platform)
    base_digest = labels.get(Labels.INPUT_DIGEST, fp.base_digest)
    if root == "platform":
        return Parent(base_ref(factory, platform), base_digest, dict(fp.distributions),
                      fp.torch_installed)
    if fp.slim_image is None:
        raise ConfigError(f"platform {platform} has no slim (torch-free) image",
                          hint="give the platform `slim_image`, or use parent = \"platform\"")
    return Parent(slim_ref(factory, platform), "slim:" + base_digest,
                  dict(fp.slim_distributions), None)


def render(image: ImageDef, parent: str, *, has_lock: bool, has_wheels: bool,
           index_ca: bool = False, uv_constraint: str = "") -> str:
    """`uv_constraint`: the base's pip constraint files, which uv is given too."""
    context = {"parent": parent, "apt": image.apt, "env": image.env, "has_lock": has_lock,
               "has_wheels": has_wheels, "index_ca": index_ca, "uv_constraint": uv_constraint}
    if image.template is not None:
        return templates.render_file(image.template, **context)
    return templates.render("image.Dockerfile.j2", **context)


@dataclass(frozen=True)
class ImagePlan:
    inputs: str
    dockerfile: str
    lock: Lock  # its text, what it pins, and its versions for the label
    pins: dict[str, str]
    wheel_lines: list[str]
    installed: dict[str, str]
    existing: str | None  # the immutable tag already pushed for these inputs
    action: str  # current | build
    reason: str


def plan_image(session: Session, image: ImageDef, platform: str, parent: Parent,
               *, upgrade: bool = False, write_lock: bool = True) -> ImagePlan:
    factory = session.factory
    fp = store.require(factory, session.devpi, platform)
    pins, wheel_lines = recipe_pins(session, image, platform, fp)
    index_url = session.devpi.simple_url(platform_index(factory, platform))
    lock = lock_image(image, platform=platform, images_dir=factory.images_dir,
                      parent=parent.installed, pins=pins, index_url=index_url,
                      python=".".join(fp.python.split(".")[:2]),
                      target=python_platform(fp.arch, fp.glibc), upgrade=upgrade,
                      write=write_lock, installed_only=frozenset(fp.unindexed),
                      index_ca=factory.config.index.build_ca)
    # how the build trusts the index is no input of what it makes: the digest is of the
    # Dockerfile without the CA's mounts, so a site that moves its index behind TLS
    # rebuilds nothing
    uv_constraint = " ".join(fp.pip_constraint_files)
    plain = render(image, parent.ref, has_lock=bool(lock.entries), has_wheels=bool(wheel_lines),
                   uv_constraint=uv_constraint)
    dockerfile = render(image, parent.ref, has_lock=bool(lock.entries),
                        has_wheels=bool(wheel_lines),
                        index_ca=factory.config.index.build_ca is not None,
                        uv_constraint=uv_constraint)
    files = [] if image.files is None else [digest.tree_sha256(image.files)]
    inputs = digest.of(parent.input_digest, lock.text, sorted(wheel_lines), plain,
                       image.model_dump(mode="json", exclude={"description", "template", "files"}),
                       *files)
    installed = {**parent.installed, **lock.entries, **pins}
    tags = session.registry.tags(repository(factory, image.name))
    existing, action, reason = decide(tags, platform, inputs, lock_reused=lock.reused)
    return ImagePlan(inputs, dockerfile, lock, pins, wheel_lines, installed, existing,
                     action, reason)


def decide(tags: list[str], platform: str, inputs: str, *, lock_reused: bool
           ) -> tuple[str | None, str, str]:
    """(the immutable tag already pushed for these inputs, current | build, why), from the
    image's tags in the registry. An immutable tag is `<platform>-<day>-<digest12>`; of
    several builds of the same inputs (days apart) the newest day is the one."""
    same = sorted(t for t in tags if (parsed := parse_immutable_tag(t)) is not None
                  and parsed.platform == platform and parsed.digest == inputs[:12])
    if same:
        return same[-1], "current", "inputs unchanged"
    if not any((parsed := parse_immutable_tag(t)) is not None and parsed.platform == platform
               for t in tags):
        return None, "build", "first build"
    if not lock_reused:
        return None, "build", "requirements or parent changed (new lock)"
    return None, "build", "parent, recipe wheels, Dockerfile, apt or env changed"


def needed(images: dict[str, ImageDef], names: list[str] | None) -> list[str]:
    """The images to ensure, parents first: the named ones and their ancestors (which they
    are built on); all by default. Children of a rebuilt image are not rebuilt with it:
    they show as not current until they are named or a full publish runs, as `docker
    build` of a parent leaves its children alone."""
    wanted = {a for n in (names or images) for a in chain(images, n)}
    return [n for n in images if n in wanted]


def walk(images: dict[str, ImageDef], names: list[str] | None, platform: str) -> list[ImageDef]:
    """The images to ensure on `platform`, parents first: the named ones and their
    ancestors (all by default). An image that does not apply to the platform is left out,
    and so is every image built on it."""
    wanted, kept = set(needed(images, names)), set()
    for name, image in images.items():
        if name in wanted and image.applies_to(platform) and (
                image.parent not in images or image.parent in kept):
            kept.add(name)
    return [image for name, image in images.items() if name in kept]


def parent_of(session: Session, images: dict[str, ImageDef], image: ImageDef, platform: str,
              fp: Fingerprint, built: ImageResult | None) -> Parent:
    """What `image` is built on: `built`, the result of its parent image on this platform,
    or (None) the platform's base or slim image."""
    if built is None:
        return root_parent(session, image.parent, platform, fp)
    torch = fp.torch_installed if root_of(images, image.name) == "platform" else None
    return Parent(built.ref, built.input_digest, built.installed, torch)
