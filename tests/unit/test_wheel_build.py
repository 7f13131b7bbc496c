"""wheels/build.py: the builder image's reuse (local, then the registry's shared copy, then
a build that is pushed for the others), what a recipe build produces and refuses, and the
constraints that keep the platform's torch. The engine is a stand-in that records what
was asked; tests/integration builds real wheels in real builders."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from basefactory.plumbing.errors import BuildError, ToolError
from basefactory.refs import Labels
from basefactory.wheels.build import (
    build_wheel,
    check_not_vendored,
    constraints,
    ensure_builder,
    python_dev_package,
)
from basefactory.wheels.recipe import load_recipe
from tests.helpers import small_factory
from tests.unit.test_adopt import FP

BOOT = '[platforms.boot]\n[platforms.boot.bootstrap]\ntorch = "torch==2.13.0+cpu"\npython = "3.12"\n'
PULLED = '[platforms.ngc]\nimage = "nvcr.io/nvidia/pytorch:25.10-py3"\n'


class Engine:
    def __init__(self, images: dict[str, dict[str, str]] | None = None,
                 shared: dict[str, dict[str, str]] | None = None) -> None:
        self.images = dict(images or {})  # ref -> labels, what the engine has
        self.shared = dict(shared or {})  # ref -> labels, what a pull would get
        self.calls: list[tuple[str, str]] = []
        self.out: list[str] = ["demo-1.0-cp311-cp311-linux_x86_64.whl"]
        self.fail_build = False
        self.fail_pull = False

    def image_id(self, ref: str) -> str | None:
        return f"sha256:{abs(hash(ref))}" if ref in self.images else None

    def image_labels(self, ref: str) -> dict[str, str]:
        return self.images.get(ref, {})

    def pull(self, ref: str) -> bool:
        self.calls.append(("pull", ref))
        if self.fail_pull:  # as the adapter does for any failure but "not there"
            raise ToolError(f"`docker pull {ref}` failed: no space left on device")
        if ref in self.shared:
            self.images[ref] = self.shared[ref]
            return True
        return False

    def pull_required(self, ref: str, hint: str) -> None:
        self.calls.append(("pull_required", ref))
        self.images[ref] = {}

    def tag(self, source: str, ref: str) -> None:
        self.calls.append(("tag", ref))
        self.images[ref] = self.images[source]

    def build(self, context: Path, *, tags: list[str], labels: dict[str, str] | None = None,
              **kw: Any) -> str:
        self.calls.append(("build", tags[0]))
        if self.fail_build:
            raise ToolError("docker build exited 1: error: command 'gcc' failed")
        for t in tags:
            self.images[t] = dict(labels or {})
        return "sha256:built"

    def push(self, ref: str, **kw: Any) -> None:
        self.calls.append(("push", ref))

    def copy_from_image(self, ref: str, path: str, dest: Path) -> None:
        for name in self.out:
            with zipfile.ZipFile(dest / name, "w") as zf:
                zf.writestr("demo/__init__.py", "")

    def remove_image(self, ref: str) -> None:
        self.calls.append(("rm", ref))


class Registry:
    def __init__(self, has: bool) -> None:
        self.has = has

    def digest(self, repo: str, tag: str) -> str | None:
        return "sha256:x" if self.has else None


def kinds(engine: Engine) -> list[str]:
    return [kind for kind, _ in engine.calls]


def test_constraints_pin_the_base_but_leave_the_install_tools_free() -> None:
    fp = FP.model_copy(update={"distributions": {"torch": "2.14.1", "pip": "24.0",
                                                 "setuptools": "70", "numpy": "2.1.0"}})
    assert constraints(fp) == "numpy==2.1.0\ntorch==2.14.1\n"


def test_python_headers_follow_the_platforms_python(tmp_path: Path) -> None:
    factory = small_factory(tmp_path, platforms=BOOT + PULLED)
    assert python_dev_package(factory, "boot") == "python3.12-dev"
    assert python_dev_package(factory, "ngc") == "python3-dev"


def test_the_builder_is_built_once_pushed_for_the_others_and_then_reused(tmp_path: Path) -> None:
    factory = small_factory(tmp_path, platforms=BOOT)
    base = "127.0.0.1:5000/factory/base:boot"
    first = Engine({base: {}})
    ref = ensure_builder(factory, first, Registry(False), "boot", base, "http://idx/")  # type: ignore[arg-type]
    assert ref == "basefactory/builder:boot"
    assert kinds(first) == ["pull", "build", "tag", "push"]  # no shared copy yet
    pushed = first.calls[-1][1]
    assert "/factory-cache/builder:boot-" in pushed
    # the same engine again: current, and the registry has it: nothing to do
    first.calls.clear()
    ensure_builder(factory, first, Registry(True), "boot", base, "http://idx/")  # type: ignore[arg-type]
    assert first.calls == []
    # another engine (same base image id): pulls the shared copy, builds nothing
    other = Engine({base: {}}, shared={pushed: first.images[pushed]})
    other.image_id = first.image_id  # type: ignore[method-assign]
    ensure_builder(factory, other, Registry(True), "boot", base, "http://idx/")  # type: ignore[arg-type]
    assert kinds(other) == ["pull", "tag"]


def failing_builder(tmp_path: Path, *, shared: bool, fail: str) -> tuple[ToolError, Engine]:
    """ensure_builder on an engine whose `fail` ("pull" or "build") fails, with the
    registry holding the shared builder or not."""
    host = Engine({"127.0.0.1:5000/factory/base:boot": {}})
    setattr(host, f"fail_{fail}", True)
    with pytest.raises(ToolError) as caught:
        ensure_builder(small_factory(tmp_path, platforms=BOOT), host, Registry(shared),  # type: ignore[arg-type]
                       "boot", "127.0.0.1:5000/factory/base:boot", "http://idx/")
    return caught.value, host


def test_a_shared_builder_that_does_not_pull_is_that_error_not_a_build(tmp_path: Path) -> None:
    """A build host may reach no apt mirror: where the registry has the builder, a failed
    pull (disk, network) is reported as such, never hidden behind a build that fails on
    apt-get."""
    error, host = failing_builder(tmp_path, shared=True, fail="pull")
    assert "no space left on device" in error.message
    assert kinds(host) == ["pull"]  # no build


def test_a_builder_no_engine_shared_that_fails_to_build_says_so(tmp_path: Path) -> None:
    error, host = failing_builder(tmp_path, shared=False, fail="build")
    assert "no engine has shared a builder for these inputs" in error.message
    assert "factory-cache/builder:boot-" in error.message
    assert kinds(host) == ["pull", "build"]  # nothing pushed


def test_a_builder_whose_inputs_changed_is_rebuilt(tmp_path: Path) -> None:
    factory = small_factory(tmp_path, platforms=BOOT)
    base = "127.0.0.1:5000/factory/base:boot"
    stale = Engine({base: {}, "basefactory/builder:boot": {Labels.INPUT_DIGEST: "old"}})
    ensure_builder(factory, stale, Registry(True), "boot", base, "http://idx/")  # type: ignore[arg-type]
    assert "build" in kinds(stale)
    # an engine without the base pulls it from the registry first
    bare = Engine()
    ensure_builder(factory, bare, Registry(True), "boot", base, "http://idx/")  # type: ignore[arg-type]
    assert bare.calls[0] == ("pull_required", base)


@pytest.fixture()
def recipe(tmp_path: Path) -> Any:
    path = tmp_path / "recipes" / "demo.toml"
    path.parent.mkdir()
    path.write_text('[source]\nsdist = "demo==1.0"\nsha256 = "' + "a" * 64 + '"\n'
                    '[build]\nexclude = ["libtorch*.so"]\n[test]\ncommand = "true"\n')
    return load_recipe(path)


def build(tmp_path: Path, engine: Engine, recipe: Any) -> Any:
    source = tmp_path / "src"
    source.mkdir(exist_ok=True)
    (source / "setup.py").write_text("")
    return build_wheel(small_factory(tmp_path), engine, recipe, platform="p1",  # type: ignore[arg-type]
                       builder="basefactory/builder:p1", fingerprint=FP, source_dir=source,
                       work=tmp_path / "work", index_url="http://idx/", log_file=tmp_path / "l")


def test_a_build_gives_its_one_wheel_and_leaves_no_image(tmp_path: Path, recipe: Any) -> None:
    engine = Engine()
    built = build(tmp_path, engine, recipe)
    assert built.path.name == "demo-1.0-cp311-cp311-linux_x86_64.whl"
    assert (tmp_path / "work" / "context" / "constraints.txt").read_text().startswith("filelock==")
    assert ("rm", "basefactory/wheel-build:demo-p1") in engine.calls


def test_a_failed_build_or_not_exactly_one_wheel_is_a_build_error(tmp_path: Path,
                                                                   recipe: Any) -> None:
    failing = Engine()
    failing.fail_build = True
    with pytest.raises(BuildError, match="failed to build on p1; nothing was uploaded"):
        build(tmp_path, failing, recipe)
    two = Engine()
    two.out = ["a-1-py3-none-any.whl", "b-1-py3-none-any.whl"]
    with pytest.raises(BuildError, match="produced 2 wheels"):
        build(tmp_path, two, recipe)


def test_a_wheel_that_vendors_an_excluded_library_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("demo.libs/libgomp-a34b3233.so.1", b"")
        zf.writestr("demo.libs/libtorch_cpu-1234.so", b"")
    check_not_vendored(wheel, ("libcudart*",))  # what is excluded is not there: fine
    with pytest.raises(BuildError, match="libtorch_cpu-1234.so"):
        check_not_vendored(wheel, ("libtorch*",))
