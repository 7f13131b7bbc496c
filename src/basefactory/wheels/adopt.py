"""Take a prebuilt wheel as a recipe's wheel ("adopt"), only where it can fit the platform.

Many heavy wheels are published prebuilt against one exact torch (vLLM 0.33.0 requires
torch==2.14.0). Adopting one checks, before anything runs:

- its tags: the platform's Python (cp311, or abi3 from an older CPython), glibc and arch;
- its requirements, evaluated for the platform, with the recipe's declared overrides
  applied: each override must match a Requires-Dist the wheel declares (a stale override
  is an error), and what remains must accept every version the platform's base ships.
  A wheel that would replace the base's torch (or anything else the base ships) is
  refused, naming the requirement and the override that would be needed.

The wheel is then relabelled like a built one (the platform's local label, a build tag
of its inputs) with the overridden Requires-Dist written into its METADATA, and tested
like a build: the recipe's test and the ABI audit decide whether it loads here.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from basefactory.platforms.fingerprint import Fingerprint
from basefactory.plumbing.errors import BuildError, ConfigError
from basefactory.wheels.patch import apply_patches
from basefactory.wheels.recipe import Recipe, same_requirement
from basefactory.wheels.relabel import headers, relabel

# The legacy manylinux names and the glibc they stand for (PEP 600).
LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def supported_tags(fp: Fingerprint) -> set[str]:
    """The wheel tags pip accepts on the platform: its CPython's own and abi3 ones from
    older CPythons, pure ones, on manylinux up to its glibc, or plain linux."""
    major, minor = (int(x) for x in fp.python.split(".")[:2])
    glibc_major, glibc_minor = (int(x) for x in fp.glibc.split(".")[:2])
    arch = fp.arch
    platforms = [f"manylinux_{glibc_major}_{m}_{arch}" for m in range(glibc_minor, -1, -1)]
    platforms += [f"{legacy}_{arch}" for legacy, (gmaj, gmin) in LEGACY_MANYLINUX.items()
                  if (gmaj, gmin) <= (glibc_major, glibc_minor)]
    platforms += [f"linux_{arch}"]
    own = f"cp{major}{minor}"
    tags = {f"{own}-{own}-{p}" for p in platforms}
    tags |= {f"cp{major}{m}-abi3-{p}" for m in range(2, minor + 1) for p in platforms}
    tags |= {f"{own}-none-{p}" for p in platforms}
    for py in (own, f"py{major}{minor}", f"py{major}", *(f"py{major}{m}" for m in range(minor))):
        tags |= {f"{py}-none-any"} | {f"{py}-none-{p}" for p in platforms}
    return tags


def check_tags(filename: str, fp: Fingerprint) -> None:
    _, _, _, tags = parse_wheel_filename(filename)
    if not {str(t) for t in tags} & supported_tags(fp):
        raise BuildError(
            f"{filename} does not install on {fp.platform} (CPython {fp.python}, glibc"
            f" {fp.glibc}, {fp.arch}): its tags are {', '.join(sorted(map(str, tags)))}",
            hint="pin the wheel file built for this Python, glibc and architecture",
        )


def marker_env(fp: Fingerprint) -> dict[str, str]:
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    env.update(python_version=".".join(fp.python.split(".")[:2]), python_full_version=fp.python,
               platform_machine=fp.arch, sys_platform="linux", platform_system="Linux",
               os_name="posix", implementation_name="cpython",
               platform_python_implementation="CPython")
    return env


def apply_overrides(recipe: Recipe, requires: list[str], fp: Fingerprint
                    ) -> tuple[list[str], list[dict[str, Any]]]:
    """The wheel's Requires-Dist with the recipe's overrides applied, and the overrides as
    records. Refuses a stale override and any remaining requirement, applicable on this
    platform, that the version the base ships does not satisfy."""
    adopt = recipe.adopt
    assert adopt is not None
    where = f"recipes/{recipe.name}.toml"
    parsed = [Requirement(r) for r in requires]
    result = list(requires)
    applied: list[dict[str, Any]] = []
    for i, override in enumerate(adopt.overrides):
        wanted = Requirement(override.requirement)
        at = next((j for j, req in enumerate(parsed) if same_requirement(req, wanted)), None)
        if at is None:
            raise ConfigError(
                f"{where}: adopt.overrides[{i}].requirement: {adopt.wheel} declares no"
                f" `{override.requirement}`",
                hint="its requirements: " + "; ".join(r for r in requires if "extra ==" not in r),
            )
        result[at] = override.replace or ""
        applied.append(override.model_dump())
    result = [r for r in result if r]
    env = marker_env(fp)
    for line in result:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        name = canonicalize_name(req.name)
        shipped = fp.distributions.get(name)
        if shipped is None or req.specifier.contains(Version(shipped), prereleases=True):
            continue
        raise BuildError(
            f"{adopt.wheel} requires {line}; {fp.platform} ships {name} {shipped}: installing"
            f" it would replace the platform's {name}. Nothing was uploaded.",
            hint=f"if it loads with {name} {shipped} (the ABI audit and test will tell), declare"
                 f' in {where}: [[adopt.overrides]] requirement = "{line}",'
                 f' replace = "{name}=={shipped}", reason = "..."; else build it from source',
        )
    return result, applied


def adopt(recipe: Recipe, wheel: Path, fp: Fingerprint, dest_dir: Path, *, tag: str,
          label: str | None, recipes_dir: Path) -> Path:
    """The relabelled wheel in dest_dir, its overrides and patches applied."""
    assert recipe.adopt is not None
    check_tags(wheel.name, fp)
    with zipfile.ZipFile(wheel) as zf:
        metadata = next((n for n in zf.namelist()
                         if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
        if metadata is None:
            raise BuildError(f"{wheel.name} has no dist-info/METADATA: not a wheel")
        requires = headers(zf.read(metadata), "Requires-Dist")
    new_requires, applied = apply_overrides(recipe, requires, fp)
    patched = apply_patches(recipe, wheel, recipes_dir)
    return relabel(wheel, dest_dir, label=label, tag=tag,
                   requires=new_requires if applied else None, files=patched)
