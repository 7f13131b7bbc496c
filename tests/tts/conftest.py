"""A factory of its own with the TTS platform: fresh devpi and registry, torch 2.11.0 +
torchaudio 2.11.0 from PyPI through the index's mirror, and the CUDA 13.0 toolkit for the
kernels its recipes compile (make test-tts)."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest

from basefactory.config.factory import Factory, load_factory
from basefactory.platforms.publish import PlatformResult, ensure_platform
from basefactory.session import Session
from tests.cuda.conftest import session  # the same lifecycle, on this module's factory
from tests.helpers import ROOT, docker_answers, port, require, write_factory

__all__ = ["factory", "platform", "session"]

TTS = "cu130-py311-torch2.11"
TOOLKIT = Path("/usr/local/cuda-13.0")


@pytest.fixture(scope="session")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Factory:
    require(docker_answers(), "no Docker engine answers")
    require((TOOLKIT / "bin" / "nvcc").exists(), f"no CUDA toolkit at {TOOLKIT}", tier="tts")
    # the factory's own definition of the platform, as `make tts` builds it
    shipped = tomllib.loads((ROOT / "factory.toml").read_text())["platforms"][TTS]["bootstrap"]
    root = tmp_path_factory.mktemp("tts-factory")
    path = write_factory(root, index_port=port(3153), registry_port=port(5013), extra=textwrap.dedent(f"""
        [platforms."{TTS}"]
        description = "test TTS platform"
        [platforms."{TTS}".bootstrap]
        torch = "{shipped['torch']}"
        torch_sha256 = "{shipped['torch_sha256']}"
        packages = {list(shipped['packages'])!r}
        apt = {list(shipped['apt'])!r}
        cuda_toolkit = "{TOOLKIT}"
    """).replace("'", '"'))
    return load_factory(path)


@pytest.fixture(scope="session")
def platform(session: Session) -> PlatformResult:
    return ensure_platform(session, TTS)
