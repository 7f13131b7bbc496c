"""Give a built wheel its platform's version label and a build tag naming its inputs.

    torchsort-0.1.10-cp311-cp311-linux_x86_64.whl
 -> torchsort-0.1.10+pt213cpu-1763900000.a1b2c3d4e5f6-cp311-cp311-manylinux_2_36_x86_64.whl

The local label (PEP 440) keeps two platforms' wheels from ever colliding; the wheel
build tag (PEP 427: a number, then anything) carries the build time, so the newest build
of a version wins in pip and uv, and the digest of the inputs, so a published build is
recognised from its file name alone and never rebuilt. The dist-info folder, METADATA,
WHEEL and RECORD are rewritten to match; file contents are untouched unless a declared
patch of an adopted wheel replaces them.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import zipfile
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from basefactory.plumbing.errors import BuildError


def labelled_version(version: str, label: str | None) -> str:
    if not label:
        return str(Version(version))
    parsed = Version(version)
    local = f"{parsed.local}.{label}" if parsed.local else label
    return f"{parsed.public}+{local}"


def build_tag(epoch: int, input_digest: str) -> str:
    return f"{epoch}.{input_digest[:12]}"


def digest_of_build_tag(tag: str) -> str | None:
    m = re.fullmatch(r"\d+\.([0-9a-f]{12})", tag)
    return m.group(1) if m else None


def pip_order(filename: str) -> tuple[Any, ...]:
    """How pip ranks the wheels of one project: by version, then by build tag (which is
    why the newest build of a version wins). A name that is not a wheel's ranks lowest."""
    try:
        _, version, build, _ = parse_wheel_filename(filename)
    except (InvalidVersion, InvalidWheelFilename):
        return (Version("0"), ())
    return (version, build)


def relabel(wheel: Path, dest_dir: Path, *, label: str | None, tag: str,
            requires: list[str] | None = None, files: dict[str, bytes] | None = None) -> Path:
    """`requires`: the wheel's Requires-Dist lines instead of its own (an adopted wheel's
    declared overrides applied); `files`: contents that replace (or add) files of the
    wheel (its declared patches applied)."""
    files = dict(files or {})
    _, version, _, _ = parse_wheel_filename(wheel.name)
    stem_name = wheel.name.split("-", 1)[0]  # the escaped name as the wheel spells it
    new_version = labelled_version(str(version), label)
    tag_part = wheel.name.removesuffix(".whl").split("-")[-3:]
    new_name = f"{stem_name}-{new_version}-{tag}-{'-'.join(tag_part)}.whl"
    with zipfile.ZipFile(wheel) as src:
        infos = src.infolist()
        dist_info = _find_dist_info(src, stem_name)
        new_info = f"{stem_name}-{new_version}.dist-info"
        dest = dest_dir / new_name
        partial = dest_dir / f".{new_name}.part"  # renamed when whole: no half wheel
        records: list[tuple[str, str, str]] = []
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as out:
            for info in infos:
                if info.filename == f"{dist_info}/RECORD":
                    continue
                data = files.pop(info.filename, None)
                if data is None:
                    data = src.read(info.filename)
                arcname = info.filename
                if arcname.startswith(dist_info + "/"):
                    arcname = new_info + arcname[len(dist_info):]
                    if arcname == f"{new_info}/METADATA":
                        data = _set_header(data, "Version", new_version)
                        if requires is not None:
                            data = _set_all(data, "Requires-Dist", requires)
                    elif arcname == f"{new_info}/WHEEL":
                        data = _set_header(data, "Build", tag)
                new = zipfile.ZipInfo(arcname, date_time=info.date_time)
                new.external_attr = info.external_attr
                new.compress_type = zipfile.ZIP_DEFLATED
                out.writestr(new, data)
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                records.append((arcname, f"sha256={digest.decode()}", str(len(data))))
            for arcname, data in sorted(files.items()):  # added by a patch
                new = zipfile.ZipInfo(arcname, date_time=infos[0].date_time)
                new.external_attr = 0o644 << 16
                out.writestr(new, data, compress_type=zipfile.ZIP_DEFLATED)
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                records.append((arcname, f"sha256={digest.decode()}", str(len(data))))
            records.append((f"{new_info}/RECORD", "", ""))
            # RECORD is CSV (PEP 376): a path with a comma is quoted (vLLM ships such files)
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(records)
            record = zipfile.ZipInfo(f"{new_info}/RECORD", date_time=infos[0].date_time)
            record.external_attr = 0o644 << 16
            out.writestr(record, text.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    partial.replace(dest)
    return dest


def _find_dist_info(zf: zipfile.ZipFile, stem_name: str) -> str:
    for name in zf.namelist():
        top = name.split("/", 1)[0]
        if top.endswith(".dist-info") and top.lower().startswith(stem_name.lower() + "-"):
            return top
    raise BuildError(f"{zf.filename} has no {stem_name}-*.dist-info folder")


def headers(data: bytes, key: str) -> list[str]:
    """Every value of one header of METADATA (e.g. all Requires-Dist lines)."""
    head = data.decode("utf-8").partition("\n\n")[0]
    return [line.split(":", 1)[1].strip() for line in head.split("\n")
            if line.lower().startswith(key.lower() + ":")]


def _set_all(data: bytes, key: str, values: list[str]) -> bytes:
    """Replace every `key:` header line with one line per value, where the first stood."""
    text = data.decode("utf-8")
    head, sep, body = text.partition("\n\n")
    lines = head.split("\n")
    at = next((i for i, line in enumerate(lines) if line.lower().startswith(key.lower() + ":")),
              len(lines))
    kept = [line for line in lines if not line.lower().startswith(key.lower() + ":")]
    at = min(at, len(kept))
    new = kept[:at] + [f"{key}: {v}" for v in values] + kept[at:]
    return ("\n".join(new) + sep + body).encode("utf-8")


def _set_header(data: bytes, key: str, value: str) -> bytes:
    """Replace (or add) an RFC 822 header line in the headers part of METADATA or WHEEL."""
    text = data.decode("utf-8")
    head, sep, body = text.partition("\n\n")
    lines = head.split("\n")
    replaced = False
    for i, line in enumerate(lines):
        if line.lower().startswith(key.lower() + ":"):
            lines[i] = f"{key}: {value}"
            replaced = True
    if not replaced:
        lines.append(f"{key}: {value}")
    return ("\n".join(lines) + sep + body).encode("utf-8")
