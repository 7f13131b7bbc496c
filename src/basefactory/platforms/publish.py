"""The platform step of the pipeline: base image, probe, fingerprint, push."""

from __future__ import annotations

from dataclasses import dataclass

from basefactory.index import base_pins
from basefactory.platforms import store
from basefactory.platforms.build import BaseImage, build_platform, push_base
from basefactory.platforms.fingerprint import PROBE_VERSION, Fingerprint
from basefactory.platforms.probe import probe
from basefactory.plumbing import log
from basefactory.refs import Labels, base_ref, repository, slim_ref
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
    probed = (known is None or known.base_digest != base.image_id
              or known.probe_version < PROBE_VERSION)
    if probed:
        with log.phase(f"probe {base.ref}"):
            fingerprint = probe(session.docker, name, base.ref, base.slim_ref)
            fingerprint = _with_pins(session, fingerprint.model_copy(
                update={"base_source": base.source}))
            store.save(factory, session.devpi, fingerprint)
    else:
        assert known is not None
        # an index whose pins went missing (a factory older than them, an index rebuilt)
        # gets them back without a probe
        fingerprint = _with_pins(session, known)
        if fingerprint != known:
            store.save(factory, session.devpi, fingerprint)
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
    fingerprint = _with_pins(session, probe(
        session.docker, name, ref, slim if session.docker.image_id(slim) is not None else None))
    store.save(session.factory, session.devpi, fingerprint)
    return fingerprint


def _with_pins(session: Session, fingerprint: Fingerprint) -> Fingerprint:
    """The platform index offers what the base pins at the base's version only
    (index/base_pins.py); what no index serves is taken as installed by every resolver."""
    pins = base_pins.sync(session.factory, session.devpi, fingerprint.platform,
                          fingerprint.index_pins(),
                          base_pins.platform_tags(fingerprint.python_tag, fingerprint.glibc,
                                                  fingerprint.arch))
    return fingerprint.model_copy(update={"unindexed": pins.unserved})
