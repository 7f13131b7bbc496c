"""Make a platform's base image: pull a reference image, or bootstrap one locally.

A bootstrapped base is content-addressed: the digest of its Dockerfile, its rootfs and
the torch wheel(s) it installs is a label, and a base whose digest is unchanged is not
rebuilt. The base is pushed as REGISTRY/factory/base:<platform> (and an immutable
<platform>-<digest> tag) so images and remote builders can start FROM it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from basefactory.adapters.devpi_api import DevpiClient
from basefactory.adapters.docker import Docker
from basefactory.config.factory import Factory
from basefactory.config.models import Bootstrap
from basefactory.index.importer import import_wheels
from basefactory.platforms.rootfs import ROOTFS_VERSION, ensure_rootfs, host_apt_mirror
from basefactory.plumbing import digest, log, templates
from basefactory.plumbing.errors import ToolError
from basefactory.refs import Labels, base_ref, platform_index, slim_ref


@dataclass(frozen=True)
class BaseImage:
    platform: str
    ref: str
    image_id: str
    input_digest: str
    built: bool  # False: it was current and reused
    slim_ref: str | None = None  # Python without torch, for the lean tier
    # a pulled base: the reference by digest it was pulled as (REPO@sha256:...), so the
    # fingerprint names exactly which image a moving tag like 25.10-py3 meant that day
    source: str | None = None


def build_platform(factory: Factory, name: str, docker: Docker, devpi: DevpiClient) -> BaseImage:
    platform = factory.platform(name)
    ref = base_ref(factory, name)
    if platform.image is not None:
        base = _pull(docker, name, platform.image, ref)
        if platform.slim_image is not None:
            slim = slim_ref(factory, name)
            _pull(docker, name, platform.slim_image, slim)
            base = BaseImage(name, ref, base.image_id, base.input_digest, False, slim,
                             base.source)
        return base
    assert platform.bootstrap is not None
    return _bootstrap(factory, name, platform.bootstrap, docker, devpi, ref)


def _pull(docker: Docker, name: str, image: str, ref: str) -> BaseImage:
    with log.phase(f"pull {image}"):
        docker.pull_required(image, hint=f"this host cannot pull {image}: declare a"
                             f" [platforms.{name}.bootstrap] platform instead, or set"
                             " enabled = false")
    docker.tag(image, ref)
    image_id = docker.image_id(ref) or ""
    repo = image.split("@")[0].rsplit(":", 1)[0] if "/" in image else image.split("@")[0]
    digests = docker.image_inspect(image).get("RepoDigests") or []
    source = next((d for d in digests if d.split("@")[0] == repo), digests[0] if digests else None)
    if source is not None:
        log.detail(f"{image} is {source}")
    return BaseImage(name, ref, image_id, image_id.removeprefix("sha256:"), built=False,
                     source=source)


def _bootstrap(
    factory: Factory, name: str, boot: Bootstrap, docker: Docker, devpi: DevpiClient, ref: str
) -> BaseImage:
    mirror = str(boot.mirror) if boot.mirror is not None else host_apt_mirror()
    rootfs = ensure_rootfs(docker, boot.suite, mirror)
    index = platform_index(factory, name)
    imported: list[tuple[str, str]] = []
    if boot.wheelhouse is not None:
        with log.phase(f"import {boot.torch} from {boot.wheelhouse} into {index}"):
            imported = import_wheels(devpi, index, factory.root / boot.wheelhouse,
                                     [boot.torch, *boot.packages],
                                     python=boot.python, memo_dir=factory.state_dir / "memo")
    context_vars = {
        "rootfs": rootfs, "python": boot.python, "apt": boot.apt, "torch": boot.torch,
        "torch_sha256": boot.torch_sha256, "packages": boot.packages,
        "cuda_toolkit": boot.cuda_toolkit is not None, "env": boot.env,
    }
    dockerfile = templates.render("platform.Dockerfile.j2", **context_vars,
                                  index_ca=factory.config.index.build_ca is not None)
    plain = templates.render("platform.Dockerfile.j2", **context_vars)
    # the rootfs by what it is (suite, mirror, recipe version), not by its local image id,
    # which differs on every engine that imports it: so another builder computes the same
    # digest and pulls the published base instead of building a different one
    # of the Dockerfile without the index CA's mounts: how pip trusts the index is no
    # input of the base it makes
    inputs = digest.of(plain, [boot.suite, mirror, ROOTFS_VERSION],
                       sorted(f for f, _ in imported), str(boot.cuda_toolkit or ""))
    slim = slim_ref(factory, name)
    existing = docker.image_id(ref)
    if existing is None or docker.image_id(slim) is None:
        # not on this engine (another builder, a pruned cache): the same base, if the
        # registry has it, is pulled rather than rebuilt, so its identity (and every
        # wheel and image digest that follows from it) stays the same
        existing = _pull_published(docker, ref, slim, inputs) or \
            _tag_local(docker, ref, slim, inputs, name)
    if existing is not None and docker.image_labels(ref).get(Labels.INPUT_DIGEST) == inputs \
            and docker.image_id(slim) is not None:
        log.detail(f"{ref} is current ({inputs[:12]})")
        return BaseImage(name, ref, existing, inputs, built=False, slim_ref=slim)
    with tempfile.TemporaryDirectory(prefix="basefactory-platform-") as tmp:
        context = Path(tmp)
        (context / "Dockerfile").write_text(dockerfile)
        if boot.cuda_toolkit is not None:
            _copy_toolkit(factory.root / boot.cuda_toolkit, context / "cuda")
        log_file = factory.logs_dir / f"platform-{name}.log"
        log_file.unlink(missing_ok=True)
        labels = {Labels.INPUT_DIGEST: inputs, Labels.PLATFORM: name,
                  Labels.OCI_BASE_NAME: rootfs}
        args = {"INDEX_URL": devpi.simple_url(index)}
        with log.phase(f"build platform base {ref} (log: {log_file})"):
            docker.build(context, dockerfile=context / "Dockerfile", target="python",
                         tags=[slim, f"{slim}-{inputs[:12]}"], build_args=args,
                         labels={**labels, Labels.OCI_TITLE: title(name, slim=True)},
                         log_file=log_file)
            image_id = docker.build(
                context, dockerfile=context / "Dockerfile", target="torch",
                tags=[ref, f"{ref}-{inputs[:12]}"], build_args=args, log_file=log_file,
                labels={**labels, Labels.OCI_TITLE: title(name, slim=False)},
            )
    return BaseImage(name, ref, image_id, inputs, built=True, slim_ref=slim)


def _pull_published(docker: Docker, ref: str, slim: str, inputs: str) -> str | None:
    pulled = []
    for local, published in ((ref, f"{ref}-{inputs[:12]}"), (slim, f"{slim}-{inputs[:12]}")):
        if not docker.pull(published):
            return None
        docker.tag(published, local)
        pulled.append(local)
    log.detail(f"pulled the published base {ref}-{inputs[:12]}")
    return docker.image_id(ref)


def title(name: str, *, slim: bool) -> str:
    """The OCI title of a platform's base (or its slim image): what tells the two apart."""
    return f"basefactory slim {name} (Python, no torch)" if slim else f"basefactory platform {name}"


def _tag_local(docker: Docker, ref: str, slim: str, inputs: str, name: str) -> str | None:
    """The same base already on this engine under another registry's name (a factory that
    moved to another registry, or publishes to two): tagged, not rebuilt, so its identity
    and every digest that follows from it stay the same."""
    found = {}
    for local, is_slim in ((ref, False), (slim, True)):
        image = docker.find_image({Labels.INPUT_DIGEST: inputs,
                                   Labels.OCI_TITLE: title(name, slim=is_slim)})
        if image is None:
            return None
        found[local] = image
    for local, image in found.items():
        docker.tag(image, local)
        docker.tag(image, f"{local}-{inputs[:12]}")
    log.detail(f"{ref}: the same base ({inputs[:12]}) was on this engine under another name")
    return docker.image_id(ref)


def _copy_toolkit(source: Path, dest: Path) -> None:
    """The parts of a CUDA toolkit that compiling needs: bin, include, lib64, nvvm."""
    if not (source / "bin" / "nvcc").exists():
        raise ToolError(f"{source} holds no bin/nvcc", hint="point cuda_toolkit at a CUDA toolkit"
                        " (e.g. /usr/local/cuda-13.0)")
    for part in ("bin", "include", "lib64", "nvvm", "targets", "version.json"):
        src = source / part
        if src.is_dir():
            shutil.copytree(src, dest / part, symlinks=True)
        elif src.exists():
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)


def push_base(docker: Docker, base: BaseImage) -> None:
    # each immutable tag before its moving tag: a push killed in between leaves a moving
    # tag where it was, never on a manifest no immutable tag names
    refs = [f"{base.ref}-{base.input_digest[:12]}", base.ref]
    if base.slim_ref is not None:
        refs += [f"{base.slim_ref}-{base.input_digest[:12]}", base.slim_ref]
    for ref in refs:
        if docker.image_id(ref) is not None:
            docker.push(ref)
