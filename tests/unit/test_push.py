"""The order in which a build becomes public (images/push.py), on a registry kept in a
dict: every step recorded, so a reordering, a skipped read-back or a moved failpoint
shows. The actions themselves run against the real engine and registry in the
integration and crash suites."""

from __future__ import annotations

from typing import Any

import pytest

from basefactory.images import push
from basefactory.plumbing.errors import PublishRefused, ServiceError


class Registry:
    """Tags -> digests, SBOMs by digest, and the zstd copy's moving tag; `events` is
    everything done, in order."""

    def __init__(self, tags: dict[str, str] | None = None, sboms: set[str] | None = None,
                 lose_push: bool = False, moved_by_another: bool = False) -> None:
        self.tags = dict(tags or {})
        self.sboms = set(sboms or ())
        self.events: list[tuple[str, Any]] = []
        self.lose_push, self.moved_by_another = lose_push, moved_by_another
        self.zstd_moving: Any = None

    def actions(self) -> push.Actions:
        def push_immutable() -> None:
            self.events.append(("push", "img:p-20261130-abc"))
            if not self.lose_push:
                self.tags["p-20261130-abc"] = "sha256:new"

        def push_moving() -> None:
            self.events.append(("push", "img:p"))
            self.tags["p"] = "sha256:other" if self.moved_by_another else self.tags["p-20261130-abc"]

        def attach(digest: str) -> None:
            self.events.append(("sbom", digest))
            self.sboms.add(digest)

        def copy() -> str:
            self.events.append(("zstd-copy", None))
            return "copy-manifest"

        def move(manifest: Any) -> None:
            self.events.append(("zstd-move", manifest))
            self.zstd_moving = manifest

        return push.Actions(
            ref="img:p-20261130-abc", moving="img:p",
            immutable_digest=lambda: self.tags.get("p-20261130-abc"),
            moving_digest=lambda: self.tags.get("p"),
            push_immutable=push_immutable, push_moving=push_moving,
            has_sbom=lambda digest: digest in self.sboms, attach_sbom=attach,
            copy_zstd=copy, move_zstd=move)


@pytest.fixture(autouse=True)
def failpoints(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(push, "checkpoint", seen.append)
    return seen


def test_a_new_build_goes_immutable_tag_sbom_copy_then_moving_tags(failpoints: list[str]) -> None:
    registry = Registry(tags={"p": "sha256:old"})
    assert push.publish(registry.actions()) == "sha256:new"
    assert registry.events == [("push", "img:p-20261130-abc"), ("sbom", "sha256:new"),
                               ("zstd-copy", None), ("push", "img:p"),
                               ("zstd-move", "copy-manifest")]
    assert failpoints == ["image:after-immutable-push"]
    assert registry.tags["p"] == "sha256:new" and registry.zstd_moving == "copy-manifest"


def test_a_taken_immutable_tag_is_refused_before_anything_is_pushed(failpoints: list[str]) -> None:
    registry = Registry(tags={"p-20261130-abc": "sha256:there"})
    with pytest.raises(PublishRefused) as caught:
        push.publish(registry.actions())
    assert str(caught.value).startswith("img:p-20261130-abc is already in the registry; an"
                                        " immutable tag is never overwritten")
    assert caught.value.hint == "rerun: the published build is reused"
    assert registry.events == [] and failpoints == []


def test_a_push_the_registry_does_not_show_moves_nothing(failpoints: list[str]) -> None:
    registry = Registry(tags={"p": "sha256:old"}, lose_push=True)
    with pytest.raises(ServiceError) as caught:
        push.publish(registry.actions())
    assert str(caught.value).startswith(
        "the registry does not show img:p-20261130-abc after the push")
    assert caught.value.hint == "check the registry's storage; nothing else was tagged"
    assert registry.events == [("push", "img:p-20261130-abc")] and failpoints == []
    assert registry.tags["p"] == "sha256:old"


def test_a_moving_tag_another_run_moved_stops_before_the_zstd_copy_moves() -> None:
    registry = Registry(moved_by_another=True)
    with pytest.raises(ServiceError) as caught:
        push.publish(registry.actions())
    assert str(caught.value).startswith("img:p does not point at img:p-20261130-abc after the push")
    assert caught.value.hint == "another publish may have moved it: rerun"
    assert registry.events[-1] == ("push", "img:p") and registry.zstd_moving is None


def test_a_moving_tag_left_behind_moves_after_its_sbom(failpoints: list[str]) -> None:
    registry = Registry(tags={"p-20261130-abc": "sha256:new", "p": "sha256:old"})
    assert push.finish(registry.actions()) is True
    assert registry.events == [("sbom", "sha256:new"), ("zstd-copy", None), ("push", "img:p"),
                               ("zstd-move", "copy-manifest")]
    assert failpoints == []
    # its SBOM already attached: not attached again
    again = Registry(tags={"p-20261130-abc": "sha256:new"}, sboms={"sha256:new"})
    assert push.finish(again.actions()) is True
    assert again.events == [("zstd-copy", None), ("push", "img:p"), ("zstd-move", "copy-manifest")]


def test_a_current_moving_tag_only_brings_the_zstd_copy_along() -> None:
    registry = Registry(tags={"p-20261130-abc": "sha256:new", "p": "sha256:new"})
    assert push.finish(registry.actions()) is False
    assert registry.events == [("zstd-copy", None), ("zstd-move", "copy-manifest")]


def test_finishing_a_build_the_registry_lacks_or_a_move_that_did_not_land_fails() -> None:
    with pytest.raises(ServiceError) as caught:
        push.finish(Registry().actions())
    assert str(caught.value).startswith("img:p-20261130-abc is not in the registry: there is"
                                        " nothing to move img:p to")
    assert caught.value.hint == "rerun `basefactory publish`"
    moved = Registry(tags={"p-20261130-abc": "sha256:new", "p": "sha256:old"},
                     sboms={"sha256:new"}, moved_by_another=True)
    with pytest.raises(ServiceError, match="img:p does not point at img:p-20261130-abc"):
        push.finish(moved.actions())
    assert moved.zstd_moving is None
