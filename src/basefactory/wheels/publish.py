"""The wheel step of the pipeline, for each recipe and each platform it applies to:

    skip if published -> fetch + verify source -> build -> repair -> relabel -> test
    -> upload -> attach the test record to the uploaded file

A wheel's file name carries the digest of its inputs (see relabel.py), so "published"
is one query to the index. Nothing is uploaded before its test passed; a file that is
published without its test record (a crash between the two) is tested again and the
record attached, so a rerun after a crash completes.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass
from typing import Any

from packaging.utils import parse_wheel_filename

from basefactory.adapters.devpi_api import ReleaseFile
from basefactory.platforms import store
from basefactory.platforms.fingerprint import Fingerprint
from basefactory.plumbing import digest, log, templates
from basefactory.plumbing.errors import ConfigError
from basefactory.plumbing.faults import checkpoint
from basefactory.proofs import Kind, Proof, store_devpi
from basefactory.proofs.read import first
from basefactory.refs import base_ref, common_index, platform_index, staging_index
from basefactory.session import Session
from basefactory.wheels import source as sources
from basefactory.wheels.adopt import adopt
from basefactory.wheels.build import build_wheel, check_not_vendored, constraints, ensure_builder
from basefactory.wheels.devicecode import check_wheel
from basefactory.wheels.patch import patch_path, patch_records
from basefactory.wheels.recipe import Recipe, factory_recipes
from basefactory.wheels.relabel import build_tag, digest_of_build_tag, relabel
from basefactory.wheels.test import run_test


@dataclass(frozen=True)
class WheelResult:
    recipe: str
    platform: str
    index: str
    state: str  # built | current | retested | skipped
    wheel: str | None
    duration_s: float
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def input_digest(recipe: Recipe, fingerprint: Fingerprint, source_digest: str) -> str:
    platform_part: dict[str, Any] = {} if recipe.pure else {
        "base_digest": fingerprint.base_digest, "torch": fingerprint.torch,
        "cuda": fingerprint.cuda, "python_tag": fingerprint.python_tag,
        "cxx11_abi": fingerprint.cxx11_abi, "arch": fingerprint.arch,
    }
    # what makes the file: its test, where it applies and its audit allowances do not (a
    # changed test re-proves the published file: see plan_wheel)
    return digest.of(
        recipe.model_dump(mode="json", exclude={"description", "audit", "test", "platforms"}),
        platform_part, source_digest,
        templates.render("wheel.Dockerfile.j2", builder="B", apt=(), env={}, pre_build=(),
                         requires=(), no_build_isolation=False, excludes=()),
    )


def source_digest(session: Session, recipe: Recipe) -> str:
    if recipe.adopt is not None:
        if not recipe.adopt.patches:
            return recipe.adopt.sha256
        return digest.of(recipe.adopt.sha256, [
            digest.file_sha256(patch_path(session.factory.recipes_dir, p.file))
            for p in recipe.adopt.patches])
    src = recipe.source
    assert src is not None
    if src.sha256 is not None:
        return src.sha256
    if src.commit is not None:
        return src.commit
    assert src.path is not None
    folder = src.path if src.path.is_absolute() else session.factory.root / src.path
    if not folder.is_dir():
        raise ConfigError(f"recipe {recipe.name}: source.path {folder} is not a folder")
    return digest.tree_sha256(folder, exclude=(".git", "build", "dist", "__pycache__"))


def published(files: list[ReleaseFile], wheel_digest: str) -> ReleaseFile | None:
    for f in files:
        if not f.filename.endswith(".whl"):
            continue
        try:
            _, _, build, _ = parse_wheel_filename(f.filename)
        except ValueError:
            continue
        if build and digest_of_build_tag(f"{build[0]}{build[1]}") == wheel_digest[:12]:
            return f
    return None


def plan(session: Session, recipe_names: list[str] | None, platforms: list[str] | None
         ) -> list[tuple[Recipe, str]]:
    """(recipe, platform) pairs to consider; a pure recipe once, on its first platform."""
    factory = session.factory
    pairs: list[tuple[Recipe, str]] = []
    for recipe in factory_recipes(factory, recipe_names).values():
        for name in factory.platforms(platforms):
            fp = store.require(factory, session.devpi, name)
            if recipe.applies_to(name, has_cuda=fp.cuda is not None,
                                 distributions=fp.distributions):
                pairs.append((recipe, name))
                if recipe.pure:
                    break
    return pairs


@dataclass(frozen=True)
class WheelPlan:
    target: str  # the index it goes to
    digest: str  # of its inputs
    done: ReleaseFile | None  # the published file with this digest, if any
    action: str  # current | build | retest
    reason: str


def test_current(record: Proof | None, recipe: Recipe) -> bool:
    """A passed test record of the recipe's test as it is now (command and requires)."""
    return record is not None and record.passed and \
        record.evidence.get("command") == recipe.test.command and \
        list(record.evidence.get("test_requires", [])) == list(recipe.test.requires)


def plan_wheel(session: Session, recipe: Recipe, platform: str, *,
               retest: bool = False) -> WheelPlan:
    factory, devpi = session.factory, session.devpi
    fingerprint = store.require(factory, devpi, platform)
    target = common_index(factory) if recipe.pure else platform_index(factory, platform)
    wheel_digest = input_digest(recipe, fingerprint, source_digest(session, recipe))
    files = devpi.release_files(target, recipe.distribution)
    done = published(files, wheel_digest)
    record = first(session.proofs.wheel(done), Kind.WHEEL_TEST) if done is not None else None
    action, reason = decide(published_file=done is not None, any_file=bool(files),
                            record=record, recipe=recipe, retest=retest)
    return WheelPlan(target, wheel_digest, done, action, reason)


def decide(*, published_file: bool, any_file: bool, record: Proof | None, recipe: Recipe,
           retest: bool) -> tuple[str, str]:
    """(current | retest | build, why): a file published for these inputs with a passed
    record of the recipe's test as it is now is current; one without is re-proven, not
    rebuilt; no file for these inputs is built."""
    if published_file and not retest and test_current(record, recipe):
        return "current", "inputs unchanged"
    if published_file:
        return "retest", ("--retest" if retest and test_current(record, recipe) else
                          "published without a passed test record (an interrupted run)"
                          if record is None or not record.passed else
                          "the recipe's test changed since its record: re-proving the"
                          " published file")
    return "build", ("inputs changed (recipe, source, platform or build template)"
                     if any_file else "first build")


def prepare_builder(session: Session, platform: str) -> str:
    """The platform's builder on this session's engine: built here, or pulled from the
    registry where another engine of the factory pushed it."""
    factory = session.factory
    return ensure_builder(factory, session.docker, session.registry, platform,
                          base_ref(factory, platform),
                          session.devpi.simple_url(platform_index(factory, platform)))


def ensure_wheel(session: Session, recipe: Recipe, platform: str, *,
                 retest: bool = False) -> WheelResult:
    started = time.monotonic()
    factory, devpi = session.factory, session.devpi
    fingerprint = store.require(factory, devpi, platform)
    plan_ = plan_wheel(session, recipe, platform, retest=retest)
    target, wheel_digest, done = plan_.target, plan_.digest, plan_.done
    if plan_.action == "current":
        assert done is not None
        return WheelResult(recipe.name, platform, target, "current", done.filename,
                           round(time.monotonic() - started, 2), plan_.reason)

    work = factory.state_dir / "build" / "wheels" / f"{recipe.name}-{platform}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    wheelhouse = factory.wheels_dir / platform
    wheelhouse.mkdir(parents=True, exist_ok=True)
    logs = factory.logs_dir / "wheels"
    index_url = devpi.simple_url(platform_index(factory, platform))
    ref = base_ref(factory, platform)
    state = "built"
    if done is not None:
        # published by a run that died before attaching its test record: test that file
        wheel = wheelhouse / done.filename
        devpi.download(done.url, wheel)
        state = "retested"
    elif recipe.adopt is not None:
        with log.phase(f"{recipe.name} on {platform}: adopt {recipe.adopt.wheel}"):
            prebuilt = sources.fetch_wheel(recipe, devpi=devpi, indexes=[
                platform_index(factory, platform), factory.config.index.mirror])
            wheel = adopt(recipe, prebuilt, fingerprint, wheelhouse,
                          label=None if recipe.pure else fingerprint.local_label,
                          tag=build_tag(int(time.time()), wheel_digest),
                          recipes_dir=factory.recipes_dir)
            check_not_vendored(wheel, recipe.excludes)
    else:
        assert recipe.source is not None
        with log.phase(f"{recipe.name} on {platform}: fetch {recipe.source.kind} source"):
            fetched = sources.fetch(
                recipe, devpi=devpi, root=factory.root, work=work,
                indexes=[platform_index(factory, platform), factory.config.index.mirror])
        builder = prepare_builder(session, platform)
        build_log = logs / f"{recipe.name}-{platform}-build.log"
        build_log.unlink(missing_ok=True)
        with log.phase(f"{recipe.name} on {platform}: build (log: {build_log})"):
            built = build_wheel(factory, session.docker, recipe, platform=platform,
                                builder=builder, fingerprint=fingerprint,
                                source_dir=fetched.directory, work=work, index_url=index_url,
                                log_file=build_log)
        wheel = relabel(built.path, wheelhouse,
                        label=None if recipe.pure else fingerprint.local_label,
                        tag=build_tag(int(time.time()), wheel_digest))
    test_log = logs / f"{recipe.name}-{platform}-test.log"
    test_log.unlink(missing_ok=True)
    arch_list = recipe.build.env.get("TORCH_CUDA_ARCH_LIST")
    device = None
    if fingerprint.cuda and arch_list and not recipe.pure:
        with log.phase(f"{recipe.name} on {platform}: device code for {arch_list}"):
            device = check_wheel(wheel, arch_list, platform)
    with log.phase(f"{recipe.name} on {platform}: test {wheel.name}"):
        record = run_test(session.docker, recipe, wheel, platform=platform, base_ref=ref,
                          base_digest=fingerprint.base_digest,
                          constraints=constraints(fingerprint), index_url=index_url,
                          work=work, log_file=test_log)
    if device is not None:
        record = record.with_evidence(device_code=device.as_dict())
    if recipe.adopt is not None:
        # the recipe's: the wheel's input digest (in its file name) pins them
        record = record.with_evidence(adopted={
            "wheel": recipe.adopt.wheel, "sha256": recipe.adopt.sha256,
            "overrides": [o.model_dump() for o in recipe.adopt.overrides],
            "patches": patch_records(recipe, factory.recipes_dir)})
    with log.phase(f"{recipe.name} on {platform}: upload to {target}"):
        _, version, _, _ = parse_wheel_filename(wheel.name)
        name = recipe.distribution
        if done is None:
            # by way of the staging index: the file and its record reach `target` in one
            # push, one transaction of devpi's; files a killed run left there go first
            staging = staging_index(factory)
            devpi.delete_version(staging, name, str(version))
            checkpoint("wheel:before-upload")
            devpi.upload(staging, wheel, name=name, version=str(version))
            staged = published(devpi.release_files(staging, name), wheel_digest)
            assert staged is not None
            store_devpi.attach(devpi, staged.url, record)
            checkpoint("wheel:after-upload")
            devpi.push(staging, name=name, version=str(version), target=target)
            checkpoint("wheel:after-push")
            devpi.delete_version(staging, name, str(version))
        else:  # a file published before staging existed, without its record: attach it
            uploaded = published(devpi.release_files(target, name), wheel_digest)
            assert uploaded is not None
            store_devpi.attach(devpi, uploaded.url, record)
    shutil.rmtree(work, ignore_errors=True)
    return WheelResult(recipe.name, platform, target, state, wheel.name,
                       round(time.monotonic() - started, 2), plan_.reason)


def build_all(session: Session, recipe_names: list[str] | None = None,
              platforms: list[str] | None = None, *, retest: bool = False) -> list[WheelResult]:
    """`retest`: test every published wheel again (its file, not a rebuild) and attach a
    fresh record, e.g. after the mirror's dependencies moved."""
    return [ensure_wheel(session, recipe, platform, retest=retest)
            for recipe, platform in plan(session, recipe_names, platforms)]
