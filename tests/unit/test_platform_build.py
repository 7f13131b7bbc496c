"""platforms/build.py and platforms/publish.py: a pulled base is tagged as the factory's
and named by the digest it was pulled as; a bootstrapped base is rebuilt only when its
inputs change, and pulled (not rebuilt) where the registry has the same one; pushes put
each immutable tag before its moving tag; a platform is probed again only when its base
changed. The engine, index and registry are stand-ins that record what was asked;
tests/integration bootstraps and pulls real bases."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from basefactory.index.base_pins import PinSync
from basefactory.platforms import build as platform_build
from basefactory.platforms import publish as platform_publish
from basefactory.platforms.build import BaseImage, _copy_toolkit, build_platform, push_base
from basefactory.platforms.fingerprint import PROBE_VERSION
from basefactory.plumbing.errors import ToolError
from basefactory.refs import Labels, base_ref, slim_ref
from tests.helpers import small_factory
from tests.unit.test_adopt import FP

BOOT = '[platforms.boot]\n[platforms.boot.bootstrap]\ntorch = "torch==2.13.0+cpu"\nmirror = "http://deb.example/debian"\n'
PULLED = ('[platforms.ngc]\nimage = "nvcr.io/nvidia/pytorch:25.10-py3"\n'
          'slim_image = "nvcr.io/nvidia/cuda:13.0-runtime"\n')


class Engine:
    def __init__(self, shared: dict[str, dict[str, str]] | None = None) -> None:
        self.images: dict[str, dict[str, str]] = {}
        self.shared = shared or {}  # what a pull from the registry would get
        self.calls: list[tuple[str, str]] = []

    def image_id(self, ref: str) -> str | None:
        return "sha256:" + str(abs(hash(frozenset(self.images[ref].items())))) \
            if ref in self.images else None

    def image_labels(self, ref: str) -> dict[str, str]:
        return self.images.get(ref, {})

    def image_inspect(self, ref: str) -> dict[str, Any]:
        return {"RepoDigests": ["mirror.example/pytorch@sha256:m",
                                "nvcr.io/nvidia/pytorch@sha256:n"]}

    def pull_required(self, ref: str, hint: str) -> None:
        self.calls.append(("pull", ref))
        self.images[ref] = {"source": ref}

    def pull(self, ref: str) -> bool:
        self.calls.append(("pull", ref))
        if ref in self.shared:
            self.images[ref] = self.shared[ref]
        return ref in self.shared

    def tag(self, source: str, ref: str) -> None:
        self.images[ref] = self.images[source]

    def find_image(self, labels: dict[str, str]) -> str | None:
        # a ref stands for the image id here: tag() takes either
        return next((ref for ref, have in self.images.items()
                     if all(have.get(k) == v for k, v in labels.items())), None)

    def build(self, context: Path, *, tags: list[str], labels: dict[str, str],
              target: str, **kw: Any) -> str:
        self.calls.append(("build", target))
        for t in tags:
            self.images[t] = labels
        return self.image_id(tags[0]) or ""

    def push(self, ref: str, **kw: Any) -> None:
        self.calls.append(("push", ref))


@pytest.fixture()
def no_debootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform_build, "ensure_rootfs", lambda docker, suite, mirror:
                        f"basefactory/rootfs:{suite}-amd64-1")


def simple_url(index: str) -> str:
    return f"http://idx/{index}/+simple/"


DEVPI = SimpleNamespace(simple_url=simple_url)


def test_a_pulled_base_is_tagged_as_the_factorys_and_named_by_its_digest(tmp_path: Path) -> None:
    factory = small_factory(tmp_path, platforms=PULLED)
    engine = Engine()
    base = build_platform(factory, "ngc", engine, DEVPI)  # type: ignore[arg-type]
    assert base.ref == base_ref(factory, "ngc") and base.slim_ref == slim_ref(factory, "ngc")
    assert engine.images[base.ref] == {"source": "nvcr.io/nvidia/pytorch:25.10-py3"}
    # the digest of the repository it was pulled from, not a mirror's
    assert base.source == "nvcr.io/nvidia/pytorch@sha256:n"
    assert not base.built and base.input_digest == (base.image_id or "").removeprefix("sha256:")


def test_a_bootstrapped_base_is_built_once_and_current_after(tmp_path: Path,
                                                             no_debootstrap: None) -> None:
    factory = small_factory(tmp_path, platforms=BOOT)
    engine = Engine()
    first = build_platform(factory, "boot", engine, DEVPI)  # type: ignore[arg-type]
    assert first.built and [c for c in engine.calls if c[0] == "build"] == [
        ("build", "python"), ("build", "torch")]  # the slim stage first, then torch on it
    labels = engine.images[first.ref]
    assert labels[Labels.INPUT_DIGEST] == first.input_digest
    assert labels[Labels.OCI_BASE_NAME] == "basefactory/rootfs:bookworm-amd64-1"
    assert engine.images[f"{first.ref}-{first.input_digest[:12]}"] == labels
    engine.calls.clear()
    again = build_platform(factory, "boot", engine, DEVPI)  # type: ignore[arg-type]
    assert not again.built and engine.calls == [] and again.input_digest == first.input_digest


def test_a_factory_on_another_registry_tags_the_same_base_rather_than_building_it(
        tmp_path: Path, no_debootstrap: None) -> None:
    """A site that moves to its own registry (or publishes to two): the base its engine
    already holds for the same inputs is tagged under the new registry's name, so the
    platform keeps its identity (its fingerprint, its wheels) and nothing is rebuilt; the
    base and its slim image are told apart by their titles."""
    engine = Engine()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    made = build_platform(small_factory(tmp_path / "a", platforms=BOOT), "boot", engine, DEVPI)  # type: ignore[arg-type]
    moved = small_factory(tmp_path / "b", extra='[registry]\nport = 5999\n', platforms=BOOT)
    engine.calls.clear()
    found = build_platform(moved, "boot", engine, DEVPI)  # type: ignore[arg-type]
    assert not found.built and found.image_id == made.image_id
    assert found.ref.startswith("127.0.0.1:5999/") and found.input_digest == made.input_digest
    assert [kind for kind, _ in engine.calls] == ["pull"]  # its registry first: it lacks it
    assert engine.images[found.slim_ref][Labels.OCI_TITLE] == "basefactory slim boot (Python, no torch)"
    assert engine.image_id(found.slim_ref) != found.image_id


def test_another_engine_pulls_the_published_base_rather_than_building_another(
        tmp_path: Path, no_debootstrap: None) -> None:
    factory = small_factory(tmp_path, platforms=BOOT)
    builder = Engine()
    made = build_platform(factory, "boot", builder, DEVPI)  # type: ignore[arg-type]
    published = {ref: labels for ref, labels in builder.images.items() if ref.endswith(
        made.input_digest[:12])}
    other = Engine(shared=published)
    found = build_platform(factory, "boot", other, DEVPI)  # type: ignore[arg-type]
    assert not found.built and found.input_digest == made.input_digest
    assert [kind for kind, _ in other.calls] == ["pull", "pull"]


def test_a_published_base_that_does_not_pull_is_that_error_not_another_base(
        tmp_path: Path, no_debootstrap: None) -> None:
    """A rebuild would make a different base (another image id, so other wheel and image
    digests) and may need an apt mirror the host lacks: only "not there" leads to one."""
    factory = small_factory(tmp_path, platforms=BOOT)
    other = Engine()

    def dropped(ref: str) -> bool:  # as the adapter does for any failure but "not there"
        other.calls.append(("pull", ref))
        raise ToolError(f"`docker pull {ref}` failed: connection refused")
    other.pull = dropped  # type: ignore[method-assign]
    with pytest.raises(ToolError, match="connection refused"):
        build_platform(factory, "boot", other, DEVPI)  # type: ignore[arg-type]
    assert [kind for kind, _ in other.calls] == ["pull"]  # no build


def test_a_changed_input_rebuilds_the_base(tmp_path: Path, no_debootstrap: None) -> None:
    factory = small_factory(tmp_path, platforms=BOOT)
    engine = Engine()
    first = build_platform(factory, "boot", engine, DEVPI)  # type: ignore[arg-type]
    changed = small_factory(tmp_path, platforms=BOOT.replace("deb.example", "deb2.example"))
    second = build_platform(changed, "boot", engine, DEVPI)  # type: ignore[arg-type]
    assert second.built and second.input_digest != first.input_digest


def test_each_immutable_tag_is_pushed_before_its_moving_tag() -> None:
    engine = Engine()
    for ref in ("r/base:p", "r/base:p-0123456789ab", "r/slim:p", "r/slim:p-0123456789ab"):
        engine.images[ref] = {}
    push_base(engine, BaseImage("p", "r/base:p", "sha256:1", "0123456789abcdef", True,  # type: ignore[arg-type]
                                slim_ref="r/slim:p"))
    assert engine.calls == [("push", "r/base:p-0123456789ab"), ("push", "r/base:p"),
                            ("push", "r/slim:p-0123456789ab"), ("push", "r/slim:p")]


def test_a_cuda_toolkit_needs_nvcc_and_only_the_compile_parts_are_copied(tmp_path: Path) -> None:
    toolkit = tmp_path / "cuda"
    (toolkit / "include").mkdir(parents=True)
    with pytest.raises(ToolError, match="holds no bin/nvcc"):
        _copy_toolkit(toolkit, tmp_path / "out")
    (toolkit / "bin").mkdir()
    (toolkit / "bin" / "nvcc").write_text("")
    (toolkit / "version.json").write_text("{}")
    (toolkit / "nsight-systems").mkdir()
    _copy_toolkit(toolkit, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bin", "include",
                                                                    "version.json"]


@pytest.fixture()
def publish_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    world = SimpleNamespace(stored=None, probes=0, pushes=0, base_id="sha256:base1",
                            pushed_digest="")
    factory = small_factory(tmp_path, platforms=PULLED)

    def build(factory: Any, name: str, docker: Any, devpi: Any) -> BaseImage:
        return BaseImage(name, base_ref(factory, name), world.base_id,
                         world.base_id.removeprefix("sha256:"), False, source="nvcr@sha256:n")

    def probe(docker: Any, name: str, ref: str, slim: str | None) -> Any:
        world.probes += 1
        return FP.model_copy(update={"platform": name, "base_digest": world.base_id,
                                     "probe_version": PROBE_VERSION})

    def save(factory: Any, devpi: Any, fp: Any) -> None:
        world.stored = fp

    def push(docker: Any, base: BaseImage) -> None:
        world.pushes += 1
        world.pushed_digest = base.input_digest

    monkeypatch.setattr(platform_publish, "build_platform", build)
    monkeypatch.setattr(platform_publish, "probe", probe)
    monkeypatch.setattr(platform_publish, "push_base", push)
    monkeypatch.setattr(platform_publish.base_pins, "sync", lambda *args: PinSync(
        unserved={"torch": "2.14.0a0"}))
    monkeypatch.setattr(platform_publish.store, "load", lambda f, d, n: world.stored)
    monkeypatch.setattr(platform_publish.store, "save", save)
    registry = SimpleNamespace(labels=lambda repo, tag: {Labels.INPUT_DIGEST: world.pushed_digest})
    world.session = SimpleNamespace(factory=factory, docker=None, devpi=None, registry=registry)
    return world


def test_a_platform_is_probed_and_pushed_only_when_its_base_changed(
        publish_world: SimpleNamespace) -> None:
    session = publish_world.session
    first = platform_publish.ensure_platform(session, "ngc")
    assert first.probed and publish_world.probes == 1 and publish_world.pushes == 1
    # what the probe found, with what no index serves and where the base came from
    assert first.fingerprint.unindexed == {"torch": "2.14.0a0"}
    assert first.fingerprint.base_source == "nvcr@sha256:n"
    again = platform_publish.ensure_platform(session, "ngc")
    assert not again.probed and publish_world.probes == 1 and publish_world.pushes == 1
    publish_world.base_id = "sha256:base2"  # the moving tag upstream moved
    third = platform_publish.ensure_platform(session, "ngc")
    assert third.probed and publish_world.probes == 2 and publish_world.pushes == 2
    # a fingerprint from an older probe (it did not read the constraint files' paths) is
    # probed again, the base unchanged
    publish_world.stored = publish_world.stored.model_copy(update={"probe_version": 1})
    fourth = platform_publish.ensure_platform(session, "ngc")
    assert fourth.probed and publish_world.probes == 3 and publish_world.pushes == 2
