"""index/importer.py: which wheels of a wheelhouse a requirement needs (markers, extras,
the newest matching version), and what `index import` uploads. The devpi side is a small
in-memory stand-in here; tests/integration imports into a real devpi."""

from __future__ import annotations

from pathlib import Path

import pytest

from basefactory.adapters.devpi_api import ReleaseFile
from basefactory.index.importer import import_wheels, select, wheels_in
from basefactory.plumbing.digest import file_sha256
from basefactory.plumbing.errors import ConfigError
from tests.helpers import tiny_wheel


@pytest.fixture()
def house(tmp_path: Path) -> Path:
    folder = tmp_path / "house"
    tiny_wheel(folder, "torch", "2.13.0", requires=[
        "filelock", "cuda-toolkit[cublas]==13.0; platform_system == 'Linux'",
        "triton==3.5; python_version < '3.10'", "sympy; extra == 'opt'"])
    tiny_wheel(folder, "torch", "2.12.0")
    tiny_wheel(folder, "filelock", "3.20.0")
    tiny_wheel(folder, "cuda-toolkit", "13.0", requires=["nvidia-cublas; extra == 'cublas'",
                                                         "nvidia-cufft; extra == 'cufft'"])
    tiny_wheel(folder, "nvidia-cublas", "13.1")
    tiny_wheel(folder, "nvidia-cufft", "12.0")
    tiny_wheel(folder, "triton", "3.5")
    tiny_wheel(folder, "sympy", "1.14")
    (folder / "not a wheel name.whl").write_bytes(b"")
    return folder


def names(found: list) -> list[str]:  # type: ignore[type-arg]
    return [f"{w.name}=={w.version}" for w in found]


def test_a_requirement_takes_its_dependencies_for_the_target_python_and_asked_extras(
        house: Path) -> None:
    wheels = wheels_in(house)
    assert len(wheels) == 8  # the badly named file is passed over with a warning
    chosen = select(wheels, ["torch==2.13.0"], python="3.11")
    # filelock, cuda-toolkit with its cublas extra (not cufft), no triton (python < 3.10),
    # no sympy (an extra nobody asked for); what is missing comes from the mirror
    assert names(chosen) == ["cuda-toolkit==13.0", "filelock==3.20.0", "nvidia-cublas==13.1",
                             "torch==2.13.0"]
    assert names(select(wheels, ["torch==2.13.0"], python="3.9")) == [
        "cuda-toolkit==13.0", "filelock==3.20.0", "nvidia-cublas==13.1", "torch==2.13.0",
        "triton==3.5"]
    assert names(select(wheels, ["torch[opt]"]))[-2:] == ["sympy==1.14", "torch==2.13.0"]
    # the newest version a specifier allows; nothing when the wheelhouse has none
    assert names(select(wheels, ["torch<2.13"])) == ["torch==2.12.0"]
    assert select(wheels, ["numpy"]) == []


class Devpi:
    def __init__(self) -> None:
        self.files: dict[tuple[str, str], list[ReleaseFile]] = {}
        self.uploads: list[str] = []

    def release_files(self, index: str, project: str) -> list[ReleaseFile]:
        return self.files.get((index, project), [])

    def upload(self, index: str, path: Path, *, name: str, version: str) -> str:
        self.uploads.append(path.name)
        self.files.setdefault((index, name), []).append(
            ReleaseFile(name, version, path.name, "", file_sha256(path)))
        return "uploaded"


def test_import_uploads_what_is_missing_and_skips_the_same_bytes(house: Path,
                                                                 tmp_path: Path) -> None:
    devpi = Devpi()
    memo = tmp_path / "memo"
    first = import_wheels(devpi, "factory/p1", house, ["torch==2.13.0"],  # type: ignore[arg-type]
                          memo_dir=memo)
    assert [state for _, state in first] == ["uploaded"] * 4
    again = import_wheels(devpi, "factory/p1", house, ["torch==2.13.0"],  # type: ignore[arg-type]
                          memo_dir=memo)
    assert [state for _, state in again] == ["present"] * 4
    assert len(devpi.uploads) == 4 and any(memo.iterdir())
    # no requirements: the whole wheelhouse
    everything = import_wheels(Devpi(), "factory/p1", house)  # type: ignore[arg-type]
    assert len(everything) == 8


def test_import_refuses_a_missing_folder_and_a_requirement_nothing_satisfies(
        house: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a directory"):
        import_wheels(Devpi(), "factory/p1", tmp_path / "nowhere")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no wheel in .* satisfies torch==9"):
        import_wheels(Devpi(), "factory/p1", house, ["torch==9"])  # type: ignore[arg-type]
