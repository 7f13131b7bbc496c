"""images/audit.py (`images audit TARGET`): which images a target names, and whose
`[[audit.allow]]` apply to each. The engine and registry are small stand-ins; the audit
itself runs in test_abi_audit.py and, on real images, in tests/integration."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from basefactory.images.audit import _declared, resolve
from basefactory.plumbing.errors import ConfigError
from basefactory.refs import Labels
from tests.helpers import small_factory

PLATFORMS = '[platforms.p1]\nimage = "example.invalid/x:1"\n[platforms.p2]\nimage = "example.invalid/y:1"\n'
ALLOW = '[[audit.allow]]\nmodule = "numba/np/ufunc/tbbpool*"\nlibrary = "libtbb.so.12"\nreason = "numba\'s optional TBB layer"\n'


class Engine:
    def __init__(self, local: dict[str, dict[str, str]]) -> None:
        self.local = local  # ref -> labels

    def image_id(self, ref: str) -> str | None:
        return "sha256:1" if ref in self.local else None

    def image_labels(self, ref: str) -> dict[str, str]:
        return self.local.get(ref, {})


class Registry:
    def __init__(self, tags: dict[str, list[str]]) -> None:
        self._tags = tags

    def tags(self, repo: str) -> list[str]:
        return self._tags.get(repo, [])


@pytest.fixture()
def session(tmp_path: Path) -> Any:
    factory = small_factory(tmp_path, platforms=PLATFORMS)
    for name, parent, extra in (("ml-deps", "platform", ALLOW), ("tts", "ml-deps", "")):
        folder = tmp_path / "images" / name
        folder.mkdir(parents=True)
        (folder / "image.toml").write_text(f'description = "{name}"\nparent = "{parent}"\n'
                                           f"size_budget_mb = 100\n{extra}")
        (folder / "requirements.in").write_text("numpy\n")
    (tmp_path / "recipes").mkdir()
    return SimpleNamespace(factory=factory,
                           docker=Engine({"myservice:latest": {Labels.IMAGE: "ml-deps"},
                                          "other:1": {}}),
                           registry=Registry({"factory/ml-deps": ["p2", "p2-20261201-abc"]}))


def test_a_local_image_or_a_full_reference_is_taken_as_given(session: Any) -> None:
    assert resolve(session, "myservice:latest") == ["myservice:latest"]
    assert resolve(session, "registry.example.com/team/app:1.0") == [
        "registry.example.com/team/app:1.0"]


def test_a_factory_name_means_each_platform_it_is_published_for(session: Any) -> None:
    address = session.factory.config.registry.address
    assert resolve(session, "ml-deps") == [f"{address}/factory/ml-deps:p2"]
    assert resolve(session, "ml-deps:p1-20261201-abc") == [
        f"{address}/factory/ml-deps:p1-20261201-abc"]
    with pytest.raises(ConfigError, match="no local image `tts`, and no image `tts` is published"):
        resolve(session, "tts")


def test_allowances_are_the_definitions_own_or_inherited_or_none(session: Any) -> None:
    address = session.factory.config.registry.address
    own = _declared(session, f"{address}/factory/ml-deps:p2")
    assert [a.module for a in own] == ["numba/np/ufunc/tbbpool*"]
    assert own[0].reason == "numba's optional TBB layer"
    # a child image holds its parent's files, so its definition carries the allowance too
    assert [a.module for a in _declared(session, f"{address}/factory/tts@sha256:ab")] == [
        "numba/np/ufunc/tbbpool*"]
    # an image built FROM ml-deps: its labels name it; the allowance is marked inherited
    inherited = _declared(session, "myservice:latest")
    assert inherited[0].reason == "inherited from ml-deps: numba's optional TBB layer"
    assert _declared(session, "other:1") == ()
