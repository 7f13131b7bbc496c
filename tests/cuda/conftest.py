"""A factory of its own with the CUDA platform: fresh devpi and registry, real nvcc."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from basefactory import house
from basefactory.config.factory import Factory, load_factory
from basefactory.platforms.publish import PlatformResult, ensure_platform
from basefactory.session import Session
from tests.helpers import docker_answers, forget_images, port, require, write_factory

CUDA = "cu130-py311-torch2.14"
WHEELHOUSE = Path("/opt/pypi-more/files")
TOOLKIT = Path("/usr/local/cuda-13.0")


@pytest.fixture(scope="session")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Factory:
    require(docker_answers(), "no Docker engine answers")
    require(any(WHEELHOUSE.glob("torch-2.14.1-*.whl")), f"no torch 2.14.1 wheel in {WHEELHOUSE}",
            tier="cuda")
    require((TOOLKIT / "bin" / "nvcc").exists(), f"no CUDA toolkit at {TOOLKIT}", tier="cuda")
    root = tmp_path_factory.mktemp("cuda-factory")
    path = write_factory(root, index_port=port(3152), registry_port=port(5012), extra=textwrap.dedent(f"""
        [platforms."{CUDA}"]
        description = "test CUDA platform"
        [platforms."{CUDA}".bootstrap]
        torch = "torch==2.14.1"
        wheelhouse = "{WHEELHOUSE}"
        cuda_toolkit = "{TOOLKIT}"
    """))
    return load_factory(path)


@pytest.fixture(scope="session")
def session(factory: Factory) -> Iterator[Session]:
    house.up(factory)
    with Session(factory) as s:
        yield s
    forget_images(factory)
    house.down(factory)
    # its devpi mirror holds a CUDA torch and its NVIDIA wheels (GBs): not kept in pytest's
    # temporary folders, which keep three sessions
    shutil.rmtree(factory.state_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def platform(session: Session) -> PlatformResult:
    return ensure_platform(session, CUDA)
