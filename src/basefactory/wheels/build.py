"""Compile one recipe against one platform in a container FROM its base.

The builder image (base + compilers + auditwheel) is cached per platform. The recipe's
build runs in a BuildKit build with cache mounts for pip and ccache, `--network host`
to reach the index, and the platform's distributions as pip constraints. The repaired
wheel is copied out of the build's image, checked for vendored torch/CUDA libraries
and relabelled with the platform's local version label and the inputs' build tag.
"""

from __future__ import annotations

import fnmatch
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from basefactory.adapters.docker import Docker
from basefactory.adapters.registry_api import Registry
from basefactory.config.factory import Factory
from basefactory.platforms.fingerprint import BUILD_FRONTENDS, Fingerprint
from basefactory.plumbing import digest, log, templates
from basefactory.plumbing.errors import BuildError, ToolError
from basefactory.plumbing.faults import checkpoint
from basefactory.refs import Labels, builder_cache_tag, builder_ref, cache_repository
from basefactory.wheels.recipe import Recipe


@dataclass(frozen=True)
class BuiltWheel:
    path: Path  # the repaired, not yet relabelled wheel
    log_file: Path


def constraints(fingerprint: Fingerprint) -> str:
    return "".join(f"{name}=={version}\n" for name, version in sorted(
        fingerprint.distributions.items()) if name not in BUILD_FRONTENDS)


def python_dev_package(factory: Factory, platform: str) -> str:
    boot = factory.platform(platform).bootstrap
    return f"python{boot.python}-dev" if boot is not None else "python3-dev"


def ensure_builder(factory: Factory, docker: Docker, registry: Registry, platform: str,
                   base_ref: str, index_url: str) -> str:
    """base + build-essential, ccache, git, Python headers, auditwheel, patchelf; built by
    the first engine of the factory that needs it, pushed to the registry and pulled by
    the others (builders, Dask workers), which may not reach an apt mirror at all."""
    ref = builder_ref(platform)
    context = {"base": base_ref, "python_dev": python_dev_package(factory, platform)}
    dockerfile = templates.render("builder.Dockerfile.j2", **context,
                                  index_ca=factory.config.index.build_ca is not None)
    base_id = docker.image_id(base_ref)
    if base_id is None:  # an engine that has not built it: it is in the registry
        docker.pull_required(base_ref, hint="publish the platform first (`basefactory"
                             f" publish --platform {platform}`)")
        base_id = docker.image_id(base_ref)
    # the index's CA (a build secret) is no input of what the builder holds
    inputs = digest.of(templates.render("builder.Dockerfile.j2", **context), base_id)
    repository, tag = cache_repository(factory, "builder"), builder_cache_tag(platform, inputs)
    shared = f"{factory.config.registry.address}/{repository}:{tag}"
    if docker.image_id(ref) is None or docker.image_labels(ref).get(Labels.INPUT_DIGEST) != inputs:
        # False only where the registry has no such builder: a pull that fails for
        # another reason (disk, network) raises, and is not a reason to build here
        if docker.pull(shared) and docker.image_labels(shared).get(Labels.INPUT_DIGEST) == inputs:
            docker.tag(shared, ref)
            return ref
        work = factory.state_dir / "build" / "builders" / platform
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "Dockerfile").write_text(dockerfile)
        with log.phase(f"build the builder for {platform}"):
            try:
                docker.build(work, dockerfile=work / "Dockerfile", tags=[ref],
                             labels={Labels.INPUT_DIGEST: inputs},
                             build_args={"INDEX_URL": index_url},
                             log_file=factory.logs_dir / f"builder-{platform}.log")
            except ToolError as exc:
                raise ToolError(
                    f"{exc.message}\nno engine has shared a builder for these inputs"
                    f" ({repository}:{tag}), so this one built its own and failed",
                    hint="a build host that reaches no apt mirror needs the builder from the"
                    " registry: publish a wheel of this platform on an engine that does"
                    f" reach one first (its base image id: {base_id})") from None
    if registry.digest(repository, tag) is None:
        docker.tag(ref, shared)
        with log.phase(f"push the builder for {platform}"):
            docker.push(shared, log_file=factory.logs_dir / f"builder-{platform}.log")
    return ref


def build_wheel(
    factory: Factory, docker: Docker, recipe: Recipe, *, platform: str, builder: str,
    fingerprint: Fingerprint, source_dir: Path, work: Path, index_url: str, log_file: Path,
) -> BuiltWheel:
    context = work / "context"
    shutil.rmtree(context, ignore_errors=True)
    context.mkdir(parents=True)
    shutil.move(str(source_dir), context / "source")
    (context / "constraints.txt").write_text(constraints(fingerprint))
    dockerfile = templates.render(
        "wheel.Dockerfile.j2", builder=builder, apt=recipe.build.apt, env=recipe.build.env,
        pre_build=recipe.build.pre_build, requires=recipe.build.requires,
        no_build_isolation=recipe.build.no_build_isolation, excludes=recipe.excludes,
        index_ca=factory.config.index.build_ca is not None,
    )
    (context / "Dockerfile").write_text(dockerfile)
    tag = f"basefactory/wheel-build:{recipe.name}-{platform}"
    try:
        docker.build(context, dockerfile=context / "Dockerfile", tags=[tag],
                     build_args={"INDEX_URL": index_url}, log_file=log_file,
                     on_line=lambda _: checkpoint("wheel:during-build"))
    except ToolError as exc:
        raise BuildError(
            f"recipe {recipe.name} failed to build on {platform}; nothing was uploaded.\n"
            f"{exc.message}", hint="fix the recipe (or its source) and run again",
        ) from None
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    docker.copy_from_image(tag, "/tmp/basefactory/out/.", out)
    docker.remove_image(tag)
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        raise BuildError(f"recipe {recipe.name} produced {len(wheels)} wheels on {platform}:"
                         f" {[w.name for w in wheels]}", hint="a recipe makes one wheel")
    check_not_vendored(wheels[0], recipe.excludes)
    return BuiltWheel(wheels[0], log_file)


def check_not_vendored(wheel: Path, excludes: tuple[str, ...]) -> None:
    """Fail if auditwheel copied a torch or CUDA library into the wheel after all."""
    with zipfile.ZipFile(wheel) as zf:
        vendored = [n for n in zf.namelist() if ".libs/" in n and any(
            fnmatch.fnmatch(n.rsplit("/", 1)[-1], pattern) for pattern in excludes)]
    if vendored:
        raise BuildError(f"{wheel.name} vendors libraries the platform provides: {vendored}",
                         hint="add them to the recipe's build.exclude")
