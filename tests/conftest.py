"""Shared fixtures: one devpi, one registry and one bootstrapped platform per test session,
all real. The engine is the machine's (`make test` runs `basefactory up` first). devpi and
the registry run on their own ports with their data in the session's temporary folder, so
a test run never touches the factory's own index or registry. Fixtures are made only when
a test asks for them: unit tests use none.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from basefactory import house
from basefactory.config.factory import Factory, load_factory
from basefactory.images.plan import ImageResult
from basefactory.images.publish import build_all as build_images
from basefactory.pipeline import Step, fit_published
from basefactory.platforms.publish import PlatformResult, ensure_platform
from basefactory.session import Session
from basefactory.wheels.publish import build_all as build_wheels
from tests.helpers import PLATFORM, docker_answers, forget_images, port, require, wheelhouse, write_factory


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # tests under integration/, reliability/ and cuda/ need real services: mark them so
    # that `pytest -m "not integration"` runs the fast tier alone
    # and those that build a platform (every image and fit stands on one) `slow`, so that
    # `pytest -m "integration and not slow"` checks the services in seconds
    for item in items:
        path = str(item.fspath)
        if any(f"/{tier}/" in path for tier in ("integration", "reliability", "cuda", "tts", "llm")):
            item.add_marker(pytest.mark.integration)
            if "platform" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def factory(tmp_path_factory: pytest.TempPathFactory) -> Factory:
    require(docker_answers(), "no Docker engine answers (run `make test`, which starts one)")
    require(wheelhouse() is not None,
            "no torch-2.13.0+cpu wheel (set BASEFACTORY_TEST_WHEELHOUSE to a folder holding it)")
    root = tmp_path_factory.mktemp("factory")
    path = write_factory(root, index_port=port(3142), registry_port=port(5001))
    return load_factory(path)


@pytest.fixture(scope="session")
def running(factory: Factory) -> Iterator[Factory]:
    house.up(factory)
    yield factory
    forget_images(factory)
    house.down(factory)


@pytest.fixture(scope="session")
def session(running: Factory) -> Iterator[Session]:
    with Session(running) as s:
        yield s


@pytest.fixture(scope="session")
def platform(session: Session) -> PlatformResult:
    return ensure_platform(session, PLATFORM)


@pytest.fixture(scope="session")
def published(session: Session, platform: PlatformResult) -> dict[str, ImageResult]:
    """The recipe wheels the images need and every image, published once per session."""
    build_wheels(session, ["monotonic-alignment-search", "openai-whisper", "torchsort"])
    return {r.image: r for r in build_images(session)}


@pytest.fixture(scope="session")
def fitted(session: Session, published: dict[str, ImageResult]) -> list[Step]:
    """The fit test of every published image (and the platform's base and slim) with every
    tested wheel of its platform, as `publish` runs them."""
    return fit_published(session, jobs=2)
