"""Which GPU architectures a wheel's CUDA code was compiled for, read from the fat binaries
(the `.nv_fatbin` ELF sections) of its shared objects, so that a wheel built with
TORCH_CUDA_ARCH_LIST="8.0;9.0" is refused before upload unless every CUDA .so in it
carries SASS for sm_80 and sm_90 (and PTX where the list says +PTX).

No CUDA toolkit needed (cuobjdump is not in every toolkit install): a fat binary is a
sequence of containers, a 16-byte header (magic 0xBA55ED50, version, size of what follows)
then entries, each with its kind (1 PTX, 2 ELF cubin), its header size, its padded payload
size and its SM number, the layout cuobjdump reads.
"""

from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from basefactory.plumbing.errors import TestFailed

MAGIC = 0xBA55ED50
HEADER = struct.Struct("<IHHQ")  # magic, version, header size, size of the entries
ENTRY = struct.Struct("<HHIQIIII")  # kind, version, header size, padded payload, ..., sm
KINDS = {1: "ptx", 2: "sm", 0x10: "sm"}

# torch.utils.cpp_extension's named architectures
NAMED = {"kepler": ("3.5", "3.7"), "maxwell": ("5.0", "5.2"), "pascal": ("6.0", "6.1"),
         "volta": ("7.0",), "turing": ("7.5",), "ampere": ("8.0", "8.6"), "ada": ("8.9",),
         "hopper": ("9.0",)}


def fatbin_code(data: bytes) -> set[str]:
    """{"sm_80", "sm_90", "ptx_90", ...} for every container found in `data`."""
    found: set[str] = set()
    offset = data.find(struct.pack("<I", MAGIC))
    while 0 <= offset <= len(data) - HEADER.size:
        magic, _, header_size, size = HEADER.unpack_from(data, offset)
        end = offset + header_size + size
        entry = offset + header_size
        while magic == MAGIC and header_size and entry + ENTRY.size <= min(end, len(data)):
            kind, _, entry_header, payload, _, _, _, sm = ENTRY.unpack_from(data, entry)
            if entry_header == 0:
                break
            if kind in KINDS and 10 <= sm < 1000:
                found.add(f"{KINDS[kind]}_{sm}")
            entry += entry_header + payload
        offset = data.find(struct.pack("<I", MAGIC), max(end, offset + 4))
    return found


def shared_object_code(data: bytes) -> set[str] | None:
    """The device code of one shared object, or None when it has no fat binary."""
    # imported here: elftools' ~35 ms of import were paid by every command, and only
    # the check of a CUDA wheel reads ELF files
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        section = ELFFile(io.BytesIO(data)).get_section_by_name(".nv_fatbin")
    except ELFError:
        return None
    return fatbin_code(section.data()) if section is not None else None


def wanted(arch_list: str) -> set[str]:
    """TORCH_CUDA_ARCH_LIST ("8.0;9.0+PTX", "8.0 9.0a", "Ampere") as fat binary names."""
    names: set[str] = set()
    for item in arch_list.replace(",", ";").replace(" ", ";").split(";"):
        item = item.strip()
        if not item:
            continue
        ptx = item.endswith("+PTX")
        item = item.removesuffix("+PTX")
        for version in NAMED.get(item.lower(), (item,)):
            number = "".join(c for c in version if c.isdigit())
            names.add(f"sm_{number}")
            if ptx:
                names.add(f"ptx_{number}")
    return names


@dataclass(frozen=True)
class DeviceCode:
    libraries: dict[str, list[str]]  # path in the wheel -> sorted device code

    def as_dict(self) -> dict[str, list[str]]:
        return self.libraries


def check_wheel(wheel: Path, arch_list: str, platform: str) -> DeviceCode:
    """Raise TestFailed when a CUDA library of the wheel lacks an architecture the recipe
    asked for. A wheel without any fat binary passes: its recipe's test says whether it
    must have CUDA code."""
    want = wanted(arch_list)
    libraries: dict[str, list[str]] = {}
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            if ".so" not in name.rsplit("/", 1)[-1] or ".libs/" in name:
                continue  # vendored libraries are not the recipe's code
            code = shared_object_code(zf.read(name))
            if code is not None:
                libraries[name] = sorted(code)
    short = {name: sorted(want - set(code)) for name, code in libraries.items()
             if want - set(code)}
    if short:
        lines = "\n".join(f"  {name}: has {', '.join(libraries[name]) or 'nothing'};"
                          f" lacks {', '.join(missing)}" for name, missing in short.items())
        raise TestFailed(
            f"{wheel.name} on {platform} lacks device code that TORCH_CUDA_ARCH_LIST"
            f" ({arch_list}) asks for; nothing was uploaded:\n{lines}",
            hint="check that the build saw TORCH_CUDA_ARCH_LIST (a build with isolation or a"
            " setup.py that sets its own -gencode flags ignores it)",
        )
    return DeviceCode(libraries)
