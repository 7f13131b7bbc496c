"""The wheel test's torch check (wheels/torch_state.py), on a torch installed into a
folder here: a reinstall of the same version, an upgrade, a removed file and a removed
torch each change the state; nothing else does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from basefactory.wheels import torch_state


def install(site: Path, version: str) -> None:
    """What pip leaves: the package's files and a dist-info whose RECORD lists them."""
    pkg = site / "torch"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("# torch\n")
    (pkg / "lib").mkdir(exist_ok=True)
    (pkg / "lib" / "libtorch.so").write_bytes(b"\x7fELF torch " + version.encode())
    info = site / f"torch-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    (info / "RECORD").write_text("torch/__init__.py,,\ntorch/lib/libtorch.so,,\n"
                                 f"torch-{version}.dist-info/METADATA,,\n"
                                 f"torch-{version}.dist-info/RECORD,,\n")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    install(tmp_path, "2.13.0")
    return tmp_path


def test_the_state_names_the_version_and_files_and_is_stable(site: Path) -> None:
    first = torch_state.state([str(site)])
    assert first.startswith("torch 2.13.0 4 ") and len(first.split()[-1]) == 64
    assert torch_state.state([str(site)]) == first
    assert torch_state.state([str(site / "empty")]) == "torch absent"


def test_a_reinstall_of_the_same_version_changes_the_state(site: Path) -> None:
    before = torch_state.state([str(site)])
    lib = site / "torch" / "lib" / "libtorch.so"
    data = lib.read_bytes()
    # what pip does: a new file replaces the old one (new inode), same bytes
    (site / "new.so").write_bytes(data)
    os.replace(site / "new.so", lib)
    assert torch_state.state([str(site)]) != before


def test_a_changed_size_or_time_or_a_removed_file_changes_the_state(site: Path) -> None:
    lib = site / "torch" / "lib" / "libtorch.so"
    before = torch_state.state([str(site)])
    st = lib.stat()
    os.utime(lib, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    touched = torch_state.state([str(site)])
    assert touched != before
    with lib.open("ab") as f:
        f.write(b"x")
    os.utime(lib, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert torch_state.state([str(site)]) != touched
    lib.unlink()
    gone = torch_state.state([str(site)])
    assert gone.startswith("torch 2.13.0 4 ") and gone != touched


def test_only_torch_is_read(tmp_path: Path) -> None:
    """Another distribution beside no torch is not torch's state; without a path, the
    state is this Python's own."""
    other = tmp_path / "other-1.0.dist-info"
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: other\nVersion: 1.0\n")
    assert torch_state.state([str(tmp_path)]) == "torch absent"
    import importlib.metadata as md
    mine = list(md.distributions(name="torch"))
    assert torch_state.state() == (torch_state.state([str(mine[0].locate_file(""))])
                                   if mine else "torch absent")


def test_an_upgrade_changes_the_state(site: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("other")
    install(other, "2.14.1")
    assert torch_state.state([str(other)]).startswith("torch 2.14.1 4 ")


def test_check_passes_equal_states_only(site: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    now = torch_state.state([str(site)])
    assert torch_state.check(now + "\n", now) == (0, f"basefactory: torch unchanged: {now}")
    code, message = torch_state.check("torch 2.13.0 4 aa", now)
    assert code == torch_state.CHANGED == 97
    assert message == f"basefactory: torch changed:\ntorch 2.13.0 4 aa\n{now}"
    # the script as the container runs it: print the state, then check against it
    assert torch_state.main([], path=[str(site)]) == 0
    saved = tmp_path / "before"
    saved.write_text(capsys.readouterr().out)
    assert torch_state.main(["check", str(saved)], path=[str(site)]) == 0
    assert capsys.readouterr().out == f"basefactory: torch unchanged: {now}\n"
    (site / "torch" / "lib" / "libtorch.so").unlink()
    assert torch_state.main(["check", str(saved)], path=[str(site)]) == 97
    assert capsys.readouterr().out.startswith("basefactory: torch changed:\n")
    assert torch_state.main(["bogus"], path=[str(site)]) == 2
    assert torch_state.main(["bogus", str(saved)], path=[str(site)]) == 2
    assert torch_state.main(["check"], path=[str(site)]) == 2
    usage = capsys.readouterr()
    assert usage.out == "" and "python torch_state.py check FILE" in usage.err
