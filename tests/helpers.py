"""Helpers shared by the integration suites: a test factory on its own ports."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from basefactory.adapters.cmd import Result
from basefactory.adapters.docker import detect_client
from basefactory.config.factory import Factory, load_factory
from basefactory.daemons.credentials import registry_auth

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = "cpu-py311-torch2.13"
TORCH = "torch==2.13.0+cpu"
# the NGC-shaped platform: standins/ngc-pytorch's image, pushed to the test registry
NGC = "ngc-25.10-cpu"
NGC_REPOSITORY = "mirror/nvcr.io/nvidia/pytorch:25.10-py3-cpu-standin"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str, *, tier: str | None = None) -> None:
    """A component the test needs. What `make test` promises (the engine, the wheelhouse,
    chromium, root, a compiler) missing is a failure, never a skip: a suite that skipped
    its point would pass while proving nothing. Only an opt-in `tier` (the CUDA toolkit,
    a GPU) may be absent, and is then skipped with the tier named in pytest's summary;
    under CI, whose machines have the toolkit, a missing tier component fails too."""
    if condition:
        return
    if tier is None or in_ci():
        pytest.fail(f"missing component: {reason}", pytrace=False)
    pytest.skip(f"opt-in {tier} tier not available here: {reason}")


def port(preferred: int) -> int:
    """The preferred port when it is free (stable URLs keep pip's cache warm), else any."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])


def wait_http(url: str, *, timeout: float = 60.0) -> httpx.Response:
    """The first answer a starting server gives to GET `url` (any status): connection
    errors are retried until `timeout`, then raised."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def wheelhouse() -> Path | None:
    explicit = os.environ.get("BASEFACTORY_TEST_WHEELHOUSE")
    for candidate in ([Path(explicit)] if explicit else []) + [Path("/opt/wheels")]:
        if any(candidate.glob("torch-2.13.0+cpu-*.whl")):
            return candidate
    return None


def docker_answers() -> bool:
    for client in ("/usr/bin/docker", "docker"):
        try:
            if subprocess.run([client, "info"], capture_output=True, timeout=20).returncode == 0:
                return True
        except (OSError, subprocess.TimeoutExpired):
            continue
    return False


def write_factory(root: Path, *, index_port: int, registry_port: int, extra: str = "") -> Path:
    house = wheelhouse()
    root.mkdir(parents=True, exist_ok=True)
    (root / "factory.toml").write_text(textwrap.dedent(f"""
        state_dir = ".factory"
        [index]
        port = {index_port}
        [registry]
        port = {registry_port}
        [wheels]
        # as the factory's own: vLLM is adopted (vllm.toml), not built from source here
        exclude = ["vllm-source", "index-tts-source"]
        [platforms."{PLATFORM}"]
        description = "test platform"
        [platforms."{PLATFORM}".bootstrap]
        torch = "{TORCH}"
        wheelhouse = "{house}"
        # made by standins/ngc-pytorch/build.py when a test asks for it (tests/integration/
        # test_ngc.py); not enabled, so publishes of the whole factory leave it alone
        [platforms."{NGC}"]
        description = "NGC stand-in"
        image = "127.0.0.1:{registry_port}/{NGC_REPOSITORY}"
        enabled = false
    """) + textwrap.dedent(extra))
    for folder in ("index", "recipes", "images"):
        if (ROOT / folder).is_dir() and not (root / folder).exists():
            shutil.copytree(ROOT / folder, root / folder)
    return root / "factory.toml"


def write_pyproject(folder: Path, name: str, version: str, *,
                    dependencies: Sequence[str] = (), packages: Sequence[str] = ()) -> None:
    """The setuptools pyproject.toml of the tests' own small projects."""
    lines = ["[build-system]", 'requires = ["setuptools>=68"]',
             'build-backend = "setuptools.build_meta"', "[project]", f'name = "{name}"',
             f'version = "{version}"']
    if dependencies:
        lines.append(f"dependencies = {json.dumps(list(dependencies))}")
    if packages:
        lines += ["[tool.setuptools]", f"packages = {json.dumps(list(packages))}"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text("\n".join(lines) + "\n")


def forget_images(factory: Factory) -> None:
    """The session's images leave the engine with it (tens of GB over a run): every tag
    under its registry's address, the downstream images tests build (basefactory-test/),
    the local builds a refused image leaves for inspection (basefactory/image-build:)
    and the dangling layers they leave. The build cache stays, so the next session
    rebuilds from it."""
    docker = detect_client(factory.config.engine.docker).path
    refs = subprocess.run([docker, "images", "--format", "{{.Repository}}:{{.Tag}}"],
                          capture_output=True, text=True).stdout.split()
    mine = [r for r in refs if r.startswith((f"{factory.config.registry.address}/",
                                              "basefactory-test/", "basefactory/image-build:"))]
    if mine:
        subprocess.run([docker, "image", "rm", "--force", *mine], capture_output=True)
    subprocess.run([docker, "image", "prune", "--force"], capture_output=True)


# the containerd dockerd starts (installed with docker.io): it pulls zstd layers, and into a
# namespace of its own it has nothing cached, so a pull checks every blob and diff_id
CONTAINERD = "/var/run/docker/containerd/containerd.sock"


def containerd_run(factory: Factory, ref: str, argv: Sequence[str]) -> str:
    """Pull `ref` from the factory's registry into a fresh containerd namespace and run
    `argv` in a container of it; its stdout. A failed pull or run fails the test."""
    auth = registry_auth(factory)
    assert auth is not None
    ctr = ["ctr", "--address", CONTAINERD, "--namespace", f"bf-test-{uuid.uuid4().hex[:8]}"]
    try:
        pulled = subprocess.run([*ctr, "image", "pull", "--plain-http", "--user",
                                 f"{auth[0]}:{auth[1]}", ref], capture_output=True, text=True)
        assert pulled.returncode == 0, pulled.stderr[-2000:]
        ran = subprocess.run([*ctr, "run", "--rm", "--net-host", ref, f"t{uuid.uuid4().hex[:8]}",
                              *argv], capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr[-2000:]
        return ran.stdout
    finally:
        subprocess.run([*ctr, "image", "rm", ref], capture_output=True)


ONE_PLATFORM = '[platforms.p1]\nimage = "example.invalid/x:1"\n'


def small_factory(root: Path, extra: str = "", platforms: str = ONE_PLATFORM) -> Factory:
    """A factory.toml of a few lines (`extra` tables, then `platforms`), loaded: for the
    unit tests of what reads the configuration. Nothing is started."""
    (root / "factory.toml").write_text('state_dir = ".factory"\n' + extra + platforms)
    return load_factory(root / "factory.toml")


class HostEngine:
    """For unit tests of the in-container scripts (smoke test, SBOM inventory): the
    Docker adapter's `run_script` and `image_inspect`, run on this host with this venv's
    Python instead of in a container, the mount path rewritten to the scratch folder. The
    scripts are the real ones; what is "in the image" is this venv. Integration tests run
    them in real containers."""

    def __init__(self, size: int = 1_000_000) -> None:
        self.size = size
        self.runs: list[list[str]] = []

    def run_script(self, image: str, argv: Sequence[str], *, files: dict[str, Path | str],
                   folder: Path, mount: str = "/bf", env: dict[str, str] | None = None,
                   network: str = "host", log_file: Path | None = None) -> Any:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name, content in files.items():
            text = content.read_text() if isinstance(content, Path) else content
            (folder / name).write_text(text.replace(f"{mount}/", f"{folder}/"))
        argv = [a.replace(f"{mount}/", f"{folder}/") for a in argv]
        self.runs.append(argv)
        bin_dir = str(Path(sys.executable).parent)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              env={**os.environ, **(env or {}),
                                   "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"})
        return Result(tuple(argv), done.returncode, done.stdout + done.stderr)

    def image_inspect(self, ref: str) -> dict[str, Any]:
        return {"Size": self.size, "Id": "sha256:" + "0" * 64}


def tiny_wheel(folder: Path, name: str, version: str, *, requires: Sequence[str] = (),
               body: str = "", tag: str = "py3-none-any") -> Path:
    """A pure-Python wheel written as a zip (no build backend): one module named for the
    project, METADATA with its Requires-Dist, and a RECORD with real hashes, so pip
    installs it. For the unit tests of what reads or installs wheels."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": body.encode(),
        f"{info}/METADATA": ("Metadata-Version: 2.1\n" f"Name: {name}\nVersion: {version}\n"
                             + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
        .encode(),
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
        f"{len(data)}\n" for path, data in files.items()) + f"{info}/RECORD,,\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{module}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
        zf.writestr(f"{info}/RECORD", record)
    return path
