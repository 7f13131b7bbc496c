"""refs.py names what the factory publishes: the immutable tag round-trips through its
parser, and no other module spells a label key or the tag format itself."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from basefactory.config.factory import load_factory
from basefactory.refs import (
    ImmutableTag,
    Labels,
    builder_cache_tag,
    cache_repository,
    immutable_tag,
    parse_immutable_tag,
    repository,
)
from tests.helpers import write_factory

SRC = Path(__file__).resolve().parents[2] / "src" / "basefactory"


def test_an_immutable_tag_round_trips_and_a_moving_tag_is_not_one() -> None:
    tag = immutable_tag("cu130-py311-torch2.11", "4c39e5b87d98" + "0" * 52,
                        datetime(2026, 11, 30, tzinfo=UTC))
    assert tag == "cu130-py311-torch2.11-20261130-4c39e5b87d98"
    assert parse_immutable_tag(tag) == ImmutableTag("cu130-py311-torch2.11", "2026-11-30",
                                                    "4c39e5b87d98")
    for other in ("cu130-py311-torch2.11", "x-2026113-4c39e5b87d98", "x-20261130-4C39E5B87D98",
                  "x-20261130-4c39e5b87d9", ""):
        assert parse_immutable_tag(other) is None, other


def test_label_keys_and_the_tag_format_are_spelled_only_in_refs() -> None:
    spelled = re.compile(r"""["'](org\.basefactory|org\.opencontainers)|%Y%m%d""")
    # the docker adapter labels the containers it runs itself (a lower layer does not
    # import refs, which re-exports that key as Labels.OWNER)
    offenders = [f"{p.relative_to(SRC)}:{n}" for p in sorted(SRC.rglob("*.py"))
                 if p.name != "refs.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if spelled.search(line) and not line.lstrip().startswith("#")
                 and not (p.name == "docker.py" and line.startswith("OWNER_LABEL = "))]
    assert not offenders, offenders
    assert Labels.INPUT_DIGEST == "org.basefactory.input-digest"  # what published images carry


def test_index_names_and_their_urls_are_built_in_one_place_each() -> None:
    """An index is <user>/<name> (refs.user_index, from the configured [index] user), its
    pip URL BASE/<index>/+simple/ (devpi_api.simple_url, devpi's own path)."""
    by_hand = re.compile(r"\+simple|index\.user\}/|index_user\}/")
    offenders = [f"{p.relative_to(SRC)}:{n}" for p in sorted(SRC.rglob("*.py"))
                 for n, line in enumerate(p.read_text().splitlines(), 1)
                 if by_hand.search(line) and not line.lstrip().startswith("#")
                 and p.name not in ("devpi_api.py", "devpi_plugin.py")]
    assert not offenders, offenders


def test_the_shared_builder_lives_outside_the_namespace_readers_list(tmp_path: Path) -> None:
    """The catalog, fits, `ls` and prune list repositories under `<namespace>/`: the
    builder engines share must never be one of them, and its tag names its inputs."""
    factory = load_factory(write_factory(tmp_path, index_port=3199, registry_port=5099))
    cache = cache_repository(factory, "builder")
    assert cache == "factory-cache/builder"
    assert not cache.startswith(repository(factory, ""))
    assert builder_cache_tag("cpu-py311-torch2.13", "ab" * 32) == "cpu-py311-torch2.13-" + "ab" * 6
    assert parse_immutable_tag(builder_cache_tag("cpu-py311-torch2.13", "ab" * 32)) is None


def test_every_form_the_catalog_and_images_ls_print_names_the_same_image(tmp_path: Path) -> None:
    from basefactory.images.diff import side_reference
    from basefactory.plumbing.errors import ConfigError
    from basefactory.refs import FactoryRef, factory_ref
    from tests.helpers import small_factory

    factory = small_factory(tmp_path)
    digest = "sha256:" + "a" * 64
    address = factory.config.registry.address
    assert factory_ref(factory, "tts-deps") == FactoryRef("tts-deps")
    for text in ("tts-deps:p1", "factory/tts-deps:p1", f"{address}/factory/tts-deps:p1"):
        assert factory_ref(factory, text) == FactoryRef("tts-deps", "p1"), text
    for text in (f"tts-deps@{digest}", f"{address}/factory/tts-deps@{digest}"):
        assert factory_ref(factory, text) == FactoryRef("tts-deps", digest), text
    # someone else's image: not the factory's (audit pulls it as it is)
    assert factory_ref(factory, "registry.example.com/team/app:1.0") is None
    assert factory_ref(factory, f"{address}/other/tts-deps:p1") is None
    for bad in ("tts-deps@sha256:zz", "tts-deps:", ":p1"):
        try:
            factory_ref(factory, bad)
        except ConfigError as exc:
            assert bad in exc.message
        else:
            raise AssertionError(f"{bad} was taken")
    # images diff: the sides are tags, digests or full references of that image
    assert side_reference(factory, f"{address}/factory/tts-deps:p1", what="IMAGE").name == "tts-deps"
    assert side_reference(factory, "p1-20261201-abc", image="tts-deps").reference == "p1-20261201-abc"
    assert side_reference(factory, digest, image="tts-deps").reference == digest
    assert side_reference(factory, f"{address}/factory/tts-deps:p2", image="tts-deps").reference == "p2"
    try:
        side_reference(factory, f"{address}/factory/stt-deps:p2", image="tts-deps")
    except ConfigError as exc:
        assert "is not a tag of tts-deps" in exc.message
    else:
        raise AssertionError("another image's tag was taken as a side")
