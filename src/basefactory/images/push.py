"""The order in which a build becomes public, and nothing else: which tag is pushed when,
what is read back before the next step, where a run may be killed.

    refuse an immutable tag already taken -> push the immutable tag -> read its digest
    back -> attach the SBOM to that digest -> make the zstd copy -> push the moving tag
    -> read it back (it must be the same digest) -> move the zstd copy's moving tag

so that a moving tag never points at an image without an immutable tag or SBOM, and the
zstd moving tag never gets ahead of the gzip one (DESIGN.md's in-between states). The
steps themselves (the engine's push, the registry's reads, the SBOM, the copy) are given
by the caller (`images/publish.py`), which keeps the order testable without a registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from basefactory.plumbing.errors import PublishRefused, ServiceError
from basefactory.plumbing.faults import checkpoint


@dataclass(frozen=True)
class Steps:
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


def publish(steps: Steps) -> str:
    """Push a new build: the immutable tag, then the moving one. Its registry digest."""
    if steps.immutable_digest() is not None:
        raise PublishRefused(f"{steps.ref} is already in the registry; an immutable tag is"
                             " never overwritten", hint="rerun: the published build is reused")
    steps.push_immutable()
    pushed = steps.immutable_digest()
    if pushed is None:
        raise ServiceError(f"the registry does not show {steps.ref} after the push",
                           hint="check the registry's storage; nothing else was tagged")
    checkpoint("image:after-immutable-push")
    steps.attach_sbom(pushed)
    _move(steps, pushed)
    return pushed


def finish(steps: Steps) -> bool:
    """A build already published: move its moving tag if a run that died between the two
    pushes left it behind (attaching the SBOM first if that run had not). Whether it
    moved; the zstd copy's moving tag is brought along either way."""
    target = steps.immutable_digest()
    if target is None:
        raise ServiceError(f"{steps.ref} is not in the registry: there is nothing to move"
                           f" {steps.moving} to", hint="rerun `basefactory publish`")
    if steps.moving_digest() == target:
        steps.move_zstd(steps.copy_zstd())
        return False
    if not steps.has_sbom(target):
        steps.attach_sbom(target)
    _move(steps, target)
    return True


def _move(steps: Steps, target: str) -> None:
    copy = steps.copy_zstd()
    steps.push_moving()
    if steps.moving_digest() != target:
        raise ServiceError(f"{steps.moving} does not point at {steps.ref} after the push",
                           hint="another publish may have moved it: rerun")
    steps.move_zstd(copy)
