"""The fat binary reader that checks a CUDA wheel's architectures without a toolkit."""

from __future__ import annotations

import struct
import sys
import zipfile
from pathlib import Path

import pytest

from basefactory.plumbing.errors import TestFailed
from basefactory.wheels.devicecode import MAGIC, check_wheel, fatbin_code, shared_object_code, wanted


def entry(kind: int, sm: int, payload: bytes) -> bytes:
    padded = payload + b"\0" * (-len(payload) % 8)
    header = struct.pack("<HHIQIIII", kind, 0x0101, 64, len(padded), len(payload), 0, 0, sm)
    return header + b"\0" * (64 - len(header)) + padded


def container(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack("<IHHQ", MAGIC, 1, 16, len(body)) + body


def test_reads_every_entry_of_every_container() -> None:
    data = b"junk" + container(entry(2, 80, b"cubin-a"), entry(1, 90, b".version 9.0")) \
        + b"\0" * 8 + container(entry(2, 90, b"x" * 13))
    assert fatbin_code(data) == {"sm_80", "ptx_90", "sm_90"}


def test_no_fat_binary_is_nothing() -> None:
    assert fatbin_code(b"\0" * 100) == set()
    assert shared_object_code(b"not an elf") is None
    # a real shared object without CUDA code
    so = next(Path(sys.base_prefix).glob("lib/python3*/lib-dynload/_json*.so"), None)
    if so is not None:
        assert shared_object_code(so.read_bytes()) is None


@pytest.mark.parametrize(("arch_list", "names"), [
    ("8.0;9.0", {"sm_80", "sm_90"}),
    ("8.0 9.0+PTX", {"sm_80", "sm_90", "ptx_90"}),
    ("9.0a", {"sm_90"}),
    ("Ampere", {"sm_80", "sm_86"}),
    ("", set()),
])
def test_arch_lists(arch_list: str, names: set[str]) -> None:
    assert wanted(arch_list) == names


def test_a_wheel_without_cuda_code_passes_and_vendored_libraries_are_skipped(tmp_path: Path) -> None:
    wheel = tmp_path / "x-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("x/__init__.py", "")
        zf.writestr("x.libs/libcudart-1234.so.13", b"\x7fELF junk")
    assert check_wheel(wheel, "8.0;9.0", "p").libraries == {}


def test_a_missing_architecture_is_refused(tmp_path: Path) -> None:
    import shutil
    import subprocess

    cc = shutil.which("cc") or shutil.which("gcc")
    objcopy = shutil.which("objcopy")
    if cc is None or objcopy is None:
        pytest.skip("needs a C compiler and objcopy to make a shared object")
    (tmp_path / "k.c").write_text("int k(void) { return 1; }\n")
    so = tmp_path / "k.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(so), str(tmp_path / "k.c")], check=True)
    (tmp_path / "fatbin").write_bytes(container(entry(2, 80, b"cubin")))
    subprocess.run([objcopy, "--add-section", f".nv_fatbin={tmp_path / 'fatbin'}", str(so)],
                   check=True)
    wheel = tmp_path / "k-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(so, "k/_k.cpython-311-x86_64-linux-gnu.so")
    assert check_wheel(wheel, "8.0", "p").libraries == {
        "k/_k.cpython-311-x86_64-linux-gnu.so": ["sm_80"]}
    with pytest.raises(TestFailed, match="lacks sm_90"):
        check_wheel(wheel, "8.0;9.0", "p")
