"""The fat binary reader that checks a CUDA wheel's architectures without a toolkit."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from basefactory.plumbing.errors import TestFailed
from basefactory.wheels.devicecode import MAGIC, check_wheel, fatbin_code, shared_object_code, wanted
from tests.helpers import require


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
    cc = shutil.which("cc") or shutil.which("gcc")
    objcopy = shutil.which("objcopy")
    require(cc is not None and objcopy is not None,
            "a C compiler and objcopy (Debian's gcc and binutils; `make setup` installs them)")
    assert cc is not None and objcopy is not None
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


def _nvcc() -> str | None:
    home = os.environ.get("CUDA_HOME")
    candidates = [Path(home) / "bin" / "nvcc"] if home else []
    candidates += sorted(Path("/usr/local").glob("cuda*/bin/nvcc"), reverse=True)
    found = next((str(c) for c in candidates if c.exists()), None)
    return found or shutil.which("nvcc")


def test_a_kernel_compiled_by_nvcc_is_read_and_checked(tmp_path: Path) -> None:
    """Real device code: nvcc compiles a kernel for sm_80 and sm_90 into a shared object,
    which goes into a wheel; the reader finds exactly those, and asking for sm_100 too is
    refused."""
    nvcc = _nvcc()
    require(nvcc is not None, "nvcc (a CUDA toolkit; CUDA_HOME or /usr/local/cuda*)",
            tier="cuda")
    assert nvcc is not None
    (tmp_path / "k.cu").write_text("__global__ void k(float *x) { x[threadIdx.x] = 1.0f; }\n"
                                   'extern "C" void launch(float *x) { k<<<1, 1>>>(x); }\n')
    so = tmp_path / "k.so"
    subprocess.run([nvcc, "-shared", "-Xcompiler", "-fPIC",
                    "-gencode", "arch=compute_80,code=sm_80",
                    "-gencode", "arch=compute_90,code=sm_90",
                    "-o", str(so), str(tmp_path / "k.cu")], check=True, timeout=300)
    assert shared_object_code(so.read_bytes()) == {"sm_80", "sm_90"}
    wheel = tmp_path / "k-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.write(so, "k/_k.cpython-311-x86_64-linux-gnu.so")
    assert check_wheel(wheel, "8.0;9.0", "p").libraries == {
        "k/_k.cpython-311-x86_64-linux-gnu.so": ["sm_80", "sm_90"]}
    with pytest.raises(TestFailed, match="lacks sm_100"):
        check_wheel(wheel, "8.0;9.0;10.0", "p")
