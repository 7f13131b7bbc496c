"""A Debian root filesystem made with debootstrap, cached, imported as a Docker image.

Hosts that can pull nothing still get a base this way. The tarball is cached under
~/.cache/basefactory (it survives fresh clones and CI runs on the same machine), and the
imported image is reused while the engine keeps it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from basefactory.adapters import cmd
from basefactory.adapters.docker import Docker
from basefactory.plumbing import log
from basefactory.plumbing.errors import ToolError
from basefactory.refs import arch, rootfs_ref

# bump when the rootfs recipe changes, so cached tarballs are made again
ROOTFS_VERSION = "slim1"

# What Debian's own -slim images leave out: documentation, manual pages and translations,
# now and in every package installed later.
DPKG_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""


DEFAULT_MIRROR = "http://deb.debian.org/debian"


def host_apt_mirror(apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror this host's apt uses (its first `deb` source that is not the
    security archive), as debootstrap users expect; Debian's CDN where there is none."""
    uris: list[str] = []
    for path in sorted(apt_dir.glob("sources.list.d/*.sources")):
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines()
                          if ":" in line and not line.startswith(("#", " ")))
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            if "deb" in fields.get("types", "").split() and \
                    fields.get("enabled", "yes").lower() != "no" and \
                    not any(s.endswith("-security") for s in fields.get("suites", "").split()):
                uris += fields.get("uris", "").split()
    lists = [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb" and not words[2].endswith("-security"):
                uris.append(words[1])
    found = next((u for u in uris if u.startswith(("http://", "https://"))), None)
    return found.rstrip("/") if found else DEFAULT_MIRROR


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "basefactory"


def ensure_rootfs(docker: Docker, suite: str, mirror: str) -> str:
    ref = f"{rootfs_ref(suite)}-{ROOTFS_VERSION}"
    if docker.image_id(ref) is not None:
        return ref
    tarball = cache_dir() / "rootfs" / f"{suite}-{arch()}-{ROOTFS_VERSION}.tar"
    if not tarball.exists():
        _debootstrap(suite, mirror, tarball)
    with log.phase(f"import {tarball.name} as {ref}"):
        docker.import_file(tarball, ref)
    return ref


def _slim(root: Path) -> None:
    """Drop the package caches and lists debootstrap leaves, and docs and translations."""
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (root / "etc/dpkg/dpkg.cfg.d/basefactory-slim").write_text(DPKG_EXCLUDES)
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*",
                    "usr/share/man/*", "usr/share/info/*", "usr/share/lintian/*",
                    "usr/share/locale/*", "var/log/*.log", "var/log/apt/*"):
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name != "locale.alias":
                path.unlink()
    for doc in (root / "usr/share/doc").glob("*"):
        if doc.is_dir() and not doc.is_symlink():
            for item in doc.iterdir():
                if item.name != "copyright":
                    shutil.rmtree(item) if item.is_dir() and not item.is_symlink() else item.unlink()


def _debootstrap(suite: str, mirror: str, tarball: Path) -> None:
    debootstrap = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if os.access("/usr/sbin/debootstrap", os.X_OK) else None)
    if debootstrap is None:
        raise ToolError("debootstrap is not installed",
                        hint="run `make setup` (apt-get install debootstrap), or use an `image`"
                        " platform")
    if os.geteuid() != 0:
        raise ToolError("debootstrap needs root to make a root filesystem",
                        hint="run as root once (the tarball is cached), or use an `image` platform")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    work = tarball.parent / f"{suite}.rootfs.tmp"
    shutil.rmtree(work, ignore_errors=True)
    try:
        with log.phase(f"debootstrap {suite} (minbase) from {mirror}"):
            cmd.run([debootstrap, "--variant=minbase", suite, str(work), mirror],
                    log_file=tarball.parent / f"{suite}.debootstrap.log", echo=False,
                    hint="is the Debian mirror reachable? see the log")
        _slim(work)
        partial = tarball.with_suffix(".tar.tmp")
        cmd.run(["tar", "-C", str(work), "-cf", str(partial), "."], echo=False)
        partial.replace(tarball)  # a crash never leaves a half tarball under the final name
    finally:
        shutil.rmtree(work, ignore_errors=True)
