"""kill -9 at each point of a publish (during a build, before and after an upload, during
and after a push): the index and registry stay consistent, no tag moves to an untested
image, and the next run completes without manual cleanup."""

from __future__ import annotations

import json
import signal
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from basefactory.images.service import ImageResult
from basefactory.index.layout import platform_index
from basefactory.proofs import Kind, store_labels
from basefactory.proofs.read import proven
from basefactory.refs import repository
from basefactory.session import Session
from tests.helpers import PLATFORM
from tests.integration.test_wheels import make_c_project
from tests.reliability.helpers import bf

WHEEL_POINTS = ["wheel:during-build", "wheel:before-upload", "wheel:after-upload"]
IMAGE_POINTS = ["image:during-build", "image:during-push", "image:after-immutable-push"]


@pytest.fixture(scope="module")
def subjects(session: Session, published: dict[str, ImageResult], tmp_path_factory: pytest.TempPathFactory
             ) -> Path:
    """A small C extension recipe and a small image on cuda-deps, both cheap to rebuild."""
    root = tmp_path_factory.mktemp("crash")
    make_c_project(root / "src")
    (session.factory.recipes_dir / "crash-wheel.toml").write_text(textwrap.dedent(f"""
        project = "fastadd"
        [source]
        path = "{root / 'src'}"
        [test]
        command = "python -c 'import fastadd; assert fastadd.add(1, 2) == 3'"
    """))
    folder = session.factory.images_dir / "crash-image"
    folder.mkdir(exist_ok=True)
    (folder / "requirements.in").write_text("six\n")
    return root


def _bump_wheel(root: Path, n: int) -> None:
    (root / "src" / "fastadd" / "version.txt").write_text(str(n))  # new content, new digest


def _bump_image(session: Session, n: int) -> None:
    (session.factory.images_dir / "crash-image" / "image.toml").write_text(
        f'parent = "cuda-deps"\nsize_budget_mb = 5000\n[env]\nCRASH_CASE = "{n}"\n')


def _consistent(session: Session, tally: Counter[str]) -> None:
    """Every file in the platform index was tested before upload (its record may lag a
    crash), and the moving tag points at an immutable tag whose smoke test passed."""
    repo = repository(session.factory, "crash-image")
    moving = session.registry.digest(repo, PLATFORM)
    if moving is not None:
        labels = session.registry.labels(repo, PLATFORM)
        proofs = store_labels.read(labels, image="crash-image", platform=PLATFORM)
        if not proven(proofs, Kind.SMOKE):
            tally["moved_tags_to_untested_images"] += 1
        tags = [t for t in session.registry.tags(repo) if t.startswith(f"{PLATFORM}-")]
        if moving not in {session.registry.digest(repo, t) for t in tags}:
            tally["moved_tags_to_untested_images"] += 1
    for f in session.devpi.release_files(platform_index(session.factory, PLATFORM), "fastadd"):
        if not f.filename.endswith(".whl"):
            tally["partial_publishes"] += 1


@pytest.mark.parametrize("point", WHEEL_POINTS + IMAGE_POINTS)
def test_kill_9_then_rerun_completes(session: Session, subjects: Path, point: str,
                                     tally: Counter[str]) -> None:
    n = (WHEEL_POINTS + IMAGE_POINTS).index(point) + 100
    if point.startswith("wheel"):
        _bump_wheel(subjects, n)
        target = "crash-wheel"
    else:
        _bump_image(session, n)
        target = "crash-image"
    tally["failure_injections"] += 1
    crashed = bf(session.factory.path, "publish", "--only", target, failpoint=point)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert f"failpoint {point}" in crashed.stderr
    _consistent(session, tally)

    again = bf(session.factory.path, "publish", "--only", target, "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    tally["crashes_survived"] += 1
    steps = json.loads(again.stdout)["steps"]
    mine = [s for s in steps if s["name"] == target]
    assert mine and mine[0]["result"] in ("built", "retested", "current")
    _consistent(session, tally)
    if target == "crash-wheel":
        files = session.devpi.release_files(platform_index(session.factory, PLATFORM), "fastadd")
        assert files and all(f.toxresults for f in files), "a published wheel lacks its test"
    else:
        final = bf(session.factory.path, "publish", "--only", target, "--json")
        assert [s["result"] for s in json.loads(final.stdout)["steps"]
                if s["name"] == target] == ["current"]
