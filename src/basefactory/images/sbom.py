"""A CycloneDX SBOM for every image the factory publishes, stored beside it in the registry.

What is in the image is read from a container of it (`sbom_script.py`: Python
distributions with their license metadata, dpkg's database, the OS release); what only the
factory knows comes from its records: the sha256 of each wheel the factory's index served
and the source pin of the recipe that made it, the base image's digest, the platform's
fingerprint. cyclonedx-python-lib writes the document and validates it against the
CycloneDX 1.6 schema; an invalid document fails the publish before anything is pushed.

It is stored as an artifact that refers to the image (`referrers.py`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from basefactory.adapters.docker import Docker
from basefactory.adapters.registry_api import Registry
from basefactory.images import referrers
from basefactory.images.referrers import SBOM_TYPE as ARTIFACT_TYPE
from basefactory.plumbing.errors import BuildError, ConfigError
from basefactory.refs import Labels, common_index, factory_ref, platform_index, repository
from basefactory.session import Session
from basefactory.wheels.recipe import Recipe, factory_recipes

if TYPE_CHECKING:
    from cyclonedx.contrib.license.factories import LicenseFactory

SCRIPT = Path(__file__).with_name("sbom_script.py")


@dataclass(frozen=True)
class FactoryWheel:
    """A wheel the factory's index served to the image, and where it came from."""

    filename: str
    sha256: str
    recipe: str
    source: str  # the recipe's pin: sdist URL + sha256, git URL @ commit, or adopted wheel


@dataclass(frozen=True)
class Inventory:
    python: list[dict[str, Any]]
    debian: list[dict[str, str]] | None  # None: the image has no dpkg
    os: dict[str, str]


def inventory(docker: Docker, ref: str, *, work: Path, log_file: Path | None = None
              ) -> Inventory:
    """What a fresh container of `ref` holds (no network: reading needs none)."""
    result = docker.run_script(ref, ["python3", f"/sbom/{SCRIPT.name}"],
                               files={SCRIPT.name: SCRIPT}, folder=work / "sbom", mount="/sbom",
                               log_file=log_file, network="none")
    last = result.output.strip().splitlines()[-1:] if result.output else []
    try:
        data = json.loads(last[0]) if last and result.returncode == 0 else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise BuildError(f"the SBOM inventory could not run in {ref} (exit {result.returncode})"
                         f":\n{result.tail}", hint="the image needs a python3 on its PATH")
    return Inventory(data["python"], data["debian"], data["os"])


def make(session: Session, image: str, platform: str, tag: str, ref: str,
         labels: dict[str, str], work: Path) -> str:
    """The CycloneDX document of `ref` (a local or pulled image of `image` on `platform`):
    its inventory read in a container of it, with what the factory's records add."""
    inv = inventory(session.docker, ref, work=work,
                    log_file=session.factory.logs_dir / "images" / f"{image}-{platform}-sbom.log")
    return document(inv, image=image, platform=platform, tag=tag, labels=labels,
                    wheels=factory_wheels(session, platform, inv))


def factory_wheels(session: Session, platform: str, inv: Inventory) -> dict[str, FactoryWheel]:
    """The installed distributions that are recipe wheels of this factory, matched to the
    exact file on its index by version and build tag (the WHEEL file's `Build`)."""
    factory = session.factory
    by_dist = {r.distribution: r for r in factory_recipes(factory).values()}
    found: dict[str, FactoryWheel] = {}
    for row in inv.python:
        name = canonicalize_name(row["name"])
        recipe = by_dist.get(name)
        if recipe is None or not row.get("build"):
            continue
        index = common_index(factory) if recipe.pure else platform_index(factory, platform)
        for f in session.devpi.release_files(index, name):
            try:
                _, version, build, _ = parse_wheel_filename(f.filename)
            except ValueError:
                continue
            if str(version) == row["version"] and build and \
                    f"{build[0]}{build[1]}" == row["build"]:
                found[name] = FactoryWheel(f.filename, f.sha256, recipe.name, _pin(recipe))
    return found


def _pin(recipe: Recipe) -> str:
    if recipe.adopt is not None:
        return f"adopted {recipe.adopt.wheel} sha256:{recipe.adopt.sha256}" + (
            f" with {len(recipe.adopt.overrides)} declared overrides"
            if recipe.adopt.overrides else "")
    src = recipe.source
    assert src is not None
    if src.sdist is not None:
        return f"sdist {src.sdist} sha256:{src.sha256}"
    if src.git is not None:
        sub = f" subdirectory {src.subdirectory}" if src.subdirectory else ""
        return f"git {src.git}@{src.commit}{sub}"
    return f"local folder {src.path}"


def document(inv: Inventory, *, image: str, platform: str, tag: str, labels: dict[str, str],
             wheels: dict[str, FactoryWheel], created: datetime | None = None) -> str:
    """The CycloneDX 1.6 JSON of an image, validated against the schema."""
    # cyclonedx is imported here: its ~55 ms of import were paid by every command,
    # no-op publishes included, and only an image build writes an SBOM
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    licenses = LicenseFactory()
    root = Component(
        name=image, version=tag, type=ComponentType.CONTAINER, bom_ref=f"image:{image}@{tag}",
        description=labels.get(Labels.OCI_DESCRIPTION) or None,
        properties=[Property(name=f"basefactory:{key}", value=value) for key, value in (
            ("platform", platform),
            ("input-digest", labels.get(Labels.INPUT_DIGEST, "")),
            ("base-image", labels.get(Labels.OCI_BASE_NAME, "")),
            ("base-digest", labels.get(Labels.OCI_BASE_DIGEST, "")),
            ("fingerprint", labels.get(Labels.FINGERPRINT, "")),
            ("revision", labels.get(Labels.OCI_REVISION, "")),
        ) if value])
    bom = Bom(metadata=BomMetaData(component=root, timestamp=created or datetime.now(UTC)))
    for row in inv.python:
        name = canonicalize_name(row["name"])
        factory = wheels.get(name)
        props = []
        if factory is not None:
            props = [Property(name="basefactory:recipe", value=factory.recipe),
                     Property(name="basefactory:source", value=factory.source),
                     Property(name="basefactory:wheel", value=factory.filename)]
        bom.components.add(Component(
            name=row["name"], version=row["version"], bom_ref=f"pypi:{name}@{row['version']}",
            purl=PackageURL(type="pypi", name=name, version=row["version"]),
            licenses=_licenses(licenses, row),
            hashes=[HashType(alg=HashAlgorithm.SHA_256, content=factory.sha256)]
            if factory is not None else None,
            properties=props or None))
    distro = inv.os.get("ID") or "debian"
    for deb in inv.debian or []:
        qualifiers = {"arch": deb["arch"]}
        if inv.os.get("VERSION_CODENAME"):
            qualifiers["distro"] = inv.os["VERSION_CODENAME"]
        bom.components.add(Component(
            name=deb["name"], version=deb["version"],
            bom_ref=f"deb:{deb['name']}@{deb['version']}:{deb['arch']}",
            purl=PackageURL(type="deb", namespace=distro, name=deb["name"],
                            version=deb["version"], qualifiers=qualifiers),
            properties=[Property(name="basefactory:deb-source", value=deb["source"])]
            if deb["source"] != deb["name"] else None))
    bom.register_dependency(root, bom.components)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no dependencies" notes on leaf components
        text: str = JsonV1Dot6(bom).output_as_string(indent=None)
    validate(text, where=f"the SBOM of {image}:{tag}")
    return text


def _licenses(factory: LicenseFactory, row: dict[str, Any]) -> list[Any] | None:
    """The license metadata as written: an SPDX expression (PEP 639) first, else the
    License field, else the trove classifiers' names. None when the metadata has none."""
    from cyclonedx.model.license import LicenseExpression

    found = [row["license_expression"] or row["license"]] if \
        (row["license_expression"] or row["license"]) else list(row["license_classifiers"])
    made = []
    for value in found:
        try:
            made.append(factory.make_from_string(value))
        except ValueError:
            continue
    # CycloneDX allows one expression, or any number of named licenses, not both
    expressions = [m for m in made if isinstance(m, LicenseExpression)]
    return expressions[:1] if expressions else (made or None)


def validate(text: str, *, where: str) -> None:
    # imported here: the validator pulls in jsonschema's format checkers, whose RFC 3987
    # grammar takes 1.4 s to build; a no-op publish, which validates nothing, paid it
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise BuildError(f"{where} is not valid CycloneDX 1.6: {error}",
                         hint="a bug in basefactory's SBOM writer: please report it")


def summary(text: str) -> dict[str, Any]:
    """Counts for the terminal and the catalog: components by kind."""
    data = json.loads(text)
    purls = [c.get("purl", "") for c in data.get("components") or []]
    return {"spec_version": data.get("specVersion"),
            "components": len(purls),
            "python": sum(p.startswith("pkg:pypi/") for p in purls),
            "debian": sum(p.startswith("pkg:deb/") for p in purls),
            "factory_wheels": sum(
                any(p.get("name") == "basefactory:recipe" for p in c.get("properties") or [])
                for c in data.get("components") or [])}


def attach(registry: Registry, repository: str, subject_digest: str, text: str) -> str:
    """Store the SBOM beside the image (replacing an earlier one). Its manifest digest."""
    return referrers.attach(registry, repository, subject_digest, text.encode(),
                            artifact_type=ARTIFACT_TYPE, title="sbom.cdx.json")


def fetch(registry: Registry, repository: str, reference: str) -> str | None:
    """The SBOM of REPOSITORY:REFERENCE (a tag or a digest); None when none is stored."""
    data = referrers.fetch(registry, repository, reference, artifact_type=ARTIFACT_TYPE)
    return data.decode() if data is not None else None


def read(session: Session, target: str) -> tuple[str, str]:
    """(tag, document) of `IMAGE[:TAG]` of this factory; without a tag, the moving tag of
    the one platform it is published on."""
    factory = session.factory
    ref = factory_ref(factory, target)
    if ref is None:
        raise ConfigError(f"{target} is not an image of this factory's registry"
                          f" ({factory.config.registry.address}/{factory.config.registry.namespace}/)",
                          hint="`basefactory images ls` lists what is published")
    name, tag = ref.name, ref.reference or ""
    repo = repository(factory, name)
    if not tag:
        tags = sorted(p for p in factory.config.platforms if p in session.registry.tags(repo))
        if len(tags) != 1:
            raise ConfigError(
                f"`{name}` is published on {len(tags)} platforms: name one as its tag"
                if tags else f"no image `{name}` is published in"
                f" {factory.config.registry.address}",
                hint=f"e.g. basefactory images sbom {name}:{(tags or list(factory.config.platforms))[0]}")
        tag = tags[0]
    shown = f"{factory.config.registry.address}/{repo}{'@' if ':' in tag else ':'}{tag}"
    if session.registry.digest(repo, tag) is None:
        raise ConfigError(f"{shown} is not in the registry",
                          hint="`basefactory images ls` lists what is published")
    text = fetch(session.registry, repo, tag)
    if text is None:
        raise ConfigError(f"{shown} has no SBOM stored beside it",
                          hint="images published before basefactory wrote SBOMs have none:"
                          f" rebuild it (`basefactory images build {name} --upgrade`)")
    return tag, text
