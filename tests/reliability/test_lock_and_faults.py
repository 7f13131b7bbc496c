"""Two runs at once, and each service or input failing: one clear message naming the
step and what to do, a non-zero exit, and nothing half-published."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from basefactory.images.plan import ImageResult
from basefactory.plumbing.writer import one_writer
from basefactory.refs import platform_index
from basefactory.session import Session
from tests.helpers import PLATFORM, require
from tests.integration.test_wheels import make_c_project
from tests.reliability.helpers import bf


def test_a_second_run_is_refused_while_the_first_holds_the_lock(session: Session,
                                                                  tally: Counter[str]) -> None:
    tally["failure_injections"] += 1
    with one_writer(session.factory.state_dir, "publish"):
        second = bf(session.factory.path, "publish", "--only", "torchsort")
    assert second.returncode == 8
    assert f"pid {os.getpid()}" in second.stderr and "publish" in second.stderr
    assert "Traceback" not in second.stderr


def test_a_killed_holder_frees_the_lock(session: Session, tally: Counter[str]) -> None:
    tally["failure_injections"] += 1
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from basefactory.config.factory import load_factory
        from basefactory.plumbing.writer import one_writer
        with one_writer(load_factory(__import__("pathlib").Path({str(session.factory.path)!r})).state_dir, "holder"):
            print("held", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    assert bf(session.factory.path, "publish", "--only", "torchsort").returncode == 8
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with one_writer(session.factory.state_dir, "after the crash"):
        assert time.monotonic() - started < 1  # the kernel released it: never stale
    tally["crashes_survived"] += 1


def _broken_copy(session: Session, tmp_path: Path, old: str, new: str) -> Path:
    config = tmp_path / "factory.toml"
    text = session.factory.path.read_text()
    assert old in text
    config.write_text(text.replace(old, new).replace('state_dir = ".factory"',
                                                      f'state_dir = "{session.factory.state_dir}"'))
    for folder in ("recipes", "images", "index"):
        (tmp_path / folder).symlink_to(session.factory.root / folder)
    return config


def test_devpi_down(session: Session, tmp_path: Path, tally: Counter[str]) -> None:
    tally["failure_injections"] += 1
    port = session.factory.config.index.port
    config = _broken_copy(session, tmp_path, f"[index]\nport = {port}",
                          "[index]\nembedded = false\nurl = \"http://127.0.0.1:9\"")
    result = bf(config, "wheels", "build", "torchsort")
    assert result.returncode == 4, result.stderr
    assert "devpi at http://127.0.0.1:9 is not answering" in result.stderr
    assert "Traceback" not in result.stderr


def test_registry_down(session: Session, published: dict[str, ImageResult], tmp_path: Path,
                       tally: Counter[str]) -> None:
    tally["failure_injections"] += 1
    port = session.factory.config.registry.port
    config = _broken_copy(session, tmp_path, f"[registry]\nport = {port}",
                          "[registry]\nembedded = false\nurl = \"http://127.0.0.1:9\"")
    result = bf(config, "images", "build", "cuda-deps")
    assert result.returncode == 4, result.stderr
    assert "registry http://127.0.0.1:9 is not answering" in result.stderr
    assert "Traceback" not in result.stderr


def test_docker_engine_down(session: Session, tally: Counter[str]) -> None:
    tally["failure_injections"] += 1
    # A probe always runs a container; `images build` may need no engine at all when
    # everything is already published (content-addressed skip), so it cannot show this.
    result = bf(session.factory.path, "platforms", "probe", PLATFORM,
                env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 4, result.stderr
    assert "Docker engine is not answering" in result.stderr and "Traceback" not in result.stderr


def test_disk_full_in_the_wheelhouse(session: Session, platform: object, tmp_path: Path,
                                     tally: Counter[str]) -> None:
    require(os.geteuid() == 0 and shutil.which("mount") is not None,
            "mounting a tiny tmpfs needs root")
    tally["failure_injections"] += 1
    wheels = session.factory.wheels_dir / PLATFORM
    saved = tmp_path / "saved"
    shutil.move(str(wheels), saved) if wheels.exists() else saved.mkdir()
    wheels.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(wheels)], check=True)
    make_c_project(tmp_path / "src")
    (tmp_path / "src" / "fastadd" / "big.bin").write_bytes(os.urandom(400_000))  # > 64k
    (session.factory.recipes_dir / "diskfull.toml").write_text(textwrap.dedent(f"""
        project = "fastadd-diskfull"
        [source]
        path = "{tmp_path / 'src'}"
        [test]
        command = "true"
    """))
    try:
        (tmp_path / "src" / "setup.py").write_text(
            "from setuptools import setup, Extension\n"
            "setup(name='fastadd-diskfull', version='1.0', packages=['fastadd'],"
            " package_data={'fastadd': ['big.bin']},"
            " ext_modules=[Extension('fastadd._fastadd', ['fastadd/_fastadd.c'])])\n")
        (tmp_path / "src" / "pyproject.toml").unlink()
        result = bf(session.factory.path, "wheels", "build", "diskfull")
        assert result.returncode == 1, result.stderr[-2000:]
        assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
        files = session.devpi.release_files(platform_index(session.factory, PLATFORM),
                                            "fastadd-diskfull")
        if files:
            tally["partial_publishes"] += 1
        assert files == []
    finally:
        subprocess.run(["umount", str(wheels)], check=False)
        shutil.rmtree(wheels, ignore_errors=True)
        shutil.move(str(saved), wheels)
        (session.factory.recipes_dir / "diskfull.toml").unlink()


@pytest.mark.parametrize(("recipe", "code", "message"), [
    ("bad-build", 5, "failed to build"),
    ("bad-test", 6, "the test of bad-test"),
    ("bad-sha", 9, "pinned sha256"),
    ("bad-commit", 9, "does not exist"),
])
def test_bad_recipes_exit_with_their_code(session: Session, platform: object, tmp_path: Path,
                                          recipe: str, code: int, message: str,
                                          tally: Counter[str]) -> None:
    tally["failure_injections"] += 1
    make_c_project(tmp_path / "ok")
    make_c_project(tmp_path / "broken", broken=True)
    subprocess.run(["git", "init", "-q", str(tmp_path / "repo")], check=True)
    bodies = {
        "bad-build": f'project = "fastadd-bad-build"\n[source]\npath = "{tmp_path / "broken"}"\n[test]\ncommand = "true"\n',
        "bad-test": f'project = "fastadd-bad-test"\n[source]\npath = "{tmp_path / "ok"}"\n[test]\ncommand = "exit 3"\n',
        "bad-sha": f'[source]\nsdist = "torchsort==0.1.10"\nsha256 = "{"1" * 64}"\n[test]\ncommand = "true"\n',
        "bad-commit": f'project = "x"\n[source]\ngit = "file://{tmp_path / "repo"}"\ncommit = "{"2" * 40}"\n[test]\ncommand = "true"\n',
    }
    # Every sdist in the mirror already has its recipe and one distribution has one recipe,
    # so the wrong sha256 goes into torchsort's own recipe for the length of the test.
    name = "torchsort" if recipe == "bad-sha" else recipe
    path = session.factory.recipes_dir / f"{name}.toml"
    original = path.read_text() if path.exists() else None
    path.write_text(bodies[recipe])
    try:
        result = bf(session.factory.path, "wheels", "build", name)
        assert result.returncode == code, result.stderr[-2000:]
        assert message in result.stderr and "Traceback" not in result.stderr
        assert "nothing was" in result.stderr
    finally:
        path.write_text(original) if original is not None else path.unlink()
