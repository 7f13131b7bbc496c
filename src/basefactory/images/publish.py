"""The image step of the pipeline, parents first, for each platform:

    lock -> render -> build -> smoke test -> label -> push immutable tag -> read its digest
    back -> move the platform's tag

An image's input digest (its parent's digest, lock, recipe wheels, rendered Dockerfile,
apt and env) names its immutable tag `<platform>-<YYYYMMDD>-<digest12>`; an image whose
digest is already tagged in the registry is not rebuilt. Nothing is pushed before the
smoke test passed, and the moving tag `<platform>` moves only after the immutable tag is
pushed and its digest read back from the registry.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from basefactory.adapters.tools import beside_python
from basefactory.audit.abi import audit_image, require_clean
from basefactory.images import compression, push, sbom
from basefactory.images.definition import (
    ImageDef,
    chain,
    load_factory_images,
    root_of,
)
from basefactory.images.diff import compare, packages, summary
from basefactory.images.lock import lock_image, lock_versions, parse, python_platform
from basefactory.images.smoke import smoke_test
from basefactory.index.layout import common_index, platform_index
from basefactory.platforms import store
from basefactory.platforms.fingerprint import Fingerprint
from basefactory.plumbing import digest, log, templates
from basefactory.plumbing.errors import BuildError, ConfigError
from basefactory.plumbing.faults import checkpoint
from basefactory.proofs import Kind, Proof, Subject, store_labels
from basefactory.proofs.read import proven
from basefactory.refs import Labels, base_ref, image_ref, immutable_tag, repository, slim_ref
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


def render(image: ImageDef, parent: str, *, has_lock: bool, has_wheels: bool) -> str:
    context = {"parent": parent, "apt": image.apt, "env": image.env, "has_lock": has_lock,
               "has_wheels": has_wheels}
    if image.template is not None:
        return templates.render_file(image.template, **context)
    return templates.render("image.Dockerfile.j2", **context)


@dataclass(frozen=True)
class ImagePlan:
    inputs: str
    dockerfile: str
    lock_text: str
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
                      write=write_lock, installed_only=frozenset(fp.unindexed))
    dockerfile = render(image, parent.ref, has_lock=bool(lock.entries),
                        has_wheels=bool(wheel_lines))
    files = [] if image.files is None else [digest.tree_sha256(image.files)]
    inputs = digest.of(parent.input_digest, lock.text, sorted(wheel_lines), dockerfile,
                       image.model_dump(mode="json", exclude={"description", "template", "files"}),
                       *files)
    installed = {**parent.installed, **lock.entries, **pins}
    tags = session.registry.tags(repository(factory, image.name))
    existing = sorted(t for t in tags
                      if t.startswith(f"{platform}-") and t.endswith(f"-{inputs[:12]}"))
    if existing:
        return ImagePlan(inputs, dockerfile, lock.text, pins, wheel_lines,
                         installed, existing[-1], "current", "inputs unchanged")
    if not any(t.startswith(f"{platform}-") for t in tags):
        reason = "first build"
    elif not lock.reused:
        reason = "requirements or parent changed (new lock)"
    else:
        reason = "parent, recipe wheels, Dockerfile, apt or env changed"
    return ImagePlan(inputs, dockerfile, lock.text, pins, wheel_lines,
                     installed, None, "build", reason)


def ensure_image(session: Session, image: ImageDef, platform: str, parent: Parent,
                 *, upgrade: bool = False) -> ImageResult:
    started = time.monotonic()
    factory = session.factory
    fp = store.require(factory, session.devpi, platform)
    plan_ = plan_image(session, image, platform, parent, upgrade=upgrade)
    inputs, dockerfile, installed = plan_.inputs, plan_.dockerfile, plan_.installed
    wheel_lines, pins = plan_.wheel_lines, plan_.pins
    index_url = session.devpi.simple_url(platform_index(factory, platform))
    repo = repository(factory, image.name)
    moving = image_ref(factory, image.name, platform)
    if plan_.existing is not None:
        tag = plan_.existing
        ref = image_ref(factory, image.name, tag)
        _move_tag_if_behind(session, repo, tag, platform, ref, moving)
        return ImageResult(image.name, platform, "current", tag, ref, inputs, None,
                           round(time.monotonic() - started, 2), installed, plan_.reason)

    tag = immutable_tag(platform, inputs)
    ref = image_ref(factory, image.name, tag)
    work = factory.state_dir / "build" / "images" / f"{image.name}-{platform}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "Dockerfile").write_text(dockerfile)
    (work / "lock.txt").write_text(plan_.lock_text)
    (work / "wheels.txt").write_text("".join(f"{line}\n" for line in wheel_lines))
    shutil.copy2(beside_python("uv"), work / "uv")
    if image.files is not None:
        shutil.copytree(image.files, work / "files", symlinks=True)
    index = platform_index(factory, platform)
    locked = parse(plan_.lock_text)
    with log.step(f"{image.name} on {platform}: {len(locked)} locked versions on {index}"):
        missing = session.devpi.wait_listed(index, locked)
    if missing:
        raise BuildError(
            f"{index} does not list {', '.join(f'{n}=={v}' for n, v in sorted(missing.items()))},"
            f" which the lock of {image.name} on {platform} pins; nothing was built",
            hint="its mirror could not fetch them (see .factory/logs/devpi.log): check the"
            " mirror's network, or relock with `basefactory images build --upgrade`",
        )
    logs = factory.logs_dir / "images"
    build_log = logs / f"{image.name}-{platform}-build.log"
    build_log.unlink(missing_ok=True)
    local = f"basefactory/image-build:{image.name}-{platform}"
    with log.step(f"{image.name} on {platform}: build (log: {build_log})"):
        try:
            session.docker.build(work, dockerfile=work / "Dockerfile", tags=[local],
                                 build_args={"INDEX_URL": index_url}, log_file=build_log,
                                 on_line=lambda _: checkpoint("image:during-build"))
        except Exception as exc:
            if isinstance(exc, BuildError):
                raise
            raise BuildError(f"image {image.name} failed to build on {platform}; nothing was"
                             f" pushed.\n{exc}", hint="read the build log") from None
    # The audit before the smoke test: a module built for another torch fails both, and the
    # audit names the distribution, module and symbol where the smoke test has only an
    # import error.
    with log.step(f"{image.name} on {platform}: ABI audit"):
        report = audit_image(session.docker, local, work=work,
                             log_file=logs / f"{image.name}-{platform}-audit.log"
                             ).allowing(image.audit.allow)
        require_clean(report, f"image {image.name} on {platform}", refused="nothing was pushed")
    promised = sorted(set(image.requirement_names) | set(pins))
    with log.step(f"{image.name} on {platform}: smoke test"):
        result = smoke_test(session.docker, local, image=image.name, platform=platform,
                            promised=promised, torch=parent.torch,
                            budget_mb=image.budget_for(platform), command=image.smoke.command,
                            work=work, log_file=logs / f"{image.name}-{platform}-smoke.log")
    subject = Subject(platform=platform, image=image.name, image_digest=inputs)
    proofs = [result.proof(image=image.name, platform=platform, inputs=inputs),
              report.proof(subject, inputs=inputs)]
    labels = _labels(session, image, platform, parent, fp, tag, inputs, plan_.lock_text, pins,
                     result.manifest, proofs, plan_.wheel_lines)
    with log.step(f"{image.name} on {platform}: SBOM"):
        bom = _sbom(session, image.name, platform, tag, local, labels, work)
    final = work / "label"
    final.mkdir()
    (final / "Dockerfile").write_text(f"FROM {local}\n")
    session.docker.build(final, dockerfile=final / "Dockerfile", tags=[ref, moving],
                         labels=labels, log_file=build_log)
    if upgrade:
        _show_upgrade(session, repo, platform, labels)
    with log.step(f"{image.name} on {platform}: push {ref}"):
        push.publish(_push_steps(session, image.name, platform, tag, bom=bom,
                                 log_file=logs / f"{image.name}-{platform}-push.log"))
    session.docker.remove_image(local)
    shutil.rmtree(work, ignore_errors=True)
    return ImageResult(image.name, platform, "built", tag, ref, inputs, result.size,
                       round(time.monotonic() - started, 2), installed, plan_.reason)


def _show_upgrade(session: Session, repo: str, platform: str, labels: dict[str, str]) -> None:
    """`images build --upgrade`: what the new build changes against the published one,
    shown before it is pushed."""
    previous = session.registry.labels(repo, platform)
    if not previous:
        return
    for line in summary(compare(packages(previous), packages(labels))):
        log.info(f"{repo}:{platform} upgrade: {line}")


def _move_tag_if_behind(session: Session, repo: str, tag: str, platform: str, ref: str,
                        moving: str) -> None:
    """A run that died between the two pushes left the moving tag behind: finish it (and
    the zstd copy's, which is made before either moving tag moves)."""
    image = repo.rpartition("/")[2]
    if push.finish(_push_steps(session, image, platform, tag, bom=None, log_file=None)):
        log.info(f"moved {moving} to {tag} (a previous run stopped before it did)")


def _push_steps(session: Session, image: str, platform: str, tag: str, *,
                bom: str | None, log_file: Path | None) -> push.Steps:
    """The steps `push` orders, on this session's engine and registry. `bom`: the new
    build's SBOM; None for a published build, whose SBOM is made from its labels if a
    killed run had not attached it."""
    factory, registry, docker = session.factory, session.registry, session.docker
    repo, ref, moving = (repository(factory, image), image_ref(factory, image, tag),
                         image_ref(factory, image, platform))

    def push_moving() -> None:
        if docker.image_id(ref) is None:
            docker.pull(ref)
        docker.tag(ref, moving)
        docker.push(moving, log_file=log_file)

    def attach_sbom(target: str) -> None:
        if bom is not None:
            sbom.attach(registry, repo, target, bom)
            return
        work = factory.state_dir / "build" / "sbom" / f"{image}-{tag}"
        if docker.image_id(ref) is None:
            docker.pull(ref)
        made = _sbom(session, image, platform, tag, ref, registry.labels(repo, tag), work)
        sbom.attach(registry, repo, target, made)
        shutil.rmtree(work, ignore_errors=True)

    return push.Steps(
        ref=ref, moving=moving,
        immutable_digest=lambda: registry.digest(repo, tag),
        moving_digest=lambda: registry.digest(repo, platform),
        push_immutable=lambda: docker.push(ref, log_file=log_file,
                                           on_line=lambda _: checkpoint("image:during-push")),
        push_moving=push_moving,
        has_sbom=lambda target: sbom.fetch(registry, repo, target) is not None,
        attach_sbom=attach_sbom,
        copy_zstd=lambda: compression.copy_immutable(session, image, tag),
        move_zstd=lambda copy: compression.move(session, image, copy, platform))


def _sbom(session: Session, image: str, platform: str, tag: str, local: str,
          labels: dict[str, str], work: Path) -> str:
    """The image's CycloneDX document, read from a container of `local`."""
    inv = sbom.inventory(session.docker, local, work=work,
                         log_file=session.factory.logs_dir / "images"
                         / f"{image}-{platform}-sbom.log")
    return sbom.document(inv, image=image, platform=platform, tag=tag, labels=labels,
                         wheels=sbom.factory_wheels(session, platform, inv))


def _labels(session: Session, image: ImageDef, platform: str, parent: Parent, fp: Fingerprint,
            tag: str, inputs: str, lock_text: str, pins: dict[str, str],
            manifest: list[dict[str, Any]], proofs: list[Proof],
            wheel_lines: list[str]) -> dict[str, str]:
    fingerprint = fp.model_dump(exclude={"distributions", "slim_distributions"})
    # the files, not only the versions: a rebuilt wheel (a new build tag, the same version)
    # is not the file this image's smoke test and audit ran with
    files = {line.split("==", 1)[0]: line.rsplit("--hash=sha256:", 1)[1]
             for line in wheel_lines if "--hash=sha256:" in line}
    return {
        Labels.OCI_TITLE: f"{image.name} ({platform})",
        Labels.OCI_DESCRIPTION: image.description,
        Labels.OCI_VERSION: tag,
        Labels.OCI_REVISION: _revision(session.factory.root),
        Labels.OCI_CREATED: datetime.now(UTC).isoformat(timespec="seconds"),
        Labels.OCI_BASE_NAME: parent.ref,
        # the parent's manifest digest in the registry (OCI's meaning), not our input digest
        Labels.OCI_BASE_DIGEST: _registry_digest(session, parent.ref),
        Labels.IMAGE: image.name,
        Labels.PLATFORM: platform,
        Labels.PARENT: image.parent,
        Labels.INPUT_DIGEST: inputs,
        Labels.FINGERPRINT: json.dumps(fingerprint, sort_keys=True),
        # the versions, without their hashes (vLLM's lock is 350 KB, over Linux's 128 KiB
        # limit on one argument); the lock file itself, hashes and all, by its sha256
        Labels.LOCK: lock_versions(lock_text),
        Labels.LOCK_SHA256: hashlib.sha256(lock_text.encode()).hexdigest(),
        Labels.WHEELS: json.dumps(pins, sort_keys=True),
        Labels.WHEEL_FILES: json.dumps(files, sort_keys=True),
        Labels.MANIFEST: json.dumps(manifest, separators=(",", ":")),
        **store_labels.labels(proofs),
    }


def _registry_digest(session: Session, ref: str) -> str:
    """sha256:... of REGISTRY/REPO:TAG as the registry serves it; "" when it has none (a
    platform's base kept only in the local engine)."""
    path, _, tag = ref.partition("/")[2].rpartition(":")
    return session.registry.digest(path, tag) or ""


def _revision(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 else "unknown"


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


def build_all(session: Session, names: list[str] | None = None,
              platforms: list[str] | None = None, *, upgrade: bool = False,
              dry_run: bool = False) -> list[ImageResult]:
    """Ensure the images (and their ancestors), parents first; with `dry_run`, only plan:
    states are `current` or `build` and `reason` says which input changed."""
    images = load_definitions(session, names)
    selected = set(names or images)  # reported; their ancestors are only ensured
    results: list[ImageResult] = []
    for platform in session.factory.platforms(platforms):
        fp = store.require(session.factory, session.devpi, platform)
        done: dict[str, ImageResult] = {}
        for image in walk(images, names, platform):
            parent = parent_of(session, images, image, platform, fp, done.get(image.parent))
            if dry_run:
                result = _planned(session, image, platform, parent, upgrade)
            else:
                result = ensure_image(session, image, platform, parent, upgrade=upgrade)
            done[image.name] = result
            if image.name in selected:
                results.append(result)
    return results


def _planned(session: Session, image: ImageDef, platform: str, parent: Parent,
             upgrade: bool) -> ImageResult:
    plan_ = plan_image(session, image, platform, parent, upgrade=upgrade, write_lock=False)
    tag = plan_.existing or immutable_tag(platform, plan_.inputs)
    return ImageResult(image.name, platform, plan_.action, tag,
                       image_ref(session.factory, image.name, tag), plan_.inputs, None, 0.0,
                       plan_.installed, plan_.reason)
