"""`basefactory outdated`: what newer versions the index (through its mirror) offers for
every image lock and recipe, which a relock would take, and which are held back, with the
resolver's reason (the platform's torch, most often).

An image's rows come from two dry-run plans of the same images: as locked, and with
`--upgrade` (uv re-resolving every lock against the platform's index under the parent's
versions, exactly as `images build --upgrade` would, nothing written). A package whose
newest release on the index is newer than what the upgrade takes is probed on its own:
`uv pip compile NAME==NEWEST` with torch pinned to the platform's; uv's own words say why
it cannot be had.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from basefactory.adapters import cmd
from basefactory.adapters.tools import beside_python
from basefactory.images.lock import parse, python_platform, uv_tls
from basefactory.images.publish import build_all
from basefactory.platforms import store
from basefactory.plumbing import log
from basefactory.refs import common_index, platform_index
from basefactory.session import Session
from basefactory.wheels.recipe import factory_recipes


@dataclass(frozen=True)
class Row:
    kind: str  # "image" or "recipe"
    name: str  # the image or the recipe
    platform: str
    package: str
    current: str
    upgrade: str | None  # what `images build --upgrade` would take (images only)
    newest: str | None  # the newest final release the index lists
    held_back: str  # why newest cannot be had here ("" when it can)


def _newest(versions: set[str]) -> Version | None:
    parsed = []
    for v in versions:
        try:
            version = Version(v)
        except InvalidVersion:
            continue
        if not version.is_prerelease and not version.is_devrelease:
            parsed.append(version)
    return max(parsed, default=None)


def _public(version: str) -> Version:
    return Version(Version(version).public)


def probe(session: Session, platform: str, package: str, version: str) -> str:
    """Why `package==version` cannot be installed on the platform ("" when it can)."""
    fp = store.require(session.factory, session.devpi, platform)
    index_url = session.devpi.simple_url(platform_index(session.factory, platform))
    with tempfile.TemporaryDirectory(prefix="basefactory-outdated-") as tmp:
        req = Path(tmp) / "requirements.in"
        req.write_text(f"{package}=={version}\n")
        con = Path(tmp) / "constraints.txt"
        con.write_text(f"torch=={fp.torch}\n" if fp.torch else "")
        result = cmd.run([beside_python("uv"), "pip", "compile", str(req), "--constraint",
                          str(con), "--index-url", index_url, "--python-version",
                          ".".join(fp.python.split(".")[:2]), "--python-platform",
                          python_platform(fp.arch, fp.glibc), "--no-header", "--quiet"],
                         check=False, echo=False,
                         env={"UV_NO_CONFIG": "1", **uv_tls(session.factory.config.index.build_ca)})
    if result.returncode == 0:
        return ""
    reason = " ".join(line.strip() for line in result.output.splitlines()
                      if line.strip() and not line.startswith(("hint:", "  hint")))
    reason = re.sub(r"^(?:error: |× )?No solution found when resolving dependencies:?"
                    r"(?: cause:)?\s*", "", re.sub(r"\s+", " ", reason)).strip()
    if fp.torch and re.search(r"\btorch\b", reason):
        return f"needs another torch than the platform's {fp.torch}: {reason[:400]}"
    return reason[:400] or f"uv could not resolve {package}=={version}"


def image_rows(session: Session, images: list[str] | None, platforms: list[str] | None
               ) -> list[Row]:

    with log.phase("images as locked"):
        locked = build_all(session, images, platforms, dry_run=True)
    with log.phase("images relocked (--upgrade, nothing written)"):
        upgraded = {(r.image, r.platform): r for r in
                    build_all(session, images, platforms, dry_run=True, upgrade=True)}
    rows: list[Row] = []
    probed: dict[tuple[str, str, str], str] = {}
    for result in locked:
        after = upgraded.get((result.image, result.platform))
        if after is None:
            continue
        lock = session.factory.images_dir / result.image / "locks" / f"{result.platform}.txt"
        if not lock.exists():
            continue
        own = parse(lock.read_text())  # the image's own pins, not its parent's
        index = platform_index(session.factory, result.platform)
        for package, current in sorted(own.items()):
            newest = _newest(session.devpi.simple_versions(index, package))
            relocked = after.installed.get(package)
            if newest is None or newest <= _public(current):
                continue
            held = ""
            if relocked is None or _public(relocked) < newest:
                key = (result.platform, package, str(newest))
                if key not in probed:
                    probed[key] = probe(session, result.platform, package, str(newest))
                held = probed[key] or "the image's other requirements hold it back"
            rows.append(Row("image", result.image, result.platform, package, current,
                            relocked, str(newest), held))
    return rows


def recipe_rows(session: Session, platforms: list[str] | None) -> list[Row]:
    """A recipe pins one release; newer ones are listed, to bump by hand (a build here is
    what shows whether it compiles against the platform's torch)."""
    factory = session.factory
    rows: list[Row] = []
    for recipe in factory_recipes(factory).values():
        name = recipe.distribution
        current = recipe.adopt.name_version[1] if recipe.adopt is not None else (
            recipe.source.sdist_name_version[1]
            if recipe.source is not None and recipe.source.sdist is not None else None)
        if current is None:
            continue  # a git commit or a local folder: no release line to compare with
        # factory/common inherits the mirror: PyPI's releases, as the recipe would fetch
        newest = _newest(session.devpi.simple_versions(common_index(factory), name))
        if newest is None or newest <= _public(current):
            continue
        where = ", ".join(factory.platforms(platforms))
        rows.append(Row("recipe", recipe.name, where, name, current, None, str(newest),
                        "" if recipe.adopt is None else
                        "an adopted wheel: its torch requirement decides (bump and build)"))
    return rows


def outdated(session: Session, images: list[str] | None = None,
             platforms: list[str] | None = None) -> list[dict[str, Any]]:
    return [asdict(r) for r in image_rows(session, images, platforms)
            + recipe_rows(session, platforms)]
