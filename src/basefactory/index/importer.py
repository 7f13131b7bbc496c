"""`basefactory index import`: put a local wheelhouse into an index, for air-gapped sites.

Given requirements (e.g. the platform's torch), only the wheels those requirements need
are imported: the named wheel and, following its Requires-Dist for the target
interpreter, every dependency the wheelhouse holds (the rest comes from the mirror).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from basefactory.adapters.devpi_api import DevpiClient
from basefactory.plumbing import log
from basefactory.plumbing.digest import file_sha256, memo
from basefactory.plumbing.errors import ConfigError


@dataclass(frozen=True)
class WheelFile:
    path: Path
    name: str
    version: Version

    @classmethod
    def of(cls, path: Path) -> WheelFile:
        name, version, _, _ = parse_wheel_filename(path.name)
        return cls(path, canonicalize_name(name), version)

    def requires(self) -> list[Requirement]:
        with zipfile.ZipFile(self.path) as zf:
            meta_name = next(n for n in zf.namelist()
                             if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            meta = Parser().parsestr(zf.read(meta_name).decode())
        return [Requirement(r) for r in meta.get_all("Requires-Dist") or []]


def wheels_in(directory: Path) -> list[WheelFile]:
    found = []
    for path in sorted(directory.glob("*.whl")):
        try:
            found.append(WheelFile.of(path))
        except ValueError:
            log.warning(f"skipping {path.name}: not a valid wheel file name")
    return found


def select(
    wheels: list[WheelFile], requirements: list[str], *, python: str = "3.11"
) -> list[WheelFile]:
    """The wheels `requirements` need from this wheelhouse, dependencies included."""
    env: dict[str, str] = {key: str(value) for key, value in default_environment().items()}
    env.update(python_version=python, python_full_version=f"{python}.0")
    chosen: dict[str, WheelFile] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    # (requirement, the extras its dependant asked for, which its marker may test)
    todo: list[tuple[Requirement, frozenset[str]]] = [(Requirement(r), frozenset())
                                                      for r in requirements]
    while todo:
        req, wanted_extras = todo.pop()
        if req.marker is not None and not any(
                req.marker.evaluate({**env, "extra": extra})
                for extra in ({""} | set(wanted_extras))):
            continue
        name = canonicalize_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        best = chosen.get(name)
        if best is None:
            matching = [w for w in wheels if w.name == name and
                        req.specifier.contains(w.version, prereleases=True)]
            if not matching:
                continue  # not in the wheelhouse: the index's mirror will provide it
            best = max(matching, key=lambda w: w.version)
            chosen[name] = best
        # e.g. torch -> cuda-toolkit[cublas,...]: follow the extras' requirements too
        todo.extend((dep, frozenset(req.extras)) for dep in best.requires())
    return sorted(chosen.values(), key=lambda w: w.path.name)


def import_wheels(
    devpi: DevpiClient, index: str, directory: Path, requirements: list[str] | None = None,
    *, python: str = "3.11", memo_dir: Path | None = None,
) -> list[tuple[str, str]]:
    """Upload the selected wheels; return (file name, 'uploaded' | 'identical' | 'present')."""
    if not directory.is_dir():
        raise ConfigError(f"wheelhouse {directory} is not a directory")
    wheels = wheels_in(directory)
    if requirements and memo_dir is not None:
        # which files a requirement needs depends only on the wheelhouse's listing
        listing = sorted((w.path.name, w.path.stat().st_size, w.path.stat().st_mtime_ns)
                         for w in wheels)
        names = set(memo(memo_dir, ["select", str(directory), listing, requirements, python],
                         lambda: [w.path.name for w in select(wheels, requirements,
                                                              python=python)]))
        chosen = [w for w in wheels if w.path.name in names]
    else:
        chosen = select(wheels, requirements, python=python) if requirements else wheels
    if requirements and not chosen:
        raise ConfigError(
            f"no wheel in {directory} satisfies {', '.join(requirements)}",
            hint="download the wheel into the wheelhouse, or remove `wheelhouse` to take it"
            " from the index",
        )
    done = []
    for wheel in chosen:
        present = {f.filename: f.sha256 for f in devpi.release_files(index, wheel.name)}
        if wheel.path.name in present and \
                present[wheel.path.name] == file_sha256(wheel.path, memo_dir=memo_dir):
            done.append((wheel.path.name, "present"))
            continue
        state = devpi.upload(index, wheel.path, name=wheel.name, version=str(wheel.version))
        done.append((wheel.path.name, state))
    return done
