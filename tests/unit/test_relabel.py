"""Relabelled wheels: version, build tag, dist-info and RECORD all consistent."""

from __future__ import annotations

import base64
import csv
import hashlib
import zipfile
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

from basefactory.wheels.relabel import (
    build_tag,
    digest_of_build_tag,
    labelled_version,
    relabel,
)


def make_wheel(directory: Path, name: str = "demo_pkg", version: str = "1.2.0") -> Path:
    path = directory / f"{name}-{version}-cp311-cp311-linux_x86_64.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "X = 1\n")
        zf.writestr(f"{name}/_ext.so", b"\x7fELF fake")
        zf.writestr(f"{name}/configs/N=1,K=2.json", "{}")  # RECORD must quote the comma
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: demo-pkg\nVersion: {version}\n\nlong\n\ndescription\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n")
        zf.writestr(f"{info}/RECORD", "stale\n")
    return path


@pytest.mark.parametrize(("version", "label", "expected"), [
    ("1.2.0", "pt213cpu", "1.2.0+pt213cpu"),
    ("2.1.2+abc", "pt214cu130", "2.1.2+abc.pt214cu130"),
    ("0.1", None, "0.1"),
    ("1.0.post1", "pt213cpu", "1.0.post1+pt213cpu"),
])
def test_labelled_version(version: str, label: str | None, expected: str) -> None:
    assert labelled_version(version, label) == expected


def test_build_tag_round_trip() -> None:
    tag = build_tag(1795417731, "fd435febfb25" + "0" * 52)
    assert tag == "1795417731.fd435febfb25"
    assert digest_of_build_tag(tag) == "fd435febfb25"
    assert digest_of_build_tag("1") is None


def test_relabel_rewrites_name_metadata_and_record(tmp_path: Path) -> None:
    src = make_wheel(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = relabel(src, out_dir, label="pt213cpu", tag="1795417731.fd435febfb25")
    name, version, build, tags = parse_wheel_filename(out.name)
    assert (name, str(version)) == ("demo-pkg", "1.2.0+pt213cpu")
    assert build == (1795417731, ".fd435febfb25")
    assert {str(t) for t in tags} == {"cp311-cp311-linux_x86_64"}
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        info = "demo_pkg-1.2.0+pt213cpu.dist-info"
        assert f"{info}/METADATA" in names and not any("1.2.0.dist-info" in n for n in names)
        meta = zf.read(f"{info}/METADATA").decode()
        assert "Version: 1.2.0+pt213cpu" in meta and meta.endswith("long\n\ndescription\n")
        assert "Build: 1795417731.fd435febfb25" in zf.read(f"{info}/WHEEL").decode()
        record = zf.read(f"{info}/RECORD").decode().splitlines()
        assert f"{info}/RECORD,," in record
        rows = list(csv.reader(record))
        assert [r[0] for r in rows if "N=1" in r[0]] == ["demo_pkg/configs/N=1,K=2.json"]
        for path, hash_, size in rows:
            if not hash_:
                continue
            data = zf.read(path)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert hash_ == f"sha256={digest}" and int(size) == len(data)
        assert zf.read("demo_pkg/_ext.so") == b"\x7fELF fake"


def test_pip_order_ranks_by_version_then_build_tag() -> None:
    from basefactory.wheels.relabel import pip_order

    names = ["t-0.2+pt213cpu-1763900000.aaaaaaaaaaaa-py3-none-any.whl",
             "t-0.2+pt213cpu-1763900500.bbbbbbbbbbbb-py3-none-any.whl",
             "t-0.10-py3-none-any.whl", "not-a-wheel.tar.gz"]
    assert sorted(names, key=pip_order) == [names[3], names[0], names[1], names[2]]
