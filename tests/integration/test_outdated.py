"""`basefactory outdated` against the real index and its mirror, with uv resolving: an
image whose lock pins an old release shows what `--upgrade` would take and what its own
requirements hold back; a package that needs another torch is named as blocked by the
platform's torch. Nothing is written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from packaging.version import Version

from basefactory.images.outdated import probe
from basefactory.images.plan import ImageResult
from basefactory.session import Session
from tests.helpers import PLATFORM


def test_outdated_shows_upgrades_and_what_holds_them_back(
        session: Session, published: dict[str, ImageResult]) -> None:
    folder = session.factory.images_dir / "outdated-me"
    (folder / "locks").mkdir(parents=True)
    try:
        (folder / "image.toml").write_text('parent = "platform"\nsize_budget_mb = 5000\n')
        # idna below 3.7, locked at 3.4: --upgrade takes 3.6, the newest is held back
        (folder / "requirements.in").write_text("idna<3.7\n")
        lock = folder / "locks" / f"{PLATFORM}.txt"
        lock.write_text("idna==3.4\n")
        done = subprocess.run([sys.executable, "-m", "basefactory", "--config",
                               str(session.factory.path), "outdated", "outdated-me",
                               "--platform", PLATFORM, "--json"],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        rows = [r for r in json.loads(done.stdout) if r["kind"] == "image"]
        [idna] = [r for r in rows if r["name"] == "outdated-me" and r["package"] == "idna"]
        assert idna["current"] == "3.4" and idna["upgrade"] == "3.6"
        assert Version(idna["newest"]) >= Version("3.7")
        assert idna["held_back"] == "the image's other requirements hold it back"
        assert lock.read_text() == "idna==3.4\n"  # a dry run: the lock is as it was
    finally:
        shutil.rmtree(folder)


def test_a_package_built_for_another_torch_is_blocked_by_the_platforms(
        session: Session, published: dict[str, ImageResult]) -> None:
    # torchvision 0.26.0 requires torch==2.11.0; the platform's is 2.13.0+cpu
    reason = probe(session, PLATFORM, "torchvision", "0.26.0")
    assert reason.startswith("needs another torch than the platform's 2.13.0+cpu: Because"
                             " torchvision==0.26.0 depends on torch==2.11.0"), reason
    assert probe(session, PLATFORM, "idna", "3.6") == ""
    # torchaudio 2.11.0 declares no torch pin, so a resolver takes it on torch 2.13 (and
    # its module then fails to load): only the ABI audit catches that one
    assert probe(session, PLATFORM, "torchaudio", "2.11.0") == ""
