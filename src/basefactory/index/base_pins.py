"""What a platform's base pins is offered by the platform's index at the base's version,
and at no other.

A pulled base (NVIDIA's PyTorch image) pins what it ships in its own pip constraint file
(PIP_CONSTRAINT), at versions no index may serve: torch 2.13.0a0+cf30153c4c.nv25.10,
torchvision 0.24.0a0+<commit>. Where the platform's index held no release of such a name,
devpi passed its mirror's through, and `uv pip install timm` took PyPI's torchvision and,
with it, PyPI's torch in place of NVIDIA's (seed 001, through the factory's own index).

factory/<platform>-base holds one release per pin: the file of the base's version that
fits the platform, copied from the mirror; or, where no index serves that version, the
release without a file. devpi hides a mirror's releases of any project that a private
index on the way holds, so through factory/<platform> pip and uv see the base's version of
each pin and no other: an install keeps the base's copy, or fails naming the pin.

What is pinned (Fingerprint.index_pins): the pins of the base's constraint file, and
torch. A bootstrapped base has no constraint file: its torch is the platform index's own
(imported), and the rest of what it ships came from this mirror and is pinned by the
factory's images.
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging import tags
from packaging.utils import parse_wheel_filename
from packaging.version import Version

from basefactory.adapters.devpi_api import DevpiClient, file_version
from basefactory.config.factory import Factory
from basefactory.plumbing import log
from basefactory.refs import base_pins_index, platform_index

SUMMARY = "pinned by the base of platform {platform}: the only version its index offers"


@dataclass
class PinSync:
    """Where each pin's version is served from, after a sync."""

    own: dict[str, str] = field(default_factory=dict)  # the platform index's own release
    copied: dict[str, str] = field(default_factory=dict)  # the mirror's file, copied
    files: dict[str, str] = field(default_factory=dict)  # name -> the copied file's name
    unserved: dict[str, str] = field(default_factory=dict)  # no index serves this version
    removed: list[str] = field(default_factory=list)  # name==version no longer pinned
    changed: bool = False

    KEYS = ("own", "copied", "files", "unserved")

    @property
    def pins(self) -> dict[str, str]:
        return {**self.own, **self.copied, **self.unserved}

    @classmethod
    def of(cls, record: dict[str, Any]) -> PinSync:
        """What the pins index's custom_data says it holds."""
        return cls(**{key: dict(record.get(key) or {}) for key in cls.KEYS})  # type: ignore[arg-type]

    def record(self) -> dict[str, dict[str, str]]:
        return {key: getattr(self, key) for key in self.KEYS}


def platform_tags(python_tag: str, glibc: str, arch: str) -> list[tags.Tag]:
    """The wheel tags the platform's Python installs, most specific first (what pip would
    compute inside the base)."""
    python = (int(python_tag[2]), int(python_tag[3:]))
    major, minor = (int(p) for p in (glibc or "2.17").split(".")[:2])
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    platforms = []
    for m in range(minor, 4, -1):
        platforms.append(f"manylinux_{major}_{m}_{arch}")
        if m in legacy:
            platforms.append(f"{legacy[m]}_{arch}")
    platforms.append(f"linux_{arch}")
    return [*tags.cpython_tags(python, platforms=platforms),
            *tags.compatible_tags(python, f"cp{python[0]}{python[1]}", platforms)]


def best_file(files: list[tuple[str, str]], version: str, supported: list[tags.Tag]
              ) -> tuple[str, str] | None:
    """The file of `version` that the platform installs: its best-ranked wheel, else the
    sdist; None where the index has no file of that version."""
    rank = {tag: i for i, tag in enumerate(supported)}
    best: tuple[int, str, str] | None = None
    for name, url in files:
        found = file_version(name)
        if found is None or Version(found) != Version(version):
            continue
        if name.endswith(".whl"):
            ranks = [rank[t] for t in parse_wheel_filename(name)[3] if t in rank]
            if not ranks:
                continue
            score = min(ranks)
        else:
            score = len(rank)
        if best is None or score < best[0]:
            best = (score, name, url)
    return None if best is None else (best[1], best[2])


def sync(factory: Factory, devpi: DevpiClient, platform: str, wanted: dict[str, str],
         supported: list[tags.Tag]) -> PinSync:
    """Bring factory/<platform>-base to the base's pins (`wanted`: Fingerprint.index_pins;
    `supported`: platform_tags of its Python); a no-op (one read) when it holds them, and
    a pin that did not change is not fetched again. Safe to rerun after a crash: what the
    index holds is recorded last, and only changed pins are touched."""
    index = base_pins_index(factory, platform)
    held = PinSync.of(devpi.custom_data(index))
    if held.pins == wanted:
        return held
    result = PinSync(changed=True)
    own_index, mirror = platform_index(factory, platform), factory.config.index.mirror
    summary = SUMMARY.format(platform=platform)

    def place(name: str, version: str, tmp: Path) -> None:
        if any(Version(f.version) == Version(version)
               for f in devpi.release_files(own_index, name)):
            result.own[name] = version
            return
        chosen = best_file(devpi.simple_files(mirror, name), version, supported)
        if chosen is None:
            devpi.register(index, name=name, version=version, summary=summary)
            result.unserved[name] = version
            return
        filename, url = chosen
        path = tmp / filename
        devpi.download(url, path)
        devpi.upload(index, path, name=name, version=version)
        path.unlink()
        result.copied[name], result.files[name] = version, filename

    changed = {n: v for n, v in wanted.items() if held.pins.get(n) != v}
    with log.phase(f"pin {len(changed)} of the base's {len(wanted)} pins on {index}"), \
            tempfile.TemporaryDirectory(prefix="basefactory-pins-") as tmp:
        for name, version in held.pins.items():
            if wanted.get(name) != version:
                devpi.delete_version(index, name, version)
                result.removed.append(f"{name}=={version}")
        for key in ("own", "copied", "unserved"):
            for name, version in getattr(held, key).items():
                if name in wanted and name not in changed:
                    getattr(result, key)[name] = version
                    if name in held.files:
                        result.files[name] = held.files[name]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda item: place(item[0], item[1], Path(tmp)), changed.items()))
        devpi.set_custom_data(index, result.record())
    if result.unserved:
        log.detail("pinned, and served by no index (resolvers take the base's copy): "
                   + ", ".join(f"{n} {v}" for n, v in sorted(result.unserved.items())))
    return result
