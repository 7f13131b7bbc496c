"""wheels/source.py without an index: which file is a project's sdist, how an archive
unpacks, and a git source exported at its pinned commit (a real repository on disk)."""

from __future__ import annotations

import io
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from basefactory.plumbing.errors import ConfigError, SourceMismatch
from basefactory.wheels import source


@pytest.mark.parametrize(("filename", "wanted"), [
    ("monotonic_alignment_search-0.2.1.tar.gz", True),
    ("Monotonic.Alignment-Search-0.2.1.zip", True),  # PEP 503 names compare normalized
    ("monotonic_alignment_search-0.2.10.tar.gz", False),
    ("monotonic_alignment_search-0.2.1-cp311-cp311-linux_x86_64.whl", False),
    ("monotonic_alignment_search_extra-0.2.1.tar.gz", False),
])
def test_an_sdist_is_recognised_by_its_normalized_name_and_exact_version(
        filename: str, wanted: bool) -> None:
    assert source._is_sdist_of("monotonic-alignment-search", "0.2.1")(filename) is wanted


def test_an_archive_with_one_top_folder_is_flattened(tmp_path: Path) -> None:
    archive = tmp_path / "x-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in (("x-1.0/setup.py", b"print()"), ("x-1.0/src/x.c", b"int x;")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    source._unpack(archive, tmp_path / "out")
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")) \
        == ["setup.py", "src", "src/x.c"]
    flat = tmp_path / "y-1.0.zip"
    with zipfile.ZipFile(flat, "w") as zf:
        zf.writestr("setup.py", "print()")
        zf.writestr("README", "y")
    source._unpack(flat, tmp_path / "flat")
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["README", "setup.py"]


def test_an_archive_that_writes_outside_its_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("../../escaped")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(tarfile.TarError):
        source._unpack(archive, tmp_path / "out")
    assert not (tmp_path.parent / "escaped").exists()


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, str]:
    """A repository with two commits; (url, first commit, second commit)."""
    monkeypatch.setattr(source, "cache_dir", lambda: tmp_path / "cache")
    work = tmp_path / "upstream"
    (work / "pkg").mkdir(parents=True)
    git("init", "-q", cwd=work)
    (work / "pkg" / "setup.py").write_text("v1")
    git("add", ".", cwd=work)
    git("commit", "-qm", "one", cwd=work)
    first = git("rev-parse", "HEAD", cwd=work)
    (work / "pkg" / "setup.py").write_text("v2")
    git("commit", "-qam", "two", cwd=work)
    return f"file://{work}", first, git("rev-parse", "HEAD", cwd=work)


def test_git_exports_the_pinned_commit_without_its_history(
        tmp_path: Path, repo: tuple[str, str, str]) -> None:
    url, first, _ = repo
    dest = tmp_path / "src" / "tree"
    source._git_export("r", url, first, dest, "pkg")
    assert (dest / "setup.py").read_text() == "v1"  # the pin, not the branch's head
    assert not list(dest.rglob(".git"))


def test_git_refuses_a_commit_the_repository_does_not_hold_and_a_missing_subdirectory(
        tmp_path: Path, repo: tuple[str, str, str]) -> None:
    url, _, second = repo
    with pytest.raises(SourceMismatch, match="commit 0{40} does not exist"):
        source._git_export("r", url, "0" * 40, tmp_path / "a" / "tree", None)
    with pytest.raises(ConfigError, match="subdirectory nope is not in"):
        source._git_export("r", url, second, tmp_path / "b" / "tree", "nope")
    with pytest.raises(SourceMismatch, match="cannot clone"):
        source._git_export("r", f"file://{tmp_path}/no-such-repo", second,
                           tmp_path / "c" / "tree", None)
