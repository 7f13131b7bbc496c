"""The platform step of the pipeline: base image, probe, fingerprint, push."""

from __future__ import annotations

from dataclasses import dataclass

from basefactory.platforms import store
from basefactory.platforms.build import BaseImage, build_platform, push_base
from basefactory.platforms.fingerprint import Fingerprint
from basefactory.platforms.probe import probe, unindexed
from basefactory.plumbing import log
from basefactory.refs import Labels, base_ref, platform_index, repository, slim_ref
from basefactory.session import Session


@dataclass(frozen=True)
class PlatformResult:
    base: BaseImage
    fingerprint: Fingerprint
    probed: bool


def ensure_platform(session: Session, name: str) -> PlatformResult:
    """Build (or reuse) the base, probe it if it changed, store the fingerprint, push it."""
    factory = session.factory
    base = build_platform(factory, name, session.docker, session.devpi)
    known = store.load(factory, session.devpi, name)
    probed = known is None or known.base_digest != base.image_id
    if probed:
        with log.phase(f"probe {base.ref}"):
            fingerprint = _with_unindexed(session, probe(session.docker, name, base.ref,
                                                         base.slim_ref))
            fingerprint = fingerprint.model_copy(update={"base_source": base.source})
            store.save(factory, session.devpi, fingerprint)
    else:
        assert known is not None
        fingerprint = known
    pushed = session.registry.labels(repository(factory, "base"), name)
    if pushed.get(Labels.INPUT_DIGEST) != base.input_digest:
        with log.phase(f"push {base.ref}"):
            push_base(session.docker, base)
    return PlatformResult(base, fingerprint, probed)


def probe_platform(session: Session, name: str) -> Fingerprint:

    ref = base_ref(session.factory, name)
    if session.docker.image_id(ref) is None:
        return ensure_platform(session, name).fingerprint
    slim = slim_ref(session.factory, name)
    fingerprint = _with_unindexed(session, probe(
        session.docker, name, ref, slim if session.docker.image_id(slim) is not None else None))
    store.save(session.factory, session.devpi, fingerprint)
    return fingerprint


def _with_unindexed(session: Session, fingerprint: Fingerprint) -> Fingerprint:
    found = unindexed(session.devpi, platform_index(session.factory, fingerprint.platform),
                      fingerprint.distributions)
    if found:
        log.detail("installed in the base, served by no index (taken as installed by every"
                   " resolver): " + ", ".join(f"{n} {v}" for n, v in found.items()))
    return fingerprint.model_copy(update={"unindexed": found})
