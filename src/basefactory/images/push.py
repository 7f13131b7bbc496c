"""The order in which a build becomes public: which tag is pushed when, what is read back
before the next action, where a run may be killed.

    refuse an immutable tag already taken -> push the immutable tag -> read its digest
    back -> attach the SBOM to that digest -> make the zstd copy -> push the moving tag
    -> read it back (it must be the same digest) -> move the zstd copy's moving tag

so that a moving tag never points at an image without an immutable tag or SBOM, and the
zstd moving tag never gets ahead of the gzip one (DESIGN.md's in-between states).
`publish` and `finish` order actions they are given, which keeps the order testable
without a registry; `actions_for` makes the real ones (the engine's push or the parallel
upload, the registry's reads, the SBOM, the zstd copy), and `push_build` and
`finish_build` are what `images/publish.py` calls.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from basefactory.images import compression, sbom, upload
from basefactory.plumbing import log
from basefactory.plumbing.errors import BuildError, PublishRefused, ServiceError
from basefactory.plumbing.faults import checkpoint
from basefactory.refs import Labels, image_ref, repository
from basefactory.session import Session


@dataclass(frozen=True)
class Actions:
    ref: str  # REGISTRY/<namespace>/<image>:<immutable tag>
    moving: str  # REGISTRY/<namespace>/<image>:<platform>
    immutable_digest: Callable[[], str | None]  # what the registry holds for the tag
    moving_digest: Callable[[], str | None]
    push_immutable: Callable[[], None]
    push_moving: Callable[[], None]  # tags the local image as the moving tag and pushes it
    has_sbom: Callable[[str], bool]
    attach_sbom: Callable[[str], None]
    copy_zstd: Callable[[], Any]  # the copy's manifest, None when gzip only
    move_zstd: Callable[[Any], None]


def publish(actions: Actions) -> str:
    """Push a new build: the immutable tag, then the moving one. Its registry digest."""
    if actions.immutable_digest() is not None:
        raise PublishRefused(f"{actions.ref} is already in the registry; an immutable tag is"
                             " never overwritten", hint="rerun: the published build is reused")
    actions.push_immutable()
    pushed = actions.immutable_digest()
    if pushed is None:
        raise ServiceError(f"the registry does not show {actions.ref} after the push",
                           hint="check the registry's storage; nothing else was tagged")
    checkpoint("image:after-immutable-push")
    actions.attach_sbom(pushed)
    _move(actions, pushed)
    return pushed


def finish(actions: Actions) -> bool:
    """A build already published: move its moving tag if a run that died between the two
    pushes left it behind (attaching the SBOM first if that run had not). Whether it
    moved; the zstd copy's moving tag is brought along either way."""
    target = actions.immutable_digest()
    if target is None:
        raise ServiceError(f"{actions.ref} is not in the registry: there is nothing to move"
                           f" {actions.moving} to", hint="rerun `basefactory publish`")
    if actions.moving_digest() == target:
        actions.move_zstd(actions.copy_zstd())
        return False
    if not actions.has_sbom(target):
        actions.attach_sbom(target)
    _move(actions, target)
    return True


def _move(actions: Actions, target: str) -> None:
    copy = actions.copy_zstd()
    actions.push_moving()
    if actions.moving_digest() != target:
        raise ServiceError(f"{actions.moving} does not point at {actions.ref} after the push",
                           hint="another publish may have moved it: rerun")
    actions.move_zstd(copy)


def push_build(session: Session, image: str, platform: str, tag: str, *, bom: str,
               log_file: Path) -> str:
    """Make a new, tested build of `image` public: `publish` over this session's actions.
    Its registry digest."""
    return publish(actions_for(session, image, platform, tag, bom=bom, log_file=log_file))


def finish_build(session: Session, image: str, platform: str, tag: str) -> None:
    """A published build: a run that died between the two pushes left the moving tag
    behind; finish it (and the zstd copy's, which is made before either moving tag moves)."""
    actions = actions_for(session, image, platform, tag, bom=None, log_file=None)
    if finish(actions):
        log.info(f"moved {actions.moving} to {tag} (a previous run stopped before it did)")


def actions_for(session: Session, image: str, platform: str, tag: str, *,
                bom: str | None, log_file: Path | None) -> Actions:
    """The actions `publish` and `finish` order, on this session's engine and registry.
    `bom`: the new build's SBOM; None for a published build, whose SBOM is made from its
    labels if a killed run had not attached it."""
    factory, registry, docker = session.factory, session.registry, session.docker
    repo, ref, moving = (repository(factory, image), image_ref(factory, image, tag),
                         image_ref(factory, image, platform))

    def push_immutable() -> None:
        if factory.config.registry.push == "docker":
            docker.push(ref, log_file=log_file, on_line=lambda _: checkpoint("image:during-push"))
            return
        # new layers gzipped on every core; the parent's and the previous build's mounted
        labels = docker.image_labels(ref)
        known = [(repo, platform)]
        base = labels.get(Labels.OCI_BASE_NAME, "")
        if base.startswith(f"{factory.config.registry.address}/") and ":" in base:
            base_repo, _, base_tag = base.removeprefix(
                f"{factory.config.registry.address}/").rpartition(":")
            known.insert(0, (base_repo, base_tag))
        started = time.monotonic()
        pushed = upload.push(docker, registry, ref, repo, tag,
                             reuse=upload.known_layers(registry, known),
                             scratch=factory.state_dir / "build" / "push",
                             on_layer=lambda _: checkpoint("image:during-push"))
        line = f"pushed {ref} in {time.monotonic() - started:.1f}s: {pushed.summary()}"
        log.detail(line)
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with log_file.open("a") as fh:
                fh.write(line + "\n")

    def push_moving() -> None:
        # the immutable tag's manifest, byte for byte: the same digest, no engine needed
        pushed = registry.manifest(repo, tag)
        if pushed is None:
            raise BuildError(f"{ref} is gone from the registry before its moving tag moved",
                             hint="run the publish again: it pushes the build again")
        registry.push_manifest(repo, platform, pushed.raw, pushed.media_type)
        if docker.image_id(ref) is not None:
            docker.tag(ref, moving)

    def attach_sbom(target: str) -> None:
        if bom is not None:
            sbom.attach(registry, repo, target, bom)
            return
        work = factory.state_dir / "build" / "sbom" / f"{image}-{tag}"
        if docker.image_id(ref) is None:
            docker.pull(ref)
        made = sbom.make(session, image, platform, tag, ref, registry.labels(repo, tag), work)
        sbom.attach(registry, repo, target, made)
        shutil.rmtree(work, ignore_errors=True)

    return Actions(
        ref=ref, moving=moving,
        immutable_digest=lambda: registry.digest(repo, tag),
        moving_digest=lambda: registry.digest(repo, platform),
        push_immutable=push_immutable,
        push_moving=push_moving,
        has_sbom=lambda target: sbom.fetch(registry, repo, target) is not None,
        attach_sbom=attach_sbom,
        copy_zstd=lambda: compression.copy_immutable(session, image, tag),
        move_zstd=lambda copy: compression.move(session, image, copy, platform))
