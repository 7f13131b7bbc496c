"""Fetch a recipe's source and prove it is the pinned one before anything is built.

    sdist  from the platform's index (its mirror or a private upload), sha256 checked
    adopt  a prebuilt wheel, from the index the same way (fetch_wheel)
    git    cloned into a cache, the commit checked out and verified (git is wrapped here)
    path   a folder of the factory, digested by content

The result is a folder ready to become a build context, and the digest that names it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from packaging.utils import canonicalize_name

from basefactory.adapters import cmd, http
from basefactory.adapters.devpi_api import DevpiClient
from basefactory.platforms.rootfs import cache_dir
from basefactory.plumbing import log, network
from basefactory.plumbing.digest import file_sha256, tree_sha256
from basefactory.plumbing.errors import ConfigError, ServiceError, SourceMismatch
from basefactory.wheels.recipe import Recipe

GIT_HINT = "install git (`make setup` does)"


@dataclass(frozen=True)
class FetchedSource:
    directory: Path  # the source tree (the build's context)
    digest: str  # sha256 of the sdist, the git commit, or the folder's content digest
    kind: str


def fetch(recipe: Recipe, *, devpi: DevpiClient, indexes: list[str], root: Path,
          work: Path) -> FetchedSource:
    """`indexes`: where to look for an sdist, in order. Once the factory publishes its own
    wheel of a project, devpi hides the mirror's releases of it from the factory's indexes
    (no public package can shadow a private one), so the mirror itself comes last."""
    source = recipe.source
    assert source is not None, "an adopted recipe has no source to fetch"
    tree = work / "source"
    shutil.rmtree(tree, ignore_errors=True)
    if source.sdist is not None:
        archive = _download_sdist(recipe, devpi, indexes, work)
        _unpack(archive, tree)
        assert source.sha256 is not None
        return FetchedSource(tree, source.sha256, "sdist")
    if source.git is not None:
        assert source.commit is not None
        _git_export(recipe.name, source.git, source.commit, tree, source.subdirectory)
        return FetchedSource(tree, source.commit, "git")
    assert source.path is not None
    folder = source.path if source.path.is_absolute() else root / source.path
    if not folder.is_dir():
        raise ConfigError(f"recipe {recipe.name}: source.path {folder} is not a folder")
    shutil.copytree(folder, tree, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "build", "dist", "*.egg-info",
                                                  "__pycache__"))
    return FetchedSource(tree, tree_sha256(tree), "path")


def _links(devpi: DevpiClient, index: str, name: str, wanted: Callable[[str], bool]
           ) -> list[httpx.URL]:
    url = f"{devpi.simple_url(index)}{name}/"

    def get() -> httpx.Response:
        try:
            return httpx.get(url, timeout=300, headers={"Accept": "text/html"},
                             verify=http.verify_for(devpi.base_url, devpi.tls))
        except httpx.HTTPError as exc:
            raise ServiceError(f"could not read {url}: {type(exc).__name__} {exc}",
                               hint="is devpi up?") from None

    page = network.raising(get, what=f"reading {url}", index=index, errors=(ServiceError,),
                           message=str)
    if page.status_code == 404:
        return []
    return [httpx.URL(url).join(href) for href in re.findall(r'href="([^"]+)"', page.text)
            if wanted(href.split("#", 1)[0].rsplit("/", 1)[-1])]


def _is_sdist_of(name: str, version: str) -> Callable[[str], bool]:
    def wanted(filename: str) -> bool:
        stem = re.sub(r"\.(tar\.gz|zip|tar\.bz2)$", "", filename)
        return stem != filename and stem.rsplit("-", 1)[-1] == version and \
            re.sub(r"[-_.]+", "-", stem.rsplit("-", 1)[0]).lower() == name
    return wanted


def _download_sdist(recipe: Recipe, devpi: DevpiClient, indexes: list[str], work: Path) -> Path:
    assert recipe.source is not None and recipe.source.sha256 is not None
    name, version = recipe.source.sdist_name_version
    return _download_pinned(recipe, devpi, indexes, name, _is_sdist_of(name, version),
                            recipe.source.sha256, f"sdist of {name} {version}")


def fetch_wheel(recipe: Recipe, *, devpi: DevpiClient, indexes: list[str]) -> Path:
    """An adopted recipe's wheel, from the first index that has it, its sha256 checked
    (cached by that sha256: a 300 MB wheel is fetched once)."""
    adopt = recipe.adopt
    assert adopt is not None
    name = canonicalize_name(adopt.name_version[0])
    return _download_pinned(recipe, devpi, indexes, name, lambda f: f == adopt.wheel,
                            adopt.sha256, adopt.wheel)


def partial_download(devpi: DevpiClient, url: str, dest: Path) -> Callable[[], None]:
    return lambda: devpi.download(url, dest)


def _download_pinned(recipe: Recipe, devpi: DevpiClient, indexes: list[str], name: str,
                     wanted: Callable[[str], bool], expected: str, what: str) -> Path:
    candidates: list[httpx.URL] = []
    for index in indexes:
        candidates = _links(devpi, index, name, wanted)
        if candidates:
            break
    if not candidates:
        raise ConfigError(f"recipe {recipe.name}: no {what} on {', '.join(indexes)}",
                          hint="check the version and file name; the file must exist on the"
                               " index (or its mirror)")
    cache = cache_dir() / "sources" / expected[:2] / expected
    for link in candidates:
        advertised = link.fragment.removeprefix("sha256=") if link.fragment else None
        filename = link.path.rsplit("/", 1)[-1]
        if advertised and advertised != expected:
            continue  # another file of the same version (e.g. .zip beside .tar.gz)
        dest = cache / filename
        if not dest.exists():
            cache.mkdir(parents=True, exist_ok=True)
            partial = dest.with_suffix(dest.suffix + ".part")
            url = str(link.copy_with(fragment=None))
            network.raising(partial_download(devpi, url, partial),
                            what=f"the download of {filename}", index=devpi.base_url,
                            errors=(ServiceError,), message=str)
            partial.replace(dest)
        actual = file_sha256(dest)
        if actual != expected:
            dest.unlink(missing_ok=True)
            raise SourceMismatch(
                f"recipe {recipe.name}: {filename} has sha256 {actual}, the recipe pins"
                f" {expected}; nothing was built",
                hint="if the new file is trusted, update sha256 in the recipe",
            )
        log.detail(f"{filename}: sha256 {actual[:16]}… matches the pin")
        return dest
    advertised_all = ", ".join(c.fragment for c in candidates)
    raise SourceMismatch(
        f"recipe {recipe.name}: no {what} has the pinned sha256 {expected}"
        f" (the index offers {advertised_all}); nothing was built",
        hint="if the index's file is trusted, update sha256 in the recipe",
    )


def _unpack(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    entries = list(dest.iterdir())
    if len(entries) == 1 and entries[0].is_dir():  # name-version/ at the top: flatten it
        inner = entries[0]
        for child in inner.iterdir():
            child.rename(dest / child.name)
        inner.rmdir()


def _git(*args: str, cwd: Path | None = None, check: bool = True) -> cmd.Result:
    return cmd.run(["git", *args], cwd=cwd, check=check, echo=False, hint=GIT_HINT,
                   env={"GIT_TERMINAL_PROMPT": "0"})


def _git_export(name: str, url: str, commit: str, dest: Path, subdirectory: str | None) -> None:
    """Check out `commit` of `url` (cached clone) and copy its tree, without .git, to dest."""
    mirror = cache_dir() / "git" / hashlib.sha256(url.encode()).hexdigest()[:16]
    if not (mirror / "HEAD").exists():
        shutil.rmtree(mirror, ignore_errors=True)
        mirror.parent.mkdir(parents=True, exist_ok=True)
        result = _git("clone", "--bare", "--filter=blob:none", url, str(mirror), check=False)
        if result.returncode != 0:
            shutil.rmtree(mirror, ignore_errors=True)
            raise SourceMismatch(f"recipe {name}: cannot clone {url}:\n{result.tail}",
                                 hint="check the URL and that this host can reach it")
    if _git("cat-file", "-e", f"{commit}^{{commit}}", cwd=mirror, check=False).returncode != 0:
        _git("fetch", "--filter=blob:none", "origin", commit, cwd=mirror, check=False)
    if _git("cat-file", "-e", f"{commit}^{{commit}}", cwd=mirror, check=False).returncode != 0:
        raise SourceMismatch(
            f"recipe {name}: commit {commit} does not exist in {url}; nothing was built",
            hint="pin a commit that the repository holds (`git ls-remote URL`)",
        )
    resolved = _git("rev-parse", f"{commit}^{{commit}}", cwd=mirror).output.strip()
    if resolved != commit:
        raise SourceMismatch(f"recipe {name}: {commit} resolves to {resolved}")
    dest.mkdir(parents=True)
    archive = dest.parent / "source.tar"
    _git("archive", "--format=tar", "-o", str(archive), commit, cwd=mirror)
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")
    archive.unlink()
    if subdirectory:
        inner = dest / subdirectory
        if not inner.is_dir():
            raise ConfigError(f"recipe {name}: subdirectory {subdirectory} is not in {commit}")
        staged = dest.parent / "source.sub"
        inner.rename(staged)
        shutil.rmtree(dest)
        staged.rename(dest)
