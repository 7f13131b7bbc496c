"""What a platform's index offers of what its base pins (index/base_pins.py): which pins,
which file of the base's version, and a sync that touches only what changed and survives
a crash. Pure logic over a stand-in devpi; tests/integration/test_ngc.py runs it against
the real one and installs through it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from basefactory.adapters.devpi_api import ReleaseFile
from basefactory.index.base_pins import PinSync, best_file, platform_tags, sync
from tests.helpers import small_factory
from tests.unit.test_adopt import FP

NGC_TORCH = "2.13.0a0+cf30153c4c.nv25.10"
TAGS = platform_tags("cp311", "2.36", "x86_64")


def ngc(**pins: str) -> Any:
    return FP.model_copy(update={
        "platform": "p1", "torch": NGC_TORCH, "python_tag": "cp311", "glibc": "2.36",
        "arch": "x86_64", "distributions": {"torch": NGC_TORCH, **pins},
        "pip_constraints": {"torch": NGC_TORCH, **pins}})


def test_the_pins_are_the_bases_constraint_file_and_torch_without_build_frontends() -> None:
    fp = ngc(**{"Torch_Vision": "0.28.0a0+8fb87713a2", "numpy": "1.26.4", "pip": "25.1",
                "setuptools": "78.1.1", "wheel": "0.45.1"})
    assert fp.index_pins() == {"numpy": "1.26.4", "torch": NGC_TORCH,
                                       "torch-vision": "0.28.0a0+8fb87713a2"}
    # a bootstrapped base has no constraint file: its torch alone (its index's own)
    boot = FP.model_copy(update={"pip_constraints": {}, "distributions": {
        "torch": "2.13.0+cpu", "sympy": "1.14.0"}})
    assert boot.index_pins() == {"torch": "2.13.0+cpu"}


def test_the_file_taken_is_the_best_wheel_of_that_version_for_the_platform() -> None:
    files = [(name, f"http://i/+f/{name}") for name in (
        "numpy-1.26.4.tar.gz",
        "numpy-1.26.4-cp311-cp311-macosx_14_0_arm64.whl",
        "numpy-1.26.4-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
        "numpy-1.26.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "numpy-1.26.4-cp311-cp311-musllinux_1_1_x86_64.whl",
        "numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl",
    )]
    assert best_file(files, "1.26.4", TAGS) == (
        "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "http://i/+f/numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    # a newer glibc's wheel does not install on this one; an older glibc's does
    assert best_file([("x-1-cp311-cp311-manylinux_2_5_x86_64.whl", "u")], "1", TAGS)
    assert best_file([("x-1-cp311-cp311-manylinux_2_39_x86_64.whl", "u")], "1", TAGS) is None
    # a pure wheel over the sdist; the sdist where nothing else fits; 1.0 is 1.0.0
    assert best_file([("x-1.0.tar.gz", "s"), ("x-1.0-py3-none-any.whl", "w")], "1.0.0",
                     TAGS) == ("x-1.0-py3-none-any.whl", "w")
    assert best_file(files, "1.26.4", platform_tags("cp310", "2.36", "x86_64")) == (
        "numpy-1.26.4.tar.gz", "http://i/+f/numpy-1.26.4.tar.gz")
    # NVIDIA's build is on no index
    assert best_file([("torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl", "t")],
                     NGC_TORCH, TAGS) is None


class Devpi:
    """A stand-in devpi: the mirror's files, the platform index's own torch, the pins
    index's custom_data; every write recorded, one of them made to fail on demand."""

    def __init__(self, mirror: dict[str, list[str]], own: dict[str, str] | None = None) -> None:
        self.mirror, self.own = mirror, own or {}
        self.custom: dict[str, Any] = {}
        self.writes: list[tuple[str, ...]] = []
        self.fail_upload: str | None = None
        self.versions: list[tuple[str, str]] = []
        self.summaries: list[str] = []

    def custom_data(self, index: str) -> dict[str, Any]:
        return dict(self.custom.get(index, {}))

    def set_custom_data(self, index: str, data: dict[str, Any]) -> None:
        self.custom[index] = data
        self.writes.append(("record", index))

    def release_files(self, index: str, project: str) -> list[ReleaseFile]:
        assert index == "factory/p1", index  # the platform's own index
        version = self.own.get(project)
        return [ReleaseFile(project, version, f"{project}-{version}.whl", "u", "")] if version else []

    def simple_files(self, index: str, project: str) -> list[tuple[str, str]]:
        assert index == "root/pypi"
        return [(name, f"http://m/+f/{name}") for name in self.mirror.get(project, [])]

    def download(self, url: str, dest: Path) -> None:
        dest.write_text(url)

    def upload(self, index: str, path: Path, *, name: str, version: str) -> str:
        if name == self.fail_upload:
            raise RuntimeError("devpi went away")
        self.writes.append(("upload", index, path.name))
        self.versions.append((name, version))
        return "uploaded"

    def register(self, index: str, *, name: str, version: str, summary: str) -> None:
        self.writes.append(("register", index, name, version))
        self.summaries.append(summary)

    def delete_version(self, index: str, name: str, version: str) -> None:
        self.writes.append(("delete", index, name, version))


MIRROR = {"numpy": ["numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl",
                    "numpy-1.26.5-cp311-cp311-manylinux_2_17_x86_64.whl"],
          "torch": ["torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"]}


def run(factory: Any, devpi: Devpi, fp: Any) -> PinSync:
    return sync(factory, devpi, fp.platform, fp.index_pins(),  # type: ignore[arg-type]
                platform_tags(fp.python_tag, fp.glibc, fp.arch))


def test_a_sync_copies_what_the_mirror_has_and_registers_what_no_index_serves(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    factory = small_factory(tmp_path)
    devpi = Devpi(MIRROR)
    done = run(factory, devpi, ngc(numpy="1.26.4"))
    assert done.changed is True
    assert done.copied == {"numpy": "1.26.4"} and done.unserved == {"torch": NGC_TORCH}
    assert devpi.versions == [("numpy", "1.26.4")]
    assert devpi.summaries == ["pinned by the base of platform p1: the only version its"
                               " index offers"]
    assert ("pinned, and served by no index (resolvers take the base's copy): torch"
            f" {NGC_TORCH}") in capsys.readouterr().out.replace("\n", " ")
    assert sorted(devpi.writes) == [
        ("record", "factory/p1-base"),
        ("register", "factory/p1-base", "torch", NGC_TORCH),
        ("upload", "factory/p1-base", "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl")]
    assert devpi.writes[-1] == ("record", "factory/p1-base")  # what it holds, said last
    # the same pins again: one read, no write
    devpi.writes.clear()
    again = run(factory, devpi, ngc(numpy="1.26.4"))
    assert devpi.writes == [] and not again.changed and again.pins == done.pins


def test_a_changed_pin_replaces_its_old_release_and_leaves_the_others(tmp_path: Path) -> None:
    factory = small_factory(tmp_path)
    devpi = Devpi(MIRROR)
    run(factory, devpi, ngc(numpy="1.26.4"))
    devpi.writes.clear()
    done = run(factory, devpi, ngc(numpy="1.26.5"))
    assert devpi.writes == [
        ("delete", "factory/p1-base", "numpy", "1.26.4"),
        ("upload", "factory/p1-base", "numpy-1.26.5-cp311-cp311-manylinux_2_17_x86_64.whl"),
        ("record", "factory/p1-base")]
    assert done.removed == ["numpy==1.26.4"] and done.unserved == {"torch": NGC_TORCH}
    assert done.files == {"numpy": "numpy-1.26.5-cp311-cp311-manylinux_2_17_x86_64.whl"}
    # a pin the base no longer has is removed: the mirror's releases show again
    devpi.writes.clear()
    run(factory, devpi, ngc())
    assert devpi.writes == [("delete", "factory/p1-base", "numpy", "1.26.5"),
                            ("record", "factory/p1-base")]
    held = PinSync.of(devpi.custom["factory/p1-base"])
    assert held.pins == {"torch": NGC_TORCH} and held.files == {}


def test_an_unchanged_pin_keeps_its_file_when_another_changes(tmp_path: Path) -> None:
    factory = small_factory(tmp_path)
    mirror = {**MIRROR, "sympy": ["sympy-1.14.0-py3-none-any.whl"]}
    devpi = Devpi(mirror)
    run(factory, devpi, ngc(numpy="1.26.4", sympy="1.14.0"))
    done = run(factory, devpi, ngc(numpy="1.26.5", sympy="1.14.0"))
    assert done.files == {"numpy": "numpy-1.26.5-cp311-cp311-manylinux_2_17_x86_64.whl",
                          "sympy": "sympy-1.14.0-py3-none-any.whl"}
    assert PinSync.of(devpi.custom["factory/p1-base"]).files == done.files


def test_a_torch_the_platform_index_holds_itself_is_neither_copied_nor_hidden(
        tmp_path: Path) -> None:
    factory = small_factory(tmp_path)
    devpi = Devpi(MIRROR, own={"torch": "2.13.0+cpu"})
    boot = FP.model_copy(update={"platform": "p1", "torch": "2.13.0+cpu", "pip_constraints": {},
                                 "distributions": {"torch": "2.13.0+cpu"}})
    done = run(factory, devpi, boot)
    assert done.own == {"torch": "2.13.0+cpu"} and not done.unserved
    assert devpi.writes == [("record", "factory/p1-base")]


def test_a_sync_that_crashed_midway_completes_on_the_rerun(tmp_path: Path) -> None:
    factory = small_factory(tmp_path)
    devpi = Devpi(MIRROR)
    devpi.fail_upload = "numpy"
    with pytest.raises(RuntimeError):
        run(factory, devpi, ngc(numpy="1.26.4"))
    assert "factory/p1-base" not in devpi.custom  # nothing said held that is not
    devpi.fail_upload = None
    done = run(factory, devpi, ngc(numpy="1.26.4"))
    assert done.copied == {"numpy": "1.26.4"} and done.unserved == {"torch": NGC_TORCH}
    assert PinSync.of(devpi.custom["factory/p1-base"]).pins == done.pins


def test_the_platform_tags_are_the_targets_not_this_hosts() -> None:
    """Another Python and another architecture than the host's; glibc as the probe reads
    it (two or three parts; unknown means manylinux2014's 2.17); the legacy manylinux
    names at the glibc each stands for."""
    arm = [str(t) for t in platform_tags("cp310", "2.28.1", "aarch64")]
    assert arm[0] == "cp310-cp310-manylinux_2_28_aarch64"
    assert "cp310-abi3-manylinux2014_aarch64" in arm and "py3-none-any" in arm
    assert "cp310-none-any" in arm and "cp310-cp310-manylinux_2_5_aarch64" in arm
    assert not any("x86_64" in t or "cp311" in t for t in arm)
    for legacy, glibc in (("manylinux2014", 17), ("manylinux2010", 12), ("manylinux1", 5)):
        assert arm.index(f"cp310-cp310-{legacy}_aarch64") == \
            arm.index(f"cp310-cp310-manylinux_2_{glibc}_aarch64") + 1
    assert not any("manylinux_2_4_" in t for t in arm)
    unknown = [str(t) for t in platform_tags("cp311", "", "x86_64")]
    assert unknown[0] == "cp311-cp311-manylinux_2_17_x86_64"
