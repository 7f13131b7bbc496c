"""Lock an image's requirements with uv against its platform's index.

The parent's installed distributions are constraints, so nothing the parent ships (torch
above all) is reinstalled or upgraded; a requirement that would need another torch fails
here, before any build. The lock holds only what this layer adds, with hashes, and is
kept in images/<name>/locks/<platform>.txt: while its inputs (requirements, parent,
recipe wheels) are unchanged it is reused as is, so a rebuild installs the same files.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from basefactory.adapters import cmd
from basefactory.adapters.tools import beside_python
from basefactory.images.definition import ImageDef
from basefactory.plumbing import digest, network
from basefactory.plumbing.errors import BuildError

HEADER = "# basefactory lock"
# never constrained: an image may need a newer pip than its parent's, and no distribution
# requires pip. setuptools is constrained like the rest: torch 2.11 requires
# setuptools<82, and an image that upgraded it would fail `pip check`.
UNCONSTRAINED = frozenset({"pip"})


@dataclass(frozen=True)
class Lock:
    path: Path
    entries: dict[str, str]  # canonical name -> version: what this layer installs
    text: str  # the requirements file (name==version with --hash lines)
    reused: bool

    @property
    def versions(self) -> str:
        """Its `name==version` lines (the image's lock label)."""
        return lock_versions(self.text)


def lock_versions(text: str) -> str:
    """The lock's `name==version` lines, without comments and hashes."""
    return "".join(line.split(" --hash=", 1)[0].strip() + "\n" for line in text.splitlines()
                   if line.strip() and not line.lstrip().startswith(("#", "--hash")))


def python_platform(arch: str, glibc: str) -> str:
    return f"{arch}-manylinux_{glibc.replace('.', '_')}"


def inputs_digest(image: ImageDef, parent: dict[str, str], pins: dict[str, str],
                  python: str, target: str, excludes: frozenset[str] = frozenset()) -> str:
    parts: list[object] = [sorted(image.requirements), sorted(parent.items()),
                           sorted(pins.items()), python, target]
    if excludes:  # absent for every base an index fully serves: their locks stay as they are
        parts.append(sorted(excludes))
    return digest.of(*parts)


def uv_tls(index_ca: Path | None) -> dict[str, str]:
    """uv's environment for an https index with a CA of its own (uv reads SSL_CERT_FILE;
    it talks to nothing but the index here)."""
    return {"SSL_CERT_FILE": str(index_ca)} if index_ca is not None else {}


def lock_image(
    image: ImageDef, *, platform: str, images_dir: Path, parent: dict[str, str],
    pins: dict[str, str], index_url: str, python: str, target: str, upgrade: bool = False,
    write: bool = True, installed_only: frozenset[str] = frozenset(),
    index_ca: Path | None = None,
) -> Lock:
    """`installed_only`: the parent's distributions that no index serves at the installed
    version (NVIDIA's pre-release torch). They are left out of the resolution (uv's
    --excludes): what requires them is taken as satisfied by the parent, and nothing can
    replace them. That their versions satisfy those requirements, `pip check` proves in the
    image's smoke test, before anything is pushed."""
    path = images_dir / image.name / "locks" / f"{platform}.txt"
    excludes = frozenset(installed_only) & set(parent)
    wanted = inputs_digest(image, parent, pins, python, target, excludes)
    if path.exists() and not upgrade:
        text = path.read_text()
        if f"inputs={wanted}" in text.split("\n", 1)[0]:
            return Lock(path, parse(text), text, reused=True)
    with tempfile.TemporaryDirectory(prefix="basefactory-lock-") as tmp:
        req = Path(tmp) / "requirements.in"
        req.write_text("".join(f"{r}\n" for r in image.requirements) +
                       "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
        con = Path(tmp) / "constraints.txt"
        con.write_text("".join(f"{n}=={v}\n" for n, v in sorted(parent.items())
                               if n not in UNCONSTRAINED and n not in excludes))
        out = Path(tmp) / "compiled.txt"
        exclude_args: list[str] = []
        if excludes:
            (Path(tmp) / "excludes.txt").write_text("".join(f"{n}\n" for n in sorted(excludes)))
            exclude_args = ["--excludes", str(Path(tmp) / "excludes.txt")]
        result = network.retrying(lambda: cmd.run(
            [beside_python("uv"), "pip", "compile", str(req), "--constraint", str(con),
             *exclude_args, "--output-file", str(out),
             "--index-url", index_url, "--python-version", python, "--python-platform", target,
             "--generate-hashes", "--no-header", "--no-annotate", "--quiet"],
            check=False, echo=False, env={"UV_NO_CONFIG": "1", "UV_HTTP_TIMEOUT": "300",
                                          **uv_tls(index_ca)},
            hint="uv is a dependency of basefactory: `make setup` installs it",
        ), what=f"the lock of image {image.name} on {platform}", index=index_url,
            unanswered=lambda r: r.output if r.returncode != 0 and network.unreachable(r.output)
            else None)
        if result.returncode != 0:
            raise lock_error(image.name, platform, parent.get("torch"), result.output)
        # from the file: cmd.run keeps only the tail of a command's output
        output = out.read_text()
    compiled = parse(output)
    if "torch" in compiled and parent.get("torch") and compiled["torch"] != parent["torch"]:
        raise BuildError(f"image {image.name} on {platform} would install torch"
                         f" {compiled['torch']} over the platform's {parent['torch']}")
    keep = {n: v for n, v in compiled.items()
            if parent.get(n) != v and n not in pins}
    body = blocks(output, set(keep))
    text = (f"{HEADER}: image={image.name} platform={platform} inputs={wanted}\n"
            "# what this layer adds to its parent, resolved by `uv pip compile` against the\n"
            "# platform's index with the parent's distributions as constraints. Do not edit:\n"
            "# `basefactory images build --upgrade` renews it.\n" + body)
    if write:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(text)
        partial.replace(path)  # never a half-written lock that a rerun would trust
    return Lock(path, keep, text, reused=False)


def lock_error(image: str, platform: str, torch: str | None, output: str) -> BuildError:
    tail = "\n".join(line for line in output.strip().splitlines()[-15:])
    if torch and re.search(r"\btorch\b", output):
        return BuildError(
            f"the requirements of image {image} need another torch than platform {platform}'s"
            f" ({torch}); nothing was built. uv says:\n{tail}",
            hint="relax or drop the requirement that pins torch (torch is never reinstalled)",
        )
    return BuildError(f"cannot resolve the requirements of image {image} on {platform}:\n{tail}",
                      hint="check requirements.in against what the platform's index offers")


def _logical_lines(text: str) -> list[str]:
    return re.sub(r"\\\n\s*", " ", text).splitlines()


def parse(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in _logical_lines(text):
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)", line.strip())
        if m:
            found[canonicalize_name(m.group(1))] = m.group(3)
    return found


def blocks(text: str, names: set[str]) -> str:
    """The `name==version --hash ...` entries of `names`, one per line."""
    out = []
    for line in _logical_lines(text):
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)", line.strip())
        if m and canonicalize_name(m.group(1)) in names:
            out.append(re.sub(r"\s+", " ", line.strip()) + "\n")
    return "".join(sorted(out))
