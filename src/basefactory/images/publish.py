"""The image step of the pipeline, parents first, for each platform (`plan.py` decides
what to build; this module builds it):

    build context -> locked versions listed -> build -> ABI audit -> smoke test ->
    labels and SBOM -> push the immutable tag, read its digest back -> move the
    platform's tag (`push.py`)

An image's input digest (its parent's digest, lock, recipe wheels, rendered Dockerfile,
apt and env) names its immutable tag `<platform>-<YYYYMMDD>-<digest12>`; an image whose
digest is already tagged in the registry is not rebuilt. Nothing is pushed before the
audit and the smoke test passed, and the moving tag `<platform>` moves only after the
immutable tag is pushed and its digest read back from the registry.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from basefactory.adapters.tools import beside_python
from basefactory.audit.abi import audit_image, require_clean
from basefactory.images import push, sbom
from basefactory.images.definition import (
    ImageDef,
)
from basefactory.images.diff import compare, packages, summary
from basefactory.images.lock import Lock
from basefactory.images.plan import (
    ImagePlan,
    ImageResult,
    Parent,
    load_definitions,
    parent_of,
    plan_image,
    walk,
)
from basefactory.images.smoke import smoke_test
from basefactory.platforms import store
from basefactory.platforms.fingerprint import Fingerprint
from basefactory.plumbing import log
from basefactory.plumbing.errors import BuildError
from basefactory.plumbing.faults import checkpoint
from basefactory.proofs import Proof, Subject, store_labels
from basefactory.refs import Labels, image_ref, immutable_tag, platform_index, repository
from basefactory.session import Session


def ensure_image(session: Session, image: ImageDef, platform: str, parent: Parent,
                 *, upgrade: bool = False) -> ImageResult:
    """Plan the image; if its inputs are published, only finish a moving tag a killed run
    left behind. Else: build context -> locked versions listed on the index -> build ->
    ABI audit -> smoke test -> labels and SBOM -> push (`push.py` orders it). Nothing is
    pushed unless every step before passed."""
    started = time.monotonic()
    factory = session.factory
    plan_ = plan_image(session, image, platform, parent, upgrade=upgrade)
    repo = repository(factory, image.name)
    moving = image_ref(factory, image.name, platform)
    if plan_.existing is not None:
        tag = plan_.existing
        ref = image_ref(factory, image.name, tag)
        push.finish_build(session, image.name, platform, tag)
        return ImageResult(image.name, platform, "current", tag, ref, plan_.inputs, None,
                           round(time.monotonic() - started, 2), plan_.installed, plan_.reason)

    tag = immutable_tag(platform, plan_.inputs)
    ref = image_ref(factory, image.name, tag)
    work = _build_context(factory.state_dir / "build" / "images" / f"{image.name}-{platform}",
                          image, plan_)
    _require_locked_versions(session, image, platform, plan_)
    logs = Logs(factory.logs_dir / "images", f"{image.name}-{platform}")
    local = _build(session, image, platform, work, logs)
    # The audit before the smoke test: a module built for another torch fails both, and the
    # audit names the distribution, module and symbol where the smoke test has only an
    # import error.
    with log.phase(f"{image.name} on {platform}: ABI audit"):
        report = audit_image(session.docker, local, work=work, log_file=logs.of("audit"),
                             allow=image.audit.allow)
        require_clean(report, f"image {image.name} on {platform}", refused="nothing was pushed")
    with log.phase(f"{image.name} on {platform}: smoke test"):
        result = smoke_test(session.docker, local, image=image.name, platform=platform,
                            promised=sorted(set(image.requirement_names) | set(plan_.pins)),
                            torch=parent.torch, budget_mb=image.budget_for(platform),
                            command=image.smoke.command, work=work, log_file=logs.of("smoke"))
    subject = Subject(platform=platform, image=image.name, image_digest=plan_.inputs)
    proofs = [result.proof(image=image.name, platform=platform, inputs=plan_.inputs),
              report.proof(subject, inputs=plan_.inputs)]
    fp = store.require(factory, session.devpi, platform)
    labels = _labels(session, image, platform, parent, fp, tag, plan_.inputs, plan_.lock,
                     plan_.pins, result.manifest, proofs, plan_.wheel_lines)
    with log.phase(f"{image.name} on {platform}: SBOM"):
        bom = sbom.make(session, image.name, platform, tag, local, labels, work)
    _label(session, local, work / "label", tags=[ref, moving], labels=labels,
           log_file=logs.of("build"))
    if upgrade:
        _show_upgrade(session, repo, platform, labels)
    with log.phase(f"{image.name} on {platform}: push {ref}"):
        push.push_build(session, image.name, platform, tag, bom=bom, log_file=logs.of("push"))
    session.docker.remove_image(local)
    shutil.rmtree(work, ignore_errors=True)
    return ImageResult(image.name, platform, "built", tag, ref, plan_.inputs, result.size,
                       round(time.monotonic() - started, 2), plan_.installed, plan_.reason)


@dataclass(frozen=True)
class Logs:
    """The log files of one image build, under .factory/logs/images/."""

    folder: Path
    stem: str  # <image>-<platform>

    def of(self, phase: str) -> Path:  # build, audit, smoke, push
        return self.folder / f"{self.stem}-{phase}.log"


def _build_context(work: Path, image: ImageDef, plan_: ImagePlan) -> Path:
    """A fresh build context: the rendered Dockerfile, the lock, the recipe wheels' hashed
    lines, uv, and the image's own files."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "Dockerfile").write_text(plan_.dockerfile)
    (work / "lock.txt").write_text(plan_.lock.text)
    (work / "wheels.txt").write_text("".join(f"{line}\n" for line in plan_.wheel_lines))
    shutil.copy2(beside_python("uv"), work / "uv")
    if image.files is not None:
        shutil.copytree(image.files, work / "files", symlinks=True)
    return work


def _require_locked_versions(session: Session, image: ImageDef, platform: str,
                             plan_: ImagePlan) -> None:
    """Wait until the platform's index lists every version the lock pins (its mirror
    fetches them on first ask); refuse to build when one never shows."""
    index = platform_index(session.factory, platform)
    locked = plan_.lock.entries
    with log.phase(f"{image.name} on {platform}: {len(locked)} locked versions on {index}"):
        missing = session.devpi.wait_listed(index, locked)
    if missing:
        raise BuildError(
            f"{index} does not list {', '.join(f'{n}=={v}' for n, v in sorted(missing.items()))},"
            f" which the lock of {image.name} on {platform} pins; nothing was built",
            hint="its mirror could not fetch them (see .factory/logs/devpi.log): check the"
            " mirror's network, or relock with `basefactory images build --upgrade`",
        )


def _build(session: Session, image: ImageDef, platform: str, work: Path, logs: Logs) -> str:
    """Build the image under a local name of its own; that name."""
    index_url = session.devpi.simple_url(platform_index(session.factory, platform))
    build_log = logs.of("build")
    build_log.unlink(missing_ok=True)
    local = f"basefactory/image-build:{image.name}-{platform}"
    with log.phase(f"{image.name} on {platform}: build (log: {build_log})"):
        try:
            session.docker.build(work, dockerfile=work / "Dockerfile", tags=[local],
                                 build_args={"INDEX_URL": index_url}, log_file=build_log,
                                 on_line=lambda _: checkpoint("image:during-build"))
        except Exception as exc:
            if isinstance(exc, BuildError):
                raise
            raise BuildError(f"image {image.name} failed to build on {platform}; nothing was"
                             f" pushed.\n{exc}", hint="read the build log") from None
    return local


def _label(session: Session, local: str, folder: Path, *, tags: list[str],
           labels: dict[str, str], log_file: Path) -> None:
    """The tested image with the factory's labels (proofs, lock, manifest) on it: a
    one-line `FROM` build, so its layers are the tested ones."""
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {local}\n")
    session.docker.build(folder, dockerfile=folder / "Dockerfile", tags=tags, labels=labels,
                         log_file=log_file)


def _show_upgrade(session: Session, repo: str, platform: str, labels: dict[str, str]) -> None:
    """`images build --upgrade`: what the new build changes against the published one,
    shown before it is pushed."""
    previous = session.registry.labels(repo, platform)
    if not previous:
        return
    for line in summary(compare(packages(previous), packages(labels))):
        log.info(f"{repo}:{platform} upgrade: {line}")


def _labels(session: Session, image: ImageDef, platform: str, parent: Parent, fp: Fingerprint,
            tag: str, inputs: str, lock: Lock, pins: dict[str, str],
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
        Labels.LOCK: lock.versions,
        Labels.LOCK_SHA256: hashlib.sha256(lock.text.encode()).hexdigest(),
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
    return planned_result(session, image, platform, plan_)


def planned_result(session: Session, image: ImageDef, platform: str, plan_: ImagePlan
                   ) -> ImageResult:
    """What a dry run reports for a plan: the tag it has (or would get), nothing built."""
    tag = plan_.existing or immutable_tag(platform, plan_.inputs)
    return ImageResult(image.name, platform, plan_.action, tag,
                       image_ref(session.factory, image.name, tag), plan_.inputs, None, 0.0,
                       plan_.installed, plan_.reason)
