"""`basefactory images audit TARGET`: the ABI audit of any image, by any reference the
local engine knows (`myservice:latest`, built here and never pushed) or this factory's
`IMAGE[:TAG]`, with the `[[audit.allow]]` its definition declares, or those of the
factory image it was built FROM, shown as inherited."""

from __future__ import annotations

from basefactory.audit.abi import AbiReport, audit_image
from basefactory.audit.allow import AllowedModule
from basefactory.images.definition import load_factory_images
from basefactory.plumbing import log
from basefactory.plumbing.errors import ConfigError
from basefactory.refs import Labels, factory_ref, image_ref, repository
from basefactory.session import Session


def resolve(session: Session, target: str) -> list[str]:
    """An image the local engine has, by any reference it knows (`myservice:latest`, built
    here and never pushed); else `IMAGE[:TAG]` of this factory (every platform's moving tag
    when no tag is given), or any full reference `HOST/PATH:TAG` to pull."""
    factory = session.factory
    ref = None if session.docker.image_id(target) is not None else factory_ref(factory, target)
    if ref is None:
        return [target]
    name = ref.name
    if ref.reference and ref.reference.startswith("sha256:"):
        return [f"{factory.config.registry.address}/{repository(factory, name)}@{ref.reference}"]
    if ref.reference:
        return [image_ref(factory, name, ref.reference)]
    tags = set(session.registry.tags(repository(factory, name)))
    refs = [image_ref(factory, name, p) for p in factory.config.platforms if p in tags]
    if not refs:
        raise ConfigError(f"no local image `{target}`, and no image `{name}` is published in"
                          f" {factory.config.registry.address}",
                          hint="give a reference `docker images` lists, IMAGE:TAG of this"
                          " factory, or a full reference such as registry.example.com/team/app:1.0")
    return refs


def audit_target(session: Session, target: str) -> list[tuple[str, AbiReport]]:
    found = []
    work = session.factory.state_dir / "build" / "audit"
    docker = session.docker
    for ref in resolve(session, target):
        if docker.image_id(ref) is None and not docker.pull(ref):
            raise ConfigError(f"cannot pull {ref}", hint="check the name and tag, and that its"
                              " registry answers (`docker pull` it to see why)")
        with log.phase(f"ABI audit of {ref}"):
            found.append((ref, audit_image(docker, ref, work=work,
                                           allow=_declared(session, ref))))
    return found


def _declared(session: Session, ref: str) -> tuple[AllowedModule, ...]:
    """The `[[audit.allow]]` that apply to `ref`: an image of this factory keeps those its
    definition (and its parents') declares, as its push-time audit did; an image built
    FROM one (its labels, which a child inherits, name the factory image) gets that
    image's, each marked as inherited; any other image has none."""
    registry = session.factory.config.registry
    prefix = f"{registry.address}/{registry.namespace}/"
    images = load_factory_images(session.factory)
    if ref.startswith(prefix):
        name = ref.removeprefix(prefix).split("@")[0].rsplit(":", 1)[0]
        if name in images:
            return images[name].audit.allow
    parent = session.docker.image_labels(ref).get(Labels.IMAGE)
    if parent is None or parent not in images:
        return ()
    return tuple(a.model_copy(update={"reason": f"inherited from {parent}: {a.reason}"})
                 for a in images[parent].audit.allow)
